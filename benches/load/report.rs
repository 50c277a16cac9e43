//! The load runs in order, their medians, and the report: the table, the ratios to the floors
//! and the targets.

use super::*;

/// The servers, in the order they are measured and printed; the indexes below name them.
pub(crate) const NAMES: [&str; 4] = ["transport floor", "answer floor", "DOM floor", "serve"];
pub(crate) const TRANSPORT: usize = 0;
pub(crate) const ANSWER: usize = 1;
pub(crate) const DOM: usize = 2;
pub(crate) const SERVE: usize = 3;

pub(crate) fn run(options: &Options) -> Result<(), Error> {
    let bin = options
        .serve_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wasm-admission")));
    let oha = oha_path()?;
    let oha_version = Command::new(&oha).arg("--version").output()?;
    let certs = make_certs(&bin)?;
    let body = review_body();
    let body_path = certs._dir.path().join("review.json");
    std::fs::write(&body_path, &body)?;

    if options.callgrind {
        return callgrind(&bin, &oha, &certs, &body_path, options.cache_sim);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("== wasm-admission load benchmark");
    println!(
        "serve: {} (tokio workers: default, one per core; {cores} cores)",
        bin.display(),
    );
    if options.pinned {
        if cores < 2 {
            return Err("--pinned needs two CPUs".into());
        }
        PINNED.store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "--pinned: every server on CPU 1 alone (one tokio worker each), oha on CPU 0; a diagnostic, the targets are measured without it"
        );
    }
    println!(
        "load: {} over HTTP/1.1 + TLS (rustls, ECDSA P-256 certificate from `wasm-admission certs`), {} s per run, {} round(s), servers interleaved (medians printed)",
        String::from_utf8_lossy(&oha_version.stdout).trim(),
        options.duration,
        options.rounds
    );
    println!(
        "body: AdmissionReview CREATE of a Wasm Deployment, {} bytes (POST /mutate?timeout=10s)",
        body.len()
    );
    println!("load average before: {}", loadavg());
    if options.tail_budget {
        return tail_budget(options, &bin, &certs, &body, oha, body_path);
    }

    // Start to ready.
    let mut starts = startup_times(&bin, &certs, options.starts)?;
    let start_median = median(&mut starts);
    println!(
        "\nstart to ready (spawn `serve` until GET /readyz answers 200), {} starts: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        starts.len(),
        start_median,
        starts[0],
        starts[starts.len() - 1]
    );

    // The four servers, each in its own process; `serve` first, as the answer floor answers
    // what it answers.
    let answer_path = certs._dir.path().join("answer.json");
    let mut started = Vec::new();
    for i in [SERVE, TRANSPORT, ANSWER, DOM] {
        let name = NAMES[i];
        let addr = free_addr()?;
        let command = match i {
            TRANSPORT => floor_command("transport", &certs, addr)?,
            ANSWER => {
                let mut command = floor_command("answer", &certs, addr)?;
                command.env(FLOOR_ANSWER_ENV, &answer_path);
                command
            }
            DOM => floor_command("dom", &certs, addr)?,
            _ => serve_command(&bin, &certs, addr),
        };
        let (target, _) = start(name, command, addr, &certs.client)?;
        let answer = check_answer(&target, &certs.client, &body)?;
        if i == SERVE {
            std::fs::write(&answer_path, &answer)?;
        }
        println!(
            "{name}: pid {}, answer {} bytes",
            target.pid(),
            answer.len()
        );
        started.push((i, target));
    }
    started.sort_by_key(|(i, _)| *i);
    let mut reaper = Reaper::default();
    reaper.0 = started.into_iter().map(|(_, target)| target).collect();
    let driver = Driver {
        oha,
        body_path,
        ca: certs.ca.clone(),
    };

    warm_up(&driver, &reaper.0, options.warmup)?;

    let seconds = options.duration;
    let mut runs: Vec<(String, Vec<Figures>)> = Vec::new();
    let mut measure_all = |label: String, load: Load| -> Result<Vec<Figures>, Error> {
        eprintln!("-- {label}");
        let figures = measure_rounds(&driver, &reaper.0, load, options.rounds)?;
        runs.push((label, figures.clone()));
        Ok(figures)
    };
    let mut at_25 = Vec::new();
    for connections in [1, 8, 25, 64] {
        let figures = measure_all(
            format!("keep-alive, {connections} conn"),
            Load {
                connections,
                rate: None,
                keep_alive: true,
                seconds,
                count: None,
            },
        )?;
        if connections == 25 {
            at_25 = figures;
        }
    }
    let rate = (at_25[TRANSPORT].rps * 0.5).max(1.0);
    let at_rate = measure_all(
        format!("fixed {rate:.0} req/s, 25 conn, after {RATE_SETTLE_SECS} s"),
        Load {
            connections: 25,
            rate: Some(rate),
            keep_alive: true,
            seconds,
            count: None,
        },
    )?;
    let new_conn = measure_all(
        "new conn per request, 25 conn".to_string(),
        Load {
            connections: 25,
            rate: None,
            keep_alive: false,
            seconds,
            count: None,
        },
    )?;
    let rss_kib: Vec<u64> = reaper
        .0
        .iter()
        .map(|t| peak_rss_kib(t.pid()).unwrap_or(0))
        .collect();
    drop(reaper);

    print_table(&runs);
    let peaks: Vec<String> = NAMES
        .iter()
        .zip(&rss_kib)
        .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / 1024.0))
        .collect();
    println!(
        "\nlifetime peak RSS (VmHWM at the end): {}",
        peaks.join(", ")
    );
    let failed: u64 = runs.iter().flat_map(|(_, f)| f).map(|f| f.failures).sum();
    let answered: u64 = runs.iter().flat_map(|(_, f)| f).map(|f| f.requests).sum();
    println!(
        "requests answered 200: {answered}; failed (another status, or an error; requests cut off by the end of a run excluded): {failed}"
    );

    // Targets.
    let serve_peak_mib = runs
        .iter()
        .map(|(_, f)| f[SERVE].peak_rss_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let targets = [
        Goal {
            what: "throughput, 25 keep-alive conn, vs transport floor",
            measured: at_25[SERVE].rps / at_25[TRANSPORT].rps,
            limit: 0.6,
            at_least: true,
            unit: "×",
        },
        Goal {
            what: "p99 at 50% of transport max rate, vs transport floor's",
            measured: at_rate[SERVE].p99_us / at_rate[TRANSPORT].p99_us,
            limit: 1.2,
            at_least: false,
            unit: "×",
        },
        Goal {
            what: "peak RSS of serve under load (MiB)",
            measured: serve_peak_mib,
            limit: 20.0,
            at_least: false,
            unit: " MiB",
        },
        Goal {
            what: "start to ready, median (ms)",
            measured: start_median,
            limit: 50.0,
            at_least: false,
            unit: " ms",
        },
        Goal {
            what: "new-connection throughput vs transport floor",
            measured: new_conn[SERVE].rps / new_conn[TRANSPORT].rps,
            limit: 0.9,
            at_least: true,
            unit: "×",
        },
    ];
    println!("\n| target | measured | limit | result |");
    println!("| --- | ---: | ---: | --- |");
    let mut all = true;
    for t in &targets {
        let pass = if t.at_least {
            t.measured >= t.limit
        } else {
            t.measured <= t.limit
        };
        all &= pass;
        println!(
            "| {} | {:.3}{} | {} {}{} | {}, {:.2}× the {} |",
            t.what,
            t.measured,
            t.unit,
            if t.at_least { "≥" } else { "≤" },
            t.limit,
            t.unit,
            if pass { "pass" } else { "FAIL" },
            t.measured / t.limit,
            if t.at_least { "minimum" } else { "maximum" },
        );
    }
    println!(
        "\nnot a target: serve ÷ answer floor at 25 keep-alive conn (the same bytes on the wire, so the cost of deciding): {:.2}× the throughput, {:.2}× the CPU per request",
        at_25[SERVE].rps / at_25[ANSWER].rps,
        at_25[SERVE].cpu_us_per_req / at_25[ANSWER].cpu_us_per_req
    );
    // Tail latency at a fixed rate depends most on how close the rate is to the server's own
    // maximum (on 2 shared cores, with oha sending in bursts each millisecond).
    let shares: Vec<String> = NAMES
        .iter()
        .zip(&at_25)
        .map(|(name, f)| {
            let article = if *name == "serve" { "" } else { "the " };
            format!("{:.0}% of {article}{name}'s", 100.0 * rate / f.rps)
        })
        .collect();
    println!(
        "not a target: the fixed rate ({rate:.0} req/s) is {} maximum at 25 keep-alive conn",
        shares.join(", ")
    );
    println!(
        "\n{}; load average after: {}",
        if all {
            "every target met"
        } else {
            "some targets missed"
        },
        loadavg()
    );
    Ok(())
}

/// Warm-up: connections, allocator, page cache; not counted.
pub(crate) fn warm_up(driver: &Driver, targets: &[Target], seconds: u64) -> Result<(), Error> {
    for target in targets {
        driver.measure(
            target,
            Load {
                connections: 25,
                rate: None,
                keep_alive: true,
                seconds,
                count: None,
            },
        )?;
    }
    Ok(())
}

/// Every server under `load`, `rounds` times; the median figures of each. The rounds interleave
/// the servers, so a burst of other work on the machine hits all of them.
pub(crate) fn measure_rounds(
    driver: &Driver,
    targets: &[Target],
    load: Load,
    rounds: usize,
) -> Result<Vec<Figures>, Error> {
    let mut each: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (target, figures) in targets.iter().zip(&mut each) {
            let f = driver.measure(target, load)?;
            if f.failures > 0 {
                eprintln!(
                    "   {}: {} failed requests: {}",
                    target.name, f.failures, f.failure_detail
                );
            }
            figures.push(f);
        }
    }
    Ok(each.iter().map(|f| median_figures(f)).collect())
}

/// The median of each figure over the rounds (requests and failures: the sums).
pub(crate) fn median_figures(rounds: &[Figures]) -> Figures {
    let mid = |get: &dyn Fn(&Figures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(get).collect();
        median(&mut v)
    };
    Figures {
        requests: rounds.iter().map(|f| f.requests).sum(),
        rps: mid(&|f| f.rps),
        p50_us: mid(&|f| f.p50_us),
        p99_us: mid(&|f| f.p99_us),
        p999_us: mid(&|f| f.p999_us),
        cpu_us_per_req: mid(&|f| f.cpu_us_per_req),
        kernel_us_per_req: mid(&|f| f.kernel_us_per_req),
        preempted_per_req: mid(&|f| f.preempted_per_req),
        peak_rss_kib: rounds.iter().map(|f| f.peak_rss_kib).max().unwrap_or(0),
        failures: rounds.iter().map(|f| f.failures).sum(),
        failure_detail: rounds
            .iter()
            .map(|f| f.failure_detail.as_str())
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

pub(crate) struct Goal {
    pub(crate) what: &'static str,
    pub(crate) measured: f64,
    pub(crate) limit: f64,
    pub(crate) at_least: bool,
    pub(crate) unit: &'static str,
}

pub(crate) fn print_table(runs: &[(String, Vec<Figures>)]) {
    println!(
        "\n| run | server | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req | of which kernel | preempted/req | peak RSS MiB |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, figures) in runs {
        for (name, f) in NAMES.iter().zip(figures) {
            println!(
                "| {label} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} |",
                f.rps,
                f.p50_us,
                f.p99_us,
                f.p999_us,
                f.cpu_us_per_req,
                f.kernel_us_per_req,
                f.preempted_per_req,
                f.peak_rss_kib as f64 / 1024.0
            );
        }
        let serve = &figures[SERVE];
        for (i, floor) in [(TRANSPORT, "transport"), (ANSWER, "answer"), (DOM, "DOM")] {
            let fl = &figures[i];
            println!(
                "| {label} | serve ÷ {floor} | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
                serve.rps / fl.rps,
                serve.p50_us / fl.p50_us,
                serve.p99_us / fl.p99_us,
                serve.p999_us / fl.p999_us,
                serve.cpu_us_per_req / fl.cpu_us_per_req,
                serve.kernel_us_per_req / fl.kernel_us_per_req,
                serve.preempted_per_req / fl.preempted_per_req,
                serve.peak_rss_kib as f64 / fl.peak_rss_kib as f64
            );
        }
    }
}
