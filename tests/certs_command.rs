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
    assert!(
        stderr.contains("--force") && stderr.contains("tls.key"),
        "{stderr}"
    );
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

    let forced = certs(dir.path(), &["--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(
        std::fs::read(dir.path().join("tls.key")).expect("key"),
        before,
        "--force writes a new key"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
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
