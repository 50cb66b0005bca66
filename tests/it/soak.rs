//! Soak-grade runs: stop rules (`--max-error-rate`, `--stop-on-saturation`) stop
//! dispatching, drain, store and summarise everything, name the rule and its
//! figures, and exit with code 4.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;

/// The stored run's status and stop reason.
fn status(db: &rusqlite::Connection) -> (String, String) {
    db.query_row("SELECT status, stop_reason FROM run", [], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })
    .unwrap()
}

/// "… F of N …": the two numbers after the rule.
fn figures(reason: &str) -> (u64, u64) {
    let words: Vec<&str> = reason.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "of").unwrap();
    let n = words[i + 1..].iter().find_map(|w| w.parse().ok()).unwrap();
    (words[i - 1].parse().unwrap(), n)
}

#[test]
fn max_error_rate_stops_a_failing_run_with_its_own_exit_code() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.5,
        seed: 7,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(5000)
    .args(&["--max-error-rate", "0.2"])
    .run();
    assert_eq!(ran.outcome.exit_code, perfscope::engine::EXIT_STOP_RULE);
    let db = ran.db();
    let (st, reason) = status(&db);
    assert_eq!(st, "stopped");
    assert!(reason.starts_with("--max-error-rate 0.2: "), "{reason}");
    // The figures that tripped it: at least 20 finished, over 20 % failed; every
    // request sent was stored, and the run was cut well short of 5000.
    let (failed, finished) = figures(&reason);
    assert!(finished >= 20 && failed * 5 > finished, "{reason}");
    let (rows, bad): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(1 - success) FROM result", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let (rows, bad) = (rows as u64, bad as u64);
    assert!(rows >= finished && rows < 200, "{rows} rows");
    assert!(bad >= failed);
    // The summary was written and says it was cut short.
    let s = ran.summary();
    assert_eq!(s["Total Requests"].as_f64(), Some(rows as f64));
}

#[test]
fn a_windowed_error_rate_names_its_window_and_a_healthy_run_is_not_stopped() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.5,
        seed: 8,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(5000)
    .args(&["--max-error-rate", "30%:5"])
    .run();
    assert_eq!(ran.outcome.exit_code, perfscope::engine::EXIT_STOP_RULE);
    let (_, reason) = status(&ran.db());
    assert!(
        reason.starts_with("--max-error-rate 0.3:5: ") && reason.contains("in the last 5 s"),
        "{reason}"
    );
    // 2 % failures against a 30 % limit: the run completes.
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.02,
        seed: 9,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(300)
    .args(&["--max-error-rate", "0.3:5"])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let (st, _) = status(&ran.db());
    assert_eq!(st, "completed");
    assert_eq!(ran.summary()["Total Requests"].as_f64(), Some(300.0));
}

/// A simulator that decodes 4 sequences at a time, 20 tokens each at about 14 ms
/// a step: about 14 requests a second.
pub(crate) fn small_server() -> SimConfig {
    SimConfig {
        max_num_seqs: 4,
        decode_base_ms: 10.0,
        decode_ms_per_seq: 1.0,
        min_output_len: 20,
        max_output_len: 20,
        seed: 10,
        ..SimConfig::default()
    }
}

#[test]
fn stop_on_saturation_stops_a_run_driven_past_capacity() {
    let ran = Bench::sim_with(small_server())
        .parallel(1000)
        .number(100_000)
        .rate(40.0)
        .max_tokens(20)
        .args(&["--open-loop", "--duration", "60", "--stop-on-saturation"])
        .run();
    assert_eq!(ran.outcome.exit_code, perfscope::engine::EXIT_STOP_RULE);
    let db = ran.db();
    let (st, reason) = status(&db);
    assert_eq!(st, "stopped");
    assert!(
        reason.starts_with("--stop-on-saturation: ") && reason.contains("of the 40.0 offered"),
        "{reason}"
    );
    // The achieved rates it names are the server's capacity, well under 90 % of 40.
    let achieved: Vec<f64> = reason["--stop-on-saturation: ".len()..]
        .split(" req/s")
        .next()
        .unwrap()
        .split(", ")
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(achieved.len(), 3, "{reason}");
    assert!(achieved.iter().all(|a| *a > 5.0 && *a < 36.0), "{reason}");
    // Stopped early (a minute was allowed), and the requests left after the grace
    // were cancelled and stored.
    let (span, cancelled): (f64, i64) = db
        .query_row(
            "SELECT MAX(end_time) - MIN(start_time), SUM(failure_kind = 'cancelled') FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(span < 45.0, "ran {span} s");
    assert!(cancelled > 0);
}

#[test]
fn stop_on_saturation_leaves_a_run_within_capacity_alone() {
    let ran = Bench::sim_with(small_server())
        .parallel(100)
        .number(100_000)
        .rate(5.0)
        .max_tokens(20)
        .args(&["--duration", "20", "--stop-on-saturation"])
        .run();
    assert_eq!(ran.outcome.exit_code, 0);
    assert_eq!(status(&ran.db()).0, "completed");
}

#[test]
fn stop_on_saturation_needs_a_rate() {
    let e = common::run_err(&[
        "--url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--stop-on-saturation",
    ]);
    assert!(
        e.contains("--stop-on-saturation") && e.contains("--rate"),
        "{e}"
    );
}

/// (successful rows with a response, failed rows with one, failed rows).
fn responses(ran: &common::Ran) -> (i64, i64, i64) {
    ran.db()
        .query_row(
            "SELECT SUM(success AND response_messages IS NOT NULL), \
             SUM(NOT success AND response_messages IS NOT NULL), SUM(NOT success) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

#[test]
fn store_responses_keeps_all_failures_or_none() {
    let run = |mode: Option<&str>| {
        let mut b = Bench::sim_with(SimConfig {
            zero_delay: true,
            in_band_error_rate: 0.2,
            seed: 11,
            ..SimConfig::default()
        })
        .parallel(4)
        .number(200)
        .max_tokens(8);
        if let Some(m) = mode {
            b = b.arg("--store-responses", m);
        }
        b.run()
    };
    // The default is evalscope's: every row keeps its response chunks.
    let all = run(None);
    let (ok, bad, failed) = responses(&all);
    assert!(failed > 0);
    assert_eq!((ok, bad), (200 - failed, failed));
    let text: String = all
        .db()
        .query_row(
            "SELECT response_messages FROM result WHERE success LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let chunks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(chunks.iter().any(|c| c["choices"].is_array()), "{text}");
    let (ok, bad, failed) = responses(&run(Some("failures")));
    assert_eq!((ok, bad), (0, failed));
    let (ok, bad, _) = responses(&run(Some("none")));
    assert_eq!((ok, bad), (0, 0));
}

/// The nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

#[test]
fn a_duration_run_writes_its_time_series_and_flags_drift() {
    // Offered 25 req/s against about 14: the queue, and so TTFT, grows each window.
    let ran = Bench::sim_with(small_server())
        .parallel(1000)
        .number(100_000)
        .rate(25.0)
        .max_tokens(20)
        .args(&[
            "--open-loop",
            "--duration",
            "12",
            "--snapshot-interval",
            "2",
        ])
        .run();
    let dir = ran.only_step();
    let text = std::fs::read_to_string(dir.join("timeseries.jsonl")).unwrap();
    let windows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(windows.len() >= 6, "{text}");
    let db = ran.db();
    let (rows, ok): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(success) FROM result", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let sum = |k: &str| windows.iter().map(|w| w[k].as_i64().unwrap()).sum::<i64>();
    // Every stored request is in exactly one window.
    assert_eq!(sum("requests"), rows);
    assert_eq!(sum("succeeded"), ok);
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w["window"].as_u64(), Some(i as u64));
        let (start, end) = (w["start_s"].as_f64().unwrap(), w["end_s"].as_f64().unwrap());
        if i + 1 < windows.len() {
            assert!((end - start - 2.0).abs() < 2e-6, "{w}");
        }
        // The window's TTFT p50 against the exact one of the rows that ended in it.
        let end_unix = w["end_unix"].as_f64().unwrap();
        let mut ttft: Vec<f64> = db
            .prepare(
                "SELECT first_chunk_latency FROM result WHERE success = 1 \
                 AND end_unix >= ?1 AND end_unix < ?2",
            )
            .unwrap()
            .query_map([end_unix - (end - start), end_unix], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if ttft.len() < 5 {
            continue;
        }
        ttft.sort_by(f64::total_cmp);
        let exact = nearest_rank(&ttft, 0.5) * 1000.0;
        let got = w["ttft_ms"]["p50"].as_f64().unwrap();
        assert!(
            (got / exact - 1.0).abs() < 0.01,
            "window {i}: {got} vs {exact}"
        );
    }
    // The last full window is far over the steady state, and the summary says so.
    let last = &windows[windows.len() - 2];
    assert!(
        last["drift"]["flagged"]
            .as_array()
            .unwrap()
            .contains(&"ttft".into()),
        "{last}"
    );
    let summary =
        std::fs::read_to_string(dir.parent().unwrap().join("performance_summary.txt")).unwrap();
    assert!(summary.contains("drift: TTFT p50"), "{summary}");
    let html = std::fs::read_to_string(dir.parent().unwrap().join("perf_report.html")).unwrap();
    assert!(html.contains("TTFT over time"));
}

#[test]
fn a_run_of_n_requests_keeps_no_time_series() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(50)
    .args(&["--snapshot-interval", "1"])
    .run();
    assert!(!ran.only_step().join("timeseries.jsonl").exists());
}
