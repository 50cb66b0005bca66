//! evalscope 1.14.1's decision APIs: `--api systemone` (with `open_decisions` or
//! JSON-object `line_by_line` bodies) and `--api autotrust`, against the
//! simulator's `/v1/systemone` and `/v1/decide`, and a mock that answers wrong.

use axum::routing::post;
use perfscope::sim::SimConfig;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common;

const OPEN_DECISIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/open_decisions");

fn step(o: &perfscope::engine::Outcome, n: u64) -> std::path::PathBuf {
    o.dir.join(format!("parallel_1_number_{n}"))
}

/// open_decisions through System One: the bodies are the records' state and
/// question (null fields dropped, `model` added, nothing else), every reply is
/// validated, and the summary is evalscope's decision layout, recomputed from rows.
#[test]
fn open_decisions_through_system_one_on_the_simulator() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let url = format!("{}/v1", sim.base_url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "systemone", "--url", &url, "--model", "judge", "--dataset", "open_decisions",
        "--dataset-path", OPEN_DECISIONS, "--number", "4", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    // No connection test (evalscope skips it for decision APIs): 4 requests.
    assert_eq!(sim.sim.requests_total.load(Ordering::Relaxed), 4);
    let d = step(&o, 4);
    let args = common::json(&d.join("benchmark_args.json"));
    assert_eq!(args["url"], format!("{url}/systemone"));
    let rows: Vec<(i64, i64, i64, Value)> = common::rows(
        &common::db(&d),
        "SELECT success, prompt_tokens, completion_tokens, request FROM result ORDER BY seq",
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                serde_json::from_str(&r.get::<_, String>(3)?).unwrap(),
            ))
        },
    );
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 1, 1, 1]);
    assert_eq!(
        rows[1].3,
        json!({"state": "The invoice total is $120 and the paid amount is $120.",
               "questions": {"answer": {"type": "noul", "instructions": "Is the invoice fully paid?"}},
               "model": "judge"})
    );
    assert_eq!(rows[3].3["state"], json!({"temperature_c": 39.2, "age": 4}));
    assert!(rows
        .iter()
        .all(|r| r.3.get("max_tokens").is_none() && r.3.get("stream").is_none()));
    let s = common::json(&d.join("benchmark_summary.json"));
    assert_eq!(
        s["Not Applicable Metrics"],
        json!(["Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)"])
    );
    // Input Throughput = avg prompt tokens × req/s = Σ prompt tokens / duration.
    let prompt: i64 = rows.iter().map(|r| r.1).sum();
    let dur: Vec<f64> = common::rows(
        &common::db(&d),
        "SELECT MAX(completed_time) - MIN(start_time) FROM result",
        |r| r.get(0),
    );
    let dur = dur[0];
    let want = prompt as f64 / dur;
    let got = s["Input Throughput (tok/s)"].as_f64().unwrap();
    assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
    for k in [
        "Output Throughput (tok/s)",
        "Total Throughput (tok/s)",
        "Avg Output Tokens",
    ] {
        assert_eq!(s[k], 0.0, "{k}");
    }
    let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
    assert_eq!(at("Not Applicable Metrics"), at("Avg Input Tokens") + 1);
}

/// AutoTrust bodies from a line_by_line file, sent as they are (no `model`).
#[test]
fn autotrust_line_by_line_bodies_on_the_simulator() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("decide.jsonl");
    let bodies = [
        json!({"kind": "choice", "state": "s", "question": "Which?", "options": ["a", "b", "c"], "thinking": "off"}),
        json!({"kind": "noul", "state": "s", "question": "Is it?"}),
        json!({"kind": "score", "state": {"x": 1}, "question": "Rate it."}),
    ];
    std::fs::write(
        &f,
        bodies.iter().map(|b| format!("{b}\n")).collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "autotrust", "--url", &sim.base_url(), "--model", "m", "--dataset", "line_by_line",
        "--dataset-path", f.to_str().unwrap(), "--number", "3", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    let d = step(&o, 3);
    assert_eq!(
        common::json(&d.join("benchmark_args.json"))["url"],
        format!("{}/decide", sim.base_url())
    );
    let got: Vec<(i64, Value)> = common::rows(
        &common::db(&d),
        "SELECT success, request FROM result ORDER BY seq",
        |r| {
            Ok((
                r.get(0)?,
                serde_json::from_str(&r.get::<_, String>(1)?).unwrap(),
            ))
        },
    );
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(got.iter().map(|r| r.1.clone()).collect::<Vec<_>>(), bodies);
}

/// A mock decision service that answers each request with the next canned reply.
fn mock(replies: Vec<(&'static str, String)>) -> (common::Mock, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let seen = n.clone();
    let replies = Arc::new(replies);
    let router = axum::Router::new().route(
        "/v1/systemone",
        post(move || {
            let (n, replies) = (n.clone(), replies.clone());
            async move {
                let i = n.fetch_add(1, Ordering::SeqCst) as usize;
                let (ctype, body) = replies[i % replies.len()].clone();
                axum::response::Response::builder()
                    .header("content-type", ctype)
                    .body(axum::body::Body::from(body))
                    .unwrap()
            }
        }),
    );
    (common::serve(router), seen)
}

/// Replies that do not answer the question are `invalid_response` failures with
/// evalscope's reason; an `error` object is an in-band error.
#[test]
fn wrong_decisions_are_invalid_responses_with_the_reason() {
    let _g = common::lock();
    let ok = |answer: Value| json!({"model": "j", "answers": {"answer": answer}}).to_string();
    let j = "application/json";
    let replies = vec![
        // 0: a valid choice (two-decimal values within the rounding tolerance).
        (j, ok(json!({"type": "choice", "probabilities": {"a": 0.67, "b": 0.34}, "choice": "a"}))),
        // 1: the choice is not the most likely option.
        (j, ok(json!({"type": "choice", "probabilities": {"a": 0.3, "b": 0.7}, "choice": "a"}))),
        // 2: options that were not asked.
        (j, ok(json!({"type": "choice", "probabilities": {"a": 0.5, "z": 0.5}, "choice": "a"}))),
        // 3: no model name.
        (j, json!({"answers": {"answer": {"type": "choice", "probabilities": {"a": 1.0, "b": 0.0}, "choice": "a"}}}).to_string()),
        // 4: probabilities summing to 0.9.
        (j, ok(json!({"type": "choice", "probabilities": {"a": 0.6, "b": 0.3}, "choice": "a"}))),
        // 5: a negative token count.
        (j, json!({"model": "j", "answers": {"answer": {"type": "choice", "probabilities": {"a": 1.0, "b": 0.0}, "choice": "a"}}, "usage": {"input_tokens": -1}}).to_string()),
        // 6: an in-band error.
        (j, json!({"error": {"message": "overloaded"}}).to_string()),
        // 7: a stream.
        ("text/event-stream", "data: {}\n\n".to_string()),
    ];
    let (m, seen) = mock(replies);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.jsonl");
    let body = json!({"state": "s", "questions": {"answer": {"type": "choice", "instructions": "Pick",
                      "criteria": {"a": "first", "b": "second"}}}});
    std::fs::write(&f, format!("{body}\n")).unwrap();
    let url = format!("http://{}/v1", m.addr);
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "systemone", "--url", &url, "--model", "m", "--dataset", "line_by_line",
        "--dataset-path", f.to_str().unwrap(), "--number", "8", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 8);
    let rows: Vec<(i64, Option<String>, Option<String>)> = common::rows(
        &common::db(&step(&o, 8)),
        "SELECT success, failure_kind, error FROM result ORDER BY seq",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    // One reply each; the rows are matched by content, not by arrival order.
    assert_eq!(rows.iter().filter(|r| r.0 == 1).count(), 1, "{rows:?}");
    let want = [
        ("invalid_response", "highest probability"),
        ("invalid_response", "do not match the request criteria"),
        ("invalid_response", "resolved model name"),
        ("invalid_response", "do not sum to 1"),
        ("invalid_response", "nonnegative integers"),
        ("in_band_error", "overloaded"),
        ("invalid_response", "event stream"),
    ];
    for (kind, text) in want {
        let hits = rows
            .iter()
            .filter(|(ok, k, e)| {
                *ok == 0
                    && k.as_deref() == Some(kind)
                    && e.as_deref().is_some_and(|e| e.contains(text))
            })
            .count();
        assert_eq!(hits, 1, "{kind} `{text}`: {rows:?}");
    }
}

/// Bodies evalscope refuses, and datasets that cannot feed a decision API: one
/// error naming the flag, nothing sent.
#[test]
fn decision_input_errors_send_nothing() {
    let _g = common::lock();
    let (m, seen) = mock(vec![("application/json", "{}".into())]);
    let url = format!("http://{}/v1", m.addr);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.jsonl");
    let good =
        json!({"state": "s", "questions": {"answer": {"type": "noul", "instructions": "Is it?"}}});
    let capped = json!({"state": "s", "max_tokens": 5,
                        "questions": {"answer": {"type": "noul", "instructions": "Is it?"}}});
    std::fs::write(&f, format!("{good}\n{capped}\n")).unwrap();
    let path = f.to_str().unwrap();
    let e = common::run_err(&[
        "--api",
        "systemone",
        "--url",
        &url,
        "--model",
        "m",
        "--dataset",
        "line_by_line",
        "--dataset-path",
        path,
        "--number",
        "2",
    ]);
    assert!(e.contains("item 2") && e.contains("max_tokens"), "{e}");
    let one_choice = json!({"state": "s", "questions": {"answer": {"type": "choice",
                            "instructions": "Pick", "criteria": {"a": "only"}}}});
    std::fs::write(&f, format!("{one_choice}\n")).unwrap();
    let e = common::run_err(&[
        "--api",
        "systemone",
        "--url",
        &url,
        "--model",
        "m",
        "--dataset",
        "line_by_line",
        "--dataset-path",
        path,
        "--number",
        "1",
    ]);
    assert!(e.contains("2-255 named options"), "{e}");
    let e = common::run_err(&[
        "--api",
        "systemone",
        "--url",
        &url,
        "--model",
        "m",
        "--dataset",
        "random",
    ]);
    assert!(e.contains("--dataset open_decisions"), "{e}");
    let e = common::run_err(&[
        "--api",
        "autotrust",
        "--url",
        &url,
        "--model",
        "m",
        "--dataset",
        "open_decisions",
        "--dataset-path",
        OPEN_DECISIONS,
    ]);
    assert!(e.contains("--api systemone"), "{e}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing was sent");
}
