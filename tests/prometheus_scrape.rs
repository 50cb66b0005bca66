//! A real Prometheus (Debian's package) scrapes a perfscope run against the simulator:
//! counters and histogram counts equal what was sent and stored, and exemplars come
//! back from /api/v1/query_exemplars with trace ids that are SQLite rows.
mod common;

use perfscope::sim::SimConfig;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PERFSCOPE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{program} is required (PERFSCOPE_REQUIRE_EXTERNAL=1) but not on PATH; install Debian's prometheus package");
        }
        eprintln!("SKIPPED: {program} not on PATH; the real-Prometheus scrape test did not run");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json(url: &str) -> Option<serde_json::Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    })
}

fn query(prom: &str, q: &str) -> Option<f64> {
    let url = format!("{prom}/api/v1/query?query={}", urlencode(q));
    let v = get_json(&url)?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn real_prometheus_scrapes_a_run() {
    if !have("prometheus") {
        return;
    }
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        error_rate: 0.05,
        seed: 2,
        ..SimConfig::default()
    });
    let (metrics_port, prom_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: perfscope\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .args([
                &format!("--config.file={}", config.display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                "--enable-feature=exemplar-storage",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let t = Instant::now();
    while !reqwest_ok(&format!("{prom}/-/ready")) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "prometheus did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = dir.path().join("out");
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let addr = format!("127.0.0.1:{metrics_port}");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--parallel", "4", "--number", "300", "--rate", "100",
        "--no-test-connection", "--metrics-addr", &addr, "--metrics-linger", "4",
        "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    let conn = common::db(&o.dir.join("parallel_4_number_300"));
    let (sent, ok): (f64, f64) = conn
        .query_row("SELECT COUNT(*), SUM(success) FROM result", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(sent, 300.0);
    // The linger kept the final values up for several scrapes.
    assert_eq!(query(&prom, "sum(perfscope_requests_total)"), Some(sent));
    assert_eq!(
        query(&prom, "sum(perfscope_requests_total{outcome=\"success\"})"),
        Some(ok)
    );
    assert_eq!(
        query(&prom, "sum(perfscope_time_to_first_token_seconds_count)"),
        Some(ok)
    );
    assert_eq!(
        query(&prom, "sum(perfscope_request_latency_seconds_count)"),
        Some(ok)
    );
    assert_eq!(query(&prom, "max(perfscope_target_concurrency)"), Some(4.0));
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ex = get_json(&format!(
        "{prom}/api/v1/query_exemplars?query={}&start={}&end={}",
        urlencode("perfscope_time_to_first_token_seconds_bucket"),
        end - 600,
        end + 60
    ))
    .unwrap();
    let trace_ids: Vec<String> = ex["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_string))
        .collect();
    assert!(!trace_ids.is_empty(), "no exemplars: {ex}");
    for id in &trace_ids {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM result WHERE trace_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "exemplar trace id {id} is not a stored request");
    }
}

fn reqwest_ok(url: &str) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    rt.block_on(async {
        reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
}
