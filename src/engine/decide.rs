use super::{Decision, Endpoint, Engine, EngineError, Facts, Request};

pub(super) fn decide(
    _engine: &Engine,
    _request: &Request<'_>,
    _endpoint: Endpoint,
    _facts: &Facts<'_>,
) -> Result<Decision, EngineError> {
    Ok(Decision::allow())
}
