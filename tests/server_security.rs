//! Security facts of `serve`: TLS 1.0 and 1.1 refused, client certificates enforced with
//! `--client-ca-file`, no plaintext admission endpoint, excluded namespaces honoured whatever the
//! selectors sent, and the webhook's own pods never touched.

mod server_support;

use std::time::Duration;

use serde_json::{Value, json};
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal ClientHello record offering only `version` (no `supported_versions` extension, as
/// a TLS 1.0/1.1 client sends it), with ECDHE cipher suites, P-256 and ECDSA signatures.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES128-SHA, ECDHE-RSA-AES128-SHA, AES128-SHA
    let suites: [u8; 8] = [0xc0, 0x2b, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // null compression
    let mut ext = Vec::new();
    let mut push_ext = |kind: u16, data: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    let host = SERVICE_HOST.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    push_ext(0x0000, &sni); // server_name
    push_ext(0x000a, &[0x00, 0x02, 0x00, 0x17]); // supported_groups: secp256r1
    push_ext(0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    push_ext(0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]); // signature_algorithms
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `bytes` and returns what the server answers before closing (at most 5 s, 16 KiB).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while answer.len() < 16 * 1024 {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    answer
}

fn is_server_hello(answer: &[u8]) -> bool {
    answer.len() > 5 && answer[0] == 0x16 && answer[5] == 0x02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_client_hellos_are_refused_with_a_protocol_version_alert() {
    let t = TestServer::start().await;
    // The same hello offering TLS 1.2 gets a ServerHello: the hand-made hello is sound.
    assert!(is_server_hello(
        &exchange(t.addr(), &client_hello([3, 3])).await
    ));
    for (name, version) in [("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        let answer = exchange(t.addr(), &client_hello(version)).await;
        assert!(
            !is_server_hello(&answer),
            "{name} was accepted: {answer:x?}"
        );
        // A fatal alert (21), protocol_version (70), then the connection closes.
        assert_eq!(answer.first(), Some(&0x15), "{name}: {answer:x?}");
        assert_eq!(
            answer.get(5..7),
            Some(&[2u8, 70][..]),
            "{name}: {answer:x?}"
        );
    }
    t.stop().await;
}

fn client_with(t: &TestServer, identity: Option<&Pair>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(t.pki.ca_pem.as_bytes()).expect("CA"))
        .resolve(SERVICE_HOST, t.addr())
        .timeout(Duration::from_secs(10));
    if let Some(identity) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(
                format!("{}{}", identity.cert_pem, identity.key_pem).as_bytes(),
            )
            .expect("identity"),
        );
    }
    builder.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_file_refuses_clients_without_a_certificate_or_with_one_from_another_ca() {
    let apiserver_ca = Pki::new("apiserver admission client CA");
    let stranger_ca = Pki::new("someone else's CA");
    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), &apiserver_ca.ca_pem).expect("write CA");
    let path = ca_file.path().to_path_buf();
    let t = TestServer::start_with(|args| args.client_ca_file = Some(path)).await;
    let url = t.url("/mutate");

    let refused = [
        ("no certificate", client_with(&t, None)),
        (
            "a certificate from another CA",
            client_with(&t, Some(&stranger_ca.client("kube-apiserver"))),
        ),
        (
            "a serving (not client) certificate from the right CA",
            client_with(&t, Some(&apiserver_ca.serving())),
        ),
    ];
    for (what, client) in refused {
        for path in ["/mutate", "/healthz"] {
            let result = client.get(t.url(path)).send().await;
            assert!(result.is_err(), "{what} on {path}: {result:?}");
        }
    }
    let good = client_with(&t, Some(&apiserver_ca.client("kube-apiserver")));
    let answer = post_review(&good, &url, DEPLOYMENT_CREATE)
        .await
        .expect("the apiserver's certificate is accepted");
    check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_admission_endpoint_on_either_port() {
    let t = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    // Plain HTTP to the HTTPS port: no HTTP answer at all, let alone a review.
    let request = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        DEPLOYMENT_CREATE.len(),
        DEPLOYMENT_CREATE
    );
    let answer = exchange(t.addr(), request.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("HTTP/1.1 200") && !text.contains("AdmissionReview"),
        "{text}"
    );
    let plain = reqwest::Client::new();
    let https_as_http = plain
        .post(format!("http://{}/mutate", t.addr()))
        .header("Content-Type", "application/json")
        .body(DEPLOYMENT_CREATE)
        .send()
        .await;
    assert!(
        https_as_http
            .as_ref()
            .map_or(true, |r| !r.status().is_success()),
        "{https_as_http:?}"
    );

    // The metrics port serves /metrics and nothing else.
    let metrics = t.server.metrics_addr().expect("metrics listener");
    let r = plain
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    for (method, path) in [
        ("POST", "/mutate"),
        ("POST", "/validate"),
        ("GET", "/mutate"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    ] {
        let r = plain
            .request(
                method.parse().expect("method"),
                format!("http://{metrics}{path}"),
            )
            .header("Content-Type", "application/json")
            .body(if method == "POST" {
                DEPLOYMENT_CREATE
            } else {
                ""
            })
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 404, "{method} {path}");
        let body: Value = r.json().await.expect("JSON error");
        assert!(body.get("response").is_none(), "{body}");
    }
    t.stop().await;
}

/// The privileged Wasm Deployment CREATE, in another namespace and with labels edited.
fn privileged_in(namespace: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut review: Value = serde_json::from_str(PRIVILEGED_CREATE).expect("example");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    edit(&mut review["request"]["object"]);
    review.to_string()
}

async fn allowed_unchanged(t: &TestServer, body: &str, what: &str) {
    let client = t.client(Http::One);
    for path in ["/mutate", "/validate"] {
        let answer = post_review(&client, &t.url(path), body.to_string())
            .await
            .expect("request");
        let response = check_envelope(&answer, &uid_of(body));
        assert_eq!(response["allowed"], true, "{what} on {path}: {response}");
        assert!(
            response.get("patch").is_none(),
            "{what} on {path}: {response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_namespaces_are_honoured_even_when_the_selectors_let_a_request_through() {
    let config = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(config.path(), "excludedNamespaces: [kube-system, legacy]\n").expect("write");
    let path = config.path().to_path_buf();
    let t = TestServer::start_with(|args| args.config = Some(path)).await;
    // A denial in another namespace proves the review itself would be refused.
    let client = t.client(Http::One);
    let denied = post_review(&client, &t.url("/mutate"), privileged_in("shop", |_| {}))
        .await
        .expect("request");
    assert_eq!(
        check_envelope(&denied, &uid_of(PRIVILEGED_CREATE))["allowed"],
        false
    );
    for ns in ["kube-system", "legacy", "wasm-admission"] {
        allowed_unchanged(&t, &privileged_in(ns, |_| {}), ns).await;
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_never_mutates_or_denies_its_own_pods() {
    // Its own namespace (--namespace, else $POD_NAMESPACE from the downward API).
    let t = TestServer::start_with(|args| args.namespace = Some("platform-webhooks".into())).await;
    allowed_unchanged(
        &t,
        &privileged_in("platform-webhooks", |_| {}),
        "own namespace",
    )
    .await;
    // Its skip label, on the object or on the pod template, in any namespace.
    for at in ["/metadata", "/spec/template/metadata"] {
        let body = privileged_in("shop", |object| {
            let meta = object.pointer_mut(at).expect("metadata");
            meta["labels"]["wasm-admission.io/skip"] = json!("true");
        });
        allowed_unchanged(&t, &body, at).await;
    }
    t.stop().await;
}
