//! Configuration text (`config::Config::from_yaml`): never a panic; an accepted configuration
//! builds an engine, and it survives a round trip through its own YAML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_admission::core::config::Config;
use wasm_admission::core::engine::Engine;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_yaml(text) else {
        return;
    };
    if let Err(e) = Engine::new(config.clone()) {
        panic!("an accepted configuration builds no engine: {e}");
    }
    let yaml = serde_yaml_ng::to_string(&config).expect("serialize");
    match Config::from_yaml(&yaml) {
        Ok(back) => assert_eq!(back, config, "round trip of {yaml}"),
        Err(e) => panic!("own YAML refused: {e}\n{yaml}"),
    }
});
