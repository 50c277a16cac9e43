//! Issue 28, item 6: `audit` is bounded by bytes, by `continue` loops and by one deadline for the
//! whole run, against a local stand-in for kube-apiserver that misbehaves on purpose (kube's
//! client talks to it as to a real one: plain HTTP, kubeconfig in `$KUBECONFIG`).

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How the stand-in answers the CronJob list (every other kind is an empty list).
#[derive(Clone, Copy)]
enum Mode {
    /// Always the same `continue` token.
    SameContinue,
    /// The answer's bytes one at a time, 200 ms apart, never ending.
    Trickle,
    /// `count` suspended Wasm CronJobs of `size` bytes each, paged as asked (`limit`, `continue`);
    /// one more of them, `big`, of `big_size` bytes, first.
    Large {
        count: usize,
        size: usize,
        big_size: usize,
    },
}

struct Api {
    mode: Mode,
    lists: AtomicUsize,
}

/// A CronJob as the apiserver writes it in a list: `metadata` first, and `name` and `namespace`
/// first in it (serde_json's own maps would sort the keys).
fn cronjob(name: &str, padding: usize) -> String {
    let (head, tail) = cronjob_around_padding(name);
    format!("{head}{}{tail}", "x".repeat(padding))
}

/// [`cronjob`]'s text before and after its padding.
fn cronjob_around_padding(name: &str) -> (String, String) {
    let spec = json!({
        "schedule": "0 3 * * *",
        "suspend": true,
        "jobTemplate": {"spec": {"template": {
            "metadata": {"annotations": {"wasm-admission.io/wasm": "true"}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "app", "image": "ghcr.io/acme/app:1",
                "securityContext": {"privileged": true}
            }]}
        }}}
    });
    (
        format!(r#"{{"metadata":{{"name":"{name}","namespace":"team-a","annotations":{{"pad":""#),
        format!(r#""}}}},"spec":{spec}}}"#),
    )
}

/// A list of padded CronJobs (`(name, padding)`) as the apiserver writes it, with its
/// `Content-Length`, written in pieces of at most 1 MiB made as they are sent. The stand-in runs
/// in the test's process, and a process spawned from it starts with that process's memory
/// high-water mark (posix_spawn shares the test's memory until `exec`, and `ru_maxrss` keeps
/// its peak): an answer built whole here would count in the audit's measured peak.
fn streamed_list(items: Vec<(String, usize)>, token: Option<String>) -> Response {
    // Each piece is described here and made when it is sent.
    enum Piece {
        Text(String),
        Padding(usize),
    }
    const PIECE: usize = 1024 * 1024;
    let token = token.map_or(String::new(), |t| format!(r#","continue":"{t}""#));
    let head = format!(
        r#"{{"kind":"List","apiVersion":"v1","metadata":{{"resourceVersion":"7"{token}}},"items":["#
    );
    let tail = "]}";
    let mut length = head.len() + tail.len() + items.len().saturating_sub(1);
    let mut pieces = vec![Piece::Text(head)];
    for (i, (name, padding)) in items.into_iter().enumerate() {
        let (before, after) = cronjob_around_padding(&name);
        length += before.len() + padding + after.len();
        pieces.push(Piece::Text(if i > 0 {
            format!(",{before}")
        } else {
            before
        }));
        let mut left = padding;
        while left > 0 {
            pieces.push(Piece::Padding(left.min(PIECE)));
            left -= left.min(PIECE);
        }
        pieces.push(Piece::Text(after));
    }
    pieces.push(Piece::Text(tail.to_string()));
    let stream = futures_util::stream::iter(pieces.into_iter().map(|piece| {
        Ok::<_, std::io::Error>(match piece {
            Piece::Text(text) => text.into_bytes(),
            Piece::Padding(n) => vec![b'x'; n],
        })
    }));
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A list answer in the apiserver's order: `metadata` (with `continue`) before `items`.
fn list(items: Vec<String>, token: Option<String>) -> String {
    let token = token.map_or(String::new(), |t| format!(r#","continue":"{t}""#));
    format!(
        r#"{{"kind":"List","apiVersion":"v1","metadata":{{"resourceVersion":"7"{token}}},"items":[{}]}}"#,
        items.join(",")
    )
}

async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let kind = path.rsplit('/').next().unwrap_or_default().to_string();
    let json_answer =
        |text: String| ([(header::CONTENT_TYPE, "application/json")], text).into_response();
    if kind != "cronjobs" {
        return json_answer(list(Vec::new(), None));
    }
    api.lists.fetch_add(1, Ordering::SeqCst);
    match api.mode {
        Mode::SameContinue => json_answer(list(Vec::new(), Some("same".into()))),
        Mode::Trickle => {
            let text = list(vec![cronjob("slow", 10)], None).into_bytes();
            let stream = futures_util::stream::unfold(0usize, move |i| {
                let byte = text.get(i.min(text.len() - 2)).copied().unwrap_or(b' ');
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Ok::<_, std::io::Error>(vec![byte]), i + 1))
                }
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Mode::Large {
            count,
            size,
            big_size,
        } => {
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(500);
            let start: usize = param("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
            let end = (start + limit).min(count + 1);
            let items = (start..end)
                .map(|i| {
                    if i == 0 {
                        ("big".to_string(), big_size)
                    } else {
                        (format!("job-{i}"), size)
                    }
                })
                .collect();
            let token = (end <= count).then(|| end.to_string());
            streamed_list(items, token)
        }
    }
}

struct StandIn {
    api: Arc<Api>,
    kubeconfig: tempfile::NamedTempFile,
}

async fn stand_in(mode: Mode) -> StandIn {
    let api = Arc::new(Api {
        mode,
        lists: AtomicUsize::new(0),
    });
    let app = axum::Router::new().fallback(handle).with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
    std::fs::write(
        kubeconfig.path(),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    StandIn { api, kubeconfig }
}

/// Runs `audit` against the stand-in; its output, and its peak resident memory in KiB (the
/// `ru_maxrss` of `wait4`).
// The child is reaped by `wait4`, which clippy does not see.
#[allow(clippy::zombie_processes)]
async fn audit_measured(stand_in: &StandIn, args: &[&str]) -> (Output, u64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command
        .env("KUBECONFIG", stand_in.kubeconfig.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("audit")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut child = command.spawn().expect("spawn audit");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let _ = stderr.read_to_end(&mut err);
            err
        });
        let _ = stdout.read_to_end(&mut out);
        let err = reader.join().expect("stderr reader");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it for the child this test spawned.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid pointers.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(waited, pid, "wait4");
        let status = std::os::unix::process::ExitStatusExt::from_raw(status);
        (
            Output {
                status,
                stdout: out,
                stderr: err,
            },
            u64::try_from(usage.ru_maxrss).unwrap_or(0),
        )
    })
    .await
    .expect("join")
}

/// Runs `audit` against the stand-in on a blocking thread (the stand-in runs on this runtime).
async fn audit(stand_in: &StandIn, args: &[&str]) -> (Output, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command
        .env("KUBECONFIG", stand_in.kubeconfig.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("audit")
        .args(args);
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || command.output().expect("run audit"))
        .await
        .expect("join");
    (out, start.elapsed())
}

/// This process's peak resident memory in KiB (`VmHWM`): what a process spawned from it may
/// start with (see [`streamed_list`]).
fn own_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item6_a_repeating_continue_token_ends_the_kind_with_a_loop_error() {
    let s = stand_in(Mode::SameContinue).await;
    let (out, took) = audit(&s, &["--deadline", "60"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("same continue token twice while listing cronjobs.batch"),
        "{stderr}"
    );
    assert_eq!(
        s.api.lists.load(Ordering::SeqCst),
        2,
        "stopped at the repeat"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item6_a_trickled_answer_ends_at_the_deadline_of_the_whole_run() {
    let s = stand_in(Mode::Trickle).await;
    // Each byte comes well within --timeout 30: only the run's deadline can end it.
    let (out, took) = audit(&s, &["--timeout", "30", "--deadline", "3"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("did not finish within its deadline of 3s"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item6_pages_past_the_byte_budget_are_split_an_object_past_it_is_named_and_memory_follows_the_budget()
 {
    // 60 CronJobs of 1.4 MB, listed 500 at a time: 84 MB in one answer, before.
    let s = stand_in(Mode::Large {
        count: 60,
        size: 1_400_000,
        big_size: 20 * 1024 * 1024,
    })
    .await;
    // The same listing without the byte bound (`--page-bytes` of 1 GiB: one answer of all 61, of
    // 104 MiB): the figure to compare with, in the same run.
    let (unbounded, unbounded_kib) = audit_measured(&s, &["--page-bytes", "1073741824"]).await;
    assert_eq!(
        unbounded.status.code(),
        Some(1),
        "{}",
        text(&unbounded.stderr)
    );
    // The default flags (16 MiB pages), with `-o policyreport` as the chart's CronJob runs it,
    // and with the text report.
    let (report_out, report_kib) = audit_measured(&s, &["-o", "policyreport"]).await;
    let (out, bounded_kib) = audit_measured(&s, &[]).await;
    eprintln!(
        "audit of 60 CronJobs of 1.4 MB and one of 20 MiB: peak RSS {} MiB (text) and {} MiB \
         (-o policyreport) with the default 16 MiB pages, {} MiB with one unbounded page (the \
         test process's own peak: {} MiB)",
        bounded_kib / 1024,
        report_kib / 1024,
        unbounded_kib / 1024,
        own_peak_kib() / 1024
    );
    // Memory follows the page budget, not the listing: at most the page's bytes, one object
    // decoded from them and the process itself, well under half of the unbounded run's and
    // under the chart's 256Mi with room to spare.
    for (what, kib) in [("text", bounded_kib), ("-o policyreport", report_kib)] {
        assert!(
            kib * 2 < unbounded_kib,
            "{what}: peak {kib} KiB with 16 MiB pages is not under half of {unbounded_kib} KiB unbounded"
        );
        assert!(
            kib < 128 * 1024,
            "{what}: peak {kib} KiB with 16 MiB pages, over 128 MiB"
        );
    }
    assert_eq!(
        report_out.status.code(),
        Some(2),
        "{}",
        text(&report_out.stderr)
    );
    let reports = text(&report_out.stdout);
    assert_eq!(
        reports.matches("result: fail").count(),
        60,
        "every CronJob but the one too large fails in the PolicyReport: {reports}"
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cronjobs.batch team-a/big is larger than the 16777216-byte budget"),
        "{stderr}"
    );
    let report = text(&out.stdout);
    let denied = report
        .lines()
        .filter(|l| l.starts_with("DENIED    CronJob team-a/job-"))
        .count();
    assert_eq!(
        denied, 60,
        "every CronJob but the one too large is decided: {report}"
    );
}
