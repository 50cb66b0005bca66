//! The run directory against evalscope 1.14.1's own. `tests/fixtures/evalscope_1_14_1`
//! holds what `evalscope perf` 1.14.1 wrote for eight invocations against a
//! `perfscope sim` process (its JSON files, the list of its files and the columns of
//! its `result` table); each test runs perfscope with the same flags against the
//! simulator and checks: the same files, every evalscope JSON key present in
//! evalscope's order (perfscope's own keys may follow or sit between), the same
//! `result` columns in order, and the same recorded argument values.

use perfscope::sim::SimConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::common;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/evalscope_1_14_1"
);

/// Every file under `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                // SQLite's transient companions of an open database, not outputs.
                if !rel.ends_with("-wal") && !rel.ends_with("-shm") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

/// The key paths of a JSON document in order (a list of objects: its first item's).
fn keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                out.push(p.clone());
                keys(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first @ Value::Object(_)) = a.first() {
                keys(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Whether `want` appears in `got` in the same order (other items may interleave).
fn in_order(want: &[String], got: &[String]) -> Result<(), String> {
    let mut it = got.iter();
    for w in want {
        if !it.any(|g| g == w) {
            return Err(if got.contains(w) {
                format!("`{w}` is out of evalscope's order")
            } else {
                format!("`{w}` is missing")
            });
        }
    }
    Ok(())
}

/// Arguments whose recorded value depends on where the run happened.
fn same_arg(key: &str, ev: &Value, ours: &Value, point: &str) -> bool {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match key {
        // The run's own directory in both.
        "outputs_dir" => s(ev).ends_with(point) && s(ours).ends_with(point),
        // The same path on another host and port.
        "url" => {
            let path = |u: String| u.splitn(4, '/').nth(3).unwrap_or_default().to_string();
            path(s(ev)) == path(s(ours))
        }
        "dataset_path" => {
            let file = |p: String| Path::new(&p).file_name().map(|f| f.to_owned());
            file(s(ev)) == file(s(ours))
        }
        // The test sweeps without evalscope's 5 s pause between runs.
        "sleep_interval" => true,
        _ => ev == ours,
    }
}

fn check(name: &str) {
    let fixture = PathBuf::from(FIXTURES).join(name);
    let run: Value = common::json(&fixture.join("run.json"));
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(2.0),
        itl_ms: Some(1.0),
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let data = format!("{FIXTURES}/data");
    let mut argv: Vec<String> = run["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("{sim}", &sim.base_url())
                .replace("{data}", &data)
        })
        .collect();
    argv.extend(
        [
            "--outputs-dir",
            out.path().to_str().unwrap(),
            "--sleep-interval",
            "0",
        ]
        .map(String::from),
    );
    argv.extend(["--metrics-addr", "off"].map(String::from));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let o = common::run(&argv).unwrap();
    assert_eq!(o.exit_code, 0, "{name}");

    let want: Vec<String> = run["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files(&o.dir),
        want,
        "{name}: the files of the run directory"
    );

    let mut problems = Vec::new();
    for f in files(&fixture) {
        let ours_path = o.dir.join(&f);
        let ev = common::json(&fixture.join(&f));
        if f == "run.json" {
            continue;
        }
        if f.ends_with("result_columns.json") {
            let point = Path::new(&f).parent().unwrap();
            let db = common::db(&o.dir.join(point));
            let cols: Vec<String> =
                common::rows(&db, "SELECT name FROM pragma_table_info('result')", |r| {
                    r.get(0)
                });
            let ev: Vec<String> = serde_json::from_value(ev).unwrap();
            if let Err(e) = in_order(&ev, &cols) {
                problems.push(format!("{f}: column {e}"));
            }
            continue;
        }
        let ours = common::json(&ours_path);
        let (mut ke, mut ko) = (Vec::new(), Vec::new());
        keys(&ev, "", &mut ke);
        keys(&ours, "", &mut ko);
        if let Err(e) = in_order(&ke, &ko) {
            problems.push(format!("{f}: key {e}"));
        }
        if f.ends_with("benchmark_args.json") {
            let point = Path::new(&f)
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for (k, v) in ev.as_object().unwrap() {
                if !same_arg(k, v, &ours[k], &point) {
                    problems.push(format!("{f}: `{k}` evalscope {v} perfscope {}", ours[k]));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
}

#[test]
fn a_streamed_sweep_matches_evalscope() {
    let _g = common::lock();
    check("chat");
}

#[test]
fn a_non_streamed_run_matches_evalscope() {
    let _g = common::lock();
    check("nostream");
}

#[test]
fn a_run_at_the_defaults_matches_evalscope() {
    let _g = common::lock();
    check("defaults");
}

#[test]
fn a_responses_api_run_matches_evalscope() {
    let _g = common::lock();
    check("resp");
}

#[test]
fn a_multi_turn_run_matches_evalscope() {
    let _g = common::lock();
    check("mt");
}

#[test]
fn an_embedding_run_matches_evalscope() {
    let _g = common::lock();
    check("emb");
}

#[test]
fn decision_runs_match_evalscope() {
    let _g = common::lock();
    check("systemone");
    check("autotrust");
}
