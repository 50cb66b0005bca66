//! Trackers against in-process mock W&B, SwanLab and ClearML servers that reject
//! anything off-protocol: golden transcripts of what is sent, retries, outages, the
//! `push` subcommand, and keys never reaching logs or output files.
use crate::common;
mod mock;

use perfscope::config::SweepPoint;
use perfscope::report::RunResult;
use perfscope::stats::{Col, Column, Metric, Summary};
use perfscope::trackers::{self, Outcome, RunMeta, TrackerKind, TrackerRun, TrackerSettings};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn settings(kind: TrackerKind, host: &str, key: &str) -> TrackerSettings {
    TrackerSettings {
        kind,
        key: key.into(),
        secret: Some(mock::CLEARML_SECRET.into()),
        host: host.into(),
        web_host: None,
        project: "perf_benchmark".into(),
        workspace: None,
        timeout: Duration::from_secs(10),
        attempts: 3,
        first_wait: Duration::from_millis(20),
        heartbeat: None,
    }
}

fn key_of(kind: TrackerKind) -> &'static str {
    match kind {
        TrackerKind::Wandb => mock::WANDB_KEY,
        TrackerKind::Swanlab => mock::SWANLAB_KEY,
        TrackerKind::Clearml => mock::CLEARML_ACCESS,
    }
}

fn mock_of(kind: TrackerKind) -> mock::Mock {
    match kind {
        TrackerKind::Wandb => mock::wandb(),
        TrackerKind::Swanlab => mock::swanlab(),
        TrackerKind::Clearml => mock::clearml(),
    }
}

/// A hand-made step with fixed values, so transcripts are deterministic.
fn step(parallel: i64, scale: f64) -> RunResult {
    let mut summary = Summary::default();
    for (m, v) in [
        (Metric::TestDuration, 2.5),
        (Metric::Concurrency, parallel as f64),
        (Metric::RequestRate, -1.0),
        (Metric::TotalRequests, 10.0),
        (Metric::SuccessRequests, 10.0),
        (Metric::FailedRequests, 0.0),
        (Metric::ReqThroughput, 4.0 * scale),
        (Metric::AvgLatency, 0.25 * scale),
        (Metric::AvgTtft, 80.0 * scale),
        (Metric::AvgTpot, 10.0),
        (Metric::AvgItl, 10.0),
        (Metric::AvgInputTokens, 20.0),
        (Metric::AvgOutputTokens, 16.0),
        (Metric::OutputThroughput, 64.0 * scale),
        (Metric::TotalThroughput, 144.0 * scale),
    ] {
        summary.set(m, v);
    }
    let col = |col: Col, base: f64| Column {
        col,
        values: (0..11)
            .map(|i| base * (1.0 + i as f64 / 10.0) * scale)
            .collect(),
    };
    RunResult {
        encoder: false,
        timeline: None,
        traces: None,
        workload: None,
        cut_short: None,
        agentx: Vec::new(),
        timeseries: Vec::new(),
        point: SweepPoint {
            parallel,
            number: 10,
            rate: -1.0,
        },
        summary,
        columns: vec![
            col(Col::Latency, 0.2),
            col(Col::Ttft, 70.0),
            col(Col::Itl, 9.0),
            col(Col::Tpot, 9.5),
        ],
        dir: format!("/runs/parallel_{parallel}_number_10").into(),
    }
}

fn meta() -> RunMeta {
    let mut config = Map::new();
    config.insert("model".into(), json!("sim-7b"));
    config.insert("parallel".into(), json!([1, 4]));
    config.insert("wandb_api_key".into(), json!("**********"));
    RunMeta {
        name: "sim-7b_20260821_101500".into(),
        config,
        started_unix: 1_755_770_100.0,
    }
}

/// Pushes two fixed steps through a tracker; returns the run URL.
/// The history lines a mock W&B received, parsed.
fn wandb_history(m: &mock::Mock) -> Vec<Value> {
    m.log()
        .iter()
        .filter(|r| r.path.ends_with("file_stream"))
        .flat_map(|r| {
            r.json()["files"]["wandb-history.jsonl"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect()
}

fn push_fixed(s: &TrackerSettings) -> anyhow::Result<String> {
    let runs = [step(1, 1.0), step(4, 2.0)];
    let tracker = TrackerRun::start(s, &meta())?;
    for (i, r) in runs.iter().enumerate() {
        tracker.point(trackers::point(
            i as u64,
            r,
            1_755_770_110.0 + 10.0 * i as f64,
        ));
    }
    let url = tracker.url.clone();
    let fin = trackers::final_payload(&runs, Outcome::Finished, 1_755_770_140.0, 40.0);
    assert!(
        tracker.finish(fin, Duration::from_secs(30)),
        "every push succeeded"
    );
    Ok(url)
}

/// Requests as text, with credentials replaced by what they prove and random ids
/// replaced by placeholders.
fn transcript(log: &[mock::Req], run_id: &str) -> String {
    let mut out = String::new();
    for r in log {
        out.push_str(&format!(
            "{} {}\n",
            r.method,
            r.path.replace(run_id, "<run-id>")
        ));
        let mut hs: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| ["authorization", "cookie", "content-type"].contains(&k.as_str()))
            .collect();
        hs.sort();
        for (k, v) in hs {
            let shown = if k == "content-type" {
                v.clone()
            } else {
                format!("<{} chars>", v.len())
            };
            out.push_str(&format!("{k}: {shown}\n"));
        }
        let body = if r.headers.get("content-type").map(String::as_str)
            == Some("application/json-lines")
        {
            r.body.clone()
        } else {
            match serde_json::from_str::<Value>(&r.body) {
                Ok(mut v) => {
                    if let Some(f) = v.get_mut("flagId") {
                        *f = json!("<flag-id>");
                    }
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                }
                Err(_) => r.body.clone(),
            }
        };
        out.push_str(&body.replace(run_id, "<run-id>"));
        out.push_str("\n\n");
    }
    out
}

#[test]
fn golden_transcripts_for_every_tracker() {
    for (kind, file) in [
        (TrackerKind::Wandb, "wandb.txt"),
        (TrackerKind::Swanlab, "swanlab.txt"),
        (TrackerKind::Clearml, "clearml.txt"),
    ] {
        let m = mock_of(kind);
        let url = push_fixed(&settings(kind, &m.url, key_of(kind))).unwrap();
        assert!(m.violations().is_empty(), "{kind:?}: {:?}", m.violations());
        let st = m.state.lock().unwrap();
        assert!(st.finished.is_some(), "{kind:?} run finished");
        let run_id = st.run_id.clone();
        drop(st);
        match kind {
            TrackerKind::Wandb => {
                assert_eq!(url, format!("{}/alice/perf_benchmark/runs/{run_id}", m.url))
            }
            TrackerKind::Swanlab => assert_eq!(
                url,
                format!("{}/@alice/perf_benchmark/runs/run-slug", m.url)
            ),
            TrackerKind::Clearml => assert_eq!(
                url,
                format!("{}/projects/proj-1/experiments/task-1/output/log", m.url)
            ),
        }
        let t = transcript(&m.log(), if run_id.is_empty() { "\u{0}" } else { &run_id });
        for secret in [
            mock::WANDB_KEY,
            mock::SWANLAB_KEY,
            mock::CLEARML_SECRET,
            "sid-42",
        ] {
            assert!(!t.contains(secret));
        }
        common::golden(file, &t);
    }
}

#[test]
fn what_each_tracker_received() {
    // W&B: one history line per step, the summary with the best step and the table.
    let m = mock::wandb();
    push_fixed(&settings(TrackerKind::Wandb, &m.url, mock::WANDB_KEY)).unwrap();
    let st = m.state.lock().unwrap();
    assert_eq!(st.history_lines, 2);
    let fin = st.finished.clone().unwrap();
    assert_eq!(fin["exitcode"], 0);
    let summary: Value = serde_json::from_str(
        fin["files"]["wandb-summary.json"]["content"][0]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["Best RPS (req/s)"], 8.0);
    assert_eq!(summary["Best RPS Concurrency"], 4.0);
    assert_eq!(summary["percentiles"]["_type"], "table-file");
    assert_eq!(
        summary["percentiles"]["nrows"], 22,
        "11 percentiles x 2 steps"
    );
    assert_eq!(st.uploads.len(), 1);
    drop(st);
    // SwanLab: every step's scalars at its index; TTFT p99 of step 1 is 70 * 2.0 * 2.
    let m = mock::swanlab();
    push_fixed(&settings(TrackerKind::Swanlab, &m.url, mock::SWANLAB_KEY)).unwrap();
    let st = m.state.lock().unwrap();
    let p99 = st
        .scalars
        .iter()
        .find(|x| x["key"] == "TTFT (ms) p99" && x["index"] == 1)
        .expect("TTFT p99 of step 1");
    assert!((p99["data"].as_f64().unwrap() - 70.0 * 1.9 * 2.0).abs() < 1e-9);
    assert_eq!(st.finished.as_ref().unwrap()["state"], "FINISHED");
    drop(st);
    // ClearML: Performance Metrics per step, single values, a plot, completed.
    let m = mock::clearml();
    push_fixed(&settings(
        TrackerKind::Clearml,
        &m.url,
        mock::CLEARML_ACCESS,
    ))
    .unwrap();
    let st = m.state.lock().unwrap();
    let rps: Vec<(i64, f64)> = st
        .events
        .iter()
        .filter(|e| {
            e["metric"] == "Performance Metrics" && e["variant"] == "Req Throughput (req/s)"
        })
        .map(|e| (e["iter"].as_i64().unwrap(), e["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(rps, vec![(0, 4.0), (1, 8.0)]);
    assert!(st
        .events
        .iter()
        .any(|e| e["metric"] == "Summary" && e["iter"] == -2_147_483_648i64));
    assert!(st.events.iter().any(|e| e["type"] == "plot"));
    assert_eq!(st.finished.as_ref().unwrap()["action"], "tasks.completed");
}

#[test]
fn bad_keys_fail_at_start_without_echoing_the_key() {
    for kind in [
        TrackerKind::Wandb,
        TrackerKind::Swanlab,
        TrackerKind::Clearml,
    ] {
        let m = mock_of(kind);
        let mut s = settings(kind, &m.url, "wrong-key-value-xyz");
        s.secret = Some("wrong-secret-xyz".into());
        let e = match TrackerRun::start(&s, &meta()) {
            Ok(_) => panic!("{kind:?}: a wrong key must fail"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("rejected"), "{kind:?}: {e}");
        assert!(
            !e.contains("wrong-key-value") && !e.contains("wrong-secret"),
            "{e}"
        );
        // Auth failures are not retried.
        assert!(m.log().len() <= 2, "{kind:?}: {} requests", m.log().len());
    }
}

#[test]
fn graphql_errors_in_a_200_are_errors() {
    let m = mock::wandb();
    let mut s = settings(TrackerKind::Wandb, &m.url, mock::WANDB_KEY);
    s.project = "forbidden".into();
    let e = TrackerRun::start(&s, &meta())
        .err()
        .expect("GraphQL errors fail the start");
    assert!(format!("{e:#}").contains("permission denied"), "{e:#}");
}

#[test]
fn transient_failures_are_retried() {
    let m = mock::wandb();
    m.state
        .lock()
        .unwrap()
        .fail_next
        .insert("file_stream".into(), 2);
    push_fixed(&settings(TrackerKind::Wandb, &m.url, mock::WANDB_KEY)).unwrap();
    assert!(m.violations().is_empty(), "{:?}", m.violations());
    let st = m.state.lock().unwrap();
    assert_eq!(st.history_lines, 2, "no line lost or duplicated");
    assert!(st.finished.is_some());
    let m = mock::clearml();
    m.state
        .lock()
        .unwrap()
        .fail_next
        .insert("events.add_batch".into(), 2);
    push_fixed(&settings(
        TrackerKind::Clearml,
        &m.url,
        mock::CLEARML_ACCESS,
    ))
    .unwrap();
    assert!(m.violations().is_empty(), "{:?}", m.violations());
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfscope"))
}

fn run_dir(out: &Path) -> std::path::PathBuf {
    // <outputs>/<timestamp>/<model>
    let ts = std::fs::read_dir(out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_dir(ts)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// `perf --api sim --visualizer wandb` end to end: the key comes from the deprecated
/// flag, the host from WANDB_BASE_URL; the key is in no log line or file.
#[test]
fn perf_logs_to_wandb_and_keeps_the_key_secret() {
    let m = mock::wandb();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--parallel", "1", "2", "--number", "4", "8",
            "--sleep-interval", "0", "--metrics-addr", "off", "--wandb-api-key", mock::WANDB_KEY,
            "--outputs-dir", out.path().to_str().unwrap(), "--sim-args", r#"{"zero_delay": true}"#,
        ])
        .env("WANDB_BASE_URL", &m.url)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{printed}");
    assert!(m.violations().is_empty(), "{:?}", m.violations());
    let st = m.state.lock().unwrap();
    assert_eq!(st.history_lines, 2, "one point per sweep step");
    assert_eq!(st.finished.as_ref().unwrap()["exitcode"], 0);
    assert!(
        printed.contains(&format!(
            "W&B run: {}/alice/perf_benchmark/runs/{}",
            m.url, st.run_id
        )),
        "{printed}"
    );
    drop(st);
    // The config pushed is the masked one.
    let upsert = m
        .log()
        .into_iter()
        .find(|r| r.body.contains("UpsertBucket"))
        .unwrap();
    assert!(!upsert.body.contains(mock::WANDB_KEY));
    assert!(upsert.body.contains("**********"));
    assert!(!printed.contains(mock::WANDB_KEY));
    for f in common::files_under(out.path()) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(20)
                .any(|w| w == &mock::WANDB_KEY.as_bytes()[..20]),
            "key in {}",
            f.display()
        );
    }
}

/// `--scenario agentx` pushes its AgentX figures with each step, equal to the
/// step's `agentx_summary.json`.
#[test]
fn agentx_steps_carry_the_cache_ceiling_and_the_lanes() {
    let m = mock::wandb();
    let out = tempfile::tempdir().unwrap();
    crate::tokenizer::make_tokenizer(out.path(), true);
    let tok = out.path().to_str().unwrap();
    let sim = format!(r#"{{"ttft_ms": 2.0, "itl_ms": 0.5, "tokenizer_path": "{tok}"}}"#);
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "m", "--tokenizer-path", tok,
            "--dataset-path", crate::agentx::SET, "--parallel", "2", "--duration", "3",
            "--scenario", r#"{"name": "agentx", "mode": "smoke", "trace_limit": 12}"#,
            "--metrics-addr", "off", "--wandb-api-key", mock::WANDB_KEY,
            "--outputs-dir", out.path().join("out").to_str().unwrap(), "--sim-args", &sim,
        ])
        .env("WANDB_BASE_URL", &m.url)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let history = wandb_history(&m);
    assert_eq!(history.len(), 1, "{history:?}");
    let s = common::json(
        &run_dir(&out.path().join("out")).join("agentx_256k/parallel_2/agentx_summary.json"),
    );
    let h = &history[0];
    assert_eq!(
        h["AgentX Theoretical Prefix Cache Hit (%)"].as_f64(),
        s["metrics"]["theoretical_prefix_cache_hit"]["avg"].as_f64()
    );
    assert_eq!(h["AgentX Lanes"], 2.0);
    assert_eq!(
        h["AgentX Plays Completed"].as_f64(),
        s["replay"]["plays_completed"].as_f64()
    );
    assert!(
        h["AgentX Theoretical Prefix Cache Hit (%)"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// The tracker goes down after the run was created: the benchmark completes with its
/// results on disk, says how to push later, and `perfscope push` then sends every
/// step to W&B, SwanLab and ClearML from the stored databases.
#[test]
fn outage_then_push_from_the_store() {
    let _g = common::lock();
    let m = mock::wandb();
    m.state.lock().unwrap().down = Some("file_stream".into());
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--parallel", "1", "2", "--number", "4", "8",
            "--sleep-interval", "0", "--metrics-addr", "off", "--visualizer", "wandb",
            "--outputs-dir", out.path().to_str().unwrap(), "--sim-args", r#"{"zero_delay": true}"#,
        ])
        .env("WANDB_BASE_URL", &m.url)
        .env("WANDB_API_KEY", mock::WANDB_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the benchmark does not fail: {stderr}"
    );
    assert!(stderr.contains("perfscope push"), "{stderr}");
    let dir = run_dir(out.path());
    assert!(dir.join("parallel_2_number_8/benchmark_data.db").is_file());

    let healthy = push_to_wandb(&dir, &["--name", "pushed-run"]);
    let st = healthy.state.lock().unwrap();
    assert_eq!(st.history_lines, 2);
    drop(st);
    assert!(healthy.log().iter().any(|r| r.body.contains("pushed-run")));
    // Recomputed from SQLite: step 1 succeeded 8 of 8.
    let lines = wandb_history(&healthy);
    assert_eq!(lines[1]["Success Requests"], 8.0);
    assert_eq!(lines[1]["Concurrency"], 2.0);

    // An evalscope output directory pushes the same way, its numbers by 1.14.1's
    // rules (the hand-worked fixture of tests/report.rs).
    let evalscope = tempfile::tempdir().unwrap();
    let edir = common::evalscope_dir(evalscope.path());
    let lines = wandb_history(&push_to_wandb(&edir, &[]));
    assert_eq!(lines[0]["Success Requests"], 3.0);
    assert_eq!(lines[0]["Avg TPOT (ms)"], 99.99);

    let sl = mock::swanlab();
    let o = bin()
        .args([
            "push",
            dir.to_str().unwrap(),
            "--visualizer",
            "swanlab",
            "--swanlab-host",
            &sl.url,
        ])
        .env("SWANLAB_API_KEY", mock::SWANLAB_KEY)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(sl.violations().is_empty(), "{:?}", sl.violations());
    assert_eq!(
        sl.state.lock().unwrap().finished.as_ref().unwrap()["state"],
        "FINISHED"
    );

    let cm = mock::clearml();
    let o = bin()
        .args(["push", dir.to_str().unwrap(), "--visualizer", "clearml"])
        .env("CLEARML_API_HOST", &cm.url)
        .env("CLEARML_API_ACCESS_KEY", mock::CLEARML_ACCESS)
        .env("CLEARML_API_SECRET_KEY", mock::CLEARML_SECRET)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{printed}");
    assert!(cm.violations().is_empty(), "{:?}", cm.violations());
    assert!(!printed.contains(mock::CLEARML_SECRET));
    assert!(printed.contains("ClearML run: "), "{printed}");
}

/// A tracker that cannot be reached stops `perf` before any load.
#[test]
fn unreachable_tracker_fails_before_load() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--number", "4", "--metrics-addr", "off",
            "--visualizer", "clearml", "--outputs-dir", out.path().to_str().unwrap(),
        ])
        .env("CLEARML_API_HOST", format!("http://127.0.0.1:{port}"))
        .env("CLEARML_API_ACCESS_KEY", mock::CLEARML_ACCESS)
        .env("CLEARML_API_SECRET_KEY", mock::CLEARML_SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ClearML") && stderr.contains("no load was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains(mock::CLEARML_SECRET));
    let dbs: Vec<_> = common::files_under(out.path())
        .into_iter()
        .filter(|p| p.ends_with("benchmark_data.db"))
        .collect();
    assert!(dbs.is_empty(), "no run was stored: {dbs:?}");
}

/// A long step (a soak) sends heartbeats between points so the run never goes stale.
#[test]
fn heartbeats_between_points() {
    for kind in [
        TrackerKind::Wandb,
        TrackerKind::Swanlab,
        TrackerKind::Clearml,
    ] {
        let m = mock_of(kind);
        let mut s = settings(kind, &m.url, key_of(kind));
        s.heartbeat = Some(Duration::from_millis(40));
        let before = m.state.lock().unwrap().heartbeats;
        let tracker = TrackerRun::start(&s, &meta()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let fin =
            trackers::final_payload(&[step(1, 1.0)], Outcome::Finished, 1_755_770_140.0, 40.0);
        assert!(tracker.finish(fin, Duration::from_secs(30)));
        let beats = m.state.lock().unwrap().heartbeats - before;
        assert!(
            beats >= 3,
            "{kind:?}: {beats} heartbeats in 400 ms at 40 ms"
        );
        assert!(m.violations().is_empty(), "{:?}", m.violations());
    }
}

/// `perfscope push DIR --visualizer wandb EXTRA…` to a fresh mock: it succeeds
/// within the protocol; returns the mock.
fn push_to_wandb(dir: &Path, extra: &[&str]) -> mock::Mock {
    let m = mock::wandb();
    let o = bin()
        .args(["push", dir.to_str().unwrap(), "--visualizer", "wandb"])
        .args(extra)
        .env("WANDB_BASE_URL", &m.url)
        .env("WANDB_API_KEY", mock::WANDB_KEY)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(m.violations().is_empty(), "{:?}", m.violations());
    m
}

/// `perfscope push` sends a merged tree (the shards of a distributed run) like a
/// plain run: the merged totals, one history line per point.
#[test]
fn push_a_merged_tree() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for i in 0..2 {
        let o = out.path().join(format!("s{i}"));
        #[rustfmt::skip]
        let r = bin()
            .args([
                "perf", "--api", "sim", "--parallel", "2", "--number", "5", "--metrics-addr", "off",
                "--shard-index", &i.to_string(), "--shard-count", "2", "--run-id", "pushed",
                "--no-timestamp", "--outputs-dir", o.to_str().unwrap(),
                "--sim-args", r#"{"zero_delay": true}"#,
            ])
            .output()
            .unwrap();
        assert_eq!(
            r.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        dirs.push(o.join("sim-7b"));
    }
    let merged = out.path().join("merged/sim-7b");
    let r = bin()
        .arg("merge")
        .arg(&merged)
        .args(&dirs)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let lines = wandb_history(&push_to_wandb(&merged, &[]));
    assert_eq!(lines.len(), 1);
    // Both shards' requests (3 + 2 of the global 5), at the global concurrency.
    assert_eq!(lines[0]["Success Requests"], 5.0);
    assert_eq!(lines[0]["Concurrency"], 2.0);
}

/// Multi-turn against a server that reports no cached tokens (vLLM without
/// `--enable-prompt-tokens-details`): `cached_tokens` stays empty, evalscope's
/// estimate is stored in its own column, and every place that shows it names it an
/// estimate: the console, benchmark_summary.json, trace_summary.json, the HTML
/// report and the tracker.
#[test]
fn a_multi_turn_cache_estimate_is_labelled_everywhere() {
    let m = mock::wandb();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "m", "--parallel", "2", "--number", "4",
            "--dataset", "random_multi_turn", "--multi-turn", "--min-turns", "3", "--max-turns", "3",
            "--min-prompt-length", "40", "--max-prompt-length", "60", "--max-tokens", "5",
            "--metrics-addr", "off", "--visualizer", "wandb", "--no-timestamp",
            "--outputs-dir", out.path().to_str().unwrap(),
            "--sim-args", r#"{"zero_delay": true, "no_prompt_tokens_details": true}"#,
        ])
        .env("WANDB_BASE_URL", &m.url)
        .env("WANDB_API_KEY", mock::WANDB_KEY)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{printed}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = common::files_under(out.path())
        .into_iter()
        .find(|f| f.ends_with("benchmark_data.db"))
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let conn = common::db(&dir);
    // (prompt, cached, estimate) of the successful turns, in conversation order.
    let turns: Vec<(i64, Option<i64>, Option<i64>, i64)> = common::rows(
        &conn,
        "SELECT prompt_tokens, cached_tokens, cached_tokens_estimate, completion_tokens
         FROM result WHERE success=1 ORDER BY session_id, turn",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    );
    assert_eq!(turns.len(), 12);
    assert!(turns.iter().all(|t| t.1.is_none()), "nothing reported");
    // evalscope: turn 1 is 0, a later turn the previous prompt + completion.
    for (k, t) in turns.iter().enumerate() {
        let want = if k % 3 == 0 {
            0
        } else {
            turns[k - 1].0 + turns[k - 1].3
        };
        assert_eq!(t.2, Some(want), "turn {k}");
    }
    let est: i64 = turns.iter().filter_map(|t| t.2).sum();
    let prompt: i64 = turns.iter().map(|t| t.0).sum();
    let rate = 100.0 * est as f64 / prompt as f64;
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert!(s.get("KV Cache Hit Rate (%)").is_none(), "{s}");
    let got = s["Estimated KV Cache Hit Rate (%)"].as_f64().unwrap();
    assert!((got - rate).abs() < 1e-4, "{got} vs {rate}");
    assert!(
        printed.contains("Estimated KV Cache Hit Rate (%)"),
        "{printed}"
    );
    let traces = common::json(&dir.join("trace_summary.json"));
    let names: Vec<&str> = traces["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Estimated Cache Hit Rate (%)"), "{names:?}");
    assert!(!names.contains(&"Cache Hit Rate (%)"), "{names:?}");
    let html = std::fs::read_to_string(dir.parent().unwrap().join("perf_report.html")).unwrap();
    assert!(html.contains("Estimated KV Cache Hit Rate (%)"));
    assert!(!html.contains("<th>KV Cache Hit Rate (%)</th>"));
    let pushed: Vec<String> = wandb_history(&m)
        .iter()
        .flat_map(|l| l.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .collect();
    assert!(
        pushed
            .iter()
            .any(|k| k.contains("Estimated KV Cache Hit Rate")),
        "{pushed:?}"
    );
    assert!(
        !pushed
            .iter()
            .any(|k| k.contains("KV Cache Hit Rate") && !k.contains("Estimated")),
        "{pushed:?}"
    );
}

/// A `--duration` run pushes each `--snapshot-interval` window as a history step
/// while it runs (a soak's chart over time), then its sweep step, steps in order;
/// the windows' figures equal `timeseries.jsonl`; `perfscope push` sends the same.
#[test]
fn snapshots_are_history_steps() {
    let m = mock::wandb();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "m", "--parallel", "2", "--rate", "20",
            "--number", "100000", "--duration", "4.5", "--snapshot-interval", "1",
            "--max-tokens", "8", "--metrics-addr", "off", "--wandb-api-key", mock::WANDB_KEY,
            "--outputs-dir", out.path().join("out").to_str().unwrap(),
            "--sim-args", r#"{"ttft_ms": 5.0, "itl_ms": 1.0}"#,
        ])
        .env("WANDB_BASE_URL", &m.url)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let history = wandb_history(&m);
    let dir = common::run_dirs(&run_dir(&out.path().join("out")))[0].clone();
    let text = std::fs::read_to_string(dir.join("timeseries.jsonl")).unwrap();
    let windows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(windows.len() >= 4, "{text}");
    assert_eq!(history.len(), windows.len() + 1, "{history:?}");
    for (i, h) in history.iter().enumerate() {
        assert_eq!(h["_step"].as_u64(), Some(i as u64), "{h}");
    }
    for (h, w) in history.iter().zip(&windows) {
        assert_eq!(h["Window elapsed (s)"].as_f64(), w["end_s"].as_f64());
        assert_eq!(h["Window requests"].as_f64(), w["requests"].as_f64());
        assert_eq!(
            h["Window TTFT (ms) p99"].as_f64(),
            w["ttft_ms"]["p99"].as_f64()
        );
    }
    let last = history.last().unwrap();
    assert!(
        last["Window requests"].is_null() && last["Total Requests"].is_number(),
        "{last}"
    );
    // `perfscope push` sends the same steps from the run directory.
    let pushed = wandb_history(&push_to_wandb(&run_dir(&out.path().join("out")), &[]));
    assert_eq!(pushed.len(), history.len());
    for (p, h) in pushed.iter().zip(&history) {
        assert_eq!(p["_step"], h["_step"]);
        assert_eq!(p["Window requests"], h["Window requests"]);
        assert_eq!(p["Window TTFT (ms) p50"], h["Window TTFT (ms) p50"]);
    }
}
