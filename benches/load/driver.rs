//! The load driver: oha runs against one server, and what the server spent on them, read from
//! /proc.

use super::*;

/// CPU time of a process in microseconds: user and kernel (`utime`, `stime`); and how often its
/// threads were switched out while they could still run.
pub(crate) struct Cpu {
    pub(crate) user: f64,
    pub(crate) kernel: f64,
    pub(crate) preempted: f64,
}

pub(crate) fn cpu_us(pid: u32) -> Result<Cpu, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(Cpu {
        user: utime * 1e6 / ticks,
        kernel: stime * 1e6 / ticks,
        preempted: preemptions(pid)? as f64,
    })
}

/// The involuntary context switches of all of a process's threads (`nonvoluntary_ctxt_switches`
/// in `/proc/PID/task/TID/status`): each is a thread that could have gone on running being
/// switched out, here mostly for a load generator thread its answer has just woken.
pub(crate) fn preemptions(pid: u32) -> Result<u64, Error> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// VmHWM of a process, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM".into())
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so each run reports its own peak.
pub(crate) fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) connections: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) keep_alive: bool,
    /// How long the measured part of the run lasts.
    pub(crate) seconds: u64,
    /// A fixed number of requests instead of `seconds` (the callgrind profile).
    pub(crate) count: Option<u64>,
}

/// The first seconds of a fixed-rate run, while oha opens its connections; sent but not counted
/// in its latencies (see [`steady_state`]).
pub(crate) const RATE_SETTLE_SECS: u64 = 1;

impl Load {
    /// oha's `-z`: a fixed-rate run lasts [`RATE_SETTLE_SECS`] longer than its measured part.
    pub(crate) fn oha_seconds(&self) -> u64 {
        match self.rate {
            Some(_) => self.seconds + RATE_SETTLE_SECS,
            None => self.seconds,
        }
    }
}

/// What one run measured on one server.
#[derive(Clone, Default)]
pub(crate) struct Figures {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) cpu_us_per_req: f64,
    /// The kernel's part of `cpu_us_per_req` (system time: TCP, syscalls, wake-ups).
    pub(crate) kernel_us_per_req: f64,
    /// Involuntary context switches of the server's threads per request.
    pub(crate) preempted_per_req: f64,
    pub(crate) peak_rss_kib: u64,
    pub(crate) failures: u64,
    pub(crate) failure_detail: String,
}

pub(crate) struct Driver {
    pub(crate) oha: PathBuf,
    pub(crate) body_path: PathBuf,
    pub(crate) ca: PathBuf,
}

impl Driver {
    /// Runs oha against `target`: a JSON summary, or for a fixed rate one CSV line per answered
    /// request (see [`steady_state`]).
    pub(crate) fn oha(&self, target: &Target, load: Load) -> Result<String, Error> {
        let port = target.addr.port();
        let mut command = Command::new(&self.oha);
        command
            .arg(format!("https://{HOST}:{port}/mutate?timeout=10s"))
            .arg("--connect-to")
            .arg(format!("{HOST}:{port}:127.0.0.1:{port}"))
            .arg("--cacert")
            .arg(&self.ca)
            .args(["--http-version", "1.1", "-m", "POST"])
            .args(["-H", "Content-Type: application/json"])
            .arg("-D")
            .arg(&self.body_path)
            .args(["-c", &load.connections.to_string()])
            .args(["--no-tui", "--output-format"])
            .arg(if load.rate.is_some() { "csv" } else { "json" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match load.count {
            Some(n) => command.args(["-n", &n.to_string()]),
            None => command.args(["-z", &format!("{}s", load.oha_seconds())]),
        };
        if let Some(rate) = load.rate {
            command
                .args(["-q", &format!("{rate:.0}")])
                .arg("--latency-correction");
        }
        if !load.keep_alive {
            command.arg("--disable-keepalive");
        }
        command.env_remove("TOKIO_WORKER_THREADS");
        die_with_parent(&mut command);
        pin(&mut command, 0);
        let mut child = command.spawn()?;
        // Bounded: oha stops itself after -z; it is killed if it has not 30 s later.
        let deadline = Instant::now()
            + Duration::from_secs(if load.count.is_some() {
                300
            } else {
                load.oha_seconds() + 30
            });
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("oha did not stop in time".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = reader.join().expect("reader");
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("oha failed ({status}): {err}").into());
        }
        Ok(out)
    }

    pub(crate) fn measure(&self, target: &Target, load: Load) -> Result<Figures, Error> {
        let pid = target.pid();
        reset_peak_rss(pid);
        let cpu_before = cpu_us(pid)?;
        let out = self.oha(target, load)?;
        let cpu_after = cpu_us(pid)?;
        let peak = peak_rss_kib(pid)?;
        let answered = match load.rate {
            Some(_) => steady_state(&out, load.seconds)?,
            None => summary(&out, load.seconds)?,
        };
        let per_request = |us: f64| {
            if answered.ok_in_run > 0 {
                us / answered.ok_in_run as f64
            } else {
                f64::NAN
            }
        };
        Ok(Figures {
            requests: answered.ok_in_run,
            rps: answered.rps,
            p50_us: answered.p50_us,
            p99_us: answered.p99_us,
            p999_us: answered.p999_us,
            cpu_us_per_req: per_request(
                cpu_after.user + cpu_after.kernel - cpu_before.user - cpu_before.kernel,
            ),
            kernel_us_per_req: per_request(cpu_after.kernel - cpu_before.kernel),
            preempted_per_req: per_request(cpu_after.preempted - cpu_before.preempted),
            peak_rss_kib: peak,
            failures: answered.failures,
            failure_detail: answered.failure_detail,
        })
    }
}

/// What oha reported for one run.
pub(crate) struct Answered {
    /// Requests answered 200 in the whole run (what the server's CPU time is divided by).
    pub(crate) ok_in_run: u64,
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) failures: u64,
    pub(crate) failure_detail: String,
}

/// oha's JSON summary of a run at full speed.
pub(crate) fn summary(out: &str, seconds: u64) -> Result<Answered, Error> {
    let report: Value = serde_json::from_str(out)?;
    let ok = report["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    let mut failures = 0;
    let mut detail = Vec::new();
    if let Some(codes) = report["statusCodeDistribution"].as_object() {
        for (code, n) in codes {
            if code != "200" {
                let n = n.as_u64().unwrap_or(0);
                failures += n;
                detail.push(format!("HTTP {code}: {n}"));
            }
        }
    }
    if let Some(errors) = report["errorDistribution"].as_object() {
        for (error, n) in errors {
            // Requests cut off by -z at the end of the run are not failures.
            if error.contains("deadline") {
                continue;
            }
            let n = n.as_u64().unwrap_or(0);
            failures += n;
            detail.push(format!("{error}: {n}"));
        }
    }
    let elapsed = report["summary"]["total"]
        .as_f64()
        .filter(|t| *t > 0.0)
        .unwrap_or(seconds as f64);
    let pct = |key: &str| {
        report["latencyPercentiles"][key]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1e6
    };
    Ok(Answered {
        ok_in_run: ok,
        rps: ok as f64 / elapsed,
        p50_us: pct("p50"),
        p99_us: pct("p99"),
        p999_us: pct("p99.9"),
        failures,
        failure_detail: detail.join("; "),
    })
}

/// A fixed-rate run in steady state: oha's CSV (one line per answered request, sorted by start:
/// `request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status`, times in
/// seconds) with the requests sent in the first [`RATE_SETTLE_SECS`] left out.
///
/// Why: oha's rate clock starts before its connections exist, and the first request on each
/// connection takes 50 to 100 ms inside oha (measured with one connection and curl: the server
/// answers a new connection's first request in about 3 ms). Under `--latency-correction` the
/// requests queued meanwhile carry that wait, and they drain over the next 200 to 300 ms; at
/// 50% load that is 1 to 2% of a 5 s run, so the whole-run p99 measured oha's start, and was
/// 20 to 70 ms for every server alike. Requests later in the run keep their correction: a server
/// that falls behind still shows the queueing it caused. The CSV lists answered requests only, so
/// connection errors are not counted as failures here; they show as req/s below the rate.
pub(crate) fn steady_state(out: &str, seconds: u64) -> Result<Answered, Error> {
    let mut ok_in_run = 0u64;
    let mut failures = 0u64;
    let mut statuses: Vec<(String, u64)> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    for line in out.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [start, _, _, _, duration, _, status] = fields[..] else {
            return Err(format!("oha CSV line with {} fields: {line}", fields.len()).into());
        };
        let start: f64 = start.parse()?;
        let duration: f64 = duration.parse()?;
        if status != "200" {
            failures += 1;
            match statuses.iter_mut().find(|(s, _)| s == status) {
                Some((_, n)) => *n += 1,
                None => statuses.push((status.to_string(), 1)),
            }
            continue;
        }
        ok_in_run += 1;
        if start >= RATE_SETTLE_SECS as f64 {
            latencies.push(duration);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1] * 1e6
    };
    Ok(Answered {
        ok_in_run,
        rps: latencies.len() as f64 / seconds as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        failures,
        failure_detail: statuses
            .iter()
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

pub(crate) fn oha_path() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("OHA") {
        return Ok(PathBuf::from(path));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-tools.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{script} failed: {}", out.status).into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The time from spawning `serve` to `/readyz` answering 200, `n` times.
pub(crate) fn startup_times(bin: &Path, certs: &Certs, n: usize) -> Result<Vec<f64>, Error> {
    let mut times = Vec::new();
    for _ in 0..n {
        let addr = free_addr()?;
        let (mut target, ready) = start(
            "serve",
            serve_command(bin, certs, addr),
            addr,
            &certs.client,
        )?;
        stop(&mut target.child);
        times.push(ready.as_secs_f64() * 1e3);
    }
    Ok(times)
}

pub(crate) fn check_answer(
    target: &Target,
    client: &Arc<rustls::ClientConfig>,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    let (status, answer) = https(client, target.addr, "POST", "/mutate?timeout=10s", body)?;
    let value: Value = serde_json::from_slice(&answer)?;
    if status != 200 || value["response"]["uid"] != UID || value["response"]["allowed"] != true {
        return Err(format!(
            "{} answered {status}: {}",
            target.name,
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    if target.name == "serve" && value["response"]["patch"].as_str().is_none() {
        return Err(format!("serve answered no patch: {value}").into());
    }
    Ok(answer)
}
