//! Certificate rotation while the apiserver keeps creating objects (behaviour.md §7: certificate files
//! are re-read without a restart and without failing requests in flight). A second CA is added
//! to both webhook configurations' caBundle first, then `serve`'s pair is swapped twice to
//! certificates of the new CA and back, as a Secret update does it; no create may fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::support::{RELEASE, World, eventually};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca() -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "e2e rotation CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("CA certificate");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A serving pair for 127.0.0.1, the host of `webhook.url`.
fn serving(ca: &Ca) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("names");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn set_ca_bundle(world: &World, pem: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        world
            .cluster
            .kubectl(&[
                "patch",
                kind,
                RELEASE,
                "--type=json",
                "-p",
                &format!(
                    r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{b64}"}}]"#
                ),
            ])
            .expect_ok("patch caBundle");
    }
}

/// Puts the chart's pair and caBundle back, also when the case fails.
struct Restore<'w> {
    world: &'w World,
    chart_ca: String,
    chart_pair: (Vec<u8>, Vec<u8>),
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.world
            .webhook()
            .install_pair(&self.chart_pair.0, &self.chart_pair.1);
        set_ca_bundle(self.world, &self.chart_ca);
    }
}

pub fn certificate_rotation_during_creates_fails_no_create(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("rotation", true);
    let (chart_ca, chart_pair) = {
        let webhook = world.webhook();
        let dir = webhook.dir.path();
        let read = |f: &str| std::fs::read(dir.join(f)).expect("chart file");
        (
            String::from_utf8(read("ca.crt")).expect("PEM"),
            (read("tls.crt"), read("tls.key")),
        )
    };
    let restore = Restore {
        world,
        chart_ca: chart_ca.clone(),
        chart_pair: chart_pair.clone(),
    };
    let ca = new_ca();
    set_ca_bundle(world, &format!("{chart_ca}{}", ca.pem));
    // The apiserver reads webhook configurations through an informer.
    std::thread::sleep(Duration::from_secs(3));

    let done = AtomicBool::new(false);
    let (created, failures) = std::thread::scope(|scope| {
        let creator = scope.spawn(|| {
            let (mut created, mut failures) = (0, Vec::new());
            while !done.load(Ordering::Relaxed) {
                let pod = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"rot-{created}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
                );
                let out = cluster.kubectl_in(&["create", "-f", "-"], &pod);
                if !out.ok {
                    failures.push(out.stderr);
                }
                created += 1;
            }
            (created, failures)
        });
        let swap = |cert: &[u8], key: &[u8]| {
            let mut webhook = world.webhook();
            webhook.take_logs();
            webhook.install_pair(cert, key);
            eventually(
                Duration::from_secs(10),
                "serve to load the new pair",
                || {
                    webhook
                        .take_logs()
                        .iter()
                        .any(|l| l.contains("serving a new certificate"))
                },
            );
            drop(webhook);
            std::thread::sleep(Duration::from_secs(2));
        };
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..2 {
            let (cert, key) = serving(&ca);
            swap(cert.as_bytes(), key.as_bytes());
        }
        swap(&chart_pair.0, &chart_pair.1);
        done.store(true, Ordering::Relaxed);
        creator.join().expect("creator thread")
    });
    println!(
        "    {created} creates during three certificate swaps, {} failed",
        failures.len()
    );
    assert!(created >= 10, "only {created} creates");
    assert!(failures.is_empty(), "failed creates: {failures:#?}");
    drop(restore);
}
