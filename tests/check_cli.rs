//! `wasm-admission check` (behaviour.md §7): golden output in every format, exit codes, and parity with
//! the `serve` door.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::engine::Endpoint;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run wasm-admission")
}

fn check_stdin(args: &[&str], input: &str) -> Output {
    check_stdin_with(args, input, |command| {
        command.current_dir(root());
    })
}

/// `check ARGS` with `input` on standard input, the command adjusted first.
fn check_stdin_with(args: &[&str], input: &str, adjust: impl FnOnce(&mut Command)) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    adjust(&mut command);
    let mut child = command.spawn().expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Compares with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    pretty_assertions::assert_eq!(expected, actual, "{name}");
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn check_golden_text() {
    let out = check(&["tests/golden/input"]);
    golden("expected.txt", &stdout(&out));
    assert_eq!(out.status.code(), Some(1), "a denial exits 1");
}

#[test]
fn check_golden_json() {
    let out = check(&["-o", "json", "tests/golden/input"]);
    golden("expected.json", &stdout(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields = [
        "source",
        "index",
        "kind",
        "namespace",
        "name",
        "allowed",
        "message",
        "warnings",
        "rules",
        "patch",
        "object",
    ];
    for entry in report.as_array().unwrap() {
        let mut keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = fields.to_vec();
        keys.sort();
        expected.sort();
        assert_eq!(keys, expected);
        assert!(entry["patch"].is_array());
        // allowed exactly when no rule failed (docs/behaviour.md, "Rule ids").
        let failed = entry["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "fail");
        assert_eq!(entry["allowed"] == false, failed, "{entry}");
    }
    // The fields come in the documented order (behaviour.md §7) (first entry, as printed).
    let text = stdout(&out);
    let positions: Vec<usize> = fields
        .iter()
        .map(|f| text.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn check_golden_yaml_leaves_denied_objects_out() {
    let out = check(&["-o", "yaml", "tests/golden/input"]);
    let text = stdout(&out);
    golden("expected.yaml", &text);
    assert!(!text.contains("debug-wasm"));
    assert_eq!(text.matches("\n---\n").count() + 1, 4, "4 admitted objects");
}

#[test]
fn check_golden_junit() {
    let out = check(&["-o", "junit", "tests/golden/input"]);
    let text = stdout(&out);
    golden("expected.junit.xml", &text);
    assert!(
        text.contains("tests=\"5\"") && text.contains("failures=\"1\""),
        "{text}"
    );
}

#[test]
fn check_exit_0_when_everything_is_allowed() {
    let out = check(&["tests/golden/input/list.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn check_exit_2_names_the_file_and_document_and_still_reports_the_others() {
    let dir = tempdir("exit2");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: a, image: b}]}\n---\nkind: [broken\n").unwrap();
    let out = check(&[bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains("unchanged Pod default/ok"), "{text}");
    assert!(
        text.contains(&format!("ERROR     {}#1: not valid YAML", bad.display())),
        "{text}"
    );
    // A missing file, too.
    let out = check(&["/nonexistent/manifests.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("/nonexistent/manifests.yaml"));
    // A bad configuration names the key and the file.
    let config = dir.join("config.yaml");
    std::fs::write(&config, "runtimeClass: wasm\n").unwrap();
    let out = check(&["--config", config.to_str().unwrap(), "tests/golden/input"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runtimeClass") && err.contains("config.yaml"),
        "{err}"
    );
}

#[test]
fn check_exit_2_on_wrong_types_names_the_field() {
    let out = check_stdin(
        &["-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {wasm-admission.io/wasm: 'true'}}\nspec:\n  containers: [{name: a, image: b, securityContext: {privileged: 'yes'}}]\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("-#0") && text.contains("spec.containers[0].securityContext.privileged"),
        "{text}"
    );
}

#[test]
fn check_reads_standard_input_and_applies_the_namespace_flag() {
    let input = std::fs::read_to_string(root().join("tests/golden/input/workloads.yaml")).unwrap();
    let out = check_stdin(&["--namespace", "team-a", "-"], &input);
    let text = stdout(&out);
    assert!(
        text.contains("DENIED    Pod team-a/debug-wasm (-#2)"),
        "{text}"
    );
    assert!(text.contains("Deployment shop/cart"), "{text}");
}

#[test]
fn check_yaml_output_is_stable_under_a_second_check() {
    let first = check(&["-o", "yaml", "tests/golden/input"]);
    let second = check_stdin(&["-o", "json", "-"], &stdout(&first));
    let report: Value = serde_json::from_slice(&second.stdout).unwrap();
    for entry in report.as_array().unwrap() {
        assert_eq!(entry["patch"], Value::Array(vec![]), "{}", entry["name"]);
    }
}

/// `check -o json` gives the same `allowed` and `patch` as the engine behind `serve` on the same
/// object in an AdmissionReview.
#[test]
fn check_parity_with_serve_for_every_fixture_and_example() {
    let engine = engine();
    for dir in ["tests/fixtures", "examples"] {
        let out = check(&["-o", "json", dir]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let entries = report.as_array().unwrap();
        assert!(!entries.is_empty(), "{dir}");
        for entry in entries {
            let where_ = format!("{}#{}", entry["source"], entry["index"]);
            let Some(object) = original_object(entry) else {
                continue;
            };
            if object.get("apiVersion").is_none() {
                continue;
            }
            let mut object = object;
            if object["metadata"].get("namespace").is_none() {
                object["metadata"]["namespace"] = Value::from("default");
            }
            let served = admit_review(
                &engine,
                &review_for(&object, "CREATE", None, None),
                Endpoint::Mutate,
            );
            assert_eq!(entry["allowed"], Value::from(served.allowed()), "{where_}");
            assert_eq!(
                entry["patch"],
                serde_json::from_str::<Value>(served.decision.patch.as_json()).unwrap(),
                "{where_}"
            );
        }
    }
}

/// The object as given: the report's mutated object with its patch undone is not available, so
/// re-read it from its source.
fn original_object(entry: &Value) -> Option<Value> {
    let source = entry["source"].as_str()?;
    let text = std::fs::read_to_string(root().join(source)).ok()?;
    let mut docs = Vec::new();
    wasm_admission::commands::check::parse_source(source, &text, &mut docs);
    let index = entry["index"].as_u64()? as usize;
    docs.into_iter().nth(index)?.content.ok()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasm-admission-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every example behaves as `examples/README.md` says.
#[test]
fn check_examples_behave_as_the_examples_readme_says() {
    let out = check(&["-o", "json", "examples"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen = 0;
    for entry in report.as_array().unwrap() {
        let source = entry["source"].as_str().unwrap();
        let kind = entry["kind"].as_str().unwrap();
        let patched = !entry["patch"].as_array().unwrap().is_empty();
        let where_ = format!("{source}#{} {kind}", entry["index"]);
        assert!(
            entry["allowed"].is_boolean(),
            "{where_}: {}",
            entry["message"]
        );
        if source.starts_with("examples/denied/") {
            assert_eq!(entry["allowed"], false, "{where_}");
        } else if source.starts_with("examples/wasm/")
            && !["Service", "RuntimeClass"].contains(&kind)
        {
            assert!(patched, "{where_} is mutated");
            let injected = injected_of(&entry["object"]);
            // A pod spec that names its RuntimeClass keeps it: nothing to inject there.
            let original = original_object(entry).expect("the example reads");
            let expected = if names_runtime_class(&original) {
                "resources,otel"
            } else {
                "runtime-class,resources"
            };
            assert!(injected.starts_with(expected), "{where_}: {injected}");
            // Every example is written correctly: no warning, not even "class kept".
            assert_eq!(entry["warnings"], json!([]), "{where_}");
        } else {
            assert_eq!(entry["allowed"], true, "{where_}");
            assert!(!patched, "{where_} is unchanged");
        }
        seen += 1;
    }
    assert!(seen >= 21, "{seen} objects");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the denied example makes check exit 1"
    );
    let spin = check(&["-o", "yaml", "examples/wasm/deployment-spin.yaml"]);
    let text = stdout(&spin);
    assert!(
        text.contains("runtimeClassName: spin") && text.contains("cpu: 10m"),
        "{text}"
    );
    let wasmedge = check(&["-o", "yaml", "examples/wasm/deployment-wasmedge.yaml"]);
    assert!(stdout(&wasmedge).contains("runtimeClassName: wasmedge"));
}

/// Whether the manifest's own pod spec names a RuntimeClass.
fn names_runtime_class(object: &Value) -> bool {
    let spec = match object["kind"].as_str() {
        Some("Pod") => "/spec",
        Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    };
    object
        .pointer(&format!("{spec}/runtimeClassName"))
        .is_some_and(|c| c != "")
}

fn injected_of(object: &Value) -> String {
    let meta = match object["kind"].as_str() {
        Some("Pod") => "/metadata",
        Some("CronJob") => "/spec/jobTemplate/spec/template/metadata",
        _ => "/spec/template/metadata",
    };
    object
        .pointer(&format!("{meta}/annotations/wasm-admission.io~1injected"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

// Inputs that must end in a clear answer, not a hang or a blow-up.

const DENIED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug-wasm\n  annotations: {wasm-admission.io/wasm: \"true\"}\nspec:\n  hostNetwork: true\n  containers:\n    - name: app\n      image: ghcr.io/acme/debug-wasm:0.1.0\n";

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The report (text on standard output) names the file, the document and the reason.
fn assert_refused(out: &Output, file: &str, reason: &str) {
    let text = stdout(out);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(out));
    assert!(text.contains(file), "{text}");
    assert!(text.contains(&format!("{file}#0")), "{text}");
    assert!(text.contains(reason), "{text}");
}

#[test]
fn check_deep_nesting_is_refused_before_the_yaml_library_reads_it() {
    let dir = tempdir("deep-nesting");
    let file = dir.join("deep.yaml");
    std::fs::write(&file, format!("a: {}", "[".repeat(200 * 1024))).unwrap();
    let out = check(&[file.to_str().unwrap()]);
    assert_refused(&out, "deep.yaml", "nesting is deeper than");
}

#[test]
fn check_alias_bomb_is_refused_before_it_is_expanded() {
    let dir = tempdir("alias-bomb");
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nx0: &x0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &x{i} [{}]\n",
            vec![format!("*x{p}"); 10].join(",")
        ));
    }
    let file = dir.join("bomb.yaml");
    std::fs::write(&file, text).unwrap();
    let out = check(&[file.to_str().unwrap()]);
    assert_refused(&out, "bomb.yaml", "aliases expand");
}

#[test]
fn check_one_big_scalar_aliased_many_times_is_refused() {
    let dir = tempdir("alias-scalar");
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nbig: &b \"{}\"\ncopies: [{}]\n",
        "x".repeat(100 * 1024),
        vec!["*b"; 90].join(",")
    );
    let file = dir.join("copies.yaml");
    std::fs::write(&file, text).unwrap();
    let out = check(&[file.to_str().unwrap()]);
    assert_refused(&out, "copies.yaml", "aliases expand");
}

#[test]
fn check_merge_key_carrying_privileged_is_refused_not_allowed() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: merged}\nspec:\n  containers:\n    - name: app\n      image: nginx\n      <<: {securityContext: {privileged: true}}\n";
    let out = check_stdin(&["-"], text);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("merge keys (<<) are not supported"),
        "{}",
        stdout(&out)
    );
    let yaml = check_stdin(&["-o", "yaml", "-"], text);
    assert_eq!(yaml.status.code(), Some(2));
    assert!(!stdout(&yaml).contains("<<"), "{}", stdout(&yaml));
}

#[test]
fn check_follows_a_symlinked_folder_and_reports_its_denied_pod() {
    let dir = tempdir("symlinked-folder");
    let real = dir.join("real");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(real.join("pod.yaml"), DENIED_POD).unwrap();
    let _ = std::fs::remove_file(tree.join("link"));
    std::os::unix::fs::symlink(&real, tree.join("link")).unwrap();
    let out = check(&[tree.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("debug-wasm"), "{}", stdout(&out));
}

#[test]
fn check_symlink_loop_reads_each_folder_once_and_ends() {
    let dir = tempdir("symlink-loop");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/pod.yaml"), DENIED_POD).unwrap();
    let _ = std::fs::remove_file(tree.join("sub/up"));
    std::os::unix::fs::symlink(&tree, tree.join("sub/up")).unwrap();
    let out = check(&[tree.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("1 object: 0 mutated, 0 unchanged, 1 denied"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("already read"), "{}", stderr(&out));
}

#[test]
fn check_skips_a_fifo_in_a_folder_instead_of_hanging() {
    let dir = tempdir("fifo");
    std::fs::write(dir.join("pod.yaml"), DENIED_POD).unwrap();
    let fifo = dir.join("x.yaml");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = check(&[dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("x.yaml: skipped, not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_no_object_found_is_exit_2() {
    let dir = tempdir("empty-folder");
    let out = check(&[dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no Kubernetes object found"),
        "{}",
        stderr(&out)
    );
    let out = check_stdin(&["-"], "---\n# nothing\n");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

#[test]
fn check_summary_says_one_object_in_the_singular() {
    let out = check(&["examples/wasm/pod.yaml"]);
    let text = stdout(&out);
    assert!(
        text.ends_with("\n1 object: 1 mutated, 0 unchanged, 0 denied, 0 errors\n"),
        "{text}"
    );
}

#[test]
fn check_yaml_of_the_examples_folder_leaves_the_admission_reviews_out_with_a_note() {
    let out = check(&["-o", "yaml", "examples/"]);
    assert_eq!(out.status.code(), Some(1), "the denied examples");
    let yaml = stdout(&out);
    let docs: Vec<Value> = yaml
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).expect("YAML document"))
        .collect();
    assert!(docs.len() > 10, "{} documents", docs.len());
    assert!(
        docs.iter().all(|d| d["kind"] != "AdmissionReview"),
        "an AdmissionReview would make `kubectl apply -f -` fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for review in ["deployment-create.json", "pod-create.json"] {
        assert!(
            stderr.contains(&format!("{review}: document 0: an AdmissionReview")),
            "{stderr}"
        );
    }
    // The other formats still report them (as unchanged objects).
    let json: Value =
        serde_json::from_slice(&check(&["-o", "json", "examples/review"]).stdout).expect("json");
    assert_eq!(json.as_array().expect("array").len(), 3);
}

/// Issue 28, item 8: a capability name with an OSC 52 clipboard write, a BEL, a CR and a C1 CSI
/// reaches the DENIED line as visible escapes; not one control character is written raw, and no
/// newline in a tenant string can forge a report line.
#[test]
fn check_text_output_escapes_terminal_control_characters_in_tenant_strings() {
    let osc52 = "\u{1b}]52;c;SGVsbG8=\u{7}";
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "clip\rboard", "annotations": {"wasm-admission.io/wasm": "true"}},
        "spec": {"containers": [{
            "name": "app",
            "image": "ghcr.io/acme/app:1",
            "securityContext": {"capabilities": {"add": [osc52, "X\u{9b}2J\nunchanged Pod x/y"]}}
        }]}
    });
    // serde_json escapes C0 controls only; YAML, which `check` reads, takes a C1 control as an
    // escape (`\u009b`) in a double-quoted string, as the apiserver's JSON could hold it.
    let input = pod.to_string().replace('\u{9b}', "\\u009b");
    let out = check_stdin(&["-"], &input);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character written raw: {text:?}"
    );
    assert!(text.contains(r"\u{1b}]52;c;SGVsbG8=\u{7}"), "{text}");
    assert!(text.contains(r"clip\u{d}board"), "{text}");
    assert!(text.contains(r"X\u{9b}2J\u{a}unchanged Pod x/y"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("unchanged")).count(),
        0,
        "{text}"
    );
}

/// Issue 28, item 10: one dangling symbolic link in a folder is an ERROR in its place; the denied
/// manifest beside it keeps its DENIED line and its JUnit failure, and the exit code is 2 (something
/// could not be read) as documented.
#[test]
fn check_dangling_symlink_is_an_error_and_the_rest_of_the_folder_is_still_checked() {
    let dir = tempdir("dangling");
    std::fs::write(dir.join("pod.yaml"), DENIED_POD).unwrap();
    let link = dir.join("broken.yaml");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("nowhere.yaml"), &link).unwrap();
    let out = check(&[dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    assert!(
        text.lines()
            .any(|l| l.starts_with("DENIED") && l.contains("debug-wasm")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("ERROR")
            && l.contains("broken.yaml")
            && l.contains("symbolic link")),
        "{text}"
    );
    assert!(text.contains("1 denied"), "{text}");

    let junit = check(&["-o", "junit", dir.to_str().unwrap()]);
    assert_eq!(junit.status.code(), Some(2));
    let xml = stdout(&junit);
    assert!(
        xml.contains("debug-wasm") && xml.contains("<failure"),
        "{xml}"
    );
    assert!(xml.contains("broken.yaml"), "{xml}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `depth` nested folders `d/d/d/...` with a denied pod halfway down; the time `check` takes.
fn walk_nested(name: &str, depth: usize) -> std::time::Duration {
    let dir = tempdir(name);
    let mut path = dir.clone();
    for level in 0..depth {
        path.push("d");
        std::fs::create_dir(&path).unwrap();
        if level == depth / 2 {
            std::fs::write(path.join("pod.yaml"), DENIED_POD).unwrap();
        }
    }
    let start = std::time::Instant::now();
    let out = check(&[dir.to_str().unwrap()]);
    let took = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("1 denied"), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
    took
}

/// Issue 28, item 10: the folder walk is linear in depth. Before, 2,000 levels took 120 s (each
/// folder was resolved again from the root, a cube of the depth). Measured against 500 levels in
/// the same run: four times the depth may take about four times as long, never the 64 times of the
/// old walk (the figure is printed; docs/hardening.md has it).
#[test]
fn check_folder_walk_2000_levels_deep_is_linear_in_depth() {
    let shallow = walk_nested("walk-500", 500);
    let deep = walk_nested("walk-2000", 2000);
    let ratio = deep.as_secs_f64() / shallow.as_secs_f64().max(1e-3);
    eprintln!("check over 500 levels: {shallow:?}; 2,000 levels: {deep:?}; ratio {ratio:.2}");
    assert!(
        ratio < 16.0,
        "500 levels {shallow:?}, 2,000 levels {deep:?}"
    );
}

// ---------------------------------------------------------------- RuntimeClasses (issue 31, item 1)

/// A bundle as shim projects publish it: a class under a name no default list knows, with a Wasm
/// handler, beside workloads that name it.
const CLASS_BUNDLE: &str = r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: acme-spin
handler: spin
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: shop
spec:
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      runtimeClassName: acme-spin
      containers:
        - name: app
          image: ghcr.io/acme/hello:1
---
apiVersion: v1
kind: Pod
metadata:
  name: priv
  namespace: shop
spec:
  runtimeClassName: acme-spin
  containers:
    - name: app
      image: ghcr.io/acme/hello:1
      securityContext: {privileged: true}
"#;

fn entries(out: &Output) -> Vec<Value> {
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn entry<'a>(report: &'a [Value], name: &str) -> &'a Value {
    report
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

#[test]
fn a_class_in_the_input_whose_handler_runs_wasm_makes_its_pods_wasm() {
    let out = check_stdin(&["-o", "json", "-"], CLASS_BUNDLE);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = entries(&out);
    let hello = entry(&report, "hello");
    assert_eq!(hello["allowed"], true);
    assert_eq!(
        hello["object"]["spec"]["template"]["metadata"]["annotations"]["wasm-admission.io/injected"],
        "resources,otel",
        "Wasm by its class's handler: mutated, class kept: {hello}"
    );
    assert_eq!(
        hello["object"]["spec"]["template"]["spec"]["runtimeClassName"],
        "acme-spin"
    );
    assert_eq!(hello["warnings"], json!([]), "no made-up warning: {hello}");
    let privileged = entry(&report, "priv");
    assert_eq!(privileged["allowed"], false);
    assert!(
        privileged["message"]
            .as_str()
            .unwrap()
            .contains("securityContext.privileged=true")
    );

    // The same workloads without the class document: the name alone is not Wasm.
    let (_, workloads) = CLASS_BUNDLE
        .split_once("---")
        .expect("the class, then the workloads");
    let out = check_stdin(&["-o", "json", "-"], workloads);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = entries(&out);
    assert_eq!(entry(&report, "hello")["patch"], json!([]));
    assert_eq!(entry(&report, "priv")["allowed"], true);
}

#[test]
fn a_class_document_without_handler_or_with_unknown_fields_is_reported_not_fatal() {
    let input = r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: no-handler
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: acme-wasm
spec:
  handler: wasm
handler: wasmtime
"#;
    let out = check_stdin(&["-"], input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("document 0: RuntimeClass \"no-handler\": no handler"),
        "{err}"
    );
    assert!(
        err.contains("document 1: RuntimeClass \"acme-wasm\": unknown field(s) spec"),
        "{err}"
    );
}

/// A stand-in API server on 127.0.0.1 that answers every request with `answer(path)`, stopped
/// when dropped.
struct StandIn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    kubeconfig: PathBuf,
}

impl StandIn {
    fn start(name: &str, answer: fn(&str) -> (u16, String)) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let (code, body) = answer(&path);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let kubeconfig = tempdir(name).join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        Self {
            stop,
            thread: Some(thread),
            kubeconfig,
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_cluster(
    kubeconfig: &std::path::Path,
    args: &[&str],
    input: &str,
) -> (Output, std::time::Duration) {
    let start = std::time::Instant::now();
    let mut all = vec!["--cluster"];
    all.extend_from_slice(args);
    let out = check_stdin_with(&all, input, |command| {
        command
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
    });
    (out, start.elapsed())
}

fn cluster_answer(path: &str) -> (u16, String) {
    if path.contains("runtimeclasses") {
        (
            200,
            json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClassList", "metadata": {},
                "items": [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                    "metadata": {"name": "cluster-wasm"}, "handler": "wasmtime",
                    "scheduling": {"nodeSelector": {"example.com/wasm": "true"}}}]
            })
            .to_string(),
        )
    } else {
        (
            200,
            json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {},
                "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}}}]
            })
            .to_string(),
        )
    }
}

#[test]
fn check_cluster_reads_the_clusters_classes_and_node_labels() {
    let api = StandIn::start("check-cluster", cluster_answer);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: shop}
spec:
  runtimeClassName: cluster-wasm
  containers: [{name: app, image: ghcr.io/acme/app:1}]
"#;
    let (out, _) = check_cluster(&api.kubeconfig, &["-o", "json", "-"], pod);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = entries(&out);
    let app = entry(&report, "app");
    assert_eq!(
        app["object"]["metadata"]["annotations"]["wasm-admission.io/injected"], "resources,otel",
        "Wasm by the cluster class's handler: {app}"
    );
    let warnings = app["warnings"].to_string();
    assert!(
        warnings.contains("no node matches RuntimeClass \\\"cluster-wasm\\\""),
        "the node labels are read: {warnings}"
    );
}

#[test]
fn check_cluster_without_permission_or_answer_exits_2_naming_what_to_fix() {
    let forbidden = StandIn::start("check-forbidden", |_| {
        (403, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "runtimeclasses.node.k8s.io is forbidden", "reason": "Forbidden", "code": 403}).to_string())
    });
    let (out, _) = check_cluster(&forbidden.kubeconfig, &["-"], CLASS_BUNDLE);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("grant `list` on runtimeclasses.node.k8s.io"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report on a failed read");

    // A server that accepts connections and never answers: exit 2 within --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kubeconfig = tempdir("check-silent").join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let (out, took) = check_cluster(&kubeconfig, &["--timeout", "2", "-"], CLASS_BUNDLE);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    drop(silent);

    // No kubeconfig at all.
    let (out, _) = check_cluster(&root().join("no-such-kubeconfig"), &["-"], CLASS_BUNDLE);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("set KUBECONFIG"), "{}", stderr(&out));
}
