//! `serve --dev` needs no files: it prints a curl command whose CA and example body work as
//! printed, and the example gets a patch.

mod server_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server_support::*;

/// The parts of the printed `curl -sS --cacert CA -H ... --data @BODY URL`.
struct Curl {
    ca: PathBuf,
    body: PathBuf,
    url: String,
}

fn parse_curl(line: &str) -> Curl {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"curl"), "{line}");
    // -sS: no progress meter when the answer is piped (to jq, base64 -d), errors still shown.
    assert_eq!(words.get(1), Some(&"-sS"), "{line}");
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("{flag} in {line}"))
            .to_string()
    };
    assert!(
        line.contains("-H 'Content-Type: application/json'"),
        "{line}"
    );
    Curl {
        ca: PathBuf::from(after("--cacert")),
        body: PathBuf::from(after("--data").trim_start_matches('@')),
        url: words.last().expect("url").to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_prints_a_curl_that_gets_a_patch_for_the_bundled_example() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .env("WASM_ADMISSION_SHUTDOWN_DELAY", "0s")
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve --dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let curl = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve --dev prints a curl command");
        if line.trim_start().starts_with("curl ") {
            break parse_curl(line.trim());
        }
    };

    assert!(curl.url.starts_with("https://localhost:"), "{}", curl.url);
    assert!(curl.url.ends_with("/mutate"), "{}", curl.url);
    let port: u16 = curl
        .url
        .trim_start_matches("https://localhost:")
        .trim_end_matches("/mutate")
        .parse()
        .expect("port");
    let ca = std::fs::read_to_string(&curl.ca).expect("the printed CA file exists");
    let body = std::fs::read(&curl.body).expect("the printed body file exists");
    assert_eq!(body, DEPLOYMENT_CREATE.as_bytes(), "the bundled example");

    // As curl would: trust only the printed CA, name localhost.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let response = client
        .post(&curl.url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST as printed");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    let answer = Answer {
        status: 200,
        version: reqwest::Version::HTTP_11,
        body: answer,
        peer_cert: None,
    };
    let review = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    let patched = apply_patch(&object_of(DEPLOYMENT_CREATE), review);
    assert_eq!(
        patched["spec"]["template"]["spec"]["runtimeClassName"],
        "wasm"
    );

    // Ctrl-C: exit 0, and the throwaway files are removed.
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve --dev did not exit after SIGINT");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(!curl.ca.exists(), "the CA file is removed on exit");
}
