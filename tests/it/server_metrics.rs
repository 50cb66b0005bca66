//! Server-side truth: the served model's /metrics scraped into `server_metrics` and
//! the Server keys derived from it.
use crate::common::{self, Bench};

use perfscope::scrape::parse;
use perfscope::sim::SimConfig;
use perfscope::stats::{Metric, RunInputs};
use perfscope::store::{RunRows, ServerSamples};
use std::path::Path;

/// A counter or a histogram series: it grows between scrapes.
fn cumulative(name: &str) -> bool {
    ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
        || name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
}

/// The summary of a run whose server was scraped twice: the fixture (a server's
/// documented /metrics output), then the same with every cumulative series doubled,
/// so each counter's change over the run is its fixture value.
fn summary_of(fixture: &str, completion_tokens: Option<i64>) -> perfscope::stats::Summary {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/server_metrics")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse::parse(&text);
    assert_eq!(parsed.bad_lines, 0, "{fixture}");
    assert!(!parsed.samples.is_empty(), "{fixture}");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("benchmark_data.db");
    let conn = perfscope::store::open(&db).unwrap();
    // The run's requests span both scrapes (peaks count only scrapes taken while
    // requests were on the wire); without client token counts, one failed request.
    if completion_tokens.is_none() {
        conn.execute(
            "INSERT INTO result(start_time, completed_time, end_time, success, is_stream, start_unix, end_unix)
             VALUES (1, 2, 2, 0, 1, 100, 101)",
            [],
        )
        .unwrap();
    }
    if let Some(n) = completion_tokens {
        conn.execute(
            "INSERT INTO result(start_time, completed_time, end_time, success, is_stream, latency, prompt_tokens, completion_tokens, start_unix, end_unix)
             VALUES (1, 2, 2, 1, 1, 1, 10, ?1, 100, 101)",
            [n],
        )
        .unwrap();
    }
    let mut store = ServerSamples::open(&db).unwrap();
    for (ts, factor) in [(100.0, 1.0), (101.0, 2.0)] {
        let rows: Vec<(String, String, f64)> = parsed
            .samples
            .iter()
            .map(|s| {
                let v = if cumulative(&s.name) {
                    s.value * factor
                } else {
                    s.value
                };
                (s.name.clone(), s.labels_json(), v)
            })
            .collect();
        store
            .insert(ts, "http://gpu-node:8000/metrics", &rows)
            .unwrap();
    }
    summary_of_dir(dir.path())
}

/// The summary of the run stored in `dir` (one LLM run at concurrency 1).
fn summary_of_dir(dir: &Path) -> perfscope::stats::Summary {
    let rows = RunRows::open_step(dir).unwrap();
    perfscope::stats::summary(
        &rows,
        &RunInputs {
            parallel: 1,
            rate: -1.0,
            goodput: None,
            encoder: false,
            decision: false,
        },
    )
    .unwrap()
}

#[test]
fn each_servers_documented_metrics_give_the_server_keys() {
    use Metric::*;
    let check = |s: &perfscope::stats::Summary, want: &[(Metric, f64)]| {
        for &(m, v) in want {
            assert_eq!(s.get(m), Some(v), "{}", m.key());
        }
    };
    // vLLM: counters summed over engines, histograms' Δsum/Δcount, peaks per scrape.
    let s = summary_of("vllm.txt", None);
    check(
        &s,
        &[
            (ServerPromptTokens, 42000.0),
            (ServerOutputTokens, 25600.0),
            (ServerAvgTtft, 32.0),
            (ServerAvgQueueTime, 6.0),
            (ServerAvgPrefillTime, 20.0),
            (ServerAvgDecodeTime, 1250.0),
            (ServerPeakRunning, 22.0),
            (ServerPeakWaiting, 4.0),
            (ServerPeakKvCacheUsage, 42.0),
            (ServerPrefixCacheHitRate, 25.0),
            (ServerPreemptions, 3.0),
        ],
    );
    let s = summary_of("sglang.txt", None);
    check(
        &s,
        &[
            (ServerPromptTokens, 8128.0),
            (ServerOutputTokens, 7557.0),
            (ServerAvgTtft, 300.0),
            (ServerAvgQueueTime, 50.0),
            (ServerPeakRunning, 162.0),
            (ServerPeakWaiting, 28.0),
            (ServerPeakKvCacheUsage, 28.0),
            (ServerPrefixCacheHitRate, 25.0),
            (ServerPreemptions, 2.0),
        ],
    );
    // llama.cpp's own output (llama-server --metrics): prompt tokens are those it
    // processed plus those reused from its cache.
    let s = summary_of("llamacpp.txt", None);
    check(
        &s,
        &[
            (ServerPromptTokens, 705.0 + 528.0),
            (ServerOutputTokens, 1281.0),
            (ServerPeakRunning, 0.0),
            (ServerPeakWaiting, 0.0),
            (ServerPrefixCacheHitRate, 42.82),
        ],
    );
    assert_eq!(
        s.get(ServerAvgTtft),
        None,
        "llama.cpp has no TTFT histogram"
    );
    let s = summary_of("tgi.txt", None);
    check(
        &s,
        &[
            (ServerPromptTokens, 6400.0),
            (ServerOutputTokens, 3200.0),
            (ServerAvgQueueTime, 10.0),
            (ServerPeakRunning, 32.0),
            (ServerPeakWaiting, 7.0),
        ],
    );
    // DCGM: two GPUs; energy is in mJ since boot.
    let s = summary_of("dcgm.txt", Some(1000));
    check(
        &s,
        &[
            (GpuAvgUtilization, 80.0),
            (GpuPeakMemory, 60.0),
            (Energy, 200.0),
            (OutputTokensPerJoule, 5.0),
        ],
    );
    assert_eq!(s.get(ServerPromptTokens), None);
    // Without any server sample there is no server key at all.
    let json = s.to_json();
    assert!(!json.contains_key("Server Avg TTFT (ms)"));
}

/// Against the simulator, whose state is known: the server's token counters move by
/// exactly what the client stored, and under saturation requests queue.
#[test]
fn simulator_server_keys_match_its_known_state() {
    // 4 batch slots for 16 concurrent requests: 12 wait at any time.
    let ran = Bench::sim_with(SimConfig {
        max_num_seqs: 4,
        decode_base_ms: 4.0,
        decode_ms_per_seq: 0.5,
        min_output_len: 20,
        max_output_len: 20,
        ..SimConfig::default()
    })
    .parallel(16)
    .number(96)
    .arg("--server-metrics-interval", "0.2")
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let s = ran.summary();
    let conn = ran.db();
    let (prompt, completion, first_send, last_end): (f64, f64, f64, f64) = conn
        .query_row(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens), MIN(start_unix), MAX(end_unix) FROM result WHERE success=1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let num = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k}: {}", s[k]));
    assert_eq!(num("Server Prompt Tokens"), prompt);
    assert_eq!(num("Server Output Tokens"), completion);
    // The same delta recomputed here from the stored samples.
    // (Before the first request the counter has no series yet: it starts at 0.)
    let (first, last): (Option<f64>, f64) = conn
        .query_row(
            "SELECT (SELECT value FROM server_metrics WHERE name='vllm:generation_tokens_total'
                     AND ts = (SELECT MIN(ts) FROM server_metrics)),
                    (SELECT value FROM server_metrics WHERE name='vllm:generation_tokens_total' ORDER BY ts DESC LIMIT 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(last - first.unwrap_or(0.0), completion);
    // The before-scrape precedes the first request and the after-scrape follows the
    // last, on the clock of the request rows; scrapes ran during the run too.
    let (t0, t1, scrapes): (f64, f64, i64) = conn
        .query_row(
            "SELECT MIN(ts), MAX(ts), COUNT(DISTINCT ts) FROM server_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(
        t0 < first_send && t1 > last_end,
        "{t0} {first_send} {last_end} {t1}"
    );
    assert!(scrapes >= 4, "{scrapes} scrapes");
    // Saturation: requests waited for a slot; queue + prefill is the server's TTFT,
    // and the client saw that plus its network and HTTP layers.
    let (queue, prefill, ttft) = (
        num("Server Avg Queue Time (ms)"),
        num("Server Avg Prefill Time (ms)"),
        num("Server Avg TTFT (ms)"),
    );
    assert!(queue > 50.0, "queue {queue}");
    assert!(
        (queue + prefill - ttft).abs() <= 0.02,
        "{queue} + {prefill} vs {ttft}"
    );
    let client = num("Avg TTFT (ms)");
    assert!(client >= ttft, "{client} vs {ttft}");
    assert!((num("Client Overhead TTFT (ms)") - (client - ttft)).abs() <= 0.011);
    assert_eq!(num("Server Peak Running"), 4.0);
    let waiting = num("Server Peak Waiting");
    assert!((8.0..=12.0).contains(&waiting), "waiting {waiting}");
    // The simulator's prefix cache: the client's hit rate (from each response's
    // cached_tokens) is the server's counters' rate.
    let cached: f64 = conn
        .query_row(
            "SELECT SUM(cached_tokens) FROM result WHERE success=1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let rate = num("Server Prefix Cache Hit Rate (%)");
    assert!(
        (rate - (100.0 * cached / prompt * 100.0).round() / 100.0).abs() < 1e-9,
        "{rate}"
    );
    assert!((num("KV Cache Hit Rate (%)") - 100.0 * cached / prompt).abs() < 1e-4);
    // vLLM 0.11+'s series: cached and computed prompt tokens, per-request prefill,
    // and no request deferred for other reasons than capacity.
    assert_eq!(num("Server Cached Prompt Tokens"), cached);
    assert_eq!(num("Server Computed Prompt Tokens"), prompt - cached);
    let per_request = (prompt - cached) / 96.0;
    assert!(
        (num("Server Avg Prefill Computed Tokens") - per_request).abs() <= 0.005 + 1e-9,
        "{per_request}"
    );
    assert_eq!(num("Server Peak Waiting (deferred)"), 0.0);
    assert_eq!(num("Server Preemptions"), 0.0);
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert!(!log.contains("cached prompt tokens"), "no cache warning");
    assert!(log.contains("Server metrics: http://127.0.0.1:"), "{log}");
    assert!(log.contains("── Server ──"));
    assert!(
        !log.contains("the server counted"),
        "no token mismatch warning"
    );
}

/// A tiny HTTP server answering every request with `reply(n)` (n: requests so far),
/// or never answering when `reply` gives None.
fn serve(reply: fn(usize) -> Option<String>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            match reply(n) {
                Some(text) => {
                    let _ = conn.write_all(text.as_bytes());
                }
                None => held.push(conn),
            }
        }
    });
    format!("http://{addr}/metrics")
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn missing_garbage_hanging_and_failing_endpoints_never_fail_the_run() {
    let not_found = serve(|_| Some(http("404 Not Found", "not found")));
    let garbage = serve(|_| Some(http("200 OK", "<html><body>hello</body></html>")));
    let hanging = serve(|_| None);
    // Serves metrics once (the probe), then fails.
    let flaky = serve(|n| {
        Some(if n == 0 {
            http("200 OK", "up 1\n")
        } else {
            http("500 Internal Server Error", "boom")
        })
    });
    let ran = Bench::sim()
        .parallel(2)
        .number(20)
        .max_tokens(8)
        .args(&["--server-metrics", &not_found, &garbage, &hanging, &flaky])
        .arg("--server-metrics-interval", "0.1")
        .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    for (url, why) in [
        (&not_found, "HTTP 404"),
        (&garbage, "not in the Prometheus text format"),
        (&hanging, "no answer within the scrape timeout"),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Server metrics") && l.contains(url.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "{url}: {lines:?}");
        assert!(lines[0].contains(why), "{}", lines[0]);
    }
    // The flaky endpoint was found, then failed at every scrape: said once.
    let flaky_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(flaky.as_str()) && l.contains("Server metrics"))
        .collect();
    assert_eq!(flaky_lines.len(), 2, "{flaky_lines:?}");
    assert!(flaky_lines[0].contains("INFO") && flaky_lines[1].contains("HTTP 500"));
    let s = ran.summary();
    assert!(s.get("Server Output Tokens").is_none());
    let n: i64 = ran
        .db()
        .query_row("SELECT COUNT(*) FROM server_metrics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    // `off` scrapes nothing, not even the simulator's own /metrics.
    let ran = Bench::sim()
        .number(4)
        .args(&["--server-metrics", "off"])
        .run();
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert!(!log.contains("Server metrics"), "{log}");
    let e = common::resolve(&["--model", "m", "--server-metrics", "ftp://x/metrics"]).unwrap_err();
    assert!(e.to_string().contains("--server-metrics"), "{e}");
}

/// A real llama.cpp server, when `llama-server` is on PATH and
/// PERFSCOPE_LLAMA_MODEL names a GGUF model (never in CI): its own counters moved
/// by exactly the token counts the client stored.
#[test]
fn real_llama_server_counters_match_the_client() {
    let model = std::env::var("PERFSCOPE_LLAMA_MODEL").unwrap_or_default();
    let found = std::process::Command::new("llama-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if model.is_empty() || !found {
        eprintln!(
            "SKIPPED: llama-server on PATH and PERFSCOPE_LLAMA_MODEL=model.gguf are needed; \
             this check did not run"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    #[rustfmt::skip]
    let mut child = std::process::Command::new("llama-server")
        .args(["-m", &model, "--host", "127.0.0.1", "--port", &port, "-np", "4", "-c", "8192",
               "--metrics", "--no-warmup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let up = (0..240).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(250));
        ureq::get(&format!("{base}/health"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(up, "llama-server did not become healthy");
    let ran = Bench::url(&format!("{base}/v1/chat/completions"))
        .model("tiny")
        .parallel(4)
        .number(40)
        .max_tokens(32)
        .arg("--server-metrics-interval", "0.2")
        .run();
    let _ = child.kill();
    let _ = child.wait();
    let s = ran.summary();
    let (prompt, completion): (f64, f64) = ran
        .db()
        .query_row(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM result WHERE success=1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(s["Success Requests"], 40);
    assert_eq!(s["Server Prompt Tokens"].as_f64(), Some(prompt));
    assert_eq!(s["Server Output Tokens"].as_f64(), Some(completion));
    // Its cache reuse, seen from both sides.
    let client = s["KV Cache Hit Rate (%)"].as_f64().unwrap();
    let server = s["Server Prefix Cache Hit Rate (%)"].as_f64().unwrap();
    assert!((client - server).abs() < 0.01, "{client} vs {server}");
}

#[test]
fn figures_the_scrapes_cannot_support_are_absent() {
    // A run over in well under the scrape interval: only the scrapes before and
    // after it, both of an idle server. Its peaks are unknown, not 0; its token
    // counters (deltas) are still exact.
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(20.0),
        itl_ms: Some(5.0),
        min_output_len: 5,
        max_output_len: 5,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(8)
    .arg("--server-metrics-interval", "30")
    .run();
    let s = ran.summary();
    for k in [
        "Server Peak Running",
        "Server Peak Waiting",
        "Server Peak KV Cache Usage (%)",
    ] {
        assert!(s.get(k).is_none(), "{k}: {s}");
    }
    assert!(s["Server Output Tokens"].as_f64().unwrap() > 0.0, "{s}");
    // Streaming: the client's TTFT against the server's gives the overhead.
    assert!(s.get("Client Overhead TTFT (ms)").is_some(), "{s}");
    drop(ran);
    // Without streaming the client's TTFT is the whole latency: no overhead figure.
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(20.0),
        itl_ms: Some(5.0),
        min_output_len: 5,
        max_output_len: 5,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(8)
    .args(&["--no-stream"])
    .run();
    let s = ran.summary();
    assert!(s.get("Server Avg TTFT (ms)").is_some(), "{s}");
    assert!(s.get("Client Overhead TTFT (ms)").is_none(), "{s}");
}

/// A run's database with one successful row (100 prompt tokens) and two scrapes of
/// a vLLM whose prompt counter rose by `server_prompt`, made with `n_choices`.
fn prompt_gap_summary(n_choices: Option<u64>, server_prompt: f64) -> perfscope::stats::Summary {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("benchmark_data.db");
    let conn = perfscope::store::open(&db).unwrap();
    let config = serde_json::json!({ "n_choices": n_choices }).to_string();
    conn.execute(
        "INSERT INTO run(run_id, api, url, config_json, status) VALUES ('r', 'openai', 'http://h/v1', ?1, 'completed')",
        [config],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO result(start_time, completed_time, end_time, success, is_stream, latency, prompt_tokens, completion_tokens, start_unix, end_unix)
         VALUES (1, 2, 2, 1, 1, 1, 100, 5, 100, 101)",
        [],
    )
    .unwrap();
    let mut store = ServerSamples::open(&db).unwrap();
    for (ts, v) in [(99.0, 1000.0), (102.0, 1000.0 + server_prompt)] {
        let rows = vec![("vllm:prompt_tokens_total".to_string(), "{}".to_string(), v)];
        store.insert(ts, "http://h/metrics", &rows).unwrap();
    }
    summary_of_dir(dir.path())
}

#[test]
fn vllm_counting_the_prompt_once_per_choice_is_no_gap() {
    // --n-choices 2: vLLM's counter rises by 2 × the prompt, the usage says 1 ×.
    let warned =
        |s: &perfscope::stats::Summary| s.warnings().iter().any(|w| w.contains("prompt tokens"));
    assert!(!warned(&prompt_gap_summary(Some(2), 200.0)));
    assert!(!warned(&prompt_gap_summary(Some(2), 100.0)));
    // Without --n-choices, a rise of 200 against 100 is a gap worth a warning.
    assert!(warned(&prompt_gap_summary(None, 200.0)));
    // With --n-choices 2, a rise of 400 (4 ×) is still one.
    assert!(warned(&prompt_gap_summary(Some(2), 400.0)));
}

#[test]
fn created_timestamps_are_not_stored() {
    // vLLM exports a `_created` sample beside each counter (about 90 per scrape):
    // a creation time, not a measurement.
    let url = serve(|_| {
        Some(http(
            "200 OK",
            "# TYPE vllm:request_success counter\nvllm:request_success_total{finished_reason=\"stop\"} 5\nvllm:request_success_created{finished_reason=\"stop\"} 1.7e9\n",
        ))
    });
    let ran = Bench::sim()
        .parallel(2)
        .number(10)
        .max_tokens(8)
        .args(&["--server-metrics", &url])
        .run();
    let names: Vec<String> = common::rows(
        &ran.db(),
        "SELECT DISTINCT name FROM server_metrics ORDER BY name",
        |r| r.get(0),
    );
    assert_eq!(names, ["vllm:request_success_total"]);
}

/// A vLLM that caches prompts but reports no `cached_tokens` per request (started
/// without `--enable-prompt-tokens-details`): the summary has the server's cached
/// count, no client hit rate, and the log says which vLLM flag reports them.
#[test]
fn a_vllm_without_prompt_token_details_is_told_how_to_report_them() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(1.0),
        no_prompt_tokens_details: true,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(12)
    .max_tokens(4)
    .args(&[
        "--prefix-length",
        "64",
        "--dataset",
        "random",
        "--min-prompt-length",
        "80",
        "--max-prompt-length",
        "100",
        "--server-metrics-interval",
        "0.2",
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let s = ran.summary();
    let reported: i64 = ran
        .db()
        .query_row(
            "SELECT COUNT(*) FROM result WHERE cached_tokens IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reported, 0);
    assert!(s.get("KV Cache Hit Rate (%)").is_none());
    let cached = s["Server Cached Prompt Tokens"].as_f64().unwrap();
    assert!(cached > 0.0, "the shared prefix hit: {s}");
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert!(
        log.contains(&format!(
            "the server served {cached} prompt tokens from its prefix cache"
        )) && log.contains("--enable-prompt-tokens-details"),
        "{log}"
    );
}
