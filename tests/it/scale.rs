//! Scale-out: shard processes against one in-process simulator, their exact merge,
//! the merge's refusals, the clock offset, and `compare`.

use crate::common;
use perfscope::sim::SimConfig;
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfscope"))
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `count` shard processes at once; returns each shard's run directory.
fn run_shards(url: &str, out: &Path, count: u64, extra: &[&str]) -> Vec<PathBuf> {
    let children: Vec<_> = (0..count)
        .map(|i| {
            let dir = out.join(format!("shard{i}"));
            #[rustfmt::skip]
            let child = bin()
                .args([
                    "perf", "--url", url, "--model", "m", "--dataset", "random",
                    "--min-prompt-length", "40", "--max-prompt-length", "40", "--max-tokens", "12",
                    "--metrics-addr", "off", "--no-timestamp",
                    "--outputs-dir", dir.to_str().unwrap(), "--shard-count", &count.to_string(),
                ])
                .args(extra)
                // The Indexed Job's variable gives the index.
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (child, dir.join("m"))
        })
        .collect();
    children
        .into_iter()
        .map(|(c, d)| {
            ok(&c.wait_with_output().unwrap());
            d
        })
        .collect()
}

fn merge(out: &Path, dirs: &[PathBuf]) -> Output {
    bin().arg("merge").arg(out).args(dirs).output().unwrap()
}

/// The summary of the union of the shards' rows, recomputed from the shard
/// databases alone: clock times moved by each shard's `started_unix`.
struct Union {
    total: f64,
    ok: f64,
    window: f64,
    avg_latency: f64,
    avg_ttft_ms: f64,
    completion: f64,
    prompt: f64,
}

fn union(dbs: &[PathBuf]) -> Union {
    let mut rows: Vec<(f64, f64, bool, f64, f64, f64, f64)> = Vec::new();
    let t0 = dbs
        .iter()
        .map(|d| {
            Connection::open(d)
                .unwrap()
                .query_row("SELECT started_unix FROM run", [], |r| r.get::<_, f64>(0))
                .unwrap()
        })
        .fold(f64::INFINITY, f64::min);
    for d in dbs {
        let c = Connection::open(d).unwrap();
        let started: f64 = c
            .query_row("SELECT started_unix FROM run", [], |r| r.get(0))
            .unwrap();
        let shift = started - t0;
        rows.extend(common::rows(
            &c,
            "SELECT start_time, completed_time, success, latency, first_chunk_latency, \
             prompt_tokens, completion_tokens FROM result",
            |r| {
                Ok((
                    r.get::<_, f64>(0)? + shift,
                    r.get::<_, f64>(1)? + shift,
                    r.get::<_, i64>(2)? == 1,
                    r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                    r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
                    r.get::<_, Option<i64>>(5)?.unwrap_or(0) as f64,
                    r.get::<_, Option<i64>>(6)?.unwrap_or(0) as f64,
                ))
            },
        ));
    }
    let okr: Vec<_> = rows.iter().filter(|r| r.2).collect();
    let n = okr.len() as f64;
    let start = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let end = rows.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    Union {
        total: rows.len() as f64,
        ok: n,
        window: end - start,
        avg_latency: okr.iter().map(|r| r.3).sum::<f64>() / n,
        avg_ttft_ms: okr.iter().map(|r| r.4).sum::<f64>() / n * 1000.0,
        completion: okr.iter().map(|r| r.6).sum(),
        prompt: okr.iter().map(|r| r.5).sum(),
    }
}

fn close(a: &Value, b: f64, dp: i32) {
    let a = a.as_f64().unwrap_or(f64::NAN);
    assert!(
        (a - b).abs() <= 0.5 * 10f64.powi(-dp) + 1e-9,
        "stored {a} vs recomputed {b}"
    );
}

/// Three shard processes at a paced rate against one simulator: each sends its share,
/// the union of their intended starts is the global Poisson schedule, and the merged
/// tree's figures equal a recomputation over the union of the shard rows.
#[test]
fn three_shards_merge_to_the_union_of_their_rows() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(20.0),
        itl_ms: Some(2.0),
        ..SimConfig::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let out = tempfile::tempdir().unwrap();
    // One barrier for all: the shards' paced schedules share one absolute clock.
    let start_at = perfscope::trackers::now_unix() + 4.0;
    let at = format!("{start_at:.6}");
    let dirs = run_shards(
        &url,
        out.path(),
        3,
        &[
            "--parallel",
            "7",
            "--number",
            "90",
            "--rate",
            "60",
            "--run-id",
            "itest",
            "--start-at",
            &at,
        ],
    );
    let point = "parallel_7_number_90";
    let dbs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(point).join("benchmark_data.db"))
        .collect();
    // Each shard: its share of the requests and streams, its index on every row.
    for (i, d) in dirs.iter().enumerate() {
        let s = common::json(&d.join("shard.json"));
        assert_eq!(
            (s["shard_index"].as_u64(), s["shard_count"].as_u64()),
            (Some(i as u64), Some(3))
        );
        assert_eq!(s["run_id"], "itest");
        assert!(s["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(s["clock_offset_s"].as_f64().is_some_and(|o| o.abs() < 1.5));
        let c = Connection::open(&dbs[i]).unwrap();
        let (n, shard): (i64, i64) = c
            .query_row("SELECT COUNT(*), MIN(shard) FROM result", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, shard), (30, i as i64));
        let par: i64 = c
            .query_row("SELECT parallel FROM run", [], |r| r.get(0))
            .unwrap();
        assert_eq!(par, [3, 2, 2][i]);
    }
    // The union of the intended starts, in unix time from the barrier, is the
    // unsharded run's Poisson schedule (its seed), arrival for arrival.
    let global = perfscope::scheduler::poisson_schedule(90, 60.0, 90 << 20);
    let mut offsets: Vec<f64> = Vec::new();
    for d in &dbs {
        let c = Connection::open(d).unwrap();
        let started: f64 = c
            .query_row("SELECT started_unix FROM run", [], |r| r.get(0))
            .unwrap();
        let at: f64 = at.parse().unwrap();
        offsets.extend(common::rows(&c, "SELECT intended_start FROM result", |r| {
            Ok(started + r.get::<_, f64>(0)? - at)
        }));
    }
    offsets.sort_by(f64::total_cmp);
    assert_eq!(offsets.len(), 90);
    // The wait for the barrier is not part of the run: the server is first scraped
    // just before it (BARRIER_LEAD, 0.5 s), and no request starts before it.
    let at: f64 = at.parse().unwrap();
    for d in &dbs {
        let c = Connection::open(d).unwrap();
        let (first_scrape, first_start): (f64, f64) = c
            .query_row(
                "SELECT (SELECT MIN(ts) FROM server_metrics), (SELECT MIN(start_unix) FROM result)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(first_scrape >= at - 0.6, "{first_scrape} vs {at}");
        assert!(first_start >= at - 0.002, "{first_start} vs {at}");
    }
    for (x, g) in offsets.iter().zip(&global) {
        assert!((x - g).abs() < 1e-5, "{x} vs {g}");
    }
    let merged = out.path().join("merged/m");
    ok(&merge(&merged, &dirs));
    let s = common::json(&merged.join(point).join("benchmark_summary.json"));
    let u = union(&dbs);
    close(&s["Total Requests"], u.total, 0);
    close(&s["Success Requests"], u.ok, 0);
    assert_eq!(u.ok, 90.0);
    close(&s["Test Duration (s)"], u.window, 4);
    close(&s["Avg Latency (s)"], u.avg_latency, 4);
    close(&s["Avg TTFT (ms)"], u.avg_ttft_ms, 2);
    close(&s["Req Throughput (req/s)"], u.ok / u.window, 4);
    close(&s["Output Throughput (tok/s)"], u.completion / u.window, 4);
    close(
        &s["Total Throughput (tok/s)"],
        (u.completion + u.prompt) / u.window,
        4,
    );
    close(&s["Concurrency"], 7.0, 0);
    // Every row, with its shard; the merged run's args are the global run's.
    let c = Connection::open(merged.join(point).join("benchmark_data.db")).unwrap();
    let per: Vec<(i64, i64)> = common::rows(
        &c,
        "SELECT shard, COUNT(*) FROM result GROUP BY shard ORDER BY shard",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(per, [(0, 30), (1, 30), (2, 30)]);
    let args = common::json(&merged.join(point).join("benchmark_args.json"));
    assert_eq!(
        (args["parallel"].as_i64(), args["number"].as_i64()),
        (Some(7), Some(90))
    );
    assert!(args.get("shard_index").is_none());
    let m = common::json(&merged.join("merge.json"));
    assert!(
        m["clock_offset_spread_s"].as_f64().is_some_and(|s| s < 0.1),
        "{m}"
    );
    assert!(merged.join("performance_summary.txt").is_file());
    assert!(merged.join("perf_report.html").is_file());

    // Refusals: a missing shard, a shard twice, another run's shard.
    let e = merge(&out.path().join("x1"), &dirs[..2]);
    assert_eq!(e.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("shard 2 of 0..3 missing"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    let e = merge(
        &out.path().join("x2"),
        &[dirs[0].clone(), dirs[0].clone(), dirs[1].clone()],
    );
    assert!(String::from_utf8_lossy(&e.stderr).contains("appears twice"));
    assert!(!out.path().join("x1").exists() && !out.path().join("x2").exists());
}

/// Shards of different configurations (or runs) are never merged.
#[test]
fn merge_refuses_mismatched_shards() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let out = tempfile::tempdir().unwrap();
    let a = run_shards(
        &url,
        &out.path().join("a"),
        2,
        &["--parallel", "2", "--number", "10", "--run-id", "r1"],
    );
    let b = run_shards(
        &url,
        &out.path().join("b"),
        2,
        &[
            "--parallel",
            "2",
            "--number",
            "10",
            "--run-id",
            "r1",
            "--temperature",
            "0.5",
        ],
    );
    let e = merge(&out.path().join("m"), &[a[0].clone(), b[1].clone()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("different --temperature"), "{err}");
    let c = run_shards(
        &url,
        &out.path().join("c"),
        2,
        &["--parallel", "2", "--number", "10", "--run-id", "r2"],
    );
    let e = merge(&out.path().join("m"), &[a[0].clone(), c[1].clone()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("belongs to run r2"), "{err}");
    let e = merge(&out.path().join("m"), &[out.path().to_path_buf()]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("no shard.json"));
    // Flags that cannot be sharded are refused up front.
    let err = common::run_err(&[
        "--api",
        "sim",
        "--parallel",
        "2",
        "--number",
        "10",
        "--shard-count",
        "3",
        "--shard-index",
        "0",
    ]);
    assert!(
        err.contains("--parallel 2: fewer than --shard-count 3"),
        "{err}"
    );
    let err = common::run_err(&["--api", "sim", "--shard-index", "3", "--shard-count", "3"]);
    assert!(
        err.contains("--shard-index: 3 is not below --shard-count 3"),
        "{err}"
    );
}

/// The clock offset from the simulator's `Date` header: this machine's clock against
/// itself is 0 within the measurement's own bound.
#[test]
fn clock_offset_from_a_date_header() {
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let o = perfscope::engine::measure_clock_offset(&perfscope::config::ClockRef::Http(format!(
        "{}/v1/models",
        sim.base_url()
    )))
    .unwrap()
    .unwrap();
    assert!(o.uncertainty < 0.05, "{o:?}");
    assert!(o.offset.abs() <= o.uncertainty + 0.002, "{o:?}");
}

fn sim_run(out: &Path, decode_ms: f64) -> PathBuf {
    let args = format!(r#"{{"decode_base_ms": {decode_ms}, "seed": 1}}"#);
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--sim-args", &args, "--dataset", "random",
            "--min-prompt-length", "50", "--max-prompt-length", "50", "--max-tokens", "20",
            "--parallel", "4", "--number", "200", "--metrics-addr", "off", "--no-timestamp",
            "--outputs-dir", out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    ok(&o);
    out.join("sim-7b")
}

fn compare(base: &Path, new: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let o = bin()
        .arg("compare")
        .arg(base)
        .arg(new)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v)
}

fn verdict<'a>(c: &'a Value, metric: &str) -> &'a str {
    c["points"][0]["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["metric"] == metric))
        .and_then(|r| r["verdict"].as_str())
        .unwrap_or("missing")
}

/// Two runs of one configuration are within noise; a simulator decoding slower is
/// worse on TPOT, and `--fail-on` turns that into a non-zero exit.
#[test]
fn compare_tells_a_slower_decoder_from_noise() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    let a = sim_run(&out.path().join("a"), 5.0);
    let b = sim_run(&out.path().join("b"), 5.0);
    let slow = sim_run(&out.path().join("slow"), 8.0);
    let gate = ["--fail-on", "avg_tpot:+10%,p99_tpot:+10%,rps:-5%"];
    // Same configuration: a 5 % practical threshold. On two cores a ~10 ms TTFT
    // moves by a few percent between identical runs when other work shares the
    // CPU (a 3 % shift with a tight interval was seen under load).
    // The gate on identical runs leaves out p99: the check is on the point change,
    // and a p99 of 200 requests is their second largest, which one stall moves by
    // more than 10 % (12.8 % was seen on a busy machine).
    let same_gate = [gate[0], "avg_tpot:+10%,rps:-5%", "--min-effect", "5"];
    let (code, same) = compare(&a, &b, &same_gate);
    assert_eq!(code, Some(0), "{same}");
    for m in [
        "Avg TPOT (ms)",
        "Avg TTFT (ms)",
        "Avg Latency (s)",
        "Req Throughput (req/s)",
    ] {
        assert_eq!(verdict(&same, m), "within_noise", "{m}: {same}");
    }
    assert_eq!(same["crossed"].as_array().map(Vec::len), Some(0));
    let (code, worse) = compare(&a, &slow, &gate);
    assert_eq!(code, Some(3), "{worse}");
    assert_eq!(verdict(&worse, "Avg TPOT (ms)"), "worse");
    assert_eq!(verdict(&worse, "TPOT (ms) 99%"), "worse");
    assert_eq!(verdict(&worse, "Req Throughput (req/s)"), "worse");
    let row = worse["points"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "Avg TPOT (ms)")
        .unwrap()
        .clone();
    // The interval brackets the point change and lies above zero.
    let (lo, d, hi) = (
        row["ci_low_pct"].as_f64().unwrap(),
        row["delta_pct"].as_f64().unwrap(),
        row["ci_high_pct"].as_f64().unwrap(),
    );
    assert!(lo > 0.0 && lo <= d && d <= hi, "{row}");
    let crossed: Vec<&str> = worse["crossed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["metric"].as_str())
        .collect();
    assert_eq!(crossed, ["avg_tpot", "p99_tpot", "rps"]);
    // The same verdicts as Markdown, and a bad threshold is a usage error.
    let md = bin()
        .arg("compare")
        .arg(&a)
        .arg(&slow)
        .args(["--format", "markdown"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    let line = md
        .lines()
        .find(|l| l.starts_with("| Avg TPOT (ms) | 5."))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(
        line.contains("| 8.") && line.ends_with("| **worse** |"),
        "{line}"
    );
    let (code, _) = compare(&a, &b, &["--fail-on", "p99_ttft:10%"]);
    assert_eq!(code, Some(2));
}

/// An evalscope output directory compares like a perfscope run (with itself: no
/// change anywhere).
#[test]
fn compare_reads_evalscope_directories() {
    let t = tempfile::tempdir().unwrap();
    let e = common::evalscope_dir(t.path());
    let (code, c) = compare(&e, &e, &["--fail-on", "avg_ttft:+1%"]);
    assert_eq!(code, Some(0), "{c}");
    let rows = c["points"][0]["rows"].as_array().unwrap();
    assert!(rows.len() > 5);
    assert!(rows.iter().all(|r| r["verdict"] == "within_noise"), "{c}");
    assert!(rows
        .iter()
        .any(|r| r["metric"] == "Avg TTFT (ms)" && r["delta_pct"] == 0.0));
}

/// `--source-addrs` spreads a run's connections over local addresses; every
/// request still succeeds. A bad range names the flag.
#[test]
fn source_addresses_carry_a_run() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "sim", "--sim-args", r#"{"zero_delay": true}"#, "--parallel", "8", "--number", "64",
        "--source-addrs", "127.0.0.2-127.0.0.5", "--metrics-addr", "off",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    assert_eq!(
        o.runs[0].num(perfscope::stats::Metric::SuccessRequests),
        64.0
    );
    let err = common::run_err(&["--api", "sim", "--source-addrs", "127.0.0.9-127.0.0.2"]);
    assert!(err.contains("--source-addrs"), "{err}");
}

/// The open-file limit is raised to what a run needs.
#[test]
fn the_open_file_limit_is_raised() {
    let get = || {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        r
    };
    let before = get();
    let want = (before.rlim_cur + 100).min(before.rlim_max);
    perfscope::engine::raise_fd_limit(Some(want), "this test");
    assert!(get().rlim_cur >= want);
}

/// One `GET /metrics` on a new connection: the value of the first line starting
/// with `prefix`.
fn scrape_value(port: u16, prefix: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `perfscope sim --reuse-port`: two simulator processes share one port and the
/// kernel spreads a run's connections over both; without the flag a second process
/// cannot bind.
#[test]
fn simulators_share_a_port_with_reuse_port() {
    let _g = common::lock();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = port.to_string();
    let start = |extra: &[&str]| {
        bin()
            .args(["sim", "--port", &p, "--zero-delay"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut sims = vec![start(&["--reuse-port"]), start(&["--reuse-port"])];
    std::thread::sleep(std::time::Duration::from_millis(700));
    for s in sims.iter_mut() {
        assert!(
            s.try_wait().unwrap().is_none(),
            "a --reuse-port simulator exited"
        );
    }
    let mut plain = start(&[]);
    let code = plain.wait().unwrap().code();
    assert_ne!(
        code,
        Some(0),
        "a second simulator without --reuse-port bound the port"
    );
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--parallel", "32", "--number", "64", "--max-tokens", "4",
        "--metrics-addr", "off", "--server-metrics", "off",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        o.runs[0].num(perfscope::stats::Metric::SuccessRequests),
        64.0
    );
    // Each process counts its own requests: new connections see both counts, and
    // they add up to the run's (plus the connection test's two requests; zero-delay
    // answers are counted when written, the check's too).
    let key = "vllm:e2e_request_latency_seconds_count";
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if let Some(v) = scrape_value(port, key) {
            seen.insert(v as u64);
        }
        if seen.len() == 2 {
            break;
        }
    }
    for mut s in sims {
        let _ = s.kill();
        let _ = s.wait();
    }
    // 64 requests, the connection test and its max_tokens check: 66 in all. One
    // process serving everything would show 66; two show their shares, which can
    // be equal (33 and 33), so a single distinct value must then be half.
    match seen.len() {
        2 => assert_eq!(seen.iter().sum::<u64>(), 66, "{seen:?}"),
        1 => assert_eq!(
            seen.first(),
            Some(&33),
            "only one simulator answered: {seen:?}"
        ),
        _ => panic!("scrapes saw {seen:?}"),
    }
}
