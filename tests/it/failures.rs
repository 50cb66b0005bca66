//! Every failure kind is a record with its kind and text; injected faults at scale.
use crate::common::{self, Bench};

use perfscope::client::{self, Cancel, Ticket};
use perfscope::record::{Clock, FailureKind};
use perfscope::sim::SimConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Request heads and bodies the mock received, in order.
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A raw HTTP/1.1 server answering by request path with canned bytes.
async fn mock() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                // Read the body too (content-length), then record head and body.
                let text = String::from_utf8_lossy(&buf).into_owned();
                let head_len = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
                let want = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_len + want {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                if let Ok(mut seen) = SEEN.lock() {
                    seen.push(head.clone());
                }
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let sse = |body: &str| {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                };
                let tok = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
                let resp = match path.as_str() {
                    "/ok" | "/v1/completions" => sse(&format!("{tok}data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}}}}\n\ndata: [DONE]\n\n")),
                    "/incomplete" => sse(tok),
                    "/inband" => sse(&format!("{tok}data: {{\"error\":{{\"message\":\"engine overloaded\"}}}}\n\n")),
                    "/malformed" => sse(&format!("{tok}data: {{\"choices\":[\n\n")),
                    "/400" => "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 22\r\n\r\n{\"error\":\"bad model\"}\n".to_string(),
                    "/text" => "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi".to_string(),
                    // 120 header lines (aiohttp takes up to 128), a folded one.
                    "/many-headers" | "/folded" => {
                        let ok = sse(&format!("{tok}data: [DONE]\n\n"));
                        let extra = if path == "/folded" {
                            "x-folded: first part\r\n  second part\r\n".to_string()
                        } else {
                            (0..120).map(|i| format!("x-h{i}: v{i}\r\n")).collect()
                        };
                        ok.replacen("\r\n", &format!("\r\n{extra}"), 1)
                    }
                    "/gzip" => "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\n\x1f\u{8b}\x08\x00".to_string(),
                    "/transport" => {
                        // Chunked body cut off in the middle of a chunk.
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n40\r\ndata: {\"choices\"").await;
                        return;
                    }
                    "/stall" => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n").await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn every_failure_kind_is_classified_with_text() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = mock().await;
    let clock = Clock::start();
    let never = Cancel::new();
    let body = bytes::Bytes::from_static(b"{}");
    let go = |path: String, timeout: Duration, cancel: Cancel| {
        let body = body.clone();
        async move {
            let c = client::Client::new(
                &client::ClientConfig {
                    headers: vec![],
                    connect_timeout: None,
                    read_timeout: None,
                    total_timeout: timeout,
                    max_response_bytes: 16 << 20,
                    source_addrs: vec![],
                    tls: Default::default(),
                },
                &reqwest::Url::parse(&path).unwrap(),
                64,
                perfscope::protocol::Protocol::OpenAi,
                clock,
            )
            .unwrap();
            let t = Ticket {
                seq: 0,
                intended_start: 0.0,
                body,
                stream_requested: true,
                trace: None,
                keep_text: false,
                extra_headers: None,
            };
            c.execute(t, &cancel).await
        }
    };
    let base = format!("http://{addr}");
    let ok = go(format!("{base}/ok"), Duration::from_secs(5), never.clone()).await;
    assert!(ok.success, "{:?}", ok.error);
    for path in ["/many-headers", "/folded"] {
        let r = go(
            format!("{base}{path}"),
            Duration::from_secs(5),
            never.clone(),
        )
        .await;
        assert!(r.success, "{path}: {:?}", r.error);
    }
    assert_eq!((ok.prompt_tokens, ok.completion_tokens), (Some(1), Some(1)));
    assert!(ok.ttft().unwrap() > 0.0);

    let cases: Vec<(&str, FailureKind, &str)> = vec![
        (
            "/incomplete",
            FailureKind::IncompleteStream,
            "without [DONE]",
        ),
        ("/inband", FailureKind::InBandError, "engine overloaded"),
        ("/malformed", FailureKind::MalformedChunk, "malformed chunk"),
        ("/400", FailureKind::Http4xx, "bad model"),
        ("/text", FailureKind::Other, "text/plain"),
        ("/gzip", FailureKind::Other, "(Content-Encoding: gzip)"),
        ("/transport", FailureKind::Transport, "reading the stream"),
    ];
    for (path, kind, text) in cases {
        let r = go(
            format!("{base}{path}"),
            Duration::from_secs(5),
            never.clone(),
        )
        .await;
        assert!(!r.success, "{path}");
        assert_eq!(r.failure, Some(kind), "{path}: {:?}", r.error);
        let e = r.error.unwrap_or_default();
        assert!(e.contains(text), "{path}: {e}");
    }
    let r = go(
        format!("{base}/stall"),
        Duration::from_millis(300),
        never.clone(),
    )
    .await;
    assert_eq!(r.failure, Some(FailureKind::Timeout), "{:?}", r.error);
    assert!(r.timeline.end - r.timeline.send >= 0.29);

    let cancel = Cancel::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.cancel();
    });
    let r = go(format!("{base}/stall"), Duration::from_secs(20), cancel).await;
    assert_eq!(r.failure, Some(FailureKind::Cancelled));

    // Nothing listens on a port we just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = go(
        format!("http://{closed}/v1/chat/completions"),
        Duration::from_secs(5),
        never.clone(),
    )
    .await;
    assert_eq!(r.failure, Some(FailureKind::Connect), "{:?}", r.error);
    assert!(r.error.unwrap_or_default().contains(&closed.to_string()));
}

#[test]
fn the_server_receives_headers_and_body_as_configured() {
    let _g = common::lock();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(mock());
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/v1/completions");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--number", "2", "--prompt", "ping", "--api-key", "sk-test",
        "--headers", "X-Team=bench", "Authorization=Basic dropped", "--max-tokens", "9",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let seen: Vec<String> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("POST /v1/completions "))
        .cloned()
        .collect();
    // The connection test's check of the run's max_tokens (streamed, closed at the
    // response head), its 1-token request, then the two requests.
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen[0].ends_with(
            r#"{"prompt":"hello","model":"m","max_tokens":9,"stream":true,"temperature":0.0}"#
        ),
        "{}",
        seen[0]
    );
    let lower = seen[2].to_ascii_lowercase();
    assert!(
        lower.contains("authorization: bearer sk-test\r\n"),
        "{}",
        seen[2]
    );
    assert!(
        !lower.contains("basic dropped"),
        "--api-key replaces an Authorization header"
    );
    assert!(lower.contains("x-team: bench\r\n"));
    assert!(lower.contains("content-type: application/json\r\n"));
    assert!(lower.contains("user-agent: perfscope\r\n"));
    // A completions URL: the prompt is sent as `prompt`, not chat messages.
    let body = seen[2].split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        body,
        r#"{"prompt":"ping","model":"m","max_tokens":9,"stream":true,"stream_options":{"include_usage":true},"temperature":0.0}"#
    );
    // W3C trace context: the trace id sent is the one stored with the row.
    let tp = lower
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent in {}", seen[2]))
        .trim()
        .to_string();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[3]), ("00", "01"));
    assert!(parts[1].len() == 32 && parts[2].len() == 16, "{tp}");
    let conn = common::db(&o.dir.join("parallel_1_number_2"));
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM result WHERE trace_id = ?1",
            [parts[1]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);
    let test_body = seen[1].split("\r\n\r\n").nth(1).unwrap();
    assert!(test_body.contains(r#""max_tokens":1"#), "{test_body}");
}

#[test]
fn injected_faults_every_sent_request_is_a_row() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.05,
        drop_rate: 0.05,
        malformed_rate: 0.02,
        in_band_error_rate: 0.02,
        rate_limit_rate: 0.02,
        seed: 11,
        ..SimConfig::default()
    })
    .parallel(16)
    .number(500)
    .run();
    let (o, sim) = (&ran.outcome, ran.sim());
    // The run completed with successes: exit code 0, failures are data.
    assert_eq!(o.exit_code, 0);
    let sent = sim
        .sim
        .requests_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent, 500);
    let dir = o.dir.join("parallel_16_number_500");
    let conn = common::db(&dir);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, sent);
    let mut st = conn
        .prepare("SELECT failure_kind, COUNT(*), SUM(error IS NULL OR error = '') FROM result WHERE success=0 GROUP BY failure_kind")
        .unwrap();
    let kinds: Vec<(String, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    let names: Vec<&str> = kinds.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_429",
            "http_5xx",
            "in_band_error",
            "malformed_chunk",
            "transport"
        ],
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|k| k.2 == 0),
        "every failure has error text: {kinds:?}"
    );
    let failed: i64 = kinds.iter().map(|k| k.1).sum();
    assert!((40..=100).contains(&failed), "about 16% injected: {failed}");
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Failed Requests"].as_i64().unwrap(), failed);
}

#[test]
fn all_failing_run_exits_3() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .number(5)
    .run();
    let o = &ran.outcome;
    assert_eq!(o.exit_code, 3);
    let dir = o.dir.join("parallel_1_number_5");
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Success Requests"], 0);
    assert_eq!(s["Avg Latency (s)"], -1.0);
    // evalscope 1.14.1's sentinels: −1 × 1000 for the millisecond averages.
    assert_eq!(s["Avg TTFT (ms)"], -1000.0);
    assert_eq!(s["Avg TPOT (ms)"], -1000.0);
    assert_eq!(s["Avg ITL (ms)"], 0.0);
    // perfscope's own keys are unknown, not sentinels, and the token counts say
    // that nothing succeeded rather than naming a source.
    assert!(s["Avg Time to First Event (ms)"].is_null(), "{s}");
    assert_eq!(s["Token Counts"], "none: no request succeeded");
    let log = std::fs::read_to_string(o.dir.join("benchmark.log")).unwrap();
    let row = log
        .lines()
        .find(|l| l.contains("Avg Time to First Event (ms)"))
        .unwrap_or_default();
    assert!(row.contains("n/a"), "{row}");
    assert!(log.contains("none: no request succeeded"), "{log}");
    // evalscope writes no workload files when nothing succeeded.
    assert!(!dir.join("workload_throughput.json").exists());
    assert!(!dir.join("workload_timeline.json").exists());
    // 1.14.1 writes the percentile file always: 11 rows of NaN.
    let p = std::fs::read_to_string(dir.join("benchmark_percentile.json")).unwrap();
    assert_eq!(p.matches("\"Latency (s)\": NaN").count(), 11, "{p}");
}

#[test]
fn connection_test_names_the_url() {
    let _g = common::lock();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{closed}/v1/chat/completions");
    let err = common::run(&[
        "--url",
        &url,
        "--model",
        "m",
        "--number",
        "1",
        "--outputs-dir",
        out.path().to_str().unwrap(),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(&url) && err.contains("--no-test-connection"),
        "{err}"
    );
}

#[test]
fn requests_never_sent_are_not_rows() {
    // Serialised before the stop's timer starts: it must count from this run's
    // start, not from a wait for another test.
    let _g = common::lock();
    // Every answer takes 30 s: four requests are in flight and four more wait for a
    // slot (--in-flight-task-multiplier 2) when the run is stopped.
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(30_000.0),
        ..SimConfig::default()
    })
    .parallel(4)
    .number(100)
    .arg("--metrics-addr", "off")
    .stop(common::stop_after(2000, Some(300)))
    .run();
    let (o, sim) = (&ran.outcome, ran.sim());
    assert_eq!(o.exit_code, 130);
    let seen = sim
        .sim
        .requests_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(seen, 4);
    let dir = common::run_dirs(&o.dir).pop().unwrap();
    let conn = common::db(&dir);
    let (rows, cancelled): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(failure_kind = 'cancelled') FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (rows, cancelled),
        (4, 4),
        "only what the server saw is stored"
    );
    let s = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(s["Not Sent Requests"], 4);
    assert_eq!(s["Total Requests"], 4);
}
