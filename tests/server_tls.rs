//! `serve` over real TLS on loopback, called the way kube-apiserver calls it (behaviour.md §7).

mod server_support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use server_support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn wasm_runtime_class(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["runtimeClassName"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_over_http1_keepalive_echoes_uid_and_its_patch_adds_runtime_class() {
    let t = TestServer::start().await;
    let client = t.client(Http::One);
    let object = object_of(DEPLOYMENT_CREATE);
    for _ in 0..5 {
        let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
            .await
            .expect("request");
        assert_eq!(answer.version, reqwest::Version::HTTP_11);
        let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
        assert_eq!(response["allowed"], true);
        assert!(
            response.get("patch").is_some(),
            "a Wasm Deployment is mutated"
        );
        let patched = apply_patch(&object, response);
        assert_eq!(wasm_runtime_class(&patched), "wasm");
        // Nothing the apiserver sent is dropped.
        assert_eq!(patched["metadata"], object["metadata"]);
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["ports"],
            object["spec"]["template"]["spec"]["containers"][0]["ports"]
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keepalive_answers_many_reviews_on_one_connection() {
    use http_body_util::{BodyExt, Full};
    let t = TestServer::start().await;
    // One TLS connection, HTTP/1.1 by ALPN, requests one after another: what the apiserver's
    // Go client does with a kept-alive connection.
    let tls = connect(&t, &[&rustls::version::TLS13], &[b"http/1.1"])
        .await
        .expect("TLS");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
    let driver = tokio::spawn(connection);
    for i in 0..10 {
        let request = hyper::Request::post("/mutate?timeout=10s")
            .header("host", SERVICE_HOST)
            .header("content-type", "application/json")
            .body(Full::new(bytes_of(DEPLOYMENT_CREATE)))
            .expect("request");
        sender.ready().await.expect("connection still open");
        let response = sender.send_request(request).await.expect("answer");
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert!(
            response
                .headers()
                .get("connection")
                .is_none_or(|v| v != "close"),
            "the server keeps the connection open"
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["response"]["uid"], uid_of(DEPLOYMENT_CREATE));
    }
    assert_eq!(
        t.server.connection_count(),
        1,
        "ten reviews, one connection"
    );
    drop(sender);
    let _ = driver.await;
    t.stop().await;
}

fn bytes_of(text: &'static str) -> hyper::body::Bytes {
    hyper::body::Bytes::from_static(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_over_http2_negotiated_by_alpn() {
    let t = TestServer::start().await;
    let client = t.client(Http::Two);
    let object = object_of(POD_CREATE);
    let url = t.url("/mutate");
    // The first call negotiates HTTP/2 by ALPN; the eight that follow run at once on it.
    let first = post_review(&client, &url, POD_CREATE)
        .await
        .expect("request");
    assert_eq!(first.version, reqwest::Version::HTTP_2);
    let answers =
        futures_util::future::join_all((0..8).map(|_| post_review(&client, &url, POD_CREATE)))
            .await;
    for answer in answers {
        let answer = answer.expect("request");
        assert_eq!(answer.version, reqwest::Version::HTTP_2);
        let response = check_envelope(&answer, &uid_of(POD_CREATE));
        let patched = apply_patch(&object, response);
        assert_eq!(patched["spec"]["runtimeClassName"], "wasm");
    }
    assert_eq!(
        t.server.connection_count(),
        1,
        "streams share one connection"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_answers_denials_only_and_never_patches() {
    let t = TestServer::start().await;
    let client = t.client(Http::One);

    let answer = post_review(&client, &t.url("/validate"), DEPLOYMENT_CREATE)
        .await
        .expect("request");
    let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");

    for path in ["/validate", "/mutate"] {
        let answer = post_review(&client, &t.url(path), PRIVILEGED_CREATE)
            .await
            .expect("request");
        let response = check_envelope(&answer, &uid_of(PRIVILEGED_CREATE));
        assert_eq!(response["allowed"], false, "{path}: {response}");
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("privileged") && message.contains("hostNetwork"),
            "{message}"
        );
        assert!(response.get("patch").is_none(), "{response}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kind_is_allowed_without_patch_type() {
    let t = TestServer::start().await;
    let client = t.client(Http::One);
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0a0a0a0a-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "namespace": "demo", "name": "settings", "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "demo"}, "data": {"a": "b"}},
            "oldObject": null, "dryRun": false
        }
    })
    .to_string();
    let answer = post_review(&client, &t.url("/mutate"), body)
        .await
        .expect("request");
    let response = check_envelope(&answer, "0a0a0a0a-0000-4000-8000-000000000001");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patchType").is_none(), "{response}");
    t.stop().await;
}

async fn connect(
    t: &TestServer,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(t.pki.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(t.addr()).await?;
    let name = ServerName::try_from(SERVICE_HOST).expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn handshake(
    t: &TestServer,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<(rustls::ProtocolVersion, Option<Vec<u8>>), std::io::Error> {
    let tls = connect(t, versions, alpn).await?;
    let (_, session) = tls.get_ref();
    Ok((
        session.protocol_version().expect("negotiated"),
        session.alpn_protocol().map(<[u8]>::to_vec),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_served_and_alpn_picks_h2_or_http1() {
    let t = TestServer::start().await;
    let (v, alpn) = handshake(&t, &[&rustls::version::TLS12], &[b"http/1.1"])
        .await
        .expect("TLS 1.2");
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (v, alpn) = handshake(&t, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"])
        .await
        .expect("TLS 1.3");
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // A client that offers only an unknown protocol is refused (no ALPN overlap).
    assert!(
        handshake(&t, &[&rustls::version::TLS13], &[b"spdy/3"])
            .await
            .is_err()
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_on_https_and_the_metrics_port() {
    let t = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let client = t.client(Http::One);
    for path in ["/healthz", "/readyz"] {
        let r = client.get(t.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{path}");
    }
    post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("review");
    let text = metrics_text(&client, &t.url("/metrics")).await;
    assert_eq!(
        metric(
            &text,
            "wasm_admission_reviews_total{endpoint=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"mutated\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "wasm_admission_review_duration_seconds_count{endpoint=\"mutate\"}"
        ),
        1.0
    );
    let not_after = x509_parser::parse_x509_certificate(&t.pair.cert_der)
        .expect("cert")
        .1
        .validity()
        .not_after
        .timestamp();
    assert_eq!(
        metric(&text, "wasm_admission_certificate_expiry_timestamp_seconds"),
        not_after as f64
    );

    let plain = format!(
        "http://{}/metrics",
        t.server.metrics_addr().expect("metrics listener")
    );
    let text = reqwest::get(&plain)
        .await
        .expect("plain GET")
        .text()
        .await
        .expect("text");
    assert!(text.contains("wasm_admission_reviews_total"), "{text}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_file_requires_a_client_certificate_signed_by_it() {
    let apiserver_ca = Pki::new("apiserver admission client CA");
    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), &apiserver_ca.ca_pem).expect("write CA");
    let path = ca_file.path().to_path_buf();
    let t = TestServer::start_with(|args| args.client_ca_file = Some(path)).await;

    let anonymous = t.client(Http::One);
    assert!(
        post_review(&anonymous, &t.url("/mutate"), DEPLOYMENT_CREATE)
            .await
            .is_err(),
        "a client without a certificate is refused"
    );

    let client = client_with_identity(&t, &apiserver_ca.client("kube-apiserver-admission"));
    let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("a client with a certificate from the CA is served");
    check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    t.stop().await;
}

fn client_with_identity(t: &TestServer, identity: &Pair) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(t.pki.ca_pem.as_bytes()).expect("CA"))
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", identity.cert_pem, identity.key_pem).as_bytes(),
            )
            .expect("identity"),
        )
        .resolve(SERVICE_HOST, t.addr())
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_file_is_reloaded_when_it_changes() {
    let old_ca = Pki::new("old admission client CA");
    let new_ca = Pki::new("new admission client CA");
    let mut mounted = SecretDir::new(&[("ca.crt", old_ca.ca_pem.as_bytes())]);
    let path = mounted.path("ca.crt");
    let t = TestServer::start_with(|args| args.client_ca_file = Some(path)).await;
    let old_client = client_with_identity(&t, &old_ca.client("apiserver"));
    let new_client = client_with_identity(&t, &new_ca.client("apiserver"));
    let url = t.url("/mutate");
    assert!(
        post_review(&old_client, &url, DEPLOYMENT_CREATE)
            .await
            .is_ok()
    );
    assert!(
        post_review(&new_client, &url, DEPLOYMENT_CREATE)
            .await
            .is_err()
    );

    mounted.swap(&[("ca.crt", new_ca.ca_pem.as_bytes())]);
    eventually(
        Duration::from_secs(10),
        "the new client CA trusted",
        || async {
            // A fresh client each time: a refused handshake is not retried on the same pool.
            let fresh = client_with_identity(&t, &new_ca.client("apiserver"));
            post_review(&fresh, &url, DEPLOYMENT_CREATE).await.is_ok()
        },
    )
    .await;
    let stale = client_with_identity(&t, &old_ca.client("apiserver"));
    assert!(
        post_review(&stale, &url, DEPLOYMENT_CREATE).await.is_err(),
        "the old CA is no longer trusted for new connections"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_the_flag_and_the_file_to_fix() {
    let pki = Pki::new("test CA");
    let pair = pki.serving();
    let other = pki.serving();
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let other_key = dir.path().join("other.key");
    std::fs::write(&cert, &pair.cert_pem).expect("cert");
    std::fs::write(&key, &pair.key_pem).expect("key");
    std::fs::write(&other_key, &other.key_pem).expect("other key");
    let tuning = fast_tuning;

    let missing = dir.path().join("absent.crt");
    let err = wasm_admission::commands::serve::start(serve_args(&missing, &key), tuning())
        .await
        .err()
        .expect("missing certificate")
        .to_string();
    assert!(
        err.contains("--tls-cert-file") && err.contains("absent.crt"),
        "{err}"
    );

    let err = wasm_admission::commands::serve::start(serve_args(&cert, &other_key), tuning())
        .await
        .err()
        .expect("mismatched key")
        .to_string();
    assert!(
        err.contains("does not belong") && err.contains("other.key"),
        "{err}"
    );

    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "runtimeClass: wasm\n").expect("config");
    let mut args = serve_args(&cert, &key);
    args.config = Some(config);
    let err = wasm_admission::commands::serve::start(args, tuning())
        .await
        .err()
        .expect("invalid config")
        .to_string();
    assert!(
        err.contains("--config") && err.contains("runtimeClass"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut args = serve_args(&cert, &key);
    args.listen = Some(taken.local_addr().expect("addr"));
    let err = wasm_admission::commands::serve::start(args, tuning())
        .await
        .err()
        .expect("port taken")
        .to_string();
    assert!(err.contains("--listen"), "{err}");
}
