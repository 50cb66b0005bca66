//! The OpenAI Responses API and the Anthropic Messages API against the simulator's
//! vLLM-shaped endpoints (typed `event:` frames, no `[DONE]`, Anthropic usage
//! without the cached tokens): token counts, cached tokens and TTFT recomputed from
//! the simulator's own counters and injected delays.

use crate::common;
use perfscope::sim::SimConfig;
use serde_json::Value;
use std::sync::atomic::Ordering;

/// (prompt, completion, cached, ttft, request_id, trace_id, request body) per row.
type Row = (i64, i64, Option<i64>, f64, String, String, Value);

fn run_api(api: &str, stream: bool, details: bool) {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(30.0),
        itl_ms: Some(4.0),
        min_output_len: 6,
        max_output_len: 6,
        no_prompt_tokens_details: !details,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    // A chat/completions URL is moved to the API's own path.
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let mut args = vec![
        "--api",
        api,
        "--url",
        &url,
        "--model",
        "m",
        "--max-tokens",
        "6",
        "--number",
        "8",
        "--parallel",
        "2",
        "--dataset",
        "random",
        "--min-prompt-length",
        "300",
        "--max-prompt-length",
        "400",
        "--prefix-length",
        "400",
        "--outputs-dir",
        out.path().to_str().unwrap(),
        "--server-metrics-interval",
        "0.2",
    ];
    if !stream {
        args.push("--no-stream");
    }
    let o = common::run(&args).unwrap();
    assert_eq!(o.exit_code, 0);
    let step = o.dir.join("parallel_2_number_8");
    let conn = common::db(&step);
    let rows: Vec<Row> = common::rows(
        &conn,
        "SELECT prompt_tokens, completion_tokens, cached_tokens, first_chunk_latency,
                request_id, trace_id, request FROM result WHERE success=1 ORDER BY seq",
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                serde_json::from_str(&r.get::<_, String>(6)?).unwrap(),
            ))
        },
    );
    assert_eq!(rows.len(), 8, "{api}: every request succeeded");
    let s = &sim.sim;
    let prompt: i64 = rows.iter().map(|r| r.0).sum();
    let completion: i64 = rows.iter().map(|r| r.1).sum();
    // The simulator's lifetime counters also hold the connection test's requests;
    // the server keys below are the counters' change over the run.
    assert!(prompt as u64 <= s.prompt_tokens_total.load(Ordering::Relaxed));
    assert_eq!(completion, 48);
    let labels = perfscope::sim::metrics::ServerLabels {
        model_name: "m".into(),
        engine: "0".into(),
    };
    let hits = s
        .server_metrics
        .prefix_cache_hits
        .get_or_create(&labels)
        .get();
    assert!(hits > 0, "the shared prefix hit the cache");
    // Cached tokens only where the server reported them: vLLM's Responses usage
    // always carries them, its Messages usage only with prompt-token details.
    let reported = api == "openai_responses" || details;
    let cached: Option<i64> = rows.iter().map(|r| r.2).sum();
    if reported {
        assert_eq!(cached.map(|c| c as u64), Some(hits), "{api}");
    } else {
        assert!(rows.iter().all(|r| r.2.is_none()), "{api}: none reported");
    }
    for r in &rows {
        if stream {
            assert!(
                (0.030..0.150).contains(&r.3),
                "{api}: TTFT {} against an injected 30 ms",
                r.3
            );
        }
        let body = &r.6;
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], stream);
        match api {
            "openai_responses" => {
                assert_eq!(body["max_output_tokens"], 6, "{body}");
                // evalscope 1.14.1: apply_chat_template resolves to false for the
                // /responses URL, so a text prompt is a string `input`.
                assert!(body["input"].is_string() && body.get("messages").is_none());
                // vLLM logs the response's id, not the X-Request-Id sent.
                assert!(r.4.starts_with("resp_"), "{}", r.4);
            }
            _ => {
                assert_eq!(body["max_tokens"], 6, "{body}");
                assert!(body["messages"].is_array() && body.get("stream_options").is_none());
                // vLLM uses the X-Request-Id sent (the trace id) as chatcmpl-<id>.
                assert_eq!(r.4, r.5);
            }
        }
    }
    let summary = common::json(&step.join("benchmark_summary.json"));
    assert_eq!(
        summary["Server Prompt Tokens"].as_f64(),
        Some(prompt as f64)
    );
    assert_eq!(
        summary["Server Output Tokens"].as_f64(),
        Some(completion as f64)
    );
    assert_eq!(
        summary.get("KV Cache Hit Rate (%)").is_some(),
        reported,
        "{summary}"
    );
    let log = std::fs::read_to_string(o.dir.join("benchmark.log")).unwrap();
    assert!(!log.contains("the server counted"), "{log}");
}

#[test]
fn responses_api_streamed() {
    run_api("openai_responses", true, true);
}

#[test]
fn responses_api_not_streamed() {
    run_api("openai_responses", false, false);
}

#[test]
fn anthropic_messages_streamed_with_and_without_cache_details() {
    run_api("anthropic", true, true);
    run_api("anthropic", true, false);
}

#[test]
fn anthropic_messages_not_streamed() {
    run_api("anthropic", false, true);
}

/// A Responses stream that ends without `response.completed` is a failed request of
/// kind `incomplete_stream` (like a chat stream without `[DONE]`); a `response.failed`
/// event is an in-band error with its message.
#[test]
fn responses_streams_that_do_not_complete_are_failures() {
    use axum::response::IntoResponse;
    let _g = common::lock();
    const DELTA: &str =
        r#"{"type":"response.output_text.delta","delta":"hi","output_index":0,"content_index":0}"#;
    let router = axum::Router::new().route(
        "/v1/responses",
        axum::routing::post(|body: String| async move {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let text = v["input"].to_string();
            let tail = if text.contains("fail") {
                "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"message\":\"engine died\"}}}\n\n"
            } else {
                ""
            };
            (
                [("content-type", "text/event-stream")],
                format!("event: response.output_text.delta\ndata: {}\n\n{tail}", DELTA),
            )
                .into_response()
        }),
    );
    let mock = common::serve(router);
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{}/v1/responses", mock.addr);
    for (prompt, kind, error) in [
        ("cut", "incomplete_stream", "stream ended without"),
        ("fail", "in_band_error", "engine died"),
    ] {
        let o = common::run(&[
            "--api",
            "openai_responses",
            "--url",
            &url,
            "--model",
            "m",
            "--prompt",
            prompt,
            "--number",
            "2",
            "--no-test-connection",
            "--metrics-addr",
            "off",
            "--server-metrics",
            "off",
            "--outputs-dir",
            out.path().join(prompt).to_str().unwrap(),
        ])
        .unwrap();
        let rows: Vec<(i64, String, String)> = common::rows(
            &common::db(&o.dir.join("parallel_1_number_2")),
            "SELECT success, failure_kind, error FROM result",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        );
        assert_eq!(rows.len(), 2);
        for r in rows {
            assert_eq!((r.0, r.1.as_str()), (0, kind), "{prompt}: {r:?}");
            assert!(r.2.contains(error), "{prompt}: {r:?}");
        }
    }
}
