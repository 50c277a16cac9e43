//! The configuration reference: every key of [`Config`], its type and meaning, in one table.
//!
//! This table is the one place a key is explained to users. Defaults are not written here: they
//! are read from `Config::default()` serialized, so they cannot drift. Three files are generated
//! from it (by `wasm-admission config`, called by deploy/render.sh, which CI checks for staleness):
//! docs/config.md (`--reference`), docs/config.example.yaml (`--example`) and the chart's
//! values.yaml `config:` block (`--chart-values`). A unit test fails when a key of `Config` has
//! no row here, or a row names no key.

use serde_yaml_ng::Value;

use crate::core::config::Config;

/// One key of the configuration file.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The dotted path (`detection.registry.timeout`).
    pub key: &'static str,
    /// The type as a user writes it.
    pub kind: &'static str,
    /// What it does, in plain sentences.
    pub meaning: &'static str,
}

const fn key(key: &'static str, kind: &'static str, meaning: &'static str) -> KeyDoc {
    KeyDoc { key, kind, meaning }
}

/// A section (a map whose keys are listed below it) rather than a value.
pub const SECTION: &str = "section";

/// Every key, in the order of the file.
pub const REFERENCE: &[KeyDoc] = &[
    key(
        "runtimeClassName",
        "string",
        "RuntimeClass injected into a Wasm pod spec that names none, unless its \
         `wasm-admission.io/runtime-class` annotation names another (behaviour.md §4). It always \
         counts as a Wasm class.",
    ),
    key(
        "excludedNamespaces",
        "list of namespace names",
        "Namespaces never touched, whatever the webhook selectors say: no mutations, no denials. \
         The webhook's own namespace (`--namespace`, else `$POD_NAMESPACE`) is always added.",
    ),
    key(
        "mutateTemplates",
        "bool",
        "`false` leaves Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob templates \
         as written (GitOps without drift) and mutates only Pods. Denials still apply to templates.",
    ),
    key(
        "podAnnotations",
        "map of string to string",
        "Annotations added to every Wasm pod (for workloads: the pod template), each only where \
         the pod does not set it. Nodes whose containerd runs Wasm through crun need \
         `module.wasm.image/variant: compat-smart` here.",
    ),
    key(
        "resources",
        SECTION,
        "Default requests and limits for every container and init container of a Wasm pod, each \
         added only where the container has no value of its own. A block that names only \
         `requests` or only `limits` keeps the built-in default for the other.",
    ),
    key(
        "resources.requests",
        "map of resource name to quantity",
        "Default requests. An empty map (`{}`) turns this default off.",
    ),
    key(
        "resources.limits",
        "map of resource name to quantity",
        "Default limits. An empty map (`{}`) turns this default off.",
    ),
    key(
        "resourceProfiles",
        "map of name to {requests, limits}",
        "Named alternatives to `resources`, chosen per workload with \
         `wasm-admission.io/resource-profile: NAME` (an unknown name is denied). Profiles given \
         are added to the built-in ones; a built-in name overrides that profile's `requests` \
         and/or `limits`. A request above its limit is refused.",
    ),
    key(
        "otel",
        SECTION,
        "OpenTelemetry environment variables (OTEL_SERVICE_NAME, the OTLP endpoint, pod and node \
         name, OTEL_RESOURCE_ATTRIBUTES) for every Wasm container, each only where the container \
         does not define it.",
    ),
    key(
        "otel.enabled",
        "bool",
        "`false` adds no OpenTelemetry variables.",
    ),
    key(
        "otel.endpoint",
        "URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT; a pod can override it with \
         `wasm-admission.io/otel-endpoint`.",
    ),
    key(
        "security",
        SECTION,
        "The denial of Wasm pod specs that break the Pod Security Standards (behaviour.md §5).",
    ),
    key(
        "security.policy",
        "`baseline` or `privileged`",
        "`baseline`: every baseline check. `privileged`: only `securityContext.privileged: true` \
         is denied.",
    ),
    key(
        "security.baselineVersion",
        "`latest` or `v1.MINOR`",
        "The Pod Security Standards version of the baseline, as Pod Security Admission's \
         `enforce-version` label (`v1.30` and later). Set it to the namespaces' label to agree \
         with PSA.",
    ),
    key(
        "security.exemptions",
        SECTION,
        "Requests the baseline denial never applies to: the cluster administrator's, as PSA's \
         AdmissionConfiguration exemptions. Nothing written on a pod can exempt it.",
    ),
    key(
        "security.exemptions.usernames",
        "list of strings",
        "Authenticated user names (`userInfo.username`), e.g. \
         `system:serviceaccount:NS:NAME`.",
    ),
    key(
        "security.exemptions.namespaces",
        "list of namespace names",
        "Namespaces whose pods are not checked (they are still mutated).",
    ),
    key(
        "security.exemptions.runtimeClasses",
        "list of RuntimeClass names",
        "A pod spec whose own `runtimeClassName` is one of these is not checked.",
    ),
    key(
        "detection",
        SECTION,
        "When a pod spec counts as Wasm (behaviour.md §3); annotations are looked at first.",
    ),
    key(
        "detection.runtimeClasses",
        "list of RuntimeClass names",
        "A pod spec whose own `runtimeClassName` is one of these is Wasm and keeps its class \
         (rule 3b). An empty list leaves only `runtimeClassName` counting by name.",
    ),
    key(
        "detection.runtimeHandlers",
        "list of handler names",
        "A RuntimeClass whose `handler` is one of these is a Wasm class whatever its name (rule \
         3b): `serve` learns the classes from its RuntimeClass watch, `check` from the \
         RuntimeClass documents in its input and from `--cluster`. An empty list stops \
         recognizing classes by handler.",
    ),
    key(
        "detection.variantRuntimeClasses",
        "list of RuntimeClass names",
        "Classes kept without a warning on pods detected by `module.wasm.image/variant`. An empty \
         list brings the RuntimeClass warning back for them.",
    ),
    key(
        "detection.imagePatterns",
        "list of globs",
        "Globs over the full image reference (ASCII), e.g. `ghcr.io/acme/*-wasm:*`. A pod spec \
         is Wasm when every container in `containers` matches; when only some match it is left \
         unchanged with a warning.",
    ),
    key(
        "detection.registry",
        SECTION,
        "Registry inspection (rule 6): the image's OCI manifest is fetched and read for Wasm \
         media types or `architecture: wasm`. Results are cached; a lookup that fails or runs \
         past `timeout` counts as not Wasm, with a warning.",
    ),
    key(
        "detection.registry.enabled",
        "bool",
        "Inspect registries (off by default).",
    ),
    key(
        "detection.registry.timeout",
        "duration",
        "Time budget of one lookup, e.g. `2s`; above zero.",
    ),
    key(
        "detection.registry.cacheTTL",
        "duration",
        "How long an answer is kept, e.g. `10m`.",
    ),
    key(
        "detection.registry.insecure",
        "list of host:port",
        "Registries reached over plain HTTP.",
    ),
    key(
        "detection.registry.credentialsFile",
        "path",
        "A docker `config.json`, as mounted from a `kubernetes.io/dockerconfigjson` Secret; empty: \
         anonymous reads.",
    ),
    key(
        "detection.registry.allowedHosts",
        "list of host or host:port",
        "Registries that may be inspected (`*` within one DNS label); empty: any. An image on \
         another registry is not fetched and gets a warning.",
    ),
    key(
        "detection.registry.redirectHosts",
        "list of host or host:port",
        "Hosts besides the registry's own that a redirect or a token realm may send a read to \
         (HTTPS only from an HTTPS registry): by default the blob and token hosts of Docker Hub, \
         GHCR, ECR and Quay. `[]` follows the registry's own host only.",
    ),
    key(
        "detection.registry.maxConcurrentFetches",
        "integer, at least 1",
        "Registry fetches at once over all reviews; a lookup that finds no place within its \
         budget counts as not Wasm, with a warning.",
    ),
    key(
        "detection.registry.maxBufferedMiB",
        "integer, 4 to 4096",
        "Registry answer bytes held in memory at once over all lookups, in MiB; a read beyond it \
         is refused (not Wasm, with a warning).",
    ),
];

/// The default of `key` in `Config::default()`, serialized as the file writes it.
pub fn default_of(key: &str) -> Option<Value> {
    let mut value = serde_yaml_ng::to_value(Config::default()).ok()?;
    for part in key.split('.') {
        value = value.as_mapping()?.get(part)?.clone();
    }
    Some(value)
}

/// A value in YAML flow style, on one line (`[a, b]`, `{cpu: 250m}`, `""`).
pub fn flow(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", flow(k), flow(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        Value::Tagged(tagged) => flow(&tagged.value),
    }
}

/// A string written plainly where YAML reads it back as the same string, else double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
        && !s.starts_with(['-', ':', '@', '.'])
        && !s.ends_with(':')
        && !s.contains(": ")
        && matches!(
            serde_yaml_ng::from_str::<Value>(s),
            Ok(Value::String(ref back)) if back == s
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn depth(key: &str) -> usize {
    key.matches('.').count()
}

fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// Wraps `text` into comment lines of at most `width` characters, each starting with `prefix`.
fn comment(text: &str, prefix: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > width {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(prefix);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The whole configuration with every default, each key under its meaning as comments, indented
/// by `indent` spaces (2 for the chart's `config:` block). It parses back to `Config::default()`.
pub fn annotated_yaml(indent: usize) -> String {
    let mut out = String::new();
    for doc in REFERENCE {
        let pad = " ".repeat(indent + 2 * depth(doc.key));
        out.push_str(&comment(doc.meaning, &format!("{pad}# "), 100));
        if doc.kind == SECTION {
            out.push_str(&format!("{pad}{}:\n", last(doc.key)));
        } else {
            let value = default_of(doc.key).unwrap_or(Value::Null);
            out.push_str(&format!("{pad}{}:{}", last(doc.key), block(&value, &pad)));
        }
    }
    out
}

/// A value after its key: in flow style on the key's line when that fits in 100 characters, else
/// one item (or one entry) a line below it.
fn block(value: &Value, pad: &str) -> String {
    let one_line = flow(value);
    if pad.len() + one_line.len() < 80 {
        return format!(" {one_line}\n");
    }
    let mut out = String::from("\n");
    match value {
        Value::Sequence(items) => {
            for item in items {
                out.push_str(&format!("{pad}  - {}\n", flow(item)));
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                out.push_str(&format!("{pad}  {}: {}\n", flow(k), flow(v)));
            }
        }
        _ => return format!(" {one_line}\n"),
    }
    out
}

/// docs/config.md: the reference as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "<!-- GENERATED by deploy/render.sh from `wasm-admission config --reference` \
         (src/core/config_reference.rs). Do not edit; CI fails when it is stale. -->\n\
         # Configuration reference\n\n\
         The configuration file (`serve --config`, `check --config`, `audit --config`, \
         `policies --config`; the chart's `config:` value) is one YAML document. Every key is \
         optional and keeps the default below when left out; an unknown or misspelt key is \
         refused with a message naming it. `serve` re-reads the file when it changes (a mounted \
         ConfigMap is updated in place); a new file that is not valid is refused, with a log \
         line and `wasm_admission_reloads_total{what=\"config\",result=\"failure\"}`, and the last good \
         configuration stays in force. The file is at most 1 MiB.\n\n\
         `wasm-admission config` prints every default as a file; docs/config.example.yaml is the \
         same file with each key's meaning as comments.\n\n\
         | key | type | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for doc in REFERENCE {
        let default = if doc.kind == SECTION {
            String::new()
        } else {
            let value = default_of(doc.key).map(|v| flow(&v)).unwrap_or_default();
            format!("`{}`", value.replace('|', "\\|"))
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            doc.key,
            doc.kind,
            default,
            doc.meaning.replace('|', "\\|")
        ));
    }
    out
}

/// docs/config.example.yaml: the annotated file with a header.
pub fn example() -> String {
    let header = "\
# GENERATED by deploy/render.sh from `wasm-admission config --example`
# (src/core/config_reference.rs). Do not edit; CI fails when it is stale.
#
# The wasm-admission configuration file with every key at its default (docs/config.md).
#   wasm-admission serve --config config.yaml ...
#   wasm-admission check --config docs/config.example.yaml examples/
# Every key is optional: copy this file and keep only the keys you change. Unknown keys are
# refused, so a misspelt key fails loudly and is never ignored.

";
    format!("{header}{}", annotated_yaml(0))
}

/// Every key path under a value: maps are walked, anything else is a leaf.
#[cfg(test)]
fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let name = k.as_str().unwrap_or_default();
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                leaves(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_config_has_one_row_and_every_row_a_key() {
        let mut keys = Vec::new();
        leaves(
            "",
            &serde_yaml_ng::to_value(Config::default()).unwrap(),
            &mut keys,
        );
        let rows: Vec<&str> = REFERENCE.iter().map(|d| d.key).collect();
        for key in &keys {
            // A key is documented by its own row, or by a row for the map that holds it.
            let covered = rows
                .iter()
                .any(|row| row == key || (key.starts_with(&format!("{row}.")) && !is_section(row)));
            assert!(covered, "{key} has no row in REFERENCE");
        }
        for row in &rows {
            assert!(default_of(row).is_some(), "{row} is no key of Config");
            assert_eq!(rows.iter().filter(|r| *r == row).count(), 1, "{row} twice");
        }
        for doc in REFERENCE {
            if doc.kind == SECTION {
                assert!(default_of(doc.key).unwrap().is_mapping(), "{}", doc.key);
            }
        }
    }

    fn is_section(row: &str) -> bool {
        REFERENCE.iter().any(|d| d.key == row && d.kind == SECTION)
    }

    #[test]
    fn the_annotated_file_is_the_default_configuration() {
        assert_eq!(Config::from_yaml(&example()).unwrap(), Config::default());
        let nested = format!("config:\n{}", annotated_yaml(2));
        let value: Value = serde_yaml_ng::from_str(&nested).unwrap();
        let inner = serde_yaml_ng::to_string(&value["config"]).unwrap();
        assert_eq!(Config::from_yaml(&inner).unwrap(), Config::default());
    }

    #[test]
    fn the_reference_names_every_default() {
        let text = markdown();
        assert!(text.contains("| `runtimeClassName` | string | `wasm` |"));
        assert!(text.contains("| `detection.registry.timeout` | duration | `2s` |"));
        assert!(text.contains("`maxBufferedMiB`") || text.contains("maxBufferedMiB"));
    }

    #[test]
    fn strings_yaml_would_misread_are_quoted() {
        assert_eq!(flow(&Value::String(String::new())), "\"\"");
        assert_eq!(flow(&Value::String("true".into())), "\"true\"");
        assert_eq!(
            flow(&Value::String("cdn*.quay.io".into())),
            "\"cdn*.quay.io\""
        );
        assert_eq!(flow(&Value::String("250m".into())), "250m");
        assert_eq!(
            flow(&Value::String("http://otel-collector:4317".into())),
            "http://otel-collector:4317"
        );
    }
}
