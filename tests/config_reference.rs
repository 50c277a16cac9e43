//! The configuration reference is generated from the code (`wasm-admission config`), and the
//! committed copies are what it prints now: docs/config.md, docs/config.example.yaml and the
//! chart's `config:` block. (scripts/test-deploy.sh checks the same through deploy/render.sh; this
//! catches a stale copy in `cargo test` alone.) Regenerate with `bash deploy/render.sh`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config(flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(["config", flag])
        .output()
        .expect("run wasm-admission config");
    assert!(out.status.success(), "config {flag} failed");
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn committed(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).expect("committed copy")
}

#[test]
fn docs_config_md_is_the_generated_reference() {
    assert!(
        committed("docs/config.md") == config("--reference"),
        "docs/config.md is stale: run bash deploy/render.sh"
    );
}

#[test]
fn docs_config_example_yaml_is_the_generated_example() {
    assert!(
        committed("docs/config.example.yaml") == config("--example"),
        "docs/config.example.yaml is stale: run bash deploy/render.sh"
    );
}

#[test]
fn the_charts_config_block_is_the_generated_one() {
    let values = committed("deploy/helm/wasm-admission/values.yaml");
    let block = config("--chart-values");
    assert!(
        values.contains(&block),
        "the config: block of deploy/helm/wasm-admission/values.yaml is stale: run bash deploy/render.sh"
    );
}

#[test]
fn every_key_of_the_defaults_is_in_the_reference() {
    let defaults: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&config("--example")).expect("the example is YAML");
    let reference = config("--reference");
    fn keys(prefix: &str, value: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        if let Some(map) = value.as_mapping() {
            for (k, v) in map {
                let key = k.as_str().expect("string key");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                out.push(path.clone());
                if path != "resourceProfiles" {
                    keys(&path, v, out);
                }
            }
        }
    }
    let mut all = Vec::new();
    keys("", &defaults, &mut all);
    for key in all
        .iter()
        .filter(|k| !k.starts_with("resources.requests.") && !k.starts_with("resources.limits."))
    {
        assert!(
            reference.contains(&format!("| `{key}` |")),
            "{key} has no row in docs/config.md"
        );
    }
}
