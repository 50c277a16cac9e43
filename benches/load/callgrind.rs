//! `--callgrind`: where the instructions of one request go, by part, under valgrind.

use super::*;

/// The rows of the profile: a label and what to look for in callgrind_annotate's inclusive list
/// (`HANDLER` is the request handler of each server; `MALLOC` sums the global allocator's alloc, dealloc and realloc).
pub(crate) const PARTS: [(&str, &str); 10] = [
    ("whole process", "PROGRAM TOTALS"),
    ("axum handler: body read and answer", "HANDLER"),
    ("review decode", "wasm_admission::core::review::decode ["),
    (
        "engine and response (review::answer)",
        "wasm_admission::core::review::answer [",
    ),
    (
        "the JSON log line",
        "tracing_core::event::Event::dispatch [",
    ),
    (
        "metrics",
        "wasm_admission::commands::serve::metrics::Metrics::review [",
    ),
    (
        "HTTP/1.1 request head parse",
        "as hyper::proto::h1::Http1Transaction>::parse [",
    ),
    (
        "TLS decrypt of the request",
        "Tls13MessageDecrypter as rustls::crypto::cipher::MessageDecrypter>::decrypt [",
    ),
    (
        "TLS encrypt and write of the response",
        "hyper::proto::h1::io::Buffered<T,B>::poll_flush [",
    ),
    ("allocator: alloc, dealloc, realloc (everywhere)", "MALLOC"),
];

/// Starts `inner` under `valgrind --tool=callgrind`, with the cache and branch simulation when
/// `cache_sim`.
pub(crate) fn under_callgrind(inner: &Command, out: &Path, cache_sim: bool) -> Command {
    let mut command = Command::new("valgrind");
    command.arg("--tool=callgrind");
    if cache_sim {
        command.args(["--cache-sim=yes", "--branch-sim=yes"]);
    }
    command
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    die_with_parent(&mut command);
    command
}

pub(crate) fn callgrind(
    bin: &Path,
    oha: &Path,
    certs: &Certs,
    body_path: &Path,
    cache_sim: bool,
) -> Result<(), Error> {
    const WARM: u64 = 200;
    const MEASURED: u64 = 2000;
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err("valgrind not found (apt-get install valgrind)".into());
    }
    println!(
        "== instructions per request under callgrind: {MEASURED} requests on one keep-alive connection after {WARM} not counted"
    );
    let driver = Driver {
        oha: oha.to_path_buf(),
        body_path: body_path.to_path_buf(),
        ca: certs.ca.clone(),
    };
    // `CALLGRIND_DIR=/some/dir` keeps the dumps there (for `callgrind_annotate`); else they go
    // with the run's temporary folder.
    let kept = std::env::var_os("CALLGRIND_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(certs._dir.path());
    let mut columns = Vec::new();
    let mut simulated = Vec::new();
    // The answer floor differs from the transport floor only in the bytes it encrypts and sends.
    for name in [NAMES[TRANSPORT], NAMES[DOM], NAMES[SERVE]] {
        let addr = free_addr()?;
        let inner = match name {
            "transport floor" => floor_command("transport", certs, addr)?,
            "DOM floor" => floor_command("dom", certs, addr)?,
            _ => serve_command(bin, certs, addr),
        };
        let out = dir.join(format!("callgrind.{}", name.replace(' ', "-")));
        let (mut target, _) = start(
            name,
            under_callgrind(&inner, &out, cache_sim),
            addr,
            &certs.client,
        )?;
        let load = |count| Load {
            connections: 1,
            rate: None,
            keep_alive: true,
            seconds: 0,
            count: Some(count),
        };
        driver.oha(&target, load(WARM))?;
        let control = |what: &str| -> Result<(), Error> {
            let status = Command::new("callgrind_control")
                .arg(what)
                .arg(target.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("callgrind_control {what} failed").into())
            }
        };
        control("-z")?;
        let report = driver.oha(&target, load(MEASURED))?;
        control("-d")?;
        stop(&mut target.child);
        let ok = summary(&report, 0)?.ok_in_run;
        if ok != MEASURED {
            return Err(format!("{name}: {ok} of {MEASURED} requests answered 200").into());
        }
        let dump = PathBuf::from(format!("{}.1", out.display()));
        let annotate = Command::new("callgrind_annotate")
            .args(["--inclusive=yes", "--threshold=100", "--show=Ir"])
            .arg(&dump)
            .output()?;
        let text = String::from_utf8_lossy(&annotate.stdout);
        if cache_sim {
            let totals = Command::new("callgrind_annotate").arg(&dump).output()?;
            simulated.push(simulated_totals(
                &String::from_utf8_lossy(&totals.stdout),
                MEASURED,
            )?);
        }
        // "  1,234,567 ( 1.23%)  ???:symbol [object]" -> (1234567, "???:symbol [object]")
        let costs: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|line| {
                let (count, rest) = line.trim_start().split_once(' ')?;
                let count = count.replace(',', "").parse().ok()?;
                Some((count, rest.split_once(')')?.1.trim()))
            })
            .collect();
        let first = |hit: &dyn Fn(&str) -> bool| {
            costs
                .iter()
                .find(|(_, symbol)| hit(symbol))
                .map_or(0, |(c, _)| *c)
        };
        let sums: Vec<u64> = PARTS
            .iter()
            .map(|(_, needle)| {
                let total = match *needle {
                    "PROGRAM TOTALS" => first(&|s| s == "PROGRAM TOTALS"),
                    "HANDLER" => first(&|s| {
                        s.contains("as axum::handler::Handler<")
                            && s.contains(">::call::{{closure}} [")
                    }),
                    // The global allocator's entry points, whichever allocator is behind them.
                    "MALLOC" => ["alloc", "dealloc", "realloc"]
                        .iter()
                        .map(|f| first(&|s| s.starts_with(&format!("???:__rustc::__rust_{f} ["))))
                        .sum(),
                    // Recursive entries (`name'2`) are counted in their outermost one.
                    n => first(&|s| s.contains(n) && !s.contains('\'')),
                };
                total / MEASURED
            })
            .collect();
        columns.push(sums);
    }
    println!("\n| part (inclusive) | transport floor | DOM floor | serve |");
    println!("| --- | ---: | ---: | ---: |");
    for (i, (part, _)) in PARTS.iter().enumerate() {
        let cell = |c: &Vec<u64>| {
            if c[i] == 0 {
                "-".to_string()
            } else {
                c[i].to_string()
            }
        };
        println!(
            "| {} | {} | {} | {} |",
            part,
            cell(&columns[0]),
            cell(&columns[1]),
            cell(&columns[2])
        );
    }
    let serve = &columns[2];
    println!(
        "\nserve outside the review's decode, engine and response: {} instructions per request ({} in the transport floor, all told)",
        serve[0].saturating_sub(serve[2] + serve[3]),
        columns[0][0]
    );
    println!(
        "(\"-\": not on that server's path, or inlined by the release profile's LTO; for every row, run with CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16)"
    );
    if cache_sim {
        println!(
            "\n== per request, callgrind's simulated caches and branch predictors (whole process)\n"
        );
        println!("| event | transport floor | DOM floor | serve |");
        println!("| --- | ---: | ---: | ---: |");
        for (i, (label, _)) in SIMULATED.iter().enumerate() {
            let cells: Vec<String> = simulated.iter().map(|s| s[i].to_string()).collect();
            println!("| {label} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}

/// The simulated events shown, each a sum of callgrind event names.
pub(crate) const SIMULATED: [(&str, &[&str]); 5] = [
    ("instructions", &["Ir"]),
    ("L1 instruction-cache misses", &["I1mr"]),
    ("L1 data-cache misses (read and write)", &["D1mr", "D1mw"]),
    ("conditional branches mispredicted", &["Bcm"]),
    ("indirect branches mispredicted", &["Bim"]),
];

/// The [`SIMULATED`] events per request, from callgrind_annotate's `Events shown:` header and
/// `PROGRAM TOTALS` line.
pub(crate) fn simulated_totals(annotate: &str, requests: u64) -> Result<Vec<u64>, Error> {
    let names: Vec<&str> = annotate
        .lines()
        .find_map(|l| l.strip_prefix("Events shown:"))
        .ok_or("callgrind_annotate printed no events")?
        .split_whitespace()
        .collect();
    let totals: Vec<u64> = annotate
        .lines()
        .find(|l| l.ends_with("PROGRAM TOTALS"))
        .ok_or("callgrind_annotate printed no totals")?
        .split_whitespace()
        // A count, or "." for none; the percentages and the label are not counts.
        .filter_map(|w| match w {
            "." => Some(0),
            _ => w.replace(',', "").parse().ok(),
        })
        .collect();
    SIMULATED
        .iter()
        .map(|(_, events)| {
            events
                .iter()
                .map(|e| {
                    names
                        .iter()
                        .position(|n| n == e)
                        .and_then(|i| totals.get(i))
                        .copied()
                        .ok_or_else(|| format!("no {e} in callgrind's output").into())
                })
                .sum::<Result<u64, Error>>()
                .map(|total| total / requests)
        })
        .collect()
}
