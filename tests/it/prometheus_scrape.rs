//! A real Prometheus (Debian's package) scrapes a perfscope run against the simulator:
//! counters and histogram counts equal what was sent and stored, and exemplars come
//! back from /api/v1/query_exemplars with trace ids that are SQLite rows.
use crate::common;

use perfscope::sim::SimConfig;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Kill(pub(crate) Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn get_json(url: &str) -> Option<serde_json::Value> {
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

/// A Prometheus scraping perfscope's `/metrics` on `metrics_port` and the simulator
/// every second: its process, data directory and URL.
fn start_prometheus(metrics_port: u16, sim: &str) -> (Kill, tempfile::TempDir, String) {
    let prom_port = free_port();
    let sim_target = sim.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    // The bundled recording rules, so the burn-rate alerts' recorded series exist.
    let rules = std::fs::canonicalize("dashboards/prometheus/recording.yml").unwrap();
    let rules = rules.display();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: perfscope\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n  - job_name: sim\n    static_configs:\n      - targets: ['{sim_target}']\n"
        ),
    )
    .unwrap();
    let kill = Kill(
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
    (kill, dir, prom)
}

/// A multi-turn run against the simulator's prefix cache: the workloads dashboard's
/// queries (TTFT by turn, client and server cache hit rates) return data, and the
/// scraped cached-token counter equals the stored rows' sum.
#[test]
fn real_prometheus_shows_turns_and_cache() {
    if !common::external("prometheus") {
        return;
    }
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(1.0),
        ..SimConfig::default()
    });
    let metrics_port = free_port();
    let (_prom, dir, prom) = start_prometheus(metrics_port, &sim.base_url());
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let addr = format!("127.0.0.1:{metrics_port}");
    let outdir = dir.path().join("out").to_str().unwrap().to_string();
    let _run = std::thread::spawn(move || {
        #[rustfmt::skip]
        let r = common::run(&[
            "--url", &url, "--model", "m", "--parallel", "4", "--number", "40",
            "--dataset", "random_multi_turn", "--multi-turn", "--min-turns", "2",
            "--max-turns", "4", "--min-prompt-length", "60", "--max-prompt-length", "120",
            "--max-tokens", "8", "--no-test-connection", "--metrics-addr", &addr,
            "--metrics-linger", "120", "--outputs-dir", &outdir, "--no-timestamp",
        ]);
        r.map(|o| o.exit_code)
    });
    let step = dir.path().join("out/m/parallel_4_number_40");
    let t = Instant::now();
    while !step.join("benchmark_summary.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "no summary written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cached: f64 = common::db(&step)
        .query_row(
            "SELECT SUM(cached_tokens) FROM result WHERE success=1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(cached > 0.0);
    while query(&prom, "sum(perfscope_cached_prompt_tokens_total)") != Some(cached) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "cached tokens not scraped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    check_bundled_queries(&prom, &["perfscope-workloads.json"], 0);
}

/// `--scenario agentx` on the simulator: the AgentX dashboard's queries (lanes,
/// subagents, theoretical vs reported vs server cache hit) return data, and the
/// scraped theoretical blocks equal the run summary's.
#[test]
fn real_prometheus_shows_agentx_lanes_and_the_cache_ceiling() {
    if !common::external("prometheus") {
        return;
    }
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    crate::tokenizer::make_tokenizer(dir.path(), true);
    let tok = dir.path().to_string_lossy().into_owned();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(1.0),
        tokenizer_path: Some(tok.clone()),
        ..SimConfig::default()
    });
    let metrics_port = free_port();
    let (_prom, pdir, prom) = start_prometheus(metrics_port, &sim.base_url());
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let addr = format!("127.0.0.1:{metrics_port}");
    let outdir = pdir.path().join("out").to_str().unwrap().to_string();
    let _run = std::thread::spawn(move || {
        #[rustfmt::skip]
        let r = common::run(&[
            "--url", &url, "--model", "m", "--tokenizer-path", &tok,
            "--dataset-path", crate::agentx::SET, "--parallel", "2", "--duration", "8",
            "--scenario", r#"{"name": "agentx", "mode": "smoke", "trace_limit": 12}"#,
            "--no-test-connection", "--metrics-addr", &addr, "--metrics-linger", "120",
            "--outputs-dir", &outdir, "--no-timestamp",
            "--goodput", "ttft:500", "tpot:50", "e2el:5000", "--slo", "error_rate:0.1",
        ]);
        r.map(|o| o.exit_code)
    });
    let summary = pdir
        .path()
        .join("out/m/agentx_256k/parallel_2/agentx_summary.json");
    let t = Instant::now();
    while !summary.exists() {
        assert!(t.elapsed() < Duration::from_secs(90), "no summary written");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let s = common::json(&summary);
    let hit = s["metrics"]["theoretical_prefix_cache_hit"]["sum"]
        .as_f64()
        .unwrap();
    assert!(hit > 0.0);
    let q = "sum(perfscope_agentx_theoretical_prefix_hit_blocks_total)";
    while query(&prom, q) != Some(hit) {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "theoretical hit blocks not scraped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Both lanes played trees; the subagents' gauge saw at most the run's peak.
    let max = |m: &str| query(&prom, &format!("max_over_time(sum({m})[5m:500ms])"));
    assert_eq!(max("perfscope_agentx_active_lanes"), Some(2.0));
    let peak = s["replay"]["subagents_peak"].as_f64().unwrap();
    let seen = max("perfscope_agentx_subagents_in_flight").unwrap();
    assert!(
        peak >= 1.0 && seen >= 1.0 && seen <= peak,
        "{seen} of {peak}"
    );
    check_bundled_queries(&prom, &["perfscope-agentx.json"], 0);
}

#[test]
fn real_prometheus_scrapes_a_run() {
    if !common::external("prometheus") {
        return;
    }
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        error_rate: 0.05,
        seed: 2,
        ..SimConfig::default()
    });
    let metrics_port = free_port();
    let (_prom, dir, prom) = start_prometheus(metrics_port, &sim.base_url());
    let out = dir.path().join("out");
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let addr = format!("127.0.0.1:{metrics_port}");
    #[rustfmt::skip]
    // The run lingers (serving its final values) while every query is evaluated;
    // the thread is left behind when the test ends.
    let outdir = out.to_str().unwrap().to_string();
    let _run = std::thread::spawn(move || {
        #[rustfmt::skip]
        let r = common::run(&[
            "--url", &url, "--model", "m", "--parallel", "4", "--number", "300", "--rate", "100",
            "--no-test-connection", "--metrics-addr", &addr, "--metrics-linger", "120",
            "--outputs-dir", &outdir, "--no-timestamp",
            "--goodput", "ttft:500", "tpot:50", "e2el:5000", "--slo", "error_rate:0.1",
        ]);
        r.map(|o| o.exit_code)
    });
    let t = Instant::now();
    loop {
        let done = query(&prom, "sum(perfscope_requests_total)") == Some(300.0)
            && query(&prom, "sum(perfscope_in_flight_requests)") == Some(0.0);
        if done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run was not scraped to completion"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Let the final SQLite commit and report land.
    let db = out
        .join("m")
        .join("parallel_4_number_300")
        .join("benchmark_summary.json");
    while !db.exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "no summary written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = out.join("m");
    let conn = common::db(&dir.join("parallel_4_number_300"));
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
    // The declared objectives, and the good requests recounted from the rows.
    assert_eq!(
        query(&prom, "max(perfscope_objective_ttft_seconds)"),
        Some(0.5)
    );
    assert_eq!(
        query(&prom, "max(perfscope_objective_tpot_seconds)"),
        Some(0.05)
    );
    assert_eq!(
        query(&prom, "max(perfscope_objective_latency_seconds)"),
        Some(5.0)
    );
    assert_eq!(
        query(&prom, "max(perfscope_objective_error_ratio)"),
        Some(0.1)
    );
    assert_eq!(
        query(&prom, "max(perfscope_objective_goodput_ratio)"),
        Some(0.99)
    );
    let good: f64 = conn
        .query_row(
            "SELECT COUNT(*) FROM result WHERE success = 1 AND first_chunk_latency * 1000.0 <= 500 \
             AND COALESCE(time_per_output_token, 0) * 1000.0 <= 50 AND latency * 1000.0 <= 5000",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(good > 0.0);
    assert_eq!(
        query(&prom, "sum(perfscope_good_requests_total)"),
        Some(good)
    );
    // The latest failed request's trace id is a stored failure.
    let v = get_json(&format!(
        "{prom}/api/v1/query?query={}",
        urlencode("perfscope_objective_breach_timestamp_seconds{objective=\"error\"}")
    ))
    .unwrap();
    let breach = v["data"]["result"][0]["metric"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no error breach series: {v}"))
        .to_string();
    let failed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM result WHERE trace_id = ?1 AND success = 0",
            [&breach],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        failed, 1,
        "breach trace id {breach} is not a stored failure"
    );
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
    check_bundled_queries(
        &prom,
        &["perfscope-live.json", "perfscope-client-vs-server.json"],
        10,
    );
    check_recording_rules(&prom);
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

pub(crate) fn reqwest_ok(url: &str) -> bool {
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

/// Every PromQL expression of the given bundled dashboards (panels, annotations,
/// template variables) and, when `alert_rules` > 0, of the alert rules (that many)
/// evaluates without error and returns data.
fn check_bundled_queries(prom: &str, dashboards: &[&str], alert_rules: usize) {
    let mut exprs: Vec<(String, String)> = Vec::new();
    for file in dashboards {
        let text =
            std::fs::read_to_string(format!("dashboards/grafana/dashboards/{file}")).unwrap();
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push((
                    format!("{file}: {}", p["title"]),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            exprs.push((
                format!("{file}: annotation"),
                a["expr"].as_str().unwrap().to_string(),
            ));
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            // label_values(SELECTOR, label) has data when SELECTOR does.
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .trim_start_matches("label_values(")
                .rsplit_once(',')
                .unwrap()
                .0;
            exprs.push((format!("{file}: variable {}", v["name"]), inner.to_string()));
        }
    }
    assert!(exprs.len() >= 6 * dashboards.len(), "{}", exprs.len());
    // Alert rules: the measured side of each comparison must return data.
    let rules = if alert_rules > 0 {
        std::fs::read_to_string("dashboards/prometheus/alerts.yml").unwrap()
    } else {
        String::new()
    };
    let mut lines = rules.lines().peekable();
    let mut n_rules = 0;
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - t.len();
        let mut expr = rest.trim().to_string();
        if expr == "|" {
            expr.clear();
            while let Some(next) = lines.peek() {
                if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                    break;
                }
                expr.push_str(next.trim());
                expr.push(' ');
                lines.next();
            }
        }
        n_rules += 1;
        exprs.push((format!("alert rule {n_rules} (full)"), expr.clone()));
        exprs.push((
            format!("alert rule {n_rules} (measured side)"),
            measured_side(&expr),
        ));
    }
    assert_eq!(n_rules, alert_rules);
    for (name, expr) in exprs {
        let e = expr
            .replace("$__rate_interval", "1m")
            .replace("$run", ".+")
            .replace("$model", ".+");
        let url = format!("{prom}/api/v1/query?query={}", urlencode(&e));
        // Allow a few scrapes for rate() windows to hold two samples.
        let t = Instant::now();
        loop {
            let v = get_json(&url).unwrap_or_else(|| panic!("{name}: no answer for {e}"));
            assert_eq!(v["status"], "success", "{name}: {e}: {v}");
            let n = v["data"]["result"].as_array().map_or(0, |a| a.len());
            if name.ends_with("(full)") || n > 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{name}: no data for {e}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The recording rules' expressions return data from a real scrape (those that
/// need failures or a --rate target aside), and every series carries the `shard`
/// label they aggregate over.
fn check_recording_rules(prom: &str) {
    let text = std::fs::read_to_string("dashboards/prometheus/recording.yml").unwrap();
    let mut checked = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("- record:") else {
            continue;
        };
        let Some(e) = lines.next().and_then(|l| l.trim().strip_prefix("expr:")) else {
            continue;
        };
        let mut expr = e.trim().to_string();
        if expr == "|" {
            expr.clear();
            while lines
                .peek()
                .is_some_and(|l| !l.trim_start().starts_with("- "))
            {
                expr.push_str(lines.next().unwrap().trim());
                expr.push(' ');
            }
        }
        if name.contains("failures") || name.contains("target_rate") {
            continue;
        }
        let url = format!("{prom}/api/v1/query?query={}", urlencode(&expr));
        let t = Instant::now();
        loop {
            let v = get_json(&url).unwrap_or_else(|| panic!("{name}: no answer"));
            assert_eq!(v["status"], "success", "{name}: {v}");
            if v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{name}: no data for {expr}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        checked += 1;
    }
    assert_eq!(checked, 20);
    let q = format!(
        "{prom}/api/v1/query?query={}",
        urlencode("count(perfscope_requests_total{shard=\"0\"})")
    );
    let v = get_json(&q).unwrap();
    assert!(
        v["data"]["result"][0]["value"][1]
            .as_str()
            .is_some_and(|n| n != "0"),
        "{v}"
    );
}

/// The left side of an alert's top-level comparison (`A > 2` → `A`).
fn measured_side(expr: &str) -> String {
    let b = expr.as_bytes();
    let mut depth = 0i32;
    for (i, c) in b.iter().enumerate() {
        match c {
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'>' | b'<' if depth == 0 => return expr[..i].trim().to_string(),
            b'=' if depth == 0 && b.get(i + 1) == Some(&b'=') => {
                return expr[..i].trim().to_string()
            }
            _ => {}
        }
    }
    expr.to_string()
}
