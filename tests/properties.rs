//! Property tests over generated Wasm pod specs (behaviour.md §4): the patch always applies, the engine
//! on its own output gives an empty patch, nothing that was there is removed or changed, and no
//! container ends with a request above its limit. And (docs/behaviour.md, "Rule ids"): the rules a
//! decision lists imply its verdict, and a denial's message is made of the failing rules' messages.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wasm_admission::core::quantity::Quantity;
use wasm_admission::core::verdict::{RuleId, Status};

const CPU: [&str; 7] = ["10m", "100m", "0.1", "250m", "0.5", "1", "2"];
const MEMORY: [&str; 7] = ["16Mi", "64Mi", "64M", "128Mi", "0.125Gi", "256Mi", "1Gi"];

fn quantity_map() -> impl Strategy<Value = Option<Map<String, Value>>> {
    (
        proptest::option::of(0..CPU.len()),
        proptest::option::of(0..MEMORY.len()),
        any::<bool>(),
    )
        .prop_map(|(cpu, mem, present)| {
            if !present && cpu.is_none() && mem.is_none() {
                return None;
            }
            let mut m = Map::new();
            if let Some(i) = cpu {
                m.insert("cpu".into(), json!(CPU[i]));
            }
            if let Some(i) = mem {
                m.insert("memory".into(), json!(MEMORY[i]));
            }
            Some(m)
        })
}

fn resources() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({}))),
        (quantity_map(), quantity_map()).prop_map(|(req, lim)| {
            let mut r = Map::new();
            if let Some(req) = req {
                r.insert("requests".into(), Value::Object(req));
            }
            if let Some(lim) = lim {
                r.insert("limits".into(), Value::Object(lim));
            }
            Some(Value::Object(r))
        }),
    ]
}

fn env() -> impl Strategy<Value = Option<Value>> {
    let names = prop_oneof![
        Just("LOG_LEVEL"),
        Just("OTEL_SERVICE_NAME"),
        Just("OTEL_EXPORTER_OTLP_ENDPOINT"),
        Just("OTEL_RESOURCE_ATTRIBUTES"),
        Just("OTEL_RESOURCE_ATTRIBUTES_POD_NAME"),
        Just("PORT"),
    ];
    proptest::option::of(proptest::collection::vec(names, 0..4)).prop_map(|names| {
        names.map(|ns| {
            let mut seen = std::collections::HashSet::new();
            Value::Array(
                ns.into_iter()
                    .filter(|n| seen.insert(*n))
                    .map(|n| json!({"name": n, "value": "x"}))
                    .collect(),
            )
        })
    })
}

fn container(prefix: &'static str) -> impl Strategy<Value = Value> {
    (0..1000u32, resources(), env(), any::<bool>()).prop_map(move |(n, resources, env, sidecar)| {
        let mut c = json!({
            "name": format!("{prefix}{n}"),
            "image": "ghcr.io/acme/app:1.0",
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        if let Some(r) = resources {
            c["resources"] = r;
        }
        if let Some(e) = env {
            c["env"] = e;
        }
        if sidecar && prefix == "init" {
            c["restartPolicy"] = json!("Always");
        }
        c
    })
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    (
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("edge"), Just("serverless")]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(present, profile, otel_off, extra)| {
            if !present {
                return None;
            }
            let mut a = Map::new();
            if let Some(p) = profile {
                a.insert("wasm-admission.io/resource-profile".into(), json!(p));
            }
            if otel_off {
                a.insert("wasm-admission.io/otel".into(), json!("false"));
            }
            if extra {
                a.insert("example.com/a~b/c".into(), json!("x"));
            }
            Some(Value::Object(a))
        })
}

/// The pod's own `runtimeClassName`: none, a class that runs Wasm (behaviour.md §3 rule 3b, the whole pod
/// is Wasm), or one that does not (then the image pattern decides).
fn runtime_class() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(prop_oneof![
        Just("wasm"),
        Just("wasmedge"),
        Just("wasmtime-spin-v2"),
        Just("spin"),
        Just("kata"),
    ])
}

/// Whether `class` runs Wasm under the properties' configuration.
fn wasm_class(class: Option<&str>) -> bool {
    class.is_some_and(|c| c != "kata")
}

/// A Wasm Pod or Deployment: detected from the image pattern, so no annotation is needed, or from
/// a Wasm class it names; then some containers may be Linux sidecars the patterns do not match.
fn wasm_object() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((container("c"), any::<bool>()), 1..4),
        proptest::collection::vec(container("init"), 0..3),
        annotations(),
        runtime_class(),
        any::<bool>(),
    )
        .prop_map(|(containers, init, annotations, runtime_class, as_pod)| {
            // Under a Wasm class a container may be an ordinary Linux sidecar.
            let containers: Vec<Value> = containers
                .into_iter()
                .map(|(mut c, linux)| {
                    if linux && wasm_class(runtime_class) {
                        c["image"] = json!("docker.io/library/nginx:1.27");
                    }
                    c
                })
                .collect();
            let dedupe = |cs: Vec<Value>, prefix: &str| -> Vec<Value> {
                cs.into_iter()
                    .enumerate()
                    .map(|(i, mut c)| {
                        c["name"] = json!(format!("{prefix}-{i}"));
                        c
                    })
                    .collect()
            };
            let mut spec = json!({"containers": dedupe(containers, "c"), "restartPolicy": "Always"});
            if !init.is_empty() {
                spec["initContainers"] = json!(dedupe(init, "init"));
            }
            if let Some(rc) = runtime_class {
                spec["runtimeClassName"] = json!(rc);
            }
            let mut meta = json!({"labels": {"app": "p"}});
            if let Some(a) = annotations {
                meta["annotations"] = a;
            }
            if as_pod {
                meta["name"] = json!("p");
                meta["namespace"] = json!("shop");
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
            } else {
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "p", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"app": "p"}}, "template": {"metadata": meta, "spec": spec}}
                })
            }
        })
}

/// Whether every value in `before` is still in `after`, unchanged (arrays: as a prefix).
fn preserved(before: &Value, after: &Value, path: &str) -> Result<(), String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                if path.ends_with("/annotations") && k == "wasm-admission.io/injected" {
                    continue;
                }
                let next = format!("{path}/{k}");
                let Some(av) = a.get(k) else {
                    return Err(format!("{next} was removed"));
                };
                preserved(v, av, &next)?;
            }
            Ok(())
        }
        (Value::Array(b), Value::Array(a)) => {
            if a.len() < b.len() {
                return Err(format!("{path} lost entries"));
            }
            b.iter()
                .zip(a)
                .enumerate()
                .try_for_each(|(i, (bv, av))| preserved(bv, av, &format!("{path}/{i}")))
        }
        (b, a) if b == a => Ok(()),
        (b, a) => Err(format!("{path} changed from {b} to {a}")),
    }
}

fn requests_above_limits(object: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let spec = object
        .pointer(spec_ptr(object))
        .cloned()
        .unwrap_or_default();
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = &c["resources"];
            for res in ["cpu", "memory"] {
                if let (Some(req), Some(lim)) =
                    (r["requests"][res].as_str(), r["limits"][res].as_str())
                    && Quantity::parse(req).unwrap() > Quantity::parse(lim).unwrap()
                {
                    bad.push(format!("{}: {res} {req} > {lim}", c["name"]));
                }
            }
        }
    }
    bad
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn prop_patch_applies_and_is_idempotent_and_preserves_fields(object in wasm_object()) {
        let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*']\n");
        // `admit` applies the patch with the RFC 6902 library and fails if any parent is missing.
        let first = admit(&engine, &object);
        prop_assert!(first.allowed(), "{}", first.message());
        // Every generated object is Wasm, by its class where it names one that runs Wasm.
        let by = first.decision.audit_annotations.get("wasm-detected-by").map(String::as_str);
        let class = object.pointer(&format!("{}/runtimeClassName", spec_ptr(&object))).and_then(Value::as_str);
        let expected = if wasm_class(class) { "runtime-class-name" } else { "image-pattern" };
        prop_assert_eq!(by, Some(expected));
        if let Err(e) = preserved(&object, &first.object, "") {
            return Err(TestCaseError::fail(e));
        }
        let again = admit(&engine, &first.object);
        prop_assert!(!again.patched(), "second run patched: {:?}", again.decision.patch);
        let mut defaulted = first.object.clone();
        apiserver_defaults(&mut defaulted);
        let again = admit(&engine, &defaulted);
        prop_assert!(!again.patched(), "after apiserver defaults: {:?}", again.decision.patch);
    }

    #[test]
    fn prop_no_container_ends_with_a_request_above_its_limit(object in wasm_object()) {
        prop_assume!(requests_above_limits(&object).is_empty());
        let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*']\n");
        let out = admit(&engine, &object);
        let bad = requests_above_limits(&out.object);
        prop_assert!(bad.is_empty(), "{bad:?}");
    }
}

// behaviour.md §5 and §8 `security.baselineVersion`: between v1.30 and latest, only the checks that moved
// (sysctls, SELinux type, procMount with hostUsers, probe and lifecycle hosts) may change a verdict.

/// Values for a field: `None` leaves it unset.
fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(proptest::sample::select(values))
}

/// Pod security settings over every baseline check, as `(JSON pointer under the pod spec, value)`.
fn security_settings() -> impl Strategy<Value = Vec<(String, Value)>> {
    let pod = (
        proptest::sample::subsequence(
            vec![
                "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_rmem",
                "net.ipv4.tcp_notsent_lowat",
                "kernel.msgmax",
            ],
            0..=2,
        ),
        one_of(&["container_t", "container_engine_t", "spc_t"]),
        one_of(&["RuntimeDefault", "Unconfined"]),
        one_of(&["Localhost", "Unconfined"]),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    );
    let container = (
        proptest::option::of(any::<bool>()),
        one_of(&["CHOWN", "NET_RAW"]),
        one_of(&["Default", "Unmasked"]),
        one_of(&["container_kvm_t", "container_engine_t"]),
        proptest::option::of(0..2i32),
        one_of(&["", "10.0.0.1"]),
        one_of(&["", "db.internal"]),
        one_of(&["Unconfined", "RuntimeDefault"]),
    );
    (pod, container).prop_map(|(pod, container)| {
        let (sysctls, pod_selinux, seccomp, apparmor, host_users, host_network, host_process) = pod;
        let (privileged, cap, proc_mount, selinux, host_port, probe_host, hook_host, c_seccomp) =
            container;
        let mut s: Vec<(String, Value)> = Vec::new();
        let mut put = |pointer: &str, value: Value| s.push((pointer.to_string(), value));
        if !sysctls.is_empty() {
            let list: Vec<Value> = sysctls
                .iter()
                .map(|n| json!({"name": n, "value": "1"}))
                .collect();
            put("/securityContext/sysctls", json!(list));
        }
        if let Some(t) = pod_selinux {
            put("/securityContext/seLinuxOptions/type", json!(t));
        }
        if let Some(t) = seccomp {
            put("/securityContext/seccompProfile/type", json!(t));
        }
        if let Some(t) = apparmor {
            put("/securityContext/appArmorProfile/type", json!(t));
        }
        if let Some(b) = host_users {
            put("/hostUsers", json!(b));
        }
        if let Some(b) = host_network {
            put("/hostNetwork", json!(b));
        }
        if let Some(b) = host_process {
            put("/securityContext/windowsOptions/hostProcess", json!(b));
        }
        let c = "/containers/0";
        if let Some(b) = privileged {
            put(&format!("{c}/securityContext/privileged"), json!(b));
        }
        if let Some(cap) = cap {
            put(
                &format!("{c}/securityContext/capabilities/add"),
                json!([cap]),
            );
        }
        if let Some(pm) = proc_mount {
            put(&format!("{c}/securityContext/procMount"), json!(pm));
        }
        if let Some(t) = selinux {
            put(
                &format!("{c}/securityContext/seLinuxOptions/type"),
                json!(t),
            );
        }
        if let Some(p) = host_port {
            put(
                &format!("{c}/ports"),
                json!([{"containerPort": 8080, "hostPort": p}]),
            );
        }
        if let Some(h) = probe_host {
            put(
                &format!("{c}/livenessProbe/httpGet"),
                json!({"host": h, "port": 8080}),
            );
        }
        if let Some(h) = hook_host {
            put(
                &format!("{c}/lifecycle/preStop/tcpSocket"),
                json!({"host": h, "port": 5432}),
            );
        }
        if let Some(t) = c_seccomp {
            put(
                &format!("{c}/securityContext/seccompProfile/type"),
                json!(t),
            );
        }
        s
    })
}

/// The violations a denial lists (empty when allowed).
fn violation_items(out: &Admitted) -> std::collections::BTreeSet<String> {
    let m = out.message();
    match m.split_once(" is not allowed: ") {
        Some((_, list)) if !out.allowed() => list.split("; ").map(str::to_string).collect(),
        _ => Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn prop_verdicts_at_v1_30_and_latest_differ_only_on_checks_that_changed(
        object in wasm_object(),
        settings in security_settings(),
    ) {
        let at = |v: &str| {
            engine_with(&format!(
                "detection:\n  imagePatterns: ['ghcr.io/acme/*']\nsecurity:\n  baselineVersion: {v}\n"
            ))
        };
        let mut object = object;
        let spec = spec_ptr(&object);
        for (pointer, value) in &settings {
            set(&mut object, &format!("{spec}{pointer}"), value.clone());
        }
        let old = violation_items(&admit(&at("v1.30"), &object));
        let new = violation_items(&admit(&at("latest"), &object));
        let host_users_false = object.pointer(&format!("{spec}/hostUsers")) == Some(&json!(false));
        // Relaxed since v1.30: newer safe sysctls (v1.32, v1.37), container_engine_t (v1.31),
        // any procMount with hostUsers: false (v1.35).
        for item in old.difference(&new) {
            let moved = item.contains(".sysctls=[")
                || item.ends_with(".seLinuxOptions.type=container_engine_t")
                || (item.contains(".procMount=") && host_users_false);
            prop_assert!(moved, "denied at v1.30 only, on a check that did not move: {item}");
        }
        // Stricter since v1.30: probe and lifecycle hosts (v1.34); a sysctls entry can list fewer.
        for item in new.difference(&old) {
            let moved = item.contains(".sysctls=[")
                || item.ends_with(".host=10.0.0.1 (baseline since v1.34)")
                || item.ends_with(".host=db.internal (baseline since v1.34)");
            prop_assert!(moved, "denied at latest only, on a check that did not move: {item}");
        }
    }
}

// Typed verdicts (docs/behaviour.md, "Rule ids"): the rules a decision lists imply its verdict,
// and the denial message is the one the engine always wrote, made of the failing rules' messages.

/// The rule id a denial item belongs to, read from its field alone (behaviour.md §5's list).
fn rule_of_item(item: &str) -> &'static str {
    let field = item.rsplit_once("\": ").map_or(item, |(_, f)| f);
    if item.starts_with("unknown resource profile ") {
        "profile.unknown"
    } else if field == "securityContext.privileged=true" {
        "baseline.privileged"
    } else if ["spec.hostNetwork=", "spec.hostPID=", "spec.hostIPC="]
        .iter()
        .any(|f| field.starts_with(f))
    {
        "baseline.host-namespaces"
    } else if field.starts_with("hostPath=") {
        "baseline.host-path-volumes"
    } else if field.starts_with("ports.hostPort=") {
        "baseline.host-ports"
    } else if field.contains(".capabilities.add=") {
        "baseline.capabilities"
    } else if field.contains(".procMount=") {
        "baseline.proc-mount"
    } else if field.contains(".windowsOptions.hostProcess=") {
        "baseline.windows-host-process"
    } else if field.contains(".seccompProfile.type=") {
        "baseline.seccomp"
    } else if field.contains(".appArmorProfile.type=")
        || field.starts_with("metadata.annotations[container.apparmor")
    {
        "baseline.apparmor"
    } else if field.contains(".seLinuxOptions.") {
        "baseline.selinux"
    } else if field.contains(".sysctls=[") {
        "baseline.sysctls"
    } else if field.contains(".host=") && field.ends_with("(baseline since v1.34)") {
        "baseline.probe-host"
    } else {
        "unknown"
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn prop_rule_statuses_imply_the_verdict_and_make_the_denial_message(
        object in wasm_object(),
        settings in security_settings(),
        unknown_profile in any::<bool>(),
        opted_out in any::<bool>(),
    ) {
        let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*']\n");
        let mut object = object;
        let spec = spec_ptr(&object);
        for (pointer, value) in &settings {
            set(&mut object, &format!("{spec}{pointer}"), value.clone());
        }
        let meta = meta_ptr(&object);
        if unknown_profile {
            set(&mut object, &format!("{meta}/annotations/wasm-admission.io~1resource-profile"), json!("tiny"));
        }
        if opted_out {
            // Rule 1 opts out of the mutations only: the images are Wasm, so §5 still applies.
            set(&mut object, &format!("{meta}/annotations/wasm-admission.io~1wasm"), json!("false"));
        }
        let out = admit(&engine, &object);
        let d = &out.decision;
        let failed: Vec<_> = d.rules.iter().filter(|r| r.status == Status::Fail).collect();
        // allowed exactly when no rule failed; the first failing rule is the one counted.
        prop_assert_eq!(d.allowed, failed.is_empty(), "{:?}", d.rules);
        prop_assert_eq!(d.failed_rule(), failed.first().map(|r| r.id));
        if d.allowed {
            prop_assert!(d.message.is_none());
            prop_assert!(!d.rules.is_empty(), "a Wasm object always has a rule that spoke");
            return Ok(());
        }
        // The message as the engine wrote it before rules existed: the object, then every
        // violation (or the unknown profile's words) joined with "; ", in the order found.
        let what = if object["kind"] == "Pod" {
            "Wasm pod \"shop/p\"".to_string()
        } else {
            "Wasm pod template of Deployment \"shop/p\"".to_string()
        };
        let items: Vec<&str> = failed.iter().map(|r| &*r.message).collect();
        let expected = format!("wasm-admission: {what} is not allowed: {}", items.join("; "));
        prop_assert_eq!(d.message.as_deref(), Some(expected.as_str()));
        // Each failing rule's id is the one its words name, read independently of the engine.
        for r in &failed {
            prop_assert_eq!(r.id.as_str(), rule_of_item(&r.message), "{}", r.message);
        }
        // The unknown profile is only reported for an object the baseline lets through.
        let profile = failed.iter().any(|r| r.id == RuleId::ProfileUnknown);
        prop_assert!(!profile || (failed.len() == 1 && unknown_profile && !opted_out));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn prop_kubectl_debug_rules_imply_the_verdict_and_make_the_denial_message(
        object in wasm_object(),
        settings in security_settings(),
    ) {
        prop_assume!(object["kind"] == "Pod");
        let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*']\n");
        let mut new = object.clone();
        set(&mut new, "/spec/ephemeralContainers", json!([{"name": "debugger", "image": "busybox:1.36"}]));
        // The container-level settings, on the debug container (pod-level fields cannot change
        // on this subresource and are not checked).
        for (pointer, value) in &settings {
            if let Some(rest) = pointer.strip_prefix("/containers/0") {
                set(&mut new, &format!("/spec/ephemeralContainers/0{rest}"), value.clone());
            }
        }
        let review = review_for(&new, "UPDATE", Some(&object), Some("ephemeralcontainers"));
        let out = admit_review(&engine, &review, wasm_admission::core::engine::Endpoint::Mutate);
        let d = &out.decision;
        let failed: Vec<_> = d.rules.iter().filter(|r| r.status == Status::Fail).collect();
        prop_assert_eq!(d.allowed, failed.is_empty(), "{:?}", d.rules);
        if d.allowed {
            prop_assert!(d.message.is_none());
            return Ok(());
        }
        let items: Vec<&str> = failed.iter().map(|r| &*r.message).collect();
        let expected = format!(
            "wasm-admission: ephemeral containers of Wasm pod \"shop/p\" are not allowed: {}",
            items.join("; ")
        );
        prop_assert_eq!(d.message.as_deref(), Some(expected.as_str()));
        for r in &failed {
            prop_assert!(r.message.starts_with("ephemeralContainer \"debugger\": "), "{}", r.message);
            prop_assert_eq!(r.id.as_str(), rule_of_item(&r.message), "{}", r.message);
        }
    }
}
