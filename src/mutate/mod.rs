//! The mutations of SPEC §4, one module each.
