//! YAML/JSON manifest text through the `check` door (`check::parse_source`, then
//! `check::check_documents`): never a panic; every patch applies ("internal error" is how
//! `check` reports one that does not); and a second run on the mutated object changes nothing.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use wasm_admission::commands::check;
use wasm_admission::core::engine::Facts;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let engine = common::engine();
    let mut documents = Vec::new();
    check::parse_source("fuzz.yaml", text, &mut documents);
    for checked in check::check_documents(engine, &Facts::default(), documents, "default") {
        let evaluated = match &checked.result {
            Ok(evaluated) => evaluated,
            Err(message) => {
                assert!(!message.contains("internal error"), "{message}");
                continue;
            }
        };
        common::check_decision(None, &evaluated.decision);
        // `check_documents` keeps every decided object (only audit's reports drop them).
        let Some(object) = &evaluated.object else {
            continue;
        };
        if evaluated.decision.patch.is_empty() {
            continue;
        }
        let again = check::evaluate(engine, &Facts::default(), object, &checked.namespace)
            .expect("the mutated object is still valid");
        assert!(
            again.patch.is_empty(),
            "second run patched again: {}\nobject: {}",
            again.patch.as_json(),
            object
        );
    }
});
