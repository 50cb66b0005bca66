//! Golden outputs: what perfscope writes must not change unless a test here is
//! regenerated on purpose (`PERFSCOPE_UPDATE_GOLDEN=1 cargo test golden`).
//!
//! - Reports: `perfscope report` regenerates every JSON, text and HTML file from a
//!   stored database (`tests/fixtures/golden_run`, a two-step sweep against the
//!   simulator with injected 500s and 429s) and from an evalscope 1.14.1 output
//!   directory. Measured timings differ between live runs; stored rows do not.
//! - Requests: the bytes of every request body a fixed-seed run sends, for each
//!   API and dataset that runs without downloads, as a recording server saw them
//!   (sorted within a run: arrival order under a permit race is not a contract).
use crate::common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The parts of a report that are not stored: where it was written and when.
fn normalise(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "<DIR>");
    // The HTML header's generation time (`<td>2026-12-01 12:35:06</td>` after the
    // "Generated" heading) is the only clock reading in a regenerated report.
    match text.find("Generated</th>") {
        Some(at) => {
            let rest = &text[at..];
            let open = rest.find("<td>").map(|i| at + i + 4);
            let close = open.and_then(|o| text[o..].find("</td>").map(|i| o + i));
            match (open, close) {
                (Some(o), Some(c)) => format!("{}<TIME>{}", &text[..o], &text[c..]),
                _ => text,
            }
        }
        None => text,
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn report(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["report", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` except the databases, as `relative path\n--\ncontent`.
fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = common::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "db"))
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            (rel, normalise(&text, dir))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn reports_regenerated_from_the_fixture_database_are_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixture");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_run/fixture"),
        &dir,
    );
    report(&dir);
    let files = outputs(&dir);
    // Two steps × five JSON files (evalscope 1.14.1's three and its two workload
    // files), the sweep summary and the HTML report.
    assert_eq!(
        files.len(),
        12,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (rel, text) in files {
        common::golden(&format!("report/{rel}"), &text);
    }
}

#[test]
fn reports_of_an_evalscope_directory_are_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::evalscope_dir(tmp.path());
    report(&dir);
    for name in ["perfscope_summary.txt", "perfscope_report.html"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        common::golden(&format!("evalscope_report/{name}"), &normalise(&text, &dir));
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Records each body verbatim and answers with a two-token reply, streamed when the
/// request asks for a stream (chat or completions shape by path).
fn recorder(seen: Seen) -> axum::Router {
    let handler = |path: &'static str| {
        let seen = seen.clone();
        move |_h: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let text = String::from_utf8_lossy(&body).into_owned();
                let stream = text.contains("\"stream\":true");
                seen.lock().unwrap().push(format!("POST {path}\n{text}"));
                let usage = r#""usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#;
                let (ctype, body) = match (path, stream) {
                    ("/v1/embeddings", _) => (
                        "application/json",
                        format!(
                            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.1,0.2]}}],{usage}}}"#
                        ),
                    ),
                    ("/v1/completions", true) => (
                        "text/event-stream",
                        format!(
                            "data: {{\"choices\":[{{\"index\":0,\"text\":\"a\"}}]}}\n\ndata: {{\"choices\":[{{\"index\":0,\"text\":\"b\",\"finish_reason\":\"length\"}}],{usage}}}\n\ndata: [DONE]\n\n"
                        ),
                    ),
                    ("/v1/completions", false) => (
                        "application/json",
                        format!(
                            r#"{{"choices":[{{"index":0,"text":"ab","finish_reason":"length"}}],{usage}}}"#
                        ),
                    ),
                    (_, true) => (
                        "text/event-stream",
                        format!(
                            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"a\"}}}}]}}\n\ndata: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"b\"}},\"finish_reason\":\"length\"}}],{usage}}}\n\ndata: [DONE]\n\n"
                        ),
                    ),
                    (_, false) => (
                        "application/json",
                        format!(
                            r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"ab"}},"finish_reason":"length"}}],{usage}}}"#
                        ),
                    ),
                };
                ([("content-type", ctype)], body)
            }
        }
    };
    axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(handler("/v1/chat/completions")),
        )
        .route("/v1/completions", post(handler("/v1/completions")))
        .route("/v1/embeddings", post(handler("/v1/embeddings")))
}

#[test]
fn request_bodies_of_fixed_seed_runs_are_unchanged() {
    let _g = common::lock();
    let seen: Seen = Arc::default();
    let mock = common::serve(recorder(seen.clone()));
    let base = format!("http://{}", mock.addr);
    let chat = format!("{base}/v1/chat/completions");
    let completions = format!("{base}/v1/completions");
    let embeddings = format!("{base}/v1/embeddings");
    let out = tempfile::tempdir().unwrap();
    let outs = out.path().to_str().unwrap();
    let lines = out.path().join("lines.txt");
    std::fs::write(&lines, "first prompt\nsecond \"quoted\" prompt\n").unwrap();
    let lines = lines.to_str().unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("openqa chat stream", vec!["--url", &chat, "--dataset", "openqa", "--number", "3", "--seed", "9"]),
        ("random chat, sampling flags", vec![
            "--url", &chat, "--dataset", "random", "--number", "3", "--seed", "11",
            "--min-prompt-length", "8", "--max-prompt-length", "24", "--prefix-length", "4",
            "--max-tokens", "32", "--min-tokens", "8", "--temperature", "0.7", "--top-p", "0.9",
            "--top-k", "20", "--frequency-penalty", "0.1", "--repetition-penalty", "1.05",
            "--stop", "END", "--extra-args", r#"{"ignore_eos": true, "seed": 5}"#,
        ]),
        ("random completions, no stream", vec![
            "--url", &completions, "--dataset", "random", "--number", "2", "--seed", "3",
            "--min-prompt-length", "10", "--max-prompt-length", "10", "--no-stream",
        ]),
        ("line_by_line chat", vec![
            "--url", &chat, "--dataset", "line_by_line", "--dataset-path", lines, "--number", "2",
        ]),
        ("random_vl chat", vec![
            "--url", &chat, "--dataset", "random_vl", "--number", "2", "--seed", "2",
            "--image-width", "8", "--image-height", "8", "--image-num", "1",
            "--min-prompt-length", "6", "--max-prompt-length", "6",
        ]),
        ("embedding batches", vec![
            "--api", "embedding", "--url", &embeddings, "--dataset", "random_embedding",
            "--number", "2", "--seed", "4", "--min-prompt-length", "5", "--max-prompt-length", "9",
        ]),
    ];
    let mut transcript = String::new();
    for (i, (name, args)) in cases.into_iter().enumerate() {
        seen.lock().unwrap().clear();
        let case = format!("case{i}");
        let mut argv = vec![
            "--model",
            "golden-model",
            "--parallel",
            "1",
            "--outputs-dir",
            outs,
        ];
        argv.extend(["--name", &case]);
        argv.extend(args.iter().copied());
        let o = common::run(&argv).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(o.exit_code, 0, "{name}");
        transcript.push_str(&format!("## {name}\n"));
        // Sorted: which waiting task gets the next concurrency permit is up to the
        // runtime, so arrival order is not part of the contract; each body is.
        let mut bodies = seen.lock().unwrap().clone();
        bodies.sort();
        for body in &bodies {
            transcript.push_str(body);
            transcript.push('\n');
        }
    }
    common::golden("requests.txt", &transcript);
}

/// docs/outputs-and-metrics.md lists the metric catalogue as the code declares it
/// (regenerated with PERFSCOPE_UPDATE_GOLDEN=1).
#[test]
fn docs_list_the_metric_catalogue() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/outputs-and-metrics.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- catalogue:start -->\n", "<!-- catalogue:end -->");
    let a = doc.find(start).expect("catalogue start marker") + start.len();
    let b = doc.find(end).expect("catalogue end marker");
    let table = perfscope::stats::catalogue::markdown();
    if std::env::var_os("PERFSCOPE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &doc[..a], &doc[b..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[a..b],
        table,
        "docs/outputs-and-metrics.md's catalogue is stale: regenerate with PERFSCOPE_UPDATE_GOLDEN=1"
    );
}
