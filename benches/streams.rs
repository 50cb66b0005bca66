//! 100,000 concurrent streams: `cargo bench --bench streams`.
//!
//! Starts `perfscope sim` in fixed-delay mode (first token after TTFT_MS, then one
//! token every 100 ms) and runs `perfscope perf --parallel STREAMS --number STREAMS`
//! against it, arrivals ramped by `--rate`, connections opened during an unrecorded
//! warmup and spread over `--source-addrs 127.0.0.2-127.0.0.9` (one address runs out
//! of ephemeral ports at about 28k connections to one server). Each request lasts
//! longer than the ramp, so all STREAMS are in flight at once.
//!
//! When one process may not hold STREAMS connections (the open-file hard limit, which
//! only root with CAP_SYS_RESOURCE can raise), the same load runs as shards
//! (`--shard-count`) of one run, against as many simulator processes sharing the port
//! (`--reuse-port`), and is merged with `perfscope merge`.
//!
//! Prints: peak concurrency, successes, each client process's peak RSS and the RSS
//! per stream above a 100-stream baseline, and the mean and p99 TTFT against the
//! injected delay (their difference bounds the client's error; it includes the
//! simulator's own lateness).
//!
//! Environment: STREAMS (100000), TTFT_MS (30000), RATE (4000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_perfscope");

fn env_or(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Waits for a child; returns its exit code and peak RSS in KiB (wait4's rusage).
fn wait_rss(c: Child) -> anyhow::Result<(i32, i64)> {
    let pid = c.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    anyhow::ensure!(r == pid, "wait4 failed");
    std::mem::forget(c);
    Ok((libc::WEXITSTATUS(status), ru.ru_maxrss))
}

fn hard_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    // Root with CAP_SYS_RESOURCE may go past it (perfscope tries); test that here.
    let want = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    // SAFETY: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return 1 << 20;
    }
    r.rlim_max
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[allow(clippy::too_many_arguments)]
fn client(
    url: &str,
    out: &Path,
    streams: u64,
    rate: f64,
    shard: Option<(u64, u64, f64)>,
) -> anyhow::Result<Child> {
    let (s, r) = (streams.to_string(), rate.to_string());
    let mut c = Command::new(BIN);
    #[rustfmt::skip]
    c.args([
        "perf", "--url", url, "--model", "m", "--dataset", "random",
        "--min-prompt-length", "20", "--max-prompt-length", "20", "--max-tokens", "4",
        "--parallel", &s, "--number", &s, "--warmup-num", &s, "--rate", &r,
        "--source-addrs", "127.0.0.2-127.0.0.9", "--metrics-addr", "off",
        "--server-metrics", "off", "--no-timestamp", "--log-every-n-query", "100000000",
        "--outputs-dir", out.to_str().unwrap_or("."), "--run-id", "streams-bench",
    ]);
    if let Some((i, n, at)) = shard {
        c.args([
            "--shard-index",
            &i.to_string(),
            "--shard-count",
            &n.to_string(),
        ]);
        c.args(["--start-at", &format!("{at:.3}")]);
    }
    Ok(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?)
}

fn summary(dir: &Path, streams: u64) -> anyhow::Result<serde_json::Value> {
    let p = dir
        .join(format!("parallel_{streams}_number_{streams}"))
        .join("benchmark_summary.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
}

fn percentile(dir: &Path, streams: u64, label: &str, key: &str) -> anyhow::Result<f64> {
    let p = dir
        .join(format!("parallel_{streams}_number_{streams}"))
        .join("benchmark_percentile.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(p)?)?;
    rows.iter()
        .find(|r| r["Percentiles"] == label)
        .and_then(|r| r[key].as_f64())
        .ok_or_else(|| anyhow::anyhow!("no {key} at {label}"))
}

fn main() -> anyhow::Result<()> {
    let streams = env_or("STREAMS", 100_000.0) as u64;
    let ttft_ms = env_or("TTFT_MS", 30_000.0);
    let rate = env_or("RATE", 4000.0);
    let limit = hard_fd_limit();
    // Each process holds its connections plus about a thousand other descriptors.
    let per_process = limit.saturating_sub(1500).max(1000);
    let shards = streams.div_ceil(per_process);
    println!(
        "{streams} streams, TTFT {ttft_ms} ms, ramp {rate} req/s; open-file hard limit {limit}: {} client process(es) and {} simulator process(es)",
        shards, shards
    );
    let port = free_port()?;
    let (tt, it) = (ttft_ms.to_string(), "100".to_string());
    let sims: Vec<Child> = (0..shards)
        .map(|_| {
            Command::new(BIN)
                .args([
                    "sim",
                    "--port",
                    &port.to_string(),
                    "--ttft-ms",
                    &tt,
                    "--itl-ms",
                    &it,
                ])
                .arg("--reuse-port")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(std::time::Duration::from_millis(800));
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let tmp = tempfile::tempdir()?;

    // The baseline: one process at 100 streams.
    let base_out = tmp.path().join("baseline");
    let (code, base_rss) = wait_rss(client(&url, &base_out, 100, rate.min(1000.0), None)?)?;
    anyhow::ensure!(code == 0, "baseline run failed ({code})");

    let t0 = std::time::Instant::now();
    // The barrier lines up the measured load: after the warmup (its ramp, then one
    // request's duration), with a margin for the processes' setup.
    let warmup_s = streams as f64 / rate + ttft_ms / 1000.0 + 1.0;
    let at = perfscope::trackers::now_unix() + 5.0 + shards as f64 + warmup_s * 1.2;
    let children: Vec<(PathBuf, Child)> = (0..shards)
        .map(|i| {
            let out = tmp.path().join(format!("shard{i}"));
            let shard = (shards > 1).then_some((i, shards, at));
            client(&url, &out, streams, rate, shard).map(|c| (out.join("m"), c))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut dirs = Vec::new();
    for (i, (dir, c)) in children.into_iter().enumerate() {
        let (code, rss) = wait_rss(c)?;
        let mine = streams / shards + u64::from((i as u64) < streams % shards);
        println!(
            "client {i}: exit {code}, {mine} streams, peak RSS {:.1} MiB, {:.2} KiB per stream above the baseline ({:.1} MiB at 100 streams)",
            rss as f64 / 1024.0,
            (rss - base_rss) as f64 / (mine - 100) as f64,
            base_rss as f64 / 1024.0
        );
        dirs.push(dir);
    }
    let wall = t0.elapsed().as_secs_f64();
    let dir = if shards > 1 {
        let merged = tmp.path().join("merged/m");
        let o = Command::new(BIN)
            .arg("merge")
            .arg(&merged)
            .args(&dirs)
            .output()?;
        anyhow::ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        merged
    } else {
        dirs[0].clone()
    };
    let s = summary(&dir, streams)?;
    let ttft = s["Avg TTFT (ms)"].as_f64().unwrap_or(f64::NAN);
    let p99 = percentile(&dir, streams, "99%", "TTFT (ms)")?;
    println!(
        "{} of {} succeeded; peak concurrency {}; mean TTFT {ttft:.3} ms (injected {ttft_ms}, error {:+.3} ms), p99 TTFT {p99:.3} ms (error {:+.3} ms); wall {wall:.1} s",
        s["Success Requests"],
        s["Total Requests"],
        s["Measured Concurrency (peak)"],
        ttft - ttft_ms,
        p99 - ttft_ms
    );
    for mut c in sims {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(())
}
