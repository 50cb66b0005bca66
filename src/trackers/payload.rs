//! What is pushed: the run, one point per sweep step, the final summary and the
//! percentile table; and the protocol each tracker implements.

use anyhow::Result;
use serde_json::{Map, Value};
use std::time::Duration;

use crate::report::RunResult;
use crate::stats::catalogue::Scope;
use crate::stats::{Col, Metric, PERCENTILES};

/// What a run is: its display name and the resolved configuration (secrets masked).
pub struct RunMeta {
    pub name: String,
    pub config: Map<String, Value>,
    pub started_unix: f64,
}

/// One sweep step.
pub struct Point {
    pub step: u64,
    pub stage: String,
    pub values: Vec<(String, f64)>,
    pub unix: f64,
}

/// A table: column names and rows.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// No request succeeded in some step, or the benchmark stopped with an error.
    Failed,
    /// Ctrl-C.
    Interrupted,
}

pub struct Final {
    /// Run-level results: the best steps and the totals.
    pub summary: Vec<(String, f64)>,
    /// The last step's values (W&B's summary shows the last logged values).
    pub last: Vec<(String, f64)>,
    /// Every step's percentiles, one row per step and percentile.
    pub percentiles: Table,
    pub outcome: Outcome,
    pub unix: f64,
    pub runtime_s: f64,
}

/// One tracker's protocol.
pub trait Tracker: Send {
    /// Authenticates and creates the run; returns its web URL.
    fn start(&mut self, run: &RunMeta) -> Result<String>;
    fn point(&mut self, p: &Point) -> Result<()>;
    fn finish(&mut self, f: &Final) -> Result<()>;
    /// How often a run with no new data must show it is alive (long soaks), and how.
    fn heartbeat_every(&self) -> Duration;
    fn heartbeat(&mut self) -> Result<()>;
}

/// Percentile points pushed per step, for the catalogue's tracked columns, as
/// `"<column> p<N>"` (no `/`: the units contain one, and trackers group keys on it).
const PCT_POINTS: &[&str] = &["50%", "90%", "99%"];

/// Chart grouping of a pushed key: percentile keys by their column (`TTFT (ms) p99`
/// → `TTFT (ms)`, `p99`), the rest under evalscope's title `Performance Metrics`.
pub fn group(key: &str) -> (&str, &str) {
    for c in Col::ALL.iter().filter(|c| c.def().tracked) {
        if let Some(rest) = key.strip_prefix(c.key()).and_then(|r| r.strip_prefix(' ')) {
            if rest.starts_with('p') {
                return (&key[..c.key().len()], rest);
            }
        }
    }
    if let Some(rest) = key.strip_prefix("Summary ") {
        return ("Summary", rest);
    }
    match key.strip_prefix("Window ") {
        Some(rest) => ("Time series", rest),
        None => ("Performance Metrics", key),
    }
}

/// A step's values: the catalogue's tracked summary metrics, the success rate and
/// the tracked columns' key percentiles, finite only (trackers' JSON has no NaN).
pub fn point_values(r: &RunResult) -> Vec<(String, f64)> {
    // Generation runs do not push the embedding-only Input Throughput (evalscope's
    // 0.0 placeholder there); embedding runs push evalscope's zeroed generation
    // keys as it writes them, and have no generation percentiles (NaN, dropped).
    let pushed = |scope: Scope| scope != Scope::Encoder || r.encoder;
    let mut v: Vec<(String, f64)> = Metric::ALL
        .iter()
        .filter(|m| m.def().tracked && pushed(m.def().scope))
        .filter_map(|&m| r.summary.get(m).map(|x| (m.key().to_string(), x)))
        .collect();
    v.push(("Success Rate (%)".into(), r.success_rate()));
    // evalscope 1.14.1's workload windows (workload_throughput.json).
    if let Some(w) = &r.workload {
        use crate::stats::workload::{RATES, WINDOWS};
        for (i, name) in RATES.iter().enumerate() {
            for (k, window) in WINDOWS.iter().enumerate() {
                v.push((format!("Workload {name} ({window})"), w.rates[i][k]));
            }
        }
    }
    for c in Col::ALL
        .iter()
        .filter(|c| c.def().tracked && pushed(c.def().scope))
    {
        for p in PCT_POINTS {
            v.push((
                format!("{} p{}", c.key(), p.trim_end_matches('%')),
                r.pct(*c, p),
            ));
        }
    }
    v.extend(r.agentx.iter().cloned());
    v.retain(|(_, x)| x.is_finite());
    v
}

pub fn point(step: u64, r: &RunResult, unix: f64) -> Point {
    Point {
        step,
        stage: r
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        values: point_values(r),
        unix,
    }
}

/// A `--snapshot-interval` window as a history point (a soak's chart over time):
/// its figures under `Window …` keys, with the window's end in seconds since the
/// run started as `Window elapsed (s)` (the x axis to plot against).
pub fn snapshot_point(s: &crate::recorder::snapshot::Snapshot) -> Point {
    let mut v: Vec<(String, f64)> = vec![
        ("Window elapsed (s)".into(), s.end_s),
        ("Window requests".into(), s.requests as f64),
        ("Window error rate (%)".into(), 100.0 * s.error_rate),
        (
            "Window request throughput (req/s)".into(),
            s.request_throughput,
        ),
        (
            "Window output token throughput (tok/s)".into(),
            s.output_token_throughput,
        ),
    ];
    for (name, f) in [
        ("TTFT (ms)", s.ttft_ms),
        ("TPOT (ms)", s.tpot_ms),
        ("latency (s)", s.latency_s),
    ] {
        if let Some(f) = f {
            v.push((format!("Window {name} p50"), f.p50));
            v.push((format!("Window {name} p90"), f.p90));
            v.push((format!("Window {name} p99"), f.p99));
        }
    }
    for (name, r) in [
        ("TTFT p50 drift", s.drift.ttft_p50_ratio),
        ("TPOT p50 drift", s.drift.tpot_p50_ratio),
    ] {
        if let Some(r) = r {
            v.push((format!("Window {name} (x steady)"), r));
        }
    }
    v.retain(|(_, x)| x.is_finite());
    Point {
        step: 0,
        stage: s.stage.clone(),
        values: v,
        unix: s.end_unix,
    }
}

/// The final summary (the best steps and the whole invocation's totals) and the
/// percentile table of every step.
pub fn final_payload(runs: &[RunResult], outcome: Outcome, unix: f64, runtime_s: f64) -> Final {
    let mut summary = Vec::new();
    let ok: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.num(Metric::SuccessRequests) > 0.0)
        .collect();
    if let Some(best) = ok.iter().max_by(|a, b| {
        a.num(Metric::ReqThroughput)
            .total_cmp(&b.num(Metric::ReqThroughput))
    }) {
        summary.push(("Best RPS (req/s)".into(), best.num(Metric::ReqThroughput)));
        summary.push(("Best RPS Concurrency".into(), best.point.parallel as f64));
    }
    if let Some(best) = ok.iter().min_by(|a, b| {
        a.num(Metric::AvgLatency)
            .total_cmp(&b.num(Metric::AvgLatency))
    }) {
        summary.push((
            "Lowest Avg Latency (s)".into(),
            best.num(Metric::AvgLatency),
        ));
        summary.push((
            "Lowest Latency Concurrency".into(),
            best.point.parallel as f64,
        ));
    }
    let total: f64 = runs.iter().map(|r| r.num(Metric::TotalRequests)).sum();
    let succ: f64 = runs.iter().map(|r| r.num(Metric::SuccessRequests)).sum();
    summary.push((Metric::TotalRequests.key().into(), total));
    summary.push((Metric::SuccessRequests.key().into(), succ));
    summary.push(("Steps".into(), runs.len() as f64));
    summary.retain(|(_, x)| x.is_finite());
    Final {
        summary,
        last: runs.last().map(point_values).unwrap_or_default(),
        percentiles: percentile_table(runs),
        outcome,
        unix,
        runtime_s,
    }
}

/// benchmark_percentile.json of every step in one table: stage, concurrency, rate,
/// percentile, then the columns.
pub fn percentile_table(runs: &[RunResult]) -> Table {
    let mut t = Table {
        columns: vec![
            "Stage".into(),
            "Concurrency".into(),
            "Rate (req/s)".into(),
            "Percentile".into(),
        ],
        rows: Vec::new(),
    };
    let Some(first) = runs.first() else {
        return t;
    };
    t.columns
        .extend(first.columns.iter().map(|c| c.name().to_string()));
    for r in runs {
        let stage = r
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, (_, label)) in PERCENTILES.iter().enumerate() {
            let mut row = vec![
                Value::from(stage.clone()),
                Value::from(r.point.parallel),
                Value::from(r.point.rate),
                Value::from(*label),
            ];
            for c in &r.columns {
                let v = c.values.get(i).copied().unwrap_or(f64::NAN);
                row.push(if v.is_finite() {
                    Value::from(v)
                } else {
                    Value::Null
                });
            }
            t.rows.push(row);
        }
    }
    t
}

/// `YYYY-mm-ddTHH:MM:SS.mmmZ` (RFC 3339, UTC), as SwanLab and W&B timestamps.
pub fn rfc3339(unix: f64) -> String {
    let ms = (unix * 1000.0).round() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A random lower-case base-36 id (W&B run ids are 8 such characters).
pub fn base36_id(len: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// Percent-encodes a URL path segment (entity, project and run names).
pub fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
