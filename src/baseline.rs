//! The Pod Security Standards baseline checks (SPEC §5).
