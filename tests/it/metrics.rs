//! The live /metrics endpoint: values agree with what was sent and stored, and the
//! exposition is valid (checked by promtool when it is installed).
use crate::common;

use perfscope::sim::SimConfig;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(url: &str, accept: &str) -> Option<(String, String)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .header("accept", accept)
            .send()
            .await
            .ok()?;
        let ct = r.headers().get("content-type")?.to_str().ok()?.to_string();
        Some((ct, r.text().await.ok()?))
    })
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn live_metrics_match_the_run_and_parse() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        error_rate: 0.1,
        seed: 8,
        ..SimConfig::default()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let outdir = out.path().to_str().unwrap().to_string();
    let (a2, u2) = (addr.clone(), url.clone());
    let run = std::thread::spawn(move || {
        #[rustfmt::skip]
        let r = common::run(&[
            "--url", &u2, "--model", "m", "--parallel", "4", "--number", "200", "--no-test-connection",
            "--metrics-addr", &a2, "--metrics-linger", "30", "--outputs-dir", &outdir, "--name", "live",
            "--enable-progress-tracker",
        ]);
        r.map(|o| o.exit_code)
    });
    let metrics_url = format!("http://{addr}/metrics");
    // Wait for the run to finish (every request counted), while /metrics lingers.
    let t = Instant::now();
    let om = loop {
        if let Some((_, text)) = get(&metrics_url, "application/openmetrics-text; version=1.0.0") {
            let done: f64 = text
                .lines()
                .filter(|l| l.starts_with("perfscope_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if done >= 200.0
                && sample(&text, "perfscope_in_flight_requests{").is_some_and(|v| v == 0.0)
            {
                break text;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(25), "run did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    // --enable-progress-tracker: the same progress on /metrics and in progress.json.
    assert_eq!(
        sample(&om, "perfscope_progress_processed_requests{shard=\"0\"} "),
        Some(200.0),
        "{om}"
    );
    assert_eq!(
        sample(&om, "perfscope_progress_total_requests{shard=\"0\"} "),
        Some(200.0)
    );
    let ts = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let progress_file = ts.join("live/progress.json");
    let t = Instant::now();
    let progress = loop {
        let p = std::fs::read_to_string(&progress_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(p) = p.filter(|p| p["status"] == "completed") {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "progress.json never completed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(progress["pipeline"], "perf");
    assert_eq!(progress["total_count"], 200);
    assert_eq!(progress["processed_count"], 200);
    assert_eq!(progress["percent"], 100.0);
    let updated = progress["updated_at"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(updated, "%Y-%m-%dT%H:%M:%S%.f").is_ok(),
        "{updated}"
    );
    assert!(
        !ts.join("live/progress.json.tmp").exists(),
        "replaced atomically"
    );
    // Counters and histograms agree with the database.
    let conn = rusqlite::Connection::open(
        out.path()
            .join("live/parallel_4_number_200/benchmark_data.db"),
    )
    .or_else(|_| {
        let ts = std::fs::read_dir(out.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        rusqlite::Connection::open(ts.join("live/parallel_4_number_200/benchmark_data.db"))
    })
    .unwrap();
    let (ok, failed, out_tokens): (i64, i64, i64) = conn
        .query_row(
            "SELECT SUM(success), SUM(1 - success), SUM(COALESCE(completion_tokens, 0)) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(failed > 0);
    // Every series carries the constant shard label first (0: not sharded).
    let labels = "{shard=\"0\",run=\"";
    let succ = om
        .lines()
        .find(|l| l.starts_with("perfscope_requests_total{") && l.contains("outcome=\"success\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert_eq!(succ as i64, ok, "{om}");
    let fail = om
        .lines()
        .find(|l| {
            l.starts_with("perfscope_requests_total{") && l.contains("failure_kind=\"http_5xx\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert_eq!(fail as i64, failed);
    // Every other failure kind exists at 0 from the stage's start (error-ratio
    // panels show 0, not "No data"), and so does the resend counter.
    for kind in perfscope::record::FailureKind::ALL {
        if kind.as_str() == "http_5xx" {
            continue;
        }
        let v = om
            .lines()
            .find(|l| {
                l.starts_with("perfscope_requests_total{")
                    && l.contains(&format!("failure_kind=\"{}\"", kind.as_str()))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(v, Some(0.0), "{}", kind.as_str());
    }
    assert_eq!(
        sample(&om, &format!("perfscope_resent_requests_total{labels}")),
        Some(0.0)
    );
    assert!(om.contains("stage=\"parallel_4_number_200\""));
    for h in [
        "perfscope_time_to_first_token_seconds_count",
        "perfscope_request_latency_seconds_count",
        "perfscope_request_output_tokens_count",
    ] {
        assert_eq!(sample(&om, &format!("{h}{labels}")), Some(ok as f64), "{h}");
    }
    assert_eq!(
        sample(&om, &format!("perfscope_output_tokens_total{labels}")),
        Some(out_tokens as f64)
    );
    assert_eq!(
        sample(
            &om,
            &format!("perfscope_schedule_lag_seconds_count{labels}")
        ),
        Some(200.0)
    );
    assert_eq!(sample(&om, "perfscope_target_concurrency{"), Some(4.0));
    assert_eq!(sample(&om, "perfscope_target_rate_rps{"), Some(-1.0));
    assert!(om.contains("perfscope_run_info{"), "{om}");
    assert!(om.contains("# UNIT perfscope_time_to_first_token_seconds seconds"));
    assert!(om.trim_end().ends_with("# EOF"));
    // ITL buckets are vLLM's plus finer ones below 10 ms.
    assert!(
        om.contains("perfscope_inter_token_latency_seconds_bucket{")
            && om.contains("le=\"0.0005\"")
    );

    // Request-level histograms carry exemplars whose trace ids are SQLite rows.
    let exemplar = om
        .lines()
        .filter(|l| l.starts_with("perfscope_time_to_first_token_seconds_bucket{"))
        .find_map(|l| {
            l.split_once("# {trace_id=\"")
                .map(|(_, rest)| rest[..32].to_string())
        })
        .unwrap_or_else(|| panic!("no exemplar in {om}"));
    let rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM result WHERE trace_id = ?1 AND success = 1",
            [&exemplar],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "exemplar {exemplar}");
    let with_trace: i64 = conn
        .query_row("SELECT COUNT(trace_id) FROM result", [], |r| r.get(0))
        .unwrap();
    assert_eq!(with_trace, 200);

    // Without an OpenMetrics Accept header: Prometheus text 0.0.4.
    let (ct, prom) = get(&metrics_url, "text/plain").unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!prom.contains("# EOF"));
    if common::external("promtool") {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(prom.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // promtool exits 3 for lint warnings (e.g. naming advice) and 1 for errors.
        assert_ne!(
            o.status.code(),
            Some(1),
            "promtool rejected the exposition:\n{report}"
        );
        assert!(!report.contains("error"), "{report}");
    }
    // Ctrl-C-free stop: the linger ends when the test process exits; the run's own
    // result is checked only if it already returned.
    if run.is_finished() {
        assert_eq!(run.join().unwrap().unwrap(), 0);
    }
}

#[test]
fn slowloris_clients_are_dropped_and_connections_bounded() {
    use std::io::Read;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { "up 1\n" }));
    rt.spawn(perfscope::recorder::prometheus::serve_bounded(
        listener,
        app,
        std::future::pending(),
    ));
    // 100 clients that send half a request head and then nothing.
    let mut slow: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Beyond the 64 the server keeps, connections are closed at once.
    let t = Instant::now();
    let mut closed = 0;
    for c in slow.iter_mut().skip(64) {
        let mut b = [0u8; 16];
        if matches!(c.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 36);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The 64 kept are dropped when the 10 s head timeout passes.
    for c in slow.iter_mut().take(64) {
        let mut b = [0u8; 1024];
        let r = c.read(&mut b);
        assert!(
            matches!(r, Ok(0) | Err(_))
                || matches!(r, Ok(n) if b[..n].starts_with(b"HTTP/1.1 408")),
            "{r:?}"
        );
    }
    let held = t.elapsed();
    assert!(
        held >= Duration::from_secs(9) && held < Duration::from_secs(14),
        "{held:?}"
    );
    // And a normal scrape is served.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("up 1\n"),
        "{text}"
    );
}
