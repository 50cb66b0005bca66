//! The simulator's timing model and faults, observed through perfscope itself.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;

fn summary(o: &perfscope::engine::Outcome, dir: &str) -> serde_json::Value {
    common::json(&o.dir.join(dir).join("benchmark_summary.json"))
}

#[test]
fn continuous_batching_saturates() {
    // 8 batch slots, 4 ms + 0.5 ms per sequence per step, 20 tokens per answer.
    let ran = Bench::sim_with(SimConfig {
        max_num_seqs: 8,
        decode_base_ms: 4.0,
        decode_ms_per_seq: 0.5,
        min_output_len: 20,
        max_output_len: 20,
        ..SimConfig::default()
    })
    .args(&["--parallel", "2", "8", "32", "--number", "16", "64", "256"])
    .arg("--sleep-interval", "0")
    .run();
    let o = &ran.outcome;
    let (a, b, c) = (
        summary(o, "parallel_2_number_16"),
        summary(o, "parallel_8_number_64"),
        summary(o, "parallel_32_number_256"),
    );
    let rps = |s: &serde_json::Value| s["Req Throughput (req/s)"].as_f64().unwrap();
    let ttft = |s: &serde_json::Value| s["Avg TTFT (ms)"].as_f64().unwrap();
    // Below the slot count throughput grows with concurrency: 2 x 20 tokens per
    // (4 + 2 x 0.5) ms steps is 20 req/s, 8 per (4 + 8 x 0.5) ms is 50 req/s (2.5x).
    assert!(rps(&b) > 2.0 * rps(&a), "{} vs {}", rps(&b), rps(&a));
    // ...beyond it, it levels off: 8 sequences x 20 tokens per (4 + 8 x 0.5) ms x 20 steps.
    let cap = 8.0 / (20.0 * 0.008);
    assert!(rps(&c) < cap * 1.1, "{} vs cap {cap}", rps(&c));
    assert!(rps(&c) < rps(&b) * 1.3, "{} vs {}", rps(&c), rps(&b));
    // and requests queue for a slot: TTFT grows several-fold.
    assert!(ttft(&c) > 3.0 * ttft(&b), "{} vs {}", ttft(&c), ttft(&b));
}

#[test]
fn stall_hits_the_read_timeout_and_debug_keeps_chunks() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(1.0),
        itl_ms: Some(1.0),
        min_output_len: 10,
        max_output_len: 10,
        stall_rate: 0.5,
        stall_ms: 3000.0,
        seed: 5,
        ..SimConfig::default()
    })
    .parallel(8)
    .number(16)
    .args(&["--read-timeout", "0.5", "--debug"])
    .run();
    let conn = ran.db();
    let (timeouts, ok): (i64, i64) = conn
        .query_row(
            "SELECT SUM(failure_kind = 'timeout'), SUM(success) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(timeouts >= 3 && ok >= 3, "timeouts {timeouts}, ok {ok}");
    assert_eq!(timeouts + ok, 16);
    // A stalled request failed after about the read timeout, not the 3 s stall.
    let worst: f64 = conn
        .query_row(
            "SELECT MAX(end_time - start_time) FROM result WHERE success=0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(worst < 2.0, "{worst}");
    // --debug keeps each response's chunks: prelude, 10 tokens, usage.
    let msgs: String = conn
        .query_row(
            "SELECT response_messages FROM result WHERE success=1 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&msgs).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 12);
}

#[test]
fn sim_cli_seeded_and_models() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        seed: 42,
        ..SimConfig::default()
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = rt.block_on(async {
        reqwest::get(format!("{}/v1/models", sim.base_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(body.contains("\"object\":\"list\""), "{body}");
    // The same seed gives the same answer lengths.
    let lens = |seed: u64| {
        let s = common::start_sim(SimConfig {
            zero_delay: true,
            seed,
            ..SimConfig::default()
        });
        let url = format!("{}/v1/chat/completions", s.base_url());
        rt.block_on(async move {
            let c = reqwest::Client::new();
            let mut v = Vec::new();
            for _ in 0..5 {
                let text = c
                    .post(&url)
                    .body(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":500}"#)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let r: serde_json::Value = serde_json::from_str(&text).unwrap();
                v.push(r["usage"]["completion_tokens"].as_u64().unwrap_or(0));
            }
            v
        })
    };
    let a = lens(1);
    assert_eq!(a, lens(1));
    assert_ne!(a, lens(2));
    assert!(a.iter().all(|n| (16..=128).contains(n)), "{a:?}");
}

fn scrape(url: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        c.get(url)
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing from\n{text}"))
}

#[test]
fn server_metrics_follow_vllm_names_and_real_state() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        max_num_seqs: 4,
        min_output_len: 30,
        max_output_len: 30,
        ..SimConfig::default()
    });
    let metrics = format!("{}/metrics", sim.base_url());
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let outdir = out.path().to_str().unwrap().to_string();
    let run = std::thread::spawn(move || {
        #[rustfmt::skip]
        let o = common::run(&[
            "--url", &url, "--model", "m", "--parallel", "12", "--number", "36", "--no-test-connection",
            "--outputs-dir", &outdir, "--metrics-addr", "off",
        ]);
        o.map(|o| o.dir)
    });
    // While the run is on: 4 sequences in the batch, the rest queued.
    let mut seen_full = false;
    for _ in 0..100 {
        let t = scrape(&metrics);
        if value(&t, "vllm:num_requests_running{") == 4.0
            && value(&t, "vllm:num_requests_waiting{") > 0.0
        {
            seen_full = true;
            assert!(value(&t, "vllm:kv_cache_usage_perc{") > 0.0);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen_full, "never saw a full batch with a queue");
    let dir = run.join().unwrap().unwrap();
    let t = scrape(&metrics);
    let conn = common::db(&dir.join("parallel_12_number_36"));
    let (completion, prompt): (i64, i64) = conn
        .query_row(
            "SELECT SUM(completion_tokens), SUM(prompt_tokens) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        value(&t, "vllm:generation_tokens_total{") as i64,
        completion
    );
    assert_eq!(value(&t, "vllm:prompt_tokens_total{") as i64, prompt);
    assert_eq!(value(&t, "vllm:time_to_first_token_seconds_count{"), 36.0);
    assert_eq!(value(&t, "vllm:e2e_request_latency_seconds_count{"), 36.0);
    assert_eq!(
        value(&t, "vllm:inter_token_latency_seconds_count{"),
        36.0 * 29.0
    );
    assert_eq!(value(&t, "vllm:num_requests_running{"), 0.0);
    assert!(t.contains("model_name=\"m\""), "{t}");
    // As vLLM: a `_created` sample beside every counter and histogram series,
    // and vLLM 0.11+'s prompt-token split.
    assert!(value(&t, "vllm:generation_tokens_created{") > 1.7e9);
    assert!(value(&t, "vllm:time_to_first_token_seconds_created{") > 1.7e9);
    let computed = t
        .lines()
        .find(|l| {
            l.starts_with("vllm:prompt_tokens_by_source_total{") && l.contains("local_compute")
        })
        .map(|l| value(l, "vllm:"))
        .unwrap_or_else(|| panic!("no local_compute series in\n{t}"));
    assert_eq!(
        computed + value(&t, "vllm:prompt_tokens_cached_total{"),
        prompt as f64,
        "computed + cached = all prompt tokens"
    );
    // The simulator's own TTFT agrees with the client's within the loopback hop.
    let server_ttft = value(&t, "vllm:time_to_first_token_seconds_sum{") / 36.0;
    let client_ttft: f64 = conn
        .query_row("SELECT AVG(first_chunk_latency) FROM result", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        client_ttft >= server_ttft && client_ttft - server_ttft < 0.005,
        "{client_ttft} vs {server_ttft}"
    );
}
