//! What the targets share: an engine configured so that every rule can fire (image patterns,
//! pod annotations with `/` in their keys, the webhook's own namespace), and the invariants a
//! decision must keep whatever the input.

use std::sync::OnceLock;

use serde_json::Value;
use wasm_admission::core::config::Config;
use wasm_admission::core::engine::{Decision, Engine};

const CONFIG: &str = r#"
runtimeClassName: wasmtime
podAnnotations:
  module.wasm.image/variant: compat-smart
  example.com/a~b: "x"
detection:
  imagePatterns: ["registry.example.com/wasm/*", "**/*-wasm:*", "docker.io/library/hello-wasm:*"]
"#;

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = Config::from_yaml(CONFIG)
            .expect("fuzz configuration")
            .with_own_namespace(Some("wasm-admission"));
        Engine::new(config).expect("fuzz engine")
    })
}

/// The invariants of one decision on `object`: a denial carries no patch and a message, and is
/// a denial exactly when one of its rules failed (docs/behaviour.md, "Rule ids"); the patch
/// applies cleanly (as the apiserver applies it); warnings are short and prefixed; audit
/// annotation keys have no `/`. Returns the patched object.
pub fn check_decision(object: Option<&Value>, decision: &Decision) -> Option<Value> {
    if !decision.allowed {
        assert!(decision.patch.is_empty(), "a denial carries a patch");
        assert!(decision.message.is_some(), "a denial without a message");
    }
    assert_eq!(
        decision.allowed,
        decision.failed_rule().is_none(),
        "the verdict disagrees with the rules: {:?}",
        decision.rules
    );
    for w in &decision.warnings {
        assert!(w.starts_with("wasm-admission: "), "warning prefix: {w}");
        assert!(w.chars().count() <= 120, "warning too long: {w}");
    }
    for key in decision.audit_annotations.keys() {
        assert!(!key.contains('/'), "audit annotation key with /: {key}");
    }
    let object = object?;
    let mut patched = object.clone();
    let operations = match decision.patch.operations() {
        Ok(operations) => operations,
        Err(e) => panic!(
            "the patch is not JSON Patch: {e}\npatch: {}",
            decision.patch.as_json()
        ),
    };
    if let Err(e) = json_patch::patch(&mut patched, &operations) {
        panic!(
            "the patch does not apply: {e}\npatch: {}\nobject: {object}",
            decision.patch.as_json()
        );
    }
    Some(patched)
}
