//! The web UI in a real headless Chromium, after its JavaScript has run: the
//! history lists a perfscope and an evalscope 1.14.1 run from one directory, a
//! run's page shows TTFT and drawn charts, the live page during a run shows its
//! stage and a rising request count, and no page requests anything outside the
//! server (Chromium's network log: the page's navigation and every request the page
//! initiated, whatever it asked for: scripts, styles, fonts, images, fetches; the
//! browser's own traffic, updates and autofill, has no page as its initiator).
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;
use std::path::Path;
use std::process::Command;

struct Page {
    dom: String,
    console: Vec<String>,
    /// Every URL the page (not the browser itself) requested.
    requests: Vec<String>,
}

fn open(url: &str, budget_ms: u64) -> Page {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("net.json");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--virtual-time-budget={budget_ms}"),
            &format!("--log-net-log={}", netlog.display()),
            &format!("--user-data-dir={}", tmp.path().join("profile").display()),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).unwrap()).unwrap();
    let mut requests: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let p = &e["params"];
            let initiator = p["initiator"].as_str().unwrap_or_default();
            (initiator.starts_with("http://127.0.0.1") && initiator != "not an origin")
                || p["url"].as_str() == Some(url)
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect();
    requests.sort();
    requests.dedup();
    Page {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: logs
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(str::to_string)
            .collect(),
        requests,
    }
}

fn attr(dom: &str, name: &str) -> Option<String> {
    dom.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
}

fn only_from(page: &Page, origin: &str) {
    assert!(
        page.requests.iter().any(|u| u.starts_with(origin)),
        "{:?}",
        page.requests
    );
    for u in &page.requests {
        assert!(
            u.starts_with(origin),
            "requested {u} (all: {:?})",
            page.requests
        );
    }
    assert!(page.console.is_empty(), "console: {:?}", page.console);
}

/// `perfscope perf ARGS` in-process on its own thread.
fn run_in_background(args: Vec<String>) -> std::thread::JoinHandle<perfscope::engine::Outcome> {
    std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(&a).unwrap()
    })
}

#[test]
fn history_and_a_runs_page_render_in_chromium() {
    if !common::external("chromium") {
        return;
    }
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.1,
        seed: 3,
        ..SimConfig::default()
    })
    .args(&[
        "--parallel",
        "2",
        "4",
        "--number",
        "20",
        "40",
        "--name",
        "ours",
    ])
    .run();
    let tree = ran.out.path();
    crate::web::copy_dir(
        Path::new("tests/fixtures/evalscope_1_14_1/chat"),
        &tree.join("20200101_000000/theirs"),
    );
    let server = common::serve(perfscope::web::router(vec![tree.to_path_buf()]).unwrap());
    let origin = format!("http://{}/", server.addr);

    let history = open(&origin, 3000);
    only_from(&history, &origin);
    for want in [
        ">ours<",
        ">theirs<",
        "class=\"tool perfscope\"",
        "class=\"tool evalscope\"",
        ">2 runs<",
    ] {
        assert!(history.dom.contains(want), "{want}: {}", history.dom);
    }

    let id = format!(
        "0/{}",
        ran.outcome.dir.strip_prefix(tree).unwrap().display()
    );
    let run = open(&format!("{origin}#run={}", id.replace('/', "%2F")), 4000);
    only_from(&run, &origin);
    let charts: usize = attr(&run.dom, "data-charts").unwrap().parse().unwrap();
    assert!(charts >= 9, "{charts} charts");
    assert!(run.dom.matches("<polyline").count() > 20);
    for want in [">Avg TTFT (ms)<", ">TTFT (ms)<", "rows 1–20", ">Overall<"] {
        assert!(run.dom.contains(want), "{want}: {:.3000}", run.dom);
    }

    // The comparison view (the run against itself: within noise throughout) and the
    // run form of a server without --allow-run (refused, and said so).
    let enc = id.replace('/', "%2F");
    let cmp = open(&format!("{origin}#compare={enc},{enc}"), 8000);
    only_from(&cmp, &origin);
    assert!(
        cmp.dom
            .contains(">parallel_2_number_20 (20 vs 20 requests)<"),
        "{:.3000}",
        cmp.dom
    );
    assert!(cmp.dom.contains(">within noise<") && !cmp.dom.contains("class=\"worse\""));
    let start = open(&format!("{origin}#start"), 3000);
    only_from(&start, &origin);
    assert!(
        start
            .dom
            .contains("start `perfscope serve` with --allow-run"),
        "{:.3000}",
        start.dom
    );
}

#[test]
fn the_live_page_follows_a_running_benchmark_in_chromium() {
    if !common::external("chromium") {
        return;
    }
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(50.0),
        itl_ms: Some(10.0),
        seed: 4,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let port = crate::prometheus_scrape::free_port();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let args: Vec<String> = [
        "--url",
        &url,
        "--model",
        "m",
        "--no-test-connection",
        // Two sweep points: the page follows the run from one to the next.
        "--parallel",
        "1",
        "2",
        "--number",
        "3",
        "80",
        "--sleep-interval",
        "0",
        "--max-tokens",
        "30",
        "--min-tokens",
        "30",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--outputs-dir",
        out.path().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = run_in_background(args);
    let origin = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no live page");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let live = open(&format!("{origin}?updates=3"), 10_000);
    only_from(&live, &origin);
    assert_eq!(
        attr(&live.dom, "data-updates").as_deref(),
        Some("3"),
        "{}",
        live.dom
    );
    assert_eq!(
        attr(&live.dom, "data-stage").as_deref(),
        Some("parallel_2_number_80")
    );
    let first: f64 = attr(&live.dom, "data-first").unwrap().parse().unwrap();
    let last: f64 = attr(&live.dom, "data-done").unwrap().parse().unwrap();
    assert!(last > first, "{first} → {last}");
    assert!(
        last > 3.0 && last < 83.0,
        "{last}: past the first point, still going"
    );
    assert_eq!(attr(&live.dom, "data-charts").as_deref(), Some("5"));
    // The simulator's running/waiting from its scrape: at most 2 running
    // (--parallel 2; one may be between requests at the scrape), none waiting.
    let server = live
        .dom
        .split("id=\"server\">")
        .nth(1)
        .and_then(|x| x.split('<').next())
        .unwrap();
    assert!(
        server == "2 / 0" || server == "1 / 0",
        "{server}: {}",
        live.dom
    );
    // A slow (p99) point links to its exemplar's row in the run's history, served
    // by the same listener: the row is there (once the writer has committed it).
    let link = live
        .dom
        .split("href=\"/history#run=")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or_else(|| panic!("a linked p99 point: {}", live.dom));
    let link = link.replace("&amp;", "&");
    let frag: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x/?run={link}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert!(
        ["parallel_1_number_3", "parallel_2_number_80"].contains(&frag["step"].as_str()),
        "{frag:?}"
    );
    assert_eq!(frag["trace"].len(), 32);
    let rows_url = format!(
        "{origin}api/rows?id={}&step={}&trace={}",
        frag["run"].replace('/', "%2F"),
        frag["step"],
        frag["trace"]
    );
    let found = (0..50).any(|_| {
        let body = ureq::get(&rows_url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        let hit = body.contains(&frag["trace"]);
        if !hit {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        hit
    });
    assert!(found, "{rows_url}");
    let o = run.join().unwrap();
    assert!(o.dir.is_dir());
}

#[test]
fn the_live_page_says_when_a_run_drifts() {
    if !common::external("chromium") {
        return;
    }
    let _g = common::lock();
    // Offered 25 req/s against about 14 (as soak.rs): the queue, and so TTFT, grows
    // window after window.
    let sim = common::start_sim(crate::soak::small_server());
    let out = tempfile::tempdir().unwrap();
    let port = crate::prometheus_scrape::free_port();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let args: Vec<String> = [
        "--url", &url, "--model", "m", "--no-test-connection", "--parallel", "1000",
        "--number", "100000", "--rate", "25", "--max-tokens", "20", "--open-loop",
        "--duration", "16", "--snapshot-interval", "2", "--drift-threshold", "0.1",
        "--metrics-addr", &format!("127.0.0.1:{port}"), "--outputs-dir", out.path().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = run_in_background(args);
    // Drift is judged once the steady state (after the first 20 %) has 3 windows;
    // the page holds it to the run's own --drift-threshold.
    std::thread::sleep(std::time::Duration::from_secs(11));
    let live = open(&format!("http://127.0.0.1:{port}/?updates=2"), 8000);
    let note = live
        .dom
        .split("id=\"drift-note\"")
        .nth(1)
        .and_then(|x| x.split("</p>").next())
        .unwrap();
    let drift = live
        .dom
        .split("id=\"drift\">")
        .nth(1)
        .and_then(|x| x.split("<").next())
        .unwrap_or_default()
        .to_string();
    assert!(!note.contains("hidden"), "{note} (drift card: {drift})");
    assert!(note.contains("Drifting: TTFT p50 is"), "{note}");
    let o = run.join().unwrap();
    // The run's own record agrees: its time series flags TTFT drift.
    let ts = common::files_under(&o.dir)
        .into_iter()
        .find(|p| p.ends_with("timeseries.jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    let flagged = ts.lines().any(|l| {
        let w: serde_json::Value = serde_json::from_str(l).unwrap();
        w["drift"]["flagged"]
            .as_array()
            .is_some_and(|f| f.iter().any(|m| m == "ttft"))
    });
    assert!(flagged, "{ts}");
}
