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

fn copy_dir(from: &Path, to: &Path) {
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
