//! `wasm-admission certs` (behaviour.md §7, §9): a CA and an ECDSA P-256 serving certificate for the
//! webhook Service's DNS names, and the base64 caBundle.

mod server_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use server_support::*;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

fn certs(out_dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .arg("certs")
        .arg("--out-dir")
        .arg(out_dir)
        .args(extra)
        .output()
        .expect("run certs")
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).expect("read PEM");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    pem.contents
}

#[test]
fn certs_writes_a_p256_serving_certificate_for_exactly_the_four_service_names_signed_by_the_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("out");
    let output = certs(
        &out,
        &["--service", "wh", "--namespace", "team-a", "--days", "30"],
    );
    assert!(output.status.success(), "{output:?}");

    for name in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(out.join(name).is_file(), "{name} written");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("tls.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is private");

    let ca_der = pem_der(&out.join("ca.crt"));
    let leaf_der = pem_der(&out.join("tls.crt"));
    let (_, ca) = parse_x509_certificate(&ca_der).expect("CA parses");
    let (_, leaf) = parse_x509_certificate(&leaf_der).expect("leaf parses");

    assert!(ca.is_ca(), "ca.crt is a CA");
    assert!(!leaf.is_ca(), "tls.crt is not a CA");
    leaf.verify_signature(Some(ca.public_key()))
        .expect("tls.crt is signed by ca.crt");
    assert_eq!(leaf.issuer(), ca.subject());

    let mut dns: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN extension parses")
        .expect("SAN extension present")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("only DNS names expected, got {other:?}"),
        })
        .collect();
    dns.sort();
    assert_eq!(
        dns,
        [
            "wh",
            "wh.team-a",
            "wh.team-a.svc",
            "wh.team-a.svc.cluster.local"
        ]
    );

    // ECDSA P-256, for both.
    for cert in [&leaf, &ca] {
        let spki = cert.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("named curve");
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    }
    assert!(
        leaf.extended_key_usage()
            .expect("EKU parses")
            .expect("EKU present")
            .value
            .server_auth
    );

    // --days 30.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let not_after = leaf.validity().not_after.timestamp();
    assert!((not_after - (now + 30 * 86_400)).abs() < 600, "{not_after}");

    // Standard output is the caBundle: base64 of ca.crt.
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(stdout.trim())
        .expect("base64 caBundle");
    assert_eq!(bundle, std::fs::read(out.join("ca.crt")).expect("ca.crt"));
}

/// Issue 28, item 8: the folder that receives the private keys is created 0700, nested
/// folders included, whatever the umask; a folder that exists keeps its mode.
#[test]
fn certs_out_dir_is_created_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("nested").join("out");
    let output = certs(&out, &[]);
    assert!(output.status.success(), "{output:?}");
    for folder in [&out, &dir.path().join("nested")] {
        let mode = std::fs::metadata(folder)
            .expect("folder")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{} is private", folder.display());
    }
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let output = certs(&existing, &[]);
    assert!(output.status.success(), "{output:?}");
    let mode = std::fs::metadata(&existing)
        .expect("folder")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750, "an existing folder keeps its mode");
}

#[test]
fn certs_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(certs(dir.path(), &[]).status.success());
    let before = std::fs::read(dir.path().join("tls.key")).expect("key");

    let again = certs(dir.path(), &[]);
    assert!(
        !again.status.success(),
        "a second run without --force fails"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refusing to replace the CA"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("tls.key")).expect("key"),
        before,
        "nothing was overwritten"
    );

    // One existing file is enough to refuse.
    let other = tempfile::tempdir().expect("dir");
    std::fs::write(other.path().join("ca.crt"), "mine").expect("write");
    assert!(!certs(other.path(), &[]).status.success());
    assert_eq!(
        std::fs::read_to_string(other.path().join("ca.crt")).expect("ca"),
        "mine"
    );

    // --force replaces the serving pair, never the CA: without --ca-cert it would make a new CA
    // over the one a rollover still needs.
    let ca_before = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    let ca_key_before = std::fs::read(dir.path().join("ca.key")).expect("ca.key");
    let forced = certs(dir.path(), &["--force"]);
    assert!(!forced.status.success(), "--force replaced a CA");
    let stderr = String::from_utf8_lossy(&forced.stderr);
    assert!(
        stderr.contains("never overwritten") && stderr.contains("--ca-cert"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("tls.key")).expect("key"),
        before
    );

    let ca = dir.path().join("ca.crt");
    let ca_key = dir.path().join("ca.key");
    let with_ca = ["--ca-cert", path(&ca), "--ca-key", path(&ca_key)];
    let unforced = certs(dir.path(), &with_ca);
    assert!(!unforced.status.success(), "the serving pair needs --force");
    let stderr = String::from_utf8_lossy(&unforced.stderr);
    assert!(
        stderr.contains("--force") && stderr.contains("tls.key"),
        "{stderr}"
    );
    let renewed = certs(
        dir.path(),
        &[
            "--force",
            "--ca-cert",
            ca.to_str().expect("utf-8"),
            "--ca-key",
            ca_key.to_str().expect("utf-8"),
        ],
    );
    assert!(renewed.status.success(), "{renewed:?}");
    assert_ne!(
        std::fs::read(dir.path().join("tls.key")).expect("key"),
        before,
        "--force writes a new key"
    );
    assert_eq!(std::fs::read(&ca).expect("ca"), ca_before, "same CA");
    assert_eq!(std::fs::read(&ca_key).expect("ca.key"), ca_key_before);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn bundle_pem(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(stdout.trim())
            .expect("base64 caBundle"),
    )
    .expect("PEM")
}

#[test]
fn certs_writes_the_ca_key_0600_and_renews_with_it_keeping_the_ca_bundle() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let first = dir.path().join("first");
    let made = certs(&first, &[]);
    assert!(made.status.success(), "{made:?}");
    let mode = std::fs::metadata(first.join("ca.key"))
        .expect("ca.key written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is private");

    // Renewal into another folder: the same caBundle, ca.crt copied, no CA key written there.
    let renewed_dir = dir.path().join("renewed");
    let renewed = certs(
        &renewed_dir,
        &[
            "--ca-cert",
            path(&first.join("ca.crt")),
            "--ca-key",
            path(&first.join("ca.key")),
            "--days",
            "30",
        ],
    );
    assert!(renewed.status.success(), "{renewed:?}");
    assert_eq!(renewed.stdout, made.stdout, "the caBundle does not change");
    assert_eq!(
        std::fs::read(renewed_dir.join("ca.crt")).expect("ca.crt"),
        std::fs::read(first.join("ca.crt")).expect("ca.crt")
    );
    assert!(
        !renewed_dir.join("ca.key").exists(),
        "the CA key is not copied"
    );
    let ca_der = pem_der(&first.join("ca.crt"));
    let (_, ca) = parse_x509_certificate(&ca_der).expect("CA");
    let leaf_der = pem_der(&renewed_dir.join("tls.crt"));
    let (_, leaf) = parse_x509_certificate(&leaf_der).expect("leaf");
    leaf.verify_signature(Some(ca.public_key()))
        .expect("the renewed certificate is signed by the first CA");
    assert_eq!(
        leaf.issuer().as_raw(),
        ca.subject().as_raw(),
        "issuer bytes"
    );
    assert_ne!(
        pem_der(&first.join("tls.crt")),
        leaf_der,
        "a new serving certificate"
    );

    // A serving certificate never outlives its CA (365 days here).
    let longer = certs(
        &dir.path().join("longer"),
        &[
            "--ca-cert",
            path(&first.join("ca.crt")),
            "--ca-key",
            path(&first.join("ca.key")),
            "--days",
            "3650",
        ],
    );
    assert!(longer.status.success(), "{longer:?}");
    let long_der = pem_der(&dir.path().join("longer/tls.crt"));
    let (_, long_leaf) = parse_x509_certificate(&long_der).expect("leaf");
    assert_eq!(long_leaf.validity().not_after, ca.validity().not_after);
    assert!(
        String::from_utf8_lossy(&longer.stderr).contains("does not outlive its CA"),
        "{longer:?}"
    );
}

#[test]
fn certs_refuses_a_foreign_ca_key_a_non_ca_certificate_and_a_different_ca_in_the_folder() {
    let dir = tempfile::tempdir().expect("dir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    assert!(certs(&a, &[]).status.success());
    assert!(certs(&b, &[]).status.success());
    let (a_ca, a_key, a_tls, a_tls_key, b_key) = (
        a.join("ca.crt"),
        a.join("ca.key"),
        a.join("tls.crt"),
        a.join("tls.key"),
        b.join("ca.key"),
    );
    let cases = [
        (path(&a_ca), path(&b_key), "is not the key of"),
        (path(&a_tls), path(&a_tls_key), "is not a CA"),
        (path(&a_ca), path(&a_ca), "PKCS#8"),
    ];
    for (ca_cert, ca_key, expected) in cases {
        let out_dir = dir.path().join("out");
        let output = certs(&out_dir, &["--ca-cert", ca_cert, "--ca-key", ca_key]);
        assert!(!output.status.success(), "{ca_cert} {ca_key}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!out_dir.join("tls.key").exists(), "nothing written");
    }
    // --ca-cert of CA a into folder b, which holds CA b: refused, b's ca.crt kept.
    let b_ca = std::fs::read(b.join("ca.crt")).expect("ca");
    let output = certs(
        &b,
        &[
            "--force",
            "--ca-cert",
            path(&a_ca),
            "--ca-key",
            path(&a_key),
        ],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("different CA"),
        "{output:?}"
    );
    assert_eq!(std::fs::read(b.join("ca.crt")).expect("ca"), b_ca);
    // --ca-cert without --ca-key is a usage error.
    let output = certs(&dir.path().join("c"), &["--ca-cert", path(&a_ca)]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn certs_bundle_prints_the_new_and_old_ca_in_order_and_refuses_a_serving_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    assert!(certs(&old, &[]).status.success());
    assert!(certs(&new, &[]).status.success());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
            .args(["certs", "bundle"])
            .args(args)
            .output()
            .expect("run certs bundle")
    };
    let both = run(&[
        path(&new.join("ca.crt")),
        path(&old.join("ca.crt")),
        path(&new.join("ca.crt")),
    ]);
    assert!(both.status.success(), "{both:?}");
    let pem = bundle_pem(&both);
    let certs_in: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.expect("PEM").contents)
        .collect();
    assert_eq!(
        certs_in,
        [pem_der(&new.join("ca.crt")), pem_der(&old.join("ca.crt"))],
        "new first, old second, the repeated one once"
    );
    let only_new = run(&[path(&new.join("ca.crt"))]);
    assert_eq!(
        bundle_pem(&only_new).as_bytes(),
        std::fs::read(new.join("ca.crt")).expect("ca.crt"),
        "one CA: the same bundle `certs` printed"
    );
    let leaf = run(&[path(&new.join("tls.crt"))]);
    assert!(!leaf.status.success());
    assert!(leaf.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&leaf.stderr).contains("is not a CA"),
        "{leaf:?}"
    );
}

#[test]
fn certs_extra_name_adds_an_ip_address_or_dns_name_and_refuses_others() {
    let dir = tempfile::tempdir().expect("dir");
    let output = certs(
        dir.path(),
        &[
            "--extra-name",
            "127.0.0.1",
            "--extra-name",
            "webhook.example.com",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let der = pem_der(&dir.path().join("tls.crt"));
    let (_, leaf) = parse_x509_certificate(&der).expect("leaf");
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        names.contains(&"ip:[127, 0, 0, 1]".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"webhook.example.com".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"wasm-admission.wasm-admission.svc".to_string()));
    let other = tempfile::tempdir().expect("dir");
    let bad = certs(other.path(), &["--extra-name", "not a name"]);
    assert!(!bad.status.success());
    assert!(!other.path().join("tls.key").exists());
}

#[test]
fn certs_refuses_names_that_are_not_dns_labels_and_days_out_of_range() {
    let dir = tempfile::tempdir().expect("dir");
    for args in [
        &["--service", "Web_Hook"][..],
        &["--namespace", "a.b"][..],
        &["--days", "0"][..],
    ] {
        let output = certs(dir.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            !dir.path().join("tls.key").exists(),
            "{args:?}: nothing written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_output_is_served_to_a_client_that_trusts_only_the_ca_bundle() {
    let dir = tempfile::tempdir().expect("dir");
    let output = certs(dir.path(), &["--days", "1"]);
    assert!(output.status.success(), "{output:?}");
    let ca_bundle = String::from_utf8(output.stdout).expect("UTF-8");
    let ca_pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_bundle.trim())
            .expect("base64"),
    )
    .expect("PEM");

    let args = serve_args(&dir.path().join("tls.crt"), &dir.path().join("tls.key"));
    let server = wasm_admission::commands::serve::start(args, fast_tuning())
        .await
        .expect("serve starts with the certs output");
    // Default --service and --namespace: wasm-admission.wasm-admission.svc.
    let client = apiserver_client(&ca_pem, server.addr(), Http::One);
    let url = format!("https://{SERVICE_HOST}:{}/mutate", server.addr().port());
    let answer = post_review(&client, &url, DEPLOYMENT_CREATE)
        .await
        .expect("request");
    check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    server
        .shutdown_handle()
        .graceful(std::time::Duration::from_secs(5));
    server.wait().await.expect("stops");
}
