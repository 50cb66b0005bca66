//! Alerts delivered end to end: Debian's Prometheus and Alertmanager with the
//! shipped rules and `alertmanager.yml`, two concurrent perfscope runs against one
//! simulator whose TTFT is 300 ms, one declaring `--goodput ttft:100` and one
//! `ttft:1000`, and a webhook receiver here. The 100 ms run's TTFT alert arrives with
//! its labels and a link back (run, stage, the trace id of a stored request that
//! missed the objective); a resolved notification follows when its breach ends; the
//! 1000 ms run never alerts.
use crate::common;
use crate::prometheus_scrape::{free_port, get_json, reqwest_ok, Kill};

use perfscope::sim::SimConfig;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every JSON body POSTed to the returned URL, in arrival order.
fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// The shipped alertmanager.yml with its default receiver sending to `url`
/// (resolved notifications included).
fn alertmanager_config(url: &str) -> String {
    let shipped = std::fs::read_to_string("dashboards/alertmanager/alertmanager.yml").unwrap();
    let receiver = "  - name: default\n";
    assert!(shipped.ends_with(receiver), "{shipped}");
    format!("{shipped}    webhook_configs:\n      - url: {url}\n        send_resolved: true\n")
}

fn wait_ready(url: &str, what: &str) {
    let t = Instant::now();
    while !reqwest_ok(url) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The notifications for `run`'s alert `name`, as (status, alert) pairs.
fn notifications(got: &Mutex<Vec<Value>>, name: &str, run: &str) -> Vec<(String, Value)> {
    let got = got.lock().unwrap();
    got.iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == name && a["labels"]["run"] == run)
        .map(|a| (a["status"].as_str().unwrap_or("").to_string(), a))
        .collect()
}

#[test]
fn a_breached_objective_alerts_with_a_link_back_and_resolves() {
    if !common::external("prometheus") || !common::external("prometheus-alertmanager") {
        return;
    }
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(300.0),
        itl_ms: Some(5.0),
        seed: 3,
        ..SimConfig::default()
    });
    let (hook, got) = webhook();
    let dir = tempfile::tempdir().unwrap();

    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(&am_config, alertmanager_config(&hook)).unwrap();
    let _am = Kill(
        Command::new("prometheus-alertmanager")
            .args([
                &format!("--config.file={}", am_config.display()),
                &format!("--storage.path={}", dir.path().join("am").display()),
                &format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        "alertmanager",
    );

    let ports = [free_port(), free_port()];
    let rules = |f: &str| {
        std::fs::canonicalize(format!("dashboards/prometheus/{f}"))
            .unwrap()
            .display()
            .to_string()
    };
    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: perfscope\n    static_configs:\n      - targets: ['127.0.0.1:{}', '127.0.0.1:{}']\n",
            rules("alerts.yml"),
            rules("recording.yml"),
            ports[0],
            ports[1]
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .args([
                &format!("--config.file={}", prom_config.display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        "prometheus",
    );

    // Two 30 s runs at 4 req/s, then /metrics lingers with counters still: the
    // rate windows empty and the breach ends while the target is up.
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let runs: Vec<_> = [
        ("tight", "ttft:100", ports[0]),
        ("loose", "ttft:1000", ports[1]),
    ]
    .into_iter()
    .map(|(name, bound, port)| {
        let out = dir.path().join(name);
        #[rustfmt::skip]
            let child = Command::new(env!("CARGO_BIN_EXE_perfscope"))
                .args([
                    "perf", "--url", &url, "--model", "m", "--name", name,
                    "--parallel", "4", "--rate", "4", "--number", "1000", "--duration", "30",
                    "--max-tokens", "8", "--no-test-connection", "--goodput", bound,
                    "--metrics-addr", &format!("127.0.0.1:{port}"), "--metrics-linger", "100",
                    "--outputs-dir", out.to_str().unwrap(), "--no-timestamp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        (name, out, Kill(child))
    })
    .collect();

    // The run label is `<outputs>/<name>` without a timestamp: the name.
    let t = Instant::now();
    let (firing, resolved) = loop {
        let n = notifications(&got, "PerfscopeTTFTP99OverSLA", "tight");
        let firing = n.iter().find(|(s, _)| s == "firing").cloned();
        let resolved = n.iter().find(|(s, _)| s == "resolved").cloned();
        if let (Some(f), Some(r)) = (firing, resolved) {
            break (f.1, r.1);
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "no firing and resolved TTFT alert for the 100 ms run; got {:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(firing["labels"]["severity"], "page");
    assert_eq!(firing["labels"]["objective"], "ttft");
    assert_eq!(firing["labels"]["model"], "m");
    let stage = firing["labels"]["stage"].as_str().unwrap().to_string();
    assert_eq!(stage, "parallel_4_number_1000");
    let summary = firing["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("over the 100ms objective"), "{summary}");
    assert!(
        firing["annotations"]["dashboard"]
            .as_str()
            .unwrap()
            .ends_with("?var-run=tight"),
        "{firing}"
    );
    assert_eq!(resolved["labels"]["stage"], stage.as_str());
    // The link back: a stored request of that run and stage that missed 100 ms.
    let trace_id = firing["annotations"]["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32, "{firing}");
    let (_, out, _) = &runs[0];
    let conn = common::db(&out.join("tight").join(&stage));
    let ttft: f64 = conn
        .query_row(
            "SELECT first_chunk_latency FROM result WHERE trace_id = ?1",
            [trace_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ttft > 0.1, "{ttft}");
    // The 1000 ms run was never alerted on, for TTFT or anything else.
    let loose: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["run"] == "loose")
        .collect();
    assert!(loose.is_empty(), "{loose:?}");
    // The objectives Prometheus saw, one per run (the runs may have stopped serving).
    let v = get_json(&format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=max%20by%20(run)%20(max_over_time(perfscope_objective_ttft_seconds%5B10m%5D))"
    ))
    .unwrap();
    let mut seen: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["run"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("loose".into(), "1".into()), ("tight".into(), "0.1".into())]
    );
}
