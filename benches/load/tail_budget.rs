//! `--tail-budget`: how much CPU per request a server may add to the transport floor's and keep
//! the p99 target.

use super::*;

/// The servers of `--tail-budget`: a name and a floor mode (`None`: `serve`). The transport floor
/// twice, so that the spread between two identical servers shows; the lean floor; the transport
/// floor plus a known amount of CPU work per request; the DOM floor and `serve`.
pub(crate) const BUDGET_SERVERS: [(&str, Option<&str>); 10] = [
    ("transport floor", Some("transport")),
    ("transport floor, second copy", Some("transport")),
    ("lean floor (reads request.uid)", Some("lean")),
    ("transport floor + 2 µs", Some("spin-2")),
    ("transport floor + 3 µs", Some("spin-3")),
    ("transport floor + 4 µs", Some("spin-4")),
    ("transport floor + 6 µs", Some("spin-6")),
    ("transport floor + 8 µs", Some("spin-8")),
    ("DOM floor", Some("dom")),
    ("serve", None),
];

/// `--tail-budget`: how much CPU a server may add per request to the transport floor's and keep
/// the p99 target (at the fixed rate of half the transport floor's maximum, p99 ≤ 1.2 × the
/// transport floor's). Each server of [`BUDGET_SERVERS`] is measured at full speed at 25
/// keep-alive connections (its maximum and its CPU per request), then at that fixed rate (steady
/// state, as in the main run). The ratio of the two transport floors is the noise of the ratio
/// itself; the lean floor is the least any correct webhook does.
pub(crate) fn tail_budget(
    options: &Options,
    bin: &Path,
    certs: &Certs,
    body: &[u8],
    oha: PathBuf,
    body_path: PathBuf,
) -> Result<(), Error> {
    let mut reaper = Reaper::default();
    for (name, mode) in BUDGET_SERVERS {
        let addr = free_addr()?;
        let command = match mode {
            Some(mode) => floor_command(mode, certs, addr)?,
            None => serve_command(bin, certs, addr),
        };
        let (target, _) = start(name, command, addr, &certs.client)?;
        check_answer(&target, &certs.client, body)?;
        reaper.0.push(target);
    }
    let driver = Driver {
        oha,
        body_path,
        ca: certs.ca.clone(),
    };
    warm_up(&driver, &reaper.0, options.warmup)?;
    let full = |rate| Load {
        connections: 25,
        rate,
        keep_alive: true,
        seconds: options.duration,
        count: None,
    };
    eprintln!("-- keep-alive, 25 conn");
    let at_max = measure_rounds(&driver, &reaper.0, full(None), options.rounds)?;
    let rate = (at_max[0].rps * 0.5).max(1.0);
    eprintln!("-- fixed {rate:.0} req/s, 25 conn");
    let at_rate = measure_rounds(&driver, &reaper.0, full(Some(rate)), options.rounds)?;
    drop(reaper);

    let base = &at_rate[0];
    println!(
        "\nfixed rate {rate:.0} req/s (half the transport floor's maximum), 25 keep-alive conn, steady state after {RATE_SETTLE_SECS} s; medians of {} round(s)",
        options.rounds
    );
    println!(
        "\n| server | max req/s | CPU µs/req at max | rate ÷ its max | CPU µs/req at rate | extra CPU µs/req | p50 µs | p99 µs | p99 ÷ transport floor's | p99 target (≤ 1.2×) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (((name, _), max), at) in BUDGET_SERVERS.iter().zip(&at_max).zip(&at_rate) {
        let ratio = at.p99_us / base.p99_us;
        println!(
            "| {name} | {:.0} | {:.1} | {:.0}% | {:.1} | {:+.1} | {:.0} | {:.0} | {ratio:.2}× | {} |",
            max.rps,
            max.cpu_us_per_req,
            100.0 * rate / max.rps,
            at.cpu_us_per_req,
            at.cpu_us_per_req - base.cpu_us_per_req,
            at.p50_us,
            at.p99_us,
            if ratio <= 1.2 { "met" } else { "missed" },
        );
    }
    let failed: u64 = at_max.iter().chain(&at_rate).map(|f| f.failures).sum();
    println!(
        "\nfailed requests: {failed}; load average after: {}",
        loadavg()
    );
    Ok(())
}
