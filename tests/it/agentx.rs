//! `--scenario agentx` on the simulator with the bundled Weka set
//! (`examples/agentx`): every row is a planned (conversation, turn) with its exact
//! output length, the schedule holds its lanes, delays and joins, and
//! `agentx_summary.json` has evalscope's shape with figures recomputed from rows.

use perfscope::agentx::{plan, trace};
use perfscope::sim::SimConfig;
use std::collections::HashMap;

use crate::common;

#[derive(Debug)]
struct Row {
    conv: String,
    play: u64,
    turn: usize,
    ok: bool,
    prompt: i64,
    completion: i64,
    intended: f64,
    send: f64,
    end: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The bundled set.
pub const SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agentx");

/// Runs the bundled set in smoke mode against a simulator that counts tokens
/// with a test tokenizer (`sim` adds its timing), with `flags` added; returns the
/// outcome and the temporary directory holding the tokenizer and the outputs.
pub fn run_set(sim: SimConfig, flags: &[&str]) -> (perfscope::engine::Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    crate::tokenizer::make_tokenizer(dir.path(), true);
    let tok = dir.path().to_string_lossy().into_owned();
    let sim = common::start_sim(SimConfig {
        tokenizer_path: Some(tok.clone()),
        ..sim
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let mut argv = vec![
        "--url", &url, "--model", "m", "--tokenizer-path", &tok, "--dataset-path", SET,
        "--scenario", r#"{"name": "agentx", "mode": "smoke", "trace_limit": 12}"#,
        "--outputs-dir", out.to_str().unwrap(), "--metrics-addr", "off",
    ];
    argv.extend_from_slice(flags);
    let o = common::run(&argv).unwrap();
    (o, dir)
}

#[test]
fn the_bundled_set_replays_on_the_simulator() {
    let _g = common::lock();
    let (o, _dir) = run_set(
        SimConfig {
            ttft_ms: Some(5.0),
            itl_ms: Some(1.0),
            ..SimConfig::default()
        },
        &[
            "--parallel",
            "2",
            "--duration",
            "8",
            "--trajectory-start-min-ratio",
            "0",
            "--trajectory-start-max-ratio",
            "0",
        ],
    );
    let set = SET;
    assert_eq!(o.exit_code, 0);
    let run = o.dir.join("agentx_256k/parallel_2");
    let traces = trace::read(std::path::Path::new(set)).unwrap();
    let plan = plan::build(&traces, false);
    let conv: HashMap<&str, &plan::Conversation> = plan
        .conversations
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let rows: Vec<Row> = common::rows(
        &common::db(&run),
        "SELECT session_id, turn, success, prompt_tokens, completion_tokens, intended_start,
                start_time, completed_time FROM result",
        |r| {
            let s: String = r.get(0)?;
            let (c, p) = s.rsplit_once('#').unwrap();
            Ok(Row {
                conv: c.to_string(),
                play: p.parse().unwrap(),
                turn: r.get::<_, i64>(1)? as usize - 1,
                ok: r.get::<_, i64>(2)? == 1,
                prompt: r.get(3)?,
                completion: r.get(4)?,
                intended: r.get(5)?,
                send: r.get(6)?,
                end: r.get(7)?,
            })
        },
    );
    assert!(rows.len() > 20, "{} rows", rows.len());
    assert!(rows.iter().all(|r| r.ok), "every request succeeded");
    // Each row is a planned turn: output exactly max(out, 1) (ignore_eos), input
    // at least the trace's `in` (the chat template and the marker add a few).
    for r in &rows {
        let t = &conv[r.conv.as_str()].turns[r.turn];
        assert_eq!(r.completion as u64, t.max_tokens, "{r:?}");
        assert!(
            r.prompt as u64 >= t.input && (r.prompt as u64) < t.input + 200,
            "{r:?}"
        );
    }
    // Lanes: at most 2 trees (trace, play) active at once.
    let tree = |r: &Row| (r.conv.split("::").next().unwrap().to_string(), r.play);
    let mut spans: HashMap<(String, u64), (f64, f64)> = HashMap::new();
    for r in &rows {
        let e = spans.entry(tree(r)).or_insert((r.send, r.end));
        e.0 = e.0.min(r.send);
        e.1 = e.1.max(r.end);
    }
    for (a, (s, _)) in &spans {
        let active = spans.values().filter(|(s2, e2)| s2 <= s && e2 > s).count();
        assert!(active <= 2, "{a:?}: {active} trees at {s}");
    }
    // Delays: turn k is released its end-to-start delay after turn k − 1 ended.
    let by: HashMap<(String, u64, usize), &Row> = rows
        .iter()
        .map(|r| ((r.conv.clone(), r.play, r.turn), r))
        .collect();
    let mut errors = Vec::new();
    for r in rows.iter().filter(|r| r.turn > 0) {
        let t = &conv[r.conv.as_str()].turns[r.turn];
        let prev = by[&(r.conv.clone(), r.play, r.turn - 1)];
        // A join-gated turn waits for its children: if they were still running
        // when the turn before it ended, it goes the moment they are done.
        let mut children_end = f64::MIN;
        for b in &t.joins {
            for &c in &plan.branches[*b].children {
                let id = &plan.conversations[c].id;
                let last = rows
                    .iter()
                    .filter(|x| &x.conv == id && x.play == r.play)
                    .map(|x| x.end)
                    .fold(f64::MIN, f64::max);
                assert!(
                    r.send >= last,
                    "{r:?} sent before child {id} ended at {last}"
                );
                children_end = children_end.max(last);
            }
        }
        let ready = if children_end > prev.end {
            children_end
        } else {
            prev.end + t.delay_s
        };
        errors.push((r.intended - ready).abs());
        assert!(r.send - r.intended < 0.05, "{r:?}");
    }
    let med = median(errors);
    eprintln!(
        "agentx: {} rows, median release error {:.3} ms",
        rows.len(),
        med * 1000.0
    );
    assert!(med < 0.001, "median release error {med} s");
    // agentx_summary.json: evalscope's keys, the hit recomputed from the rows.
    let s = common::json(&run.join("agentx_summary.json"));
    for k in [
        "schema_version",
        "status",
        "scenario",
        "concurrency",
        "duration",
        "seed",
        "aiperf_version",
        "aiperf_schema_version",
        "dataset",
        "submission_valid",
        "aiperf_submission_valid",
        "aiperf_submission_invalid_reasons",
        "mirror_revalidated",
        "metrics",
        "derived_metrics",
        "error_summary",
        "raw_artifact_dir",
        "raw_summary_file",
        "command",
    ] {
        assert!(s.get(k).is_some(), "agentx_summary.json lacks {k}");
    }
    assert_eq!(s["status"], "completed");
    assert_eq!(
        s["submission_valid"], false,
        "smoke runs are never valid submissions"
    );
    let (hit, total) = rows.iter().fold((0u64, 0u64), |(h, n), r| {
        let t = &conv[r.conv.as_str()].turns[r.turn];
        (h + t.prefix_blocks.0, n + t.prefix_blocks.1)
    });
    let m = &s["metrics"];
    assert_eq!(m["theoretical_prefix_cache_hit"]["sum"], hit);
    assert_eq!(m["theoretical_prefix_cache_hit"]["count"], total);
    assert_eq!(
        m["theoretical_prefix_cache_hit"]["avg"],
        100.0 * hit as f64 / total as f64
    );
    assert_eq!(m["request_count"]["avg"], rows.len() as f64);
    // The server's own prefix-cache counters (the simulator's, scraped) beside it.
    let b = common::json(&run.join("benchmark_summary.json"));
    let server = b["Server Prefix Cache Hit Rate (%)"].as_f64().unwrap();
    assert!(server > 0.0);
    assert_eq!(m["server_prefix_cache_hit"]["avg"].as_f64(), Some(server));
    let sweep = common::json(&o.dir.join("agentx_256k/agentx_sweep_summary.json"));
    assert_eq!(sweep["parallel_2"]["concurrency"], 2);
}

/// The scenario's default t* range (0 to 1 of each tree's span): each lane's
/// first tree starts at t* drawn as AIPerf 0.12.0 draws it, after a warmup that
/// re-sends the last request before t* of every stream then alive. AIPerf logged
/// the same draw on this set (lane 0: synth_000 at 59 %, 3 of 5 root turns done;
/// lane 1: synth_001 at 13 %; 3 warmup credits); the values below are numpy's
/// `default_rng(seed).uniform(lo, hi)` for the run's seed.
#[test]
fn the_first_trees_start_at_t_star_after_a_warmup() {
    let _g = common::lock();
    let (o, _dir) = run_set(
        SimConfig {
            ttft_ms: Some(2.0),
            itl_ms: Some(0.5),
            ..SimConfig::default()
        },
        &["--parallel", "2", "--duration", "5", "--no-test-connection"],
    );
    assert_eq!(o.exit_code, 0);
    let run = o.dir.join("agentx_256k/parallel_2");
    let s = common::json(&run.join("agentx_summary.json"));
    let r = &s["replay"];
    assert_eq!(r["trajectory_start_ratios"], serde_json::json!([0.0, 1.0]));
    // (serde_json's default float parsing can be one ulp off the written value.)
    let firsts: Vec<(&str, f64)> = r["first_trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["trace"].as_str().unwrap(),
                f["t_star_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    for ((got, ms), (want, want_ms)) in firsts.iter().zip([
        ("synth_000", 6158.4119553007),
        ("synth_001", 1271.9440636927243),
    ]) {
        assert_eq!(*got, want);
        assert!(
            (ms - want_ms).abs() < 1e-9,
            "{got}: t* {ms} ms, numpy {want_ms}"
        );
    }
    assert_eq!(r["warmup_requests"], 3);
    // Play 0 of each first tree resumes where t* falls; warmups are not rows.
    let first = |conv: &str| -> i64 {
        common::rows(
            &common::db(&run),
            &format!("SELECT MIN(turn) FROM result WHERE session_id = '{conv}#0'"),
            |r| r.get(0),
        )[0]
    };
    assert_eq!(first("synth_000"), 4);
    assert_eq!(first("synth_001"), 2);
    assert_eq!(first("synth_001::sa:agent_001"), 2);
    let rows: i64 = common::rows(&common::db(&run), "SELECT COUNT(*) FROM result", |r| {
        r.get(0)
    })[0];
    assert_eq!(s["metrics"]["request_count"]["avg"], rows as f64);
}

/// evalscope's refusals, before anything is sent.
#[test]
fn agentx_refuses_what_evalscope_refuses() {
    let set = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agentx");
    let base = [
        "--url",
        "http://127.0.0.1:9/v1/chat/completions",
        "--model",
        "m",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        common::run_err(&a)
    };
    let e = with(&[
        "--scenario",
        "agentx",
        "--dataset-path",
        set,
        "--number",
        "5",
        "--tokenizer-path",
        "x",
    ]);
    assert!(e.contains("--number is not supported"), "{e}");
    let e = with(&["--scenario", "agentx", "--dataset-path", set]);
    assert!(e.contains("--tokenizer-path"), "{e}");
    let e = with(&[
        "--scenario",
        "agentx",
        "--dataset-path",
        set,
        "--tokenizer-path",
        "x",
        "--duration",
        "60",
    ]);
    assert!(e.contains("--duration >= 900"), "{e}");
    let e = with(&["--scenario", r#"{"trace_limit": 2}"#]);
    assert!(e.contains("only supported when mode is smoke"), "{e}");
}

/// The simulator's context limit (vLLM's 400 "maximum context length"): the
/// requests over it fail, end their conversation, count as context overflows, and
/// more than 1 % of them make the run an invalid submission.
#[test]
fn context_overflows_are_counted_and_invalidate_the_run() {
    let _g = common::lock();
    let (o, _dir) = run_set(
        SimConfig {
            ttft_ms: Some(2.0),
            itl_ms: Some(0.5),
            max_model_len: Some(1200),
            ..SimConfig::default()
        },
        &[
            "--parallel",
            "4",
            "--duration",
            "4",
            "--no-test-connection",
            // From turn 0: a warmup over the limit would abort the run.
            "--trajectory-start-min-ratio",
            "0",
            "--trajectory-start-max-ratio",
            "0",
        ],
    );
    let run = o.dir.join("agentx_256k/parallel_4");
    let failed: Vec<(String, i64, String)> = common::rows(
        &common::db(&run),
        "SELECT session_id, turn, error FROM result WHERE success = 0",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    assert!(!failed.is_empty(), "some requests exceed 1200 tokens");
    assert!(
        failed
            .iter()
            .all(|f| f.2.contains("maximum context length")),
        "{failed:?}"
    );
    // A context overflow ends its conversation play: no later turn of it was sent.
    for (s, turn, _) in &failed {
        let later: Vec<i64> = common::rows(
            &common::db(&run),
            &format!("SELECT turn FROM result WHERE session_id = '{s}' AND turn > {turn}"),
            |r| r.get(0),
        );
        assert!(later.is_empty(), "{s} went on after turn {turn}: {later:?}");
    }
    let s = common::json(&run.join("agentx_summary.json"));
    assert_eq!(
        s["metrics"]["context_overflow_count"]["avg"],
        failed.len() as f64
    );
    assert_eq!(
        s["metrics"]["error_request_count"]["avg"],
        failed.len() as f64
    );
    let reasons = s["aiperf_submission_invalid_reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r == "context_overflow_rate_exceeded"),
        "{reasons:?}"
    );
    let kinds = s["error_summary"].as_array().unwrap();
    assert_eq!(kinds[0]["error_details"]["type"], "http_4xx");
}
