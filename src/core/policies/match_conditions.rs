//! The webhook configurations' `matchConditions` (behaviour.md §6, "Which objects reach the
//! webhook"): CEL that kube-apiserver evaluates before it calls `/mutate` or `/validate`, so that
//! an object that cannot be Wasm, and an UPDATE that changes nothing the rules read, costs no
//! webhook call, and a webhook outage blocks neither.
//!
//! Generated from the same [`Config`] as the native policies, with the same CEL helpers: the only
//! configuration they depend on is `detection.imagePatterns` (rule 5) and
//! `detection.registry.enabled` (rule 6, which may call any image Wasm).
//!
//! The conditions only ever skip what the webhook would allow unchanged; they never skip on
//! anything a pod's author writes to opt out (the skip label, `wasm-admission.io/wasm: "false"`):
//! the §5 boundary is the webhook's to judge. Every object that names a `runtimeClassName` (any
//! class: whether its handler runs Wasm is known to `serve` only) reaches the webhook.
//!
//! Cost: match conditions have their own runtime budget in the apiserver (2,500,000 per webhook,
//! 1,000,000 per expression). What can grow with the object is bounded: the image rule looks at
//! most [`MatchConditions::max_containers`] containers and images up to [`MAX_IMAGE_LEN`]
//! characters; a pod beyond either reaches the webhook without matching. Cheap tests come first:
//! CEL's `||` stops at the first true, so a pod that names a class never reaches the regex.

use regex_syntax::ast::{self, Ast, ClassSet, ClassSetItem};
use serde_json::{Value, json};

use super::cel;
use super::common::pod_of;
use crate::core::config::Config;
use crate::core::detection::{ANN_RUNTIME_CLASS, ANN_WASM, ANN_WASM_VARIANT, compile_pattern};
use crate::core::engine::{ANN_OTEL, ANN_OTEL_ENDPOINT, ANN_RESOURCE_PROFILE};
use crate::core::mutate::otel::ANN_SERVICE_NAME;

/// The name of the condition that skips objects no rule can make Wasm.
pub const WASM_POSSIBLE: &str = "wasm-possible";
/// The name of the condition that skips UPDATEs which change nothing the rules read.
pub const RULE_INPUT_CHANGED: &str = "create-or-rule-input-changed";

/// Images longer than this reach the webhook without being matched (an image reference is at
/// most 255 characters of name, 128 of tag and a digest).
pub const MAX_IMAGE_LEN: usize = 512;
/// The most containers the image rule matches one by one.
const MAX_CONTAINERS: usize = 64;
/// The cost one expression may use at most, below the apiserver's per-expression limit
/// (1,000,000), with room for the tests that run before the image rule.
const COST_BUDGET: u64 = 900_000;
/// At fewer containers than this the image rule would be useless: the patterns are too many
/// to match within the cost budget.
const MIN_CONTAINERS: usize = 4;

/// The annotations a rule reads (behaviour.md §3 and §4): an UPDATE that changes one of them
/// on the object (or, for a Pod, on itself) is sent to the webhook.
pub const RULE_ANNOTATIONS: [&str; 7] = [
    ANN_WASM,
    ANN_RUNTIME_CLASS,
    ANN_WASM_VARIANT,
    ANN_RESOURCE_PROFILE,
    ANN_OTEL,
    ANN_OTEL_ENDPOINT,
    ANN_SERVICE_NAME,
];

/// A configuration the match conditions cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchConditionError {
    #[error(
        "detection.imagePatterns[{index}] ({pattern:?}) cannot become a CEL regular expression \
         (RE2): {reason}; write the pattern with ASCII characters, `*`, `**`, `?`, `{{a,b}}` and \
         simple `[...]` classes"
    )]
    Pattern {
        index: usize,
        pattern: String,
        reason: String,
    },
}

/// The generated conditions, and what they leave to the webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchConditions {
    /// `matchConditions` entries (`name`, `expression`), the same for both webhooks.
    pub conditions: Vec<Value>,
    /// Containers the image rule matches one by one (0: no image rule, every Pod's CREATE
    /// reaches the webhook).
    pub max_containers: usize,
    /// One line each for the command's standard error: what every call still reaches.
    pub notes: Vec<String>,
}

/// The conditions for `config`. Refused when an image pattern cannot be read as RE2 reads it.
pub fn generate(config: &Config) -> Result<MatchConditions, MatchConditionError> {
    let mut notes = Vec::new();
    let mut conditions = Vec::new();
    let mut max_containers = 0;
    if config.detection.registry.enabled {
        notes.push(
            "detection.registry.enabled: registry inspection may call any image Wasm, so every \
             Pod and workload CREATE reaches the webhook; only UPDATEs that change nothing the \
             rules read are skipped"
                .to_string(),
        );
    } else {
        let regex = image_regex(config)?;
        let images = match &regex {
            None => "false".to_string(),
            Some(re) => {
                max_containers = containers_within_budget(re);
                if max_containers < MIN_CONTAINERS {
                    max_containers = 0;
                    notes.push(format!(
                        "detection.imagePatterns: {} patterns make a {}-character regular \
                         expression, too costly for the apiserver's match-condition budget; every \
                         Pod and workload with containers reaches the webhook",
                        config.detection.image_patterns.len(),
                        re.len()
                    ));
                    "size(variables_containers) > 0".to_string()
                } else {
                    image_rule(&cel::string(re), max_containers)
                }
            }
        };
        conditions.push(json!({
            "name": WASM_POSSIBLE,
            "expression": wasm_possible(&images),
        }));
    }
    conditions.push(json!({
        "name": RULE_INPUT_CHANGED,
        "expression": rule_input_changed(),
    }));
    Ok(MatchConditions {
        conditions,
        max_containers,
        notes,
    })
}

/// The conditions as the YAML list the chart's `matchConditions:` holds.
pub fn to_yaml(conditions: &MatchConditions) -> String {
    serde_yaml_ng::to_string(&conditions.conditions).unwrap_or_default()
}

/// The pod (or pod template) of the request's object, as CEL.
fn pod(object: &str) -> String {
    format!("({})", pod_of(object))
}

/// Rules 1 to 5 (behaviour.md §3), as what can make the object Wasm: any `runtimeClassName`
/// (rule 3b, whatever the class: its handler is `serve`'s to know), the annotations of rules
/// 2 to 4 on the pod or the object, then the image rule. `wasm-admission.io/wasm: "false"`
/// skips nothing: the webhook decides what it opts out of.
fn wasm_possible(images: &str) -> String {
    let p = pod("object");
    let containers = format!("{p}.?spec.?containers.orValue([])");
    let images = images.replace("variables_containers", &containers);
    format!(
        "{p}.?spec.?runtimeClassName.orValue('') != '' || \
         [{p}.?metadata.?annotations.orValue({{}}), object.metadata.?annotations.orValue({{}})].exists(a, \
         a[?{wasm}].orValue('') == 'true' || a[?{class}].orValue('') != '' || \
         a[?{variant}].orValue('') in ['compat', 'compat-smart']) || {images}",
        wasm = cel::string(ANN_WASM),
        class = cel::string(ANN_RUNTIME_CLASS),
        variant = cel::string(ANN_WASM_VARIANT),
    )
}

/// Rule 5: some container's image matches a pattern, as written or normalized (`nginx` →
/// `docker.io/library/nginx:latest`, as `detection::normalize_image` and the native policies
/// read it). Some, not every: a mixed pod gets the webhook's warning. Bounded: a pod with more
/// containers than `max`, or a longer image than [`MAX_IMAGE_LEN`], reaches the webhook.
fn image_rule(re: &str, max: usize) -> String {
    let name = "i.split('@', 2)[0]".to_string();
    let first = format!("({name}.contains('/') ? {name}.split('/', 2)[0] : '')");
    let base = format!(
        "(({first} != '' && ({first}.contains('.') || {first}.contains(':') || {first} == 'localhost')) ? {name} : \
         {first} == '' ? 'docker.io/library/' + {name} : 'docker.io/' + {name})"
    );
    let normal = format!(
        "{base} + ((!i.contains('@') && !{base}.substring({base}.lastIndexOf('/') + 1).contains(':')) ? ':latest' : '') + \
         (i.contains('@') ? '@' + i.split('@', 2)[1] : '')"
    );
    format!(
        "size(variables_containers) > {max} || variables_containers.map(c, c.?image.orValue('')).exists(i, \
         size(i) > {MAX_IMAGE_LEN} || i.matches({re}) || ({normal}).matches({re}))"
    )
}

/// CREATE and `kubectl debug` always; an UPDATE only when it changes what the rules read: a
/// Pod's images (behaviour.md §5: the image decides rules 5 and 6), a workload's pod template,
/// or one of [`RULE_ANNOTATIONS`] on the object. A scale, a status-like write, a label edit or
/// the controllers' own annotations (`deployment.kubernetes.io/revision`) change none.
fn rule_input_changed() -> String {
    let images = |o: &str| {
        format!(
            "['containers', 'initContainers'].map(f, {o}.spec[?f].orValue([]).map(c, c.?image.orValue('')))"
        )
    };
    let annotations = cel::strings(RULE_ANNOTATIONS);
    format!(
        "request.operation != 'UPDATE' || \
         (has(request.subResource) && request.subResource == 'ephemeralcontainers') || \
         {annotations}.exists(k, object.metadata.?annotations.orValue({{}})[?k].orValue('') != \
         oldObject.metadata.?annotations.orValue({{}})[?k].orValue('')) || \
         (request.kind.kind == 'Pod' ? {new_images} != {old_images} : {new_pod} != {old_pod})",
        new_images = images("object"),
        old_images = images("oldObject"),
        new_pod = pod("object"),
        old_pod = pod("oldObject"),
    )
}

/// `detection.imagePatterns` as one RE2 alternation, or `None` without patterns.
fn image_regex(config: &Config) -> Result<Option<String>, MatchConditionError> {
    let mut parts = Vec::new();
    for (index, pattern) in config.detection.image_patterns.iter().enumerate() {
        let refuse = |reason: String| MatchConditionError::Pattern {
            index,
            pattern: pattern.clone(),
            reason,
        };
        if let Some(c) = pattern
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control())
        {
            return Err(refuse(format!(
                "the character {c:?} is matched by bytes in the engine and by code points in CEL"
            )));
        }
        let glob = compile_pattern(pattern).map_err(refuse)?;
        let re = cel::glob_regex(&glob);
        re2_compatible(&re).map_err(refuse)?;
        parts.push(format!("(?:{re})"));
    }
    Ok((!parts.is_empty()).then(|| parts.join("|")))
}

/// Whether RE2 (CEL's `matches`) reads `re` as the engine's matcher does: ASCII only (the
/// engine matches bytes, RE2 code points), and no class operations or nested classes (Rust
/// syntax that RE2 lacks).
fn re2_compatible(re: &str) -> Result<(), String> {
    if let Some(c) = re.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!(
            "the character {c:?} is matched by bytes in the engine and by code points in CEL"
        ));
    }
    let ast = ast::parse::Parser::new()
        .parse(re)
        .map_err(|e| format!("its regular expression does not parse: {e}"))?;
    let mut problem = None;
    walk(&ast, &mut problem);
    problem.map_or(Ok(()), Err)
}

fn walk(ast: &Ast, problem: &mut Option<String>) {
    match ast {
        // `\xC3` is a byte to the engine's matcher and the code point U+00C3 to RE2.
        Ast::Literal(l) if !l.c.is_ascii() => {
            *problem = Some(format!(
                "the byte escape for {:?} means a byte in the engine and a code point in CEL",
                l.c
            ))
        }
        Ast::ClassBracketed(class) => class_set(&class.kind, problem, 0),
        Ast::Repetition(r) => walk(&r.ast, problem),
        Ast::Group(g) => walk(&g.ast, problem),
        Ast::Alternation(a) => a.asts.iter().for_each(|a| walk(a, problem)),
        Ast::Concat(c) => c.asts.iter().for_each(|a| walk(a, problem)),
        _ => {}
    }
}

fn class_set(set: &ClassSet, problem: &mut Option<String>, depth: usize) {
    match set {
        ClassSet::BinaryOp(_) => {
            *problem = Some("a class operation (&&, --, ~~) is not RE2 syntax".to_string())
        }
        ClassSet::Item(item) => class_item(item, problem, depth),
    }
}

fn class_item(item: &ClassSetItem, problem: &mut Option<String>, depth: usize) {
    match item {
        ClassSetItem::Bracketed(inner) => {
            if depth > 0 {
                *problem = Some("a class inside a class is not RE2 syntax".to_string());
            }
            class_set(&inner.kind, problem, depth + 1);
        }
        ClassSetItem::Union(u) => u
            .items
            .iter()
            .for_each(|i| class_item(i, problem, depth.max(1))),
        _ => {}
    }
}

/// How many containers the image rule can match within [`COST_BUDGET`], as the apiserver
/// counts CEL cost (cel-go: a `matches` costs ⌈0.1 × (1 + string length)⌉ × ⌈0.25 × regex
/// length⌉; each container is matched twice, at [`MAX_IMAGE_LEN`] characters at most, plus the
/// normalization's string operations).
fn containers_within_budget(re: &str) -> usize {
    let string = (0.1 * (1 + MAX_IMAGE_LEN) as f64).ceil() as u64;
    let regex = (0.25 * re.len() as f64).ceil() as u64;
    // The normalization: about 30 string functions over a 1,000-character image, at most.
    let per_container = 2 * string * regex + 30 * string + 50;
    ((COST_BUDGET / per_container) as usize).min(MAX_CONTAINERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml).unwrap()
    }

    fn expression(c: &MatchConditions, name: &str) -> String {
        c.conditions
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["expression"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn the_default_configuration_sends_classes_and_annotations_and_no_image_rule() {
        let c = generate(&Config::default()).unwrap();
        let names: Vec<&str> = c
            .conditions
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [WASM_POSSIBLE, RULE_INPUT_CHANGED]);
        let wasm = expression(&c, WASM_POSSIBLE);
        assert!(
            wasm.contains("runtimeClassName.orValue('') != ''"),
            "{wasm}"
        );
        assert!(wasm.contains("'wasm-admission.io/wasm'"), "{wasm}");
        assert!(wasm.ends_with("|| false"), "{wasm}");
        assert_eq!(c.max_containers, 0);
        assert!(c.notes.is_empty());
    }

    #[test]
    fn no_condition_reads_the_skip_label_or_skips_on_wasm_false() {
        for yaml in ["", "detection:\n  imagePatterns: ['ghcr.io/acme/*']\n"] {
            let c = generate(&config(yaml)).unwrap();
            let text = serde_json::to_string(&c.conditions).unwrap();
            assert!(!text.contains("wasm-admission.io/skip"), "{text}");
            assert!(!text.contains("== 'false'"), "{text}");
        }
    }

    #[test]
    fn image_patterns_become_one_bounded_regex() {
        let c = generate(&config(
            "detection:\n  imagePatterns: ['ghcr.io/acme/*-wasm:*', 'docker.io/library/hello-wasm:*']\n",
        ))
        .unwrap();
        let wasm = expression(&c, WASM_POSSIBLE);
        assert!(wasm.contains(".matches('(?:"), "{wasm}");
        assert!(
            wasm.contains(&format!("size(i) > {MAX_IMAGE_LEN}")),
            "{wasm}"
        );
        assert_eq!(c.max_containers, MAX_CONTAINERS);
        assert!(
            wasm.contains(&format!("orValue([])) > {MAX_CONTAINERS}")),
            "{wasm}"
        );
    }

    #[test]
    fn registry_inspection_renders_no_wasm_condition_and_says_so() {
        let c = generate(&config("detection:\n  registry:\n    enabled: true\n")).unwrap();
        assert_eq!(c.conditions.len(), 1);
        assert_eq!(c.conditions[0]["name"], RULE_INPUT_CHANGED);
        assert!(
            c.notes[0].contains("detection.registry.enabled"),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn only_image_patterns_and_registry_change_the_conditions() {
        let base = generate(&Config::default()).unwrap();
        let other = config(
            "runtimeClassName: spin\nexcludedNamespaces: [a]\nmutateTemplates: false\n\
             podAnnotations: {x: y}\notel:\n  enabled: false\nsecurity:\n  policy: privileged\n\
             detection:\n  runtimeClasses: [a, b]\n  runtimeHandlers: [c]\n",
        );
        assert_eq!(generate(&other).unwrap(), base);
    }

    #[test]
    fn updates_are_sent_only_when_images_templates_or_rule_annotations_change() {
        let e = expression(&generate(&Config::default()).unwrap(), RULE_INPUT_CHANGED);
        assert!(e.starts_with("request.operation != 'UPDATE' ||"), "{e}");
        assert!(e.contains("'ephemeralcontainers'"), "{e}");
        for key in RULE_ANNOTATIONS {
            assert!(e.contains(&cel::string(key)), "{key}: {e}");
        }
        assert!(!e.contains("deployment.kubernetes.io"), "{e}");
        assert!(e.contains("oldObject.spec[?f]"), "{e}");
    }

    /// Patterns set directly: the configuration file refuses non-ASCII globs by itself; the
    /// generator refuses them too, whatever built the configuration.
    fn with_patterns(patterns: &[&str]) -> Config {
        let mut c = Config::default();
        c.detection.image_patterns = patterns.iter().map(|p| p.to_string()).collect();
        c
    }

    #[test]
    fn non_ascii_patterns_are_refused_with_the_key() {
        let err = generate(&with_patterns(&["ok/*", "ghcr.io/acm\u{e9}/*"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("detection.imagePatterns[1]"), "{err}");
        assert!(err.contains("code points"), "{err}");
        assert!(re2_compatible(r"^acm\xc3\xa9$").is_err());
        assert!(re2_compatible(r"^acme\.io$").is_ok());
    }

    #[test]
    fn patterns_rust_reads_but_re2_does_not_are_refused_or_plain() {
        match generate(&with_patterns(&["ok/*", "ghcr.io/[[:alpha:]]*/x"])) {
            Err(e) => assert!(e.to_string().contains("detection.imagePatterns[1]"), "{e}"),
            // globset escapes what RE2 would not read; then the regex must parse as RE2 reads it.
            Ok(c) => {
                let wasm = expression(&c, WASM_POSSIBLE);
                assert!(wasm.contains(".matches("), "{wasm}");
            }
        }
    }

    #[test]
    fn class_operations_and_nested_classes_are_not_re2() {
        assert!(re2_compatible("^[a-c]x$").is_ok());
        assert!(re2_compatible("^[^/]*$").is_ok());
        assert!(re2_compatible("^[a&&b]$").is_err());
        assert!(re2_compatible("^[a[bc]]$").is_err());
        assert!(re2_compatible("^[a--b]$").is_err());
    }

    #[test]
    fn many_patterns_lower_the_container_bound_and_too_many_drop_the_image_rule() {
        let patterns = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!("'registry{i}.example.com/team-{i}/*-wasm:*'"))
                .collect();
            config(&format!(
                "detection:\n  imagePatterns: [{}]\n",
                list.join(", ")
            ))
        };
        let few = generate(&patterns(20)).unwrap();
        let many = generate(&patterns(100)).unwrap();
        assert!(few.max_containers > many.max_containers);
        assert!(
            many.max_containers >= MIN_CONTAINERS,
            "{}",
            many.max_containers
        );
        let too_many = generate(&patterns(5000)).unwrap();
        assert_eq!(too_many.max_containers, 0);
        assert!(
            too_many.notes[0].contains("too costly"),
            "{:?}",
            too_many.notes
        );
        let wasm = expression(&too_many, WASM_POSSIBLE);
        assert!(!wasm.contains("matches("), "{}", &wasm[..200]);
        assert!(
            wasm.ends_with("orValue([])) > 0"),
            "{}",
            &wasm[wasm.len() - 100..]
        );
    }
}
