//! Load shapes: rate pacing, open loop, duration, warmup, interruption.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;
use std::sync::atomic::Ordering;

#[test]
fn realised_rate_within_2_percent_over_2000_requests() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .parallel(64)
    .number(2000)
    .rate(500.0)
    .max_tokens(16)
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let dir = ran.step("parallel_64_number_2000");
    let conn = common::db(&dir);
    let (n, first, last, lag): (i64, f64, f64, f64) = conn
        .query_row(
            "SELECT COUNT(*), MIN(start_time), MAX(start_time), MAX(start_time - intended_start) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(n, 2000);
    let realised = (n - 1) as f64 / (last - first);
    eprintln!(
        "realised dispatch rate {realised:.2} req/s for --rate 500; worst schedule lag {:.3} ms",
        lag * 1000.0
    );
    assert!((realised / 500.0 - 1.0).abs() < 0.02, "{realised}");
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Request Rate (req/s)"], 500.0);
    let measured = s["Measured Request Rate (req/s)"].as_f64().unwrap();
    assert!(
        (measured - realised).abs() < 0.01,
        "{measured} vs {realised}"
    );
    // Intended starts follow the schedule: the first and last are n/rate apart.
    let span: f64 = conn
        .query_row(
            "SELECT MAX(intended_start) - MIN(intended_start) FROM result",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((span - 4.0).abs() < 0.05, "schedule span {span}");
}

#[test]
fn open_loop_directory_and_no_cap() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(200.0),
        itl_ms: Some(1.0),
        min_output_len: 4,
        max_output_len: 4,
        ..SimConfig::default()
    })
    .args(&["--open-loop"])
    .rate(200.0)
    .number(100)
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let dir = ran.step("rate_200.0_number_100");
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Concurrency"], -1);
    // 200 req/s with 0.2 s per request: about 40 in flight, far above any small cap.
    let peak = s["Measured Concurrency (peak)"].as_u64().unwrap();
    assert!(peak >= 25, "peak {peak}");
}

#[test]
fn warmup_is_sent_but_not_recorded_and_duration_stops_dispatch() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(5.0),
        min_output_len: 10,
        max_output_len: 10,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(20)
    .arg("--warmup-num", "0.5")
    .run();
    let sim = ran.sim();
    assert_eq!(sim.sim.requests_total.load(Ordering::Relaxed), 30);
    let rows: i64 = ran
        .db()
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 20);

    // --duration: 10 req/s for at most 1 s → about 10 of 1000 requests are sent.
    let before = sim.sim.requests_total.load(Ordering::Relaxed);
    let dur = Bench::url(&format!("{}/v1/chat/completions", sim.base_url()))
        .parallel(4)
        .number(1000)
        .rate(10.0)
        .arg("--duration", "1")
        .run();
    let sent = sim.sim.requests_total.load(Ordering::Relaxed) - before;
    let rows: i64 = dur
        .db()
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, sent);
    assert!((3..=20).contains(&sent), "sent {sent}");
}

#[test]
fn interrupt_drains_commits_and_summarises() {
    // Serialised before the stop's timer starts: it must count from this run's
    // start, not from a wait for another test.
    let _g = common::lock();
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(20.0),
        itl_ms: Some(20.0),
        min_output_len: 10,
        max_output_len: 10,
        ..SimConfig::default()
    })
    .args(&["--parallel", "4", "8", "--number", "400", "400"])
    .stop(common::stop_after(2000, None))
    .run();
    let (o, sim) = (&ran.outcome, ran.sim());
    assert_eq!(o.exit_code, 130);
    // The second sweep point never started.
    assert!(!o.dir.join("parallel_8_number_400").exists());
    let dir = o.dir.join("parallel_4_number_400");
    let conn = common::db(&dir);
    let (rows, ok): (i64, i64) = conn
        .query_row("SELECT COUNT(*), SUM(success) FROM result", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let sent = sim.sim.requests_total.load(Ordering::Relaxed) as i64;
    assert_eq!(rows, sent);
    // In-flight requests finished within the grace period.
    assert_eq!(ok, rows);
    assert!(rows > 4 && rows < 400, "{rows}");
    let status: String = conn
        .query_row("SELECT status FROM run", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "interrupted");
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Total Requests"].as_i64().unwrap(), rows);
    assert!(o.dir.join("performance_summary.txt").exists());
}

#[test]
fn line_by_line_completions_and_no_timestamp_collision() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("prompts.txt");
    std::fs::write(
        &data,
        "first prompt here\nsecond one\n{\"prompt\": \"own body\", \"max_tokens\": 3}\n",
    )
    .unwrap();
    let url = format!("{}/v1/completions", sim.base_url());
    let args = [
        "--url",
        &url,
        "--model",
        "m",
        "--number",
        "6",
        "--dataset",
        "line_by_line",
        "--dataset-path",
        data.to_str().unwrap(),
        "--outputs-dir",
        out.path().to_str().unwrap(),
        "--no-timestamp",
        "--max-tokens",
        "5",
    ];
    let o = common::run(&args).unwrap();
    assert_eq!(o.exit_code, 0);
    assert_eq!(o.dir, out.path().join("m"));
    let conn = common::db(&o.dir.join("parallel_1_number_6"));
    let mut st = conn
        .prepare("SELECT request, prompt_tokens, completion_tokens FROM result ORDER BY seq")
        .unwrap();
    let got: Vec<(String, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(got.len(), 6);
    assert!(
        got[0]
            .0
            .starts_with(r#"{"prompt":"first prompt here","model":"m","max_tokens":5"#),
        "{}",
        got[0].0
    );
    // The simulator's exact usage: words of 1 + (chars-1)/4 tokens.
    assert_eq!(
        got[0].1,
        perfscope::sim::count_tokens("first prompt here") as i64
    );
    assert_eq!(
        got[2].0,
        r#"{"prompt":"own body","max_tokens":3,"model":"m","stream":true,"stream_options":{"include_usage":true},"temperature":0.0}"#
    );
    assert_eq!(got[2].2, 3);
    assert_eq!(got[3].0, got[0].0, "the dataset is cycled");
    // Re-running into the same directory is refused before any load, naming it.
    let err = common::run(&args).err().unwrap().to_string();
    assert!(
        err.contains("already holds a run") && err.contains("--no-timestamp"),
        "{err}"
    );
}
