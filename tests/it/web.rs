//! `perfscope serve`: the run history lists perfscope's and evalscope's runs from
//! one tree with their figures, lists unreadable runs with the reason, searches,
//! and never resolves a path outside the served trees.
use crate::common::{self, Bench};

use perfscope::sim::SimConfig;
use std::path::Path;

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Option<String>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .map(str::to_string);
    // Bodies here are small and not chunked except by hyper for JSON: strip it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body, csp)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn history_lists_both_tools_and_unreadable_runs_without_escaping_the_tree() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.1,
        seed: 5,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(40)
    .args(&["--name", "ours"])
    .run();
    let tree = ran.out.path();
    // An evalscope 1.14.1 run beside it, as evalscope lays it out.
    copy_dir(
        Path::new("tests/fixtures/evalscope_1_14_1/chat"),
        &tree.join("20200101_000000/theirs"),
    );
    // A half-written run (its database, no summary yet) and a corrupt summary.
    let half = tree.join("20200102_000000/half/parallel_1_number_9");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("benchmark_data.db"), b"not a database").unwrap();
    let bad = tree.join("20200103_000000/bad/parallel_1_number_1");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("benchmark_summary.json"), b"{truncated").unwrap();
    // Something outside the tree that a path must not reach.
    let outside = tempfile::tempdir().unwrap();
    copy_dir(
        Path::new("tests/fixtures/evalscope_1_14_1/chat"),
        &outside.path().join("x/secret"),
    );
    std::os::unix::fs::symlink(outside.path().join("x"), tree.join("link")).unwrap();

    let server = common::serve(perfscope::web::router(vec![tree.to_path_buf()]).unwrap());
    let (status, body, _) = get(server.addr, "/api/runs");
    assert_eq!(status, 200, "{body}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let by_name = |n: &str| {
        runs.iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed: {body}"))
    };
    // Ours: its figures are its summary's.
    let ours = by_name("ours");
    let summary = ran.summary();
    assert_eq!(ours["tool"], "perfscope");
    assert_eq!(ours["model"], "m");
    assert_eq!(ours["best_rps"], summary["Req Throughput (req/s)"]);
    assert_eq!(ours["lowest_latency_s"], summary["Avg Latency (s)"]);
    let rate = 100.0 * summary["Success Requests"].as_f64().unwrap()
        / summary["Total Requests"].as_f64().unwrap();
    assert!((ours["success_rate"].as_f64().unwrap() - rate).abs() < 1e-9);
    // evalscope's: the best of its two steps.
    let theirs = by_name("theirs");
    assert_eq!(theirs["tool"], "evalscope");
    assert_eq!(theirs["steps"], 2);
    let best = ["parallel_1_number_4", "parallel_2_number_8"]
        .iter()
        .map(|s| {
            common::json(
                &Path::new("tests/fixtures/evalscope_1_14_1/chat")
                    .join(s)
                    .join("benchmark_summary.json"),
            )["Req Throughput (req/s)"]
                .as_f64()
                .unwrap()
        })
        .fold(0.0, f64::max);
    assert_eq!(theirs["best_rps"].as_f64(), Some(best));
    // Unreadable runs are listed with the reason.
    assert!(by_name("half")["problem"]
        .as_str()
        .unwrap()
        .contains("no benchmark_summary.json"));
    assert!(by_name("bad")["problem"]
        .as_str()
        .unwrap()
        .contains("benchmark_summary.json"));
    // Newest first: ours (now) before the 2020 ones, those by their timestamps.
    let order: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(order[0], "ours", "{order:?}");
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("bad") < pos("half") && pos("half") < pos("theirs"),
        "{order:?}"
    );
    // The symbolic link leads outside the tree: nothing behind it is listed.
    assert!(!order.contains(&"secret"), "{order:?}");

    // Search: every word in the name, model, endpoint or dataset.
    let (_, body, _) = get(server.addr, "/api/runs?q=line_by_line");
    let found: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["name"], "theirs");

    // A run's steps; ids outside the tree are not found.
    let id = theirs["id"].as_str().unwrap();
    let (status, body, _) = get(server.addr, &format!("/api/run?id={id}"));
    assert_eq!(status, 200);
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["steps"].as_array().unwrap().len(), 2);
    for bad_id in [
        "0/..",
        "0/%2e%2e",
        "0/../..",
        "0/link/secret",
        "0/20200101_000000/theirs/../../..",
        "0/%2Fetc",
        "1/anything",
        "..%2F..",
    ] {
        let (status, body, _) = get(server.addr, &format!("/api/run?id={bad_id}"));
        assert_eq!(status, 404, "{bad_id}: {body}");
    }
    // New runs appear without a restart.
    copy_dir(
        Path::new("tests/fixtures/evalscope_1_14_1/chat"),
        &tree.join("20200104_000000/later"),
    );
    let (_, body, _) = get(server.addr, "/api/runs?q=later");
    assert!(body.contains("\"later\""), "{body}");

    // The page and its assets come from this server only.
    let (status, page, csp) = get(server.addr, "/");
    assert_eq!(status, 200);
    assert!(csp.unwrap().contains("default-src 'self'"));
    for asset in ["/assets/app.js", "/assets/app.css"] {
        assert!(page.contains(asset));
        assert_eq!(get(server.addr, asset).0, 200);
    }
    assert!(!page.contains("http://") && !page.contains("https://"));
}

fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

#[test]
fn a_runs_page_rows_paged_sorted_and_filtered_in_sql_and_comparisons() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.2,
        seed: 11,
        ..SimConfig::default()
    })
    .args(&[
        "--parallel",
        "2",
        "4",
        "--number",
        "30",
        "60",
        "--name",
        "a",
    ])
    .run();
    let tree = ran.out.path();
    copy_dir(
        Path::new("tests/fixtures/evalscope_1_14_1/chat"),
        &tree.join("20200101_000000/theirs"),
    );
    common::evalscope_dir(tree);
    // A step whose database is not one.
    let broken = tree.join("20200102_000000/broken/parallel_1_number_1");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("benchmark_data.db"), b"not a database").unwrap();
    let server = common::serve(perfscope::web::router(vec![tree.to_path_buf()]).unwrap());
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&get(server.addr, "/api/runs").1).unwrap();
    let id_of = |n: &str| {
        runs.iter().find(|r| r["name"] == n).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id = id_of("a");

    // The run: both steps' summaries as written, the report's charts, the windows.
    let (status, body, _) = get(server.addr, &format!("/api/run?id={id}"));
    assert_eq!(status, 200, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    let step = &steps[0];
    let name = step["name"].as_str().unwrap();
    let dir = ran.step(name);
    let conn = common::db(&dir);
    assert_eq!(
        step["summary"],
        common::json(&dir.join("benchmark_summary.json"))
    );
    assert_eq!(
        step["percentiles"][0]["TTFT (ms)"],
        common::json(&dir.join("benchmark_percentile.json"))[0]["TTFT (ms)"]
    );
    assert_eq!(step["windows"]["rows"][0]["metric"], "Total Prompt tok/s");
    // The sim is scraped: the client-vs-server axis was written and is drawn.
    let kept: i64 = conn
        .query_row("SELECT COUNT(*) FROM server_timeline", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 7, "one row per series");
    assert_eq!(step["has_timeline"], true);
    let charts: Vec<&str> = run["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(charts.iter().any(|c| c.contains("requests in flight")));
    assert!(charts.iter().all(|c| c.starts_with("<svg")));

    // Rows: a page, sorted by latency descending, equal to SQLite's own order.
    let q = format!("/api/rows?id={id}&step={name}&per_page=7&sort=latency&desc=1");
    let (status, body) = request(server.addr, "GET", &q, &[], "");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want: Vec<f64> = common::rows(
        &conn,
        "SELECT latency FROM result ORDER BY latency IS NULL, latency DESC, rowid LIMIT 7",
        |r| r.get(0),
    );
    let got: Vec<f64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["latency"].as_f64().unwrap())
        .collect();
    // (serde_json's default float parsing may differ in the last bit.)
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs(), "{got:?} vs {want:?}");
    }
    assert_eq!(page["more"], true);
    // Filtered by kind: exactly the stored rows of that kind, with their error text.
    let kinds: Vec<(String, i64)> = common::rows(
        &conn,
        "SELECT failure_kind, COUNT(*) FROM result WHERE success = 0 GROUP BY failure_kind",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert!(!kinds.is_empty(), "the simulator's 20 % errors");
    for (kind, n) in &kinds {
        let (_, body) = request(
            server.addr,
            "GET",
            &format!("/api/rows?id={id}&step={name}&per_page=500&filter={kind}"),
            &[],
            "",
        );
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(rows.len() as i64, *n, "{kind}");
        assert!(rows
            .iter()
            .all(|r| r["failure_kind"] == kind.as_str() && r["success"] == 0));
        assert!(rows
            .iter()
            .all(|r| r["error"].as_str().is_some_and(|e| !e.is_empty())));
    }
    // Page 2 continues page 1; a trace id finds its row.
    let all: Vec<(i64, String)> = common::rows(
        &conn,
        "SELECT rowid, trace_id FROM result ORDER BY rowid",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    let (_, body) = request(
        server.addr,
        "GET",
        &format!("/api/rows?id={id}&step={name}&per_page=10&page=2"),
        &[],
        "",
    );
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["rows"][0]["rowid"], all[20].0);
    // The same page found by its predecessor's last row (how Next asks), both ways.
    for (after, desc, first) in [(all[19].0, "0", all[20].0), (all[20].0, "1", all[19].0)] {
        let (_, body) = request(
            server.addr,
            "GET",
            &format!("/api/rows?id={id}&step={name}&per_page=10&after={after}&desc={desc}"),
            &[],
            "",
        );
        let keyset: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(keyset["rows"][0]["rowid"], first, "{body}");
        assert_eq!(keyset["rows"].as_array().unwrap().len(), 10);
    }
    let (_, body) = request(
        server.addr,
        "GET",
        &format!("/api/rows?id={id}&step={name}&trace={}", all[5].1),
        &[],
        "",
    );
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["rows"].as_array().unwrap().len(), 1);
    assert_eq!(page["rows"][0]["rowid"], all[5].0);
    // A column that is not sortable, a step that is not the run's, a broken database.
    let (status, body) = request(
        server.addr,
        "GET",
        &format!("/api/rows?id={id}&step={name}&sort=error;drop"),
        &[],
        "",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a sortable column"), "{body}");
    for bad_step in ["..", "../a", "parallel_9_number_9"] {
        let (status, _) = request(
            server.addr,
            "GET",
            &format!("/api/rows?id={id}&step={bad_step}"),
            &[],
            "",
        );
        assert_eq!(status, 404, "{bad_step}");
    }
    let (status, body) = request(
        server.addr,
        "GET",
        &format!("/api/rows?id={}&step=parallel_1_number_1", id_of("broken")),
        &[],
        "",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("benchmark_data.db"), "{body}");
    // evalscope's database: its rows (the columns it lacks are null), its failures.
    let (status, body) = request(
        server.addr,
        "GET",
        &format!(
            "/api/rows?id={}&step=parallel_2_number_5&filter=failed",
            id_of("Qwen2.5-0.5B")
        ),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert!(rows
        .iter()
        .all(|r| r["success"] == 0 && r["trace_id"].is_null()));

    // Compare: ours against evalscope's has no shared point; ours against itself is
    // within noise everywhere.
    let (status, body) = request(
        server.addr,
        "GET",
        &format!("/api/compare?id={id}&id={id}&id={}", id_of("Qwen2.5-0.5B")),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    let same = &c["against"][0]["comparison"];
    assert_eq!(same["points"].as_array().unwrap().len(), 2);
    for p in same["points"].as_array().unwrap() {
        for r in p["rows"].as_array().unwrap() {
            assert_eq!(r["verdict"], "within_noise", "{r}");
        }
    }
    assert!(c["against"][1]["problem"]
        .as_str()
        .unwrap()
        .contains("share no sweep point"));
    let (status, _) = request(
        server.addr,
        "GET",
        &format!("/api/compare?id={id}&id=0/.."),
        &[],
        "",
    );
    assert_eq!(status, 404);
}

#[test]
fn starting_and_stopping_runs_needs_allow_run_and_its_token() {
    let tree = tempfile::tempdir().unwrap();
    // Read-only: nothing can be started or listed.
    let ro = common::serve(perfscope::web::router(vec![tree.path().to_path_buf()]).unwrap());
    let (status, body) = request(ro.addr, "POST", "/api/jobs", &[], r#"{"api":"sim"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--allow-run"));
    let (_, cfg, _) = get(ro.addr, "/api/config");
    assert!(cfg.contains("\"allow_run\":false"), "{cfg}");

    let jobs = perfscope::web::jobs::Jobs::with_program(
        tree.path().to_path_buf(),
        env!("CARGO_BIN_EXE_perfscope").into(),
    )
    .unwrap();
    let token = jobs.token().to_string();
    assert_eq!(token.len(), 32);
    let rw = common::serve(
        perfscope::web::router_with(vec![tree.path().to_path_buf()], Some(jobs)).unwrap(),
    );
    let bearer = format!("Bearer {token}");
    let wrong = format!("Bearer {}", "0".repeat(32));
    for h in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", token.as_str())],
    ] {
        let (status, body) = request(rw.addr, "POST", "/api/jobs", &h, r#"{"api":"sim"}"#);
        assert_eq!(status, 401, "{h:?}: {body}");
        assert!(!body.contains(&token));
        assert_eq!(request(rw.addr, "GET", "/api/jobs", &h, "").0, 401);
    }
    let auth = [("Authorization", bearer.as_str())];
    // A short run to completion: its outputs land in the served tree.
    let (status, body) = request(
        rw.addr,
        "POST",
        "/api/jobs",
        &auth,
        r#"{"api":"sim","parallel":"2","number":"10","name":"from-ui","extra":"--max-tokens 8"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // A long one, stopped: it ends as Ctrl-C ends a run (rows kept).
    let (status, _) = request(
        rw.addr,
        "POST",
        "/api/jobs",
        &auth,
        r#"{"api":"sim","parallel":"1","number":"100000","name":"stopped","extra":"--max-tokens 400"}"#,
    );
    assert_eq!(status, 200);
    let list = |addr| -> Vec<serde_json::Value> {
        serde_json::from_str(&request(addr, "GET", "/api/jobs", &auth, "").1).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait until the long run has stored rows, then stop it.
    let long_db = loop {
        assert!(std::time::Instant::now() < deadline, "{:?}", list(rw.addr));
        let dbs: Vec<_> = common::files_under(tree.path())
            .into_iter()
            .filter(|p| {
                p.to_string_lossy().contains("/stopped/") && p.ends_with("benchmark_data.db")
            })
            .collect();
        if let Some(db) = dbs.first() {
            let n: i64 = rusqlite::Connection::open(db)
                .and_then(|c| c.query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0)))
                .unwrap_or(0);
            if n > 0 {
                break db.clone();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (status, body) = request(rw.addr, "POST", "/api/jobs/stop?n=2", &auth, "");
    assert_eq!(status, 200, "{body}");
    let jobs = loop {
        assert!(std::time::Instant::now() < deadline, "{:?}", list(rw.addr));
        let l = list(rw.addr);
        if l.iter().all(|j| j["running"] == false) {
            break l;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Newest first; the completed run exited 0, the stopped one with Ctrl-C's 130.
    assert_eq!(jobs[1]["exit"], 0, "{}", jobs[1]["output"]);
    assert_eq!(jobs[0]["exit"], 130, "{}", jobs[0]["output"]);
    assert!(jobs[1]["live"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let stopped_rows: i64 = rusqlite::Connection::open(&long_db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))
        .unwrap();
    assert!(stopped_rows > 0 && stopped_rows < 100_000);
    let (_, body, _) = get(rw.addr, "/api/runs");
    assert!(
        body.contains("\"from-ui\"") && body.contains("\"stopped\""),
        "{body}"
    );
    // An ended run cannot be stopped; the token never shows in the listing.
    assert_eq!(
        request(rw.addr, "POST", "/api/jobs/stop?n=2", &auth, "").0,
        409
    );
    assert!(!serde_json::to_string(&jobs).unwrap().contains(&token));
}

#[test]
fn a_live_page_other_hosts_can_reach_serves_no_history_or_rows() {
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .parallel(1)
    .number(5)
    .run();
    let metrics = std::sync::Arc::new(perfscope::recorder::prometheus::Metrics::new(
        perfscope::telemetry::RunInfoLabels {
            run: "r".into(),
            model: "m".into(),
            api: "openai".into(),
            url: "http://127.0.0.1:1".into(),
            dataset: "openqa".into(),
            version: "0".into(),
        },
        0,
        false,
        perfscope::slo::Objectives::default(),
    ));
    let feed = perfscope::web::live::Feed {
        metrics,
        planned: 5,
        run_id: "0/x".into(),
        started: std::time::Instant::now(),
        drift_threshold: None,
        planned_secs: None,
    };
    let tree = ran.out.path().to_path_buf();
    for (with_history, runs) in [(true, 1), (false, 0)] {
        let server = common::serve(perfscope::web::live_router(
            feed.clone(),
            tree.clone(),
            with_history,
        ));
        let (status, page, _) = get(server.addr, "/");
        assert_eq!(status, 200);
        assert!(page.contains("/assets/live.js"));
        let (status, body, _) = get(server.addr, "/history");
        assert_eq!(status, if with_history { 200 } else { 404 }, "{body}");
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&get(server.addr, "/api/runs").1).unwrap();
        assert_eq!(list.len(), runs);
    }
}
