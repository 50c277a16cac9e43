//! The floors: servers on the same stack as `serve` that decide nothing, run in a re-executed
//! copy of this binary.

use super::*;

pub(crate) fn floor_main(mode: &str) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let cert = var(FLOOR_CERT_ENV);
    let key = var(FLOOR_KEY_ENV);
    let listen: SocketAddr = var(FLOOR_LISTEN_ENV).parse().expect("listen address");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(&key).expect("private key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let app = match mode {
        "transport" => Router::new().route("/mutate", post(transport_floor)),
        "answer" => {
            let answer = Bytes::from(std::fs::read(var(FLOOR_ANSWER_ENV)).expect("answer file"));
            Router::new().route(
                "/mutate",
                post(move |body: Bytes| answer_floor(body, answer.clone())),
            )
        }
        "dom" => Router::new().route("/mutate", post(dom_floor)),
        "lean" => Router::new().route("/mutate", post(lean_floor)),
        spin if spin.starts_with(SPIN_PREFIX) => {
            let micros: u32 = spin[SPIN_PREFIX.len()..]
                .parse()
                .expect("spin microseconds");
            let rounds = Spin::calibrate().rounds_for(micros);
            Router::new().route(
                "/mutate",
                post(move |body: Bytes| async move {
                    std::hint::black_box(Spin::run(rounds));
                    transport_floor(body).await
                }),
            )
        }
        other => panic!("unknown floor {other}"),
    }
    .route("/readyz", get(|| async { "ok\n" }));
    // The same runtime as `serve`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        // SIGTERM ends the process normally, as it ends `serve` (so that exit handlers run, such
        // as those writing a profile under `-Cprofile-generate`).
        let handle = axum_server::Handle::new();
        let on_term = handle.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            on_term.shutdown();
        });
        axum_server::from_tcp_rustls(listener, tls)
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .expect("serve");
    });
}

/// Reads the body, answers a fixed review.
async fn transport_floor(body: Bytes) -> Response {
    std::hint::black_box(&body);
    ([(header::CONTENT_TYPE, "application/json")], FIXED_ANSWER).into_response()
}

/// Reads the body, answers `serve`'s answer to the review (fixed bytes).
async fn answer_floor(body: Bytes, answer: Bytes) -> Response {
    std::hint::black_box(&body);
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// Parses the body into a DOM and echoes `request.uid`, allowed.
async fn dom_floor(body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    allowed(&review["request"]["uid"])
}

/// An allowed AdmissionReview answering `uid`.
pub(crate) fn allowed(uid: &impl serde::Serialize) -> Response {
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&answer).expect("serialize"),
    )
        .into_response()
}

/// The least a correct webhook does: reads `request.uid` from the review (serde_json checks and
/// skips everything else) and echoes it, allowed.
async fn lean_floor(body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
    }
    let review: Review = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    allowed(&review.request.uid)
}

/// The floor mode `spin-N`: the transport floor plus N µs of CPU work per request.
pub(crate) const SPIN_PREFIX: &str = "spin-";

/// A fixed amount of CPU work: a chain of dependent multiply-adds, calibrated at start so that
/// a number of rounds takes a known time on this machine when the core is free. Work, not a
/// clock: when the thread is preempted the work waits, as a server's real work would.
pub(crate) struct Spin {
    pub(crate) rounds_per_us: f64,
}

impl Spin {
    pub(crate) fn run(rounds: u64) -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..rounds {
            x = std::hint::black_box(x)
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        x
    }

    /// The fastest of 20 timed runs of 200,000 rounds.
    pub(crate) fn calibrate() -> Self {
        const ROUNDS: u64 = 200_000;
        let fastest = (0..20)
            .map(|_| {
                let since = Instant::now();
                std::hint::black_box(Self::run(ROUNDS));
                since.elapsed()
            })
            .min()
            .unwrap_or(Duration::from_millis(1));
        Spin {
            rounds_per_us: ROUNDS as f64 / (fastest.as_secs_f64() * 1e6),
        }
    }

    pub(crate) fn rounds_for(&self, micros: u32) -> u64 {
        (self.rounds_per_us * f64::from(micros)).round() as u64
    }
}
