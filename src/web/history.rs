//! The run history of `perfscope serve`: every run under the given output trees,
//! perfscope's and evalscope's, read from their JSON files (a list of thousands of
//! runs opens without touching a database). A run that cannot be read is listed
//! with the reason, never dropped and never an error for the whole list.

use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// How deep below a tree's root run directories are looked for:
/// `<outputs>/<timestamp>/<name|model>/<step>/benchmark_data.db`.
const MAX_DEPTH: usize = 4;

/// One run (an invocation's `<timestamp>/<name|model>` directory) as listed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunEntry {
    /// `<tree index>/<path relative to the tree>`: how URLs name the run.
    pub id: String,
    /// `perfscope` or `evalscope` (by the arguments each records).
    pub tool: String,
    pub name: String,
    pub model: String,
    pub api: String,
    pub endpoint: String,
    pub dataset: String,
    /// The run's start (unix seconds): its timestamp directory, else its mtime.
    pub started_unix: f64,
    pub steps: usize,
    pub best_rps: Option<f64>,
    pub lowest_latency_s: Option<f64>,
    /// Successful over total requests, in percent, over every step.
    pub success_rate: Option<f64>,
    /// Why the run, or one of its steps, cannot be read (it is listed anyway).
    pub problem: Option<String>,
    /// perfscope is still writing it (its claim file is there): what is missing
    /// is not written yet rather than lost.
    pub running: bool,
}

/// Every run under `trees` (canonical paths), newest first.
pub fn scan(trees: &[PathBuf]) -> Vec<RunEntry> {
    let mut out = Vec::new();
    for (i, root) in trees.iter().enumerate() {
        let mut dirs = Vec::new();
        find_runs(root, root, 0, &mut dirs);
        for d in dirs {
            let rel = d.strip_prefix(root).unwrap_or(&d);
            let id = format!("{i}/{}", rel.to_string_lossy());
            out.push(read_run(&d, id));
        }
    }
    out.sort_by(|a, b| {
        b.started_unix
            .total_cmp(&a.started_unix)
            .then(a.id.cmp(&b.id))
    });
    out
}

/// A directory is a run when one of its children is a step (holds a
/// `benchmark_data.db` or a `benchmark_summary.json`). Directories that resolve
/// outside `root` (a symbolic link out of the tree) are not followed.
fn find_runs(root: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let children: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && inside(root, p))
        .collect();
    if children.iter().any(|c| is_step(c)) {
        out.push(dir.to_path_buf());
        return;
    }
    for c in children {
        find_runs(root, &c, depth + 1, out);
    }
}

/// Whether `p`, symbolic links resolved, lies inside `root` (canonical).
fn inside(root: &Path, p: &Path) -> bool {
    std::fs::canonicalize(p).is_ok_and(|c| c.starts_with(root))
}

pub fn is_step(dir: &Path) -> bool {
    dir.join("benchmark_data.db").is_file() || dir.join("benchmark_summary.json").is_file()
}

pub fn read_json(p: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    // evalscope's files are Python's JSON (bare NaN).
    match crate::report::parse_py_json(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{}: not a JSON object", p.display())),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// The run's steps, in name order.
pub fn steps_of(run: &Path) -> Vec<PathBuf> {
    let canonical = std::fs::canonicalize(run).unwrap_or_else(|_| run.to_path_buf());
    let mut steps: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && is_step(p) && inside(&canonical, p))
                .collect()
        })
        .unwrap_or_default();
    steps.sort();
    steps
}

/// One run's entry (what the list shows for it).
pub fn read_run(dir: &Path, id: String) -> RunEntry {
    let mut e = RunEntry {
        id,
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_unix: started(dir),
        ..RunEntry::default()
    };
    let steps = steps_of(dir);
    e.steps = steps.len();
    let mut problems = Vec::new();
    let (mut ok, mut total) = (0.0, 0.0);
    for (k, step) in steps.iter().enumerate() {
        if k == 0 {
            match read_json(&step.join("benchmark_args.json")) {
                Ok(args) => describe(&mut e, &args),
                Err(p) => problems.push(p),
            }
        }
        let summary =
            match read_json(&step.join("benchmark_summary.json")) {
                Ok(s) => s,
                Err(_) if !step.join("benchmark_summary.json").exists() => {
                    problems.push(format!(
                    "{}: no benchmark_summary.json (still running, or stopped before its summary)",
                    step.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                ));
                    continue;
                }
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
        let num = |k: &str| summary.get(k).and_then(Value::as_f64);
        if let Some(rps) = num("Req Throughput (req/s)") {
            e.best_rps = Some(e.best_rps.map_or(rps, |b: f64| b.max(rps)));
        }
        if let Some(l) = num("Avg Latency (s)").filter(|l| *l > 0.0) {
            e.lowest_latency_s = Some(e.lowest_latency_s.map_or(l, |b: f64| b.min(l)));
        }
        ok += num("Success Requests").unwrap_or(0.0);
        total += num("Total Requests").unwrap_or(0.0);
    }
    if total > 0.0 {
        e.success_rate = Some(100.0 * ok / total);
    }
    // perfscope's claim on a directory it is writing (removed when the run ends).
    e.running = dir.join(crate::store::LOCK_FILE).exists();
    if !problems.is_empty() && !e.running {
        e.problem = Some(problems.join("; "));
    }
    e
}

/// Name, model, API, endpoint, dataset and tool from a step's recorded arguments.
fn describe(e: &mut RunEntry, args: &Map<String, Value>) {
    let s = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // perfscope records its own flags beside evalscope's.
    e.tool = if args.contains_key("metrics_addr") {
        "perfscope"
    } else {
        "evalscope"
    }
    .into();
    if !s("name").is_empty() {
        e.name = s("name");
    }
    // perfscope records an unset --model (--api sim) as null and its model_id.
    e.model = [s("model"), s("model_id")]
        .into_iter()
        .find(|m| !m.is_empty())
        .unwrap_or_default();
    e.api = s("api");
    e.endpoint = s("url");
    e.dataset = s("dataset");
}

/// The start of a run: its `<timestamp>` parent (`YYYYmmdd_HHMMSS`, local time),
/// else the directory's modification time.
fn started(dir: &Path) -> f64 {
    let stamp = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(t) =
        stamp.and_then(|s| chrono::NaiveDateTime::parse_from_str(&s, "%Y%m%d_%H%M%S").ok())
    {
        if let Some(local) = t.and_local_timezone(chrono::Local).earliest() {
            return local.timestamp() as f64;
        }
    }
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether an entry matches a search: every word is in its name, model,
/// endpoint or dataset (case-insensitive).
pub fn matches(e: &RunEntry, q: &str) -> bool {
    let hay = format!(
        "{} {} {} {} {}",
        e.name, e.model, e.endpoint, e.dataset, e.id
    )
    .to_lowercase();
    q.split_whitespace()
        .all(|w| hay.contains(&w.to_lowercase()))
}
