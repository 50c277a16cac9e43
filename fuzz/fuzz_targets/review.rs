//! AdmissionReview bytes through the `serve` door (`review::handle`), on both endpoints: never a
//! panic; an answer is a valid AdmissionReview; its patch applies to the object as received; and
//! the webhook run again on its own output changes nothing more (behaviour.md §4).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wasm_admission::core::engine::{Endpoint, Facts};
use wasm_admission::core::review;

fuzz_target!(|data: &[u8]| {
    let engine = common::engine();
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let Ok(reply) = review::handle(engine, data, endpoint, &Facts::default()) else {
            continue;
        };
        let answer: Value = serde_json::from_slice(&reply.body).expect("the answer is JSON");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["allowed"], reply.decision.allowed);
        if endpoint == Endpoint::Validate {
            assert!(reply.decision.patch.is_empty(), "/validate patched");
        }
        // serde skips ignored fields without checking their UTF-8, so a review can be answered
        // and still not parse as a whole `Value` (the apiserver only sends valid UTF-8).
        let Ok(mut review) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let object = review["request"]
            .get("object")
            .filter(|o| !o.is_null())
            .cloned();
        let Some(patched) = common::check_decision(object.as_ref(), &reply.decision) else {
            continue;
        };
        if reply.decision.patch.is_empty() {
            continue;
        }
        // Reinvocation: the patched object gets an empty patch.
        review["request"]["object"] = patched.clone();
        let again = serde_json::to_vec(&review).expect("serialize");
        let second = review::handle(engine, &again, endpoint, &Facts::default())
            .expect("the patched object is still a valid review");
        assert!(
            second.decision.patch.is_empty(),
            "second run patched again: {}\nobject: {patched}",
            second.decision.patch.as_json()
        );
    }
});
