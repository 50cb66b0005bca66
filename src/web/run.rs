//! A run's page: every figure from what the run wrote (its steps' summaries,
//! percentiles, workload windows and time series, and the server timeline its
//! database keeps), never from its rows, so that a run of a million requests opens as fast as one of ten. The
//! charts are the HTML report's own (SVG drawn here from the same figures).

use serde_json::{json, Map, Value};
use std::path::Path;

use super::history;
use crate::report::{parse_py_json, RunResult};
use crate::scheduler::SweepPoint;
use crate::stats::{Col, Column, Summary, Timeline, PERCENTILES};

/// `/api/run`: the run's entry, each step's figures and the charts.
pub fn detail(dir: &Path, id: String) -> Value {
    let entry = history::read_run(dir, id);
    let mut steps = Vec::new();
    let mut results = Vec::new();
    for p in history::steps_of(dir) {
        let (step, result) = step(&p);
        steps.push(step);
        results.extend(result);
    }
    let charts = crate::report::charts_svg(&results);
    json!({"entry": entry, "steps": steps, "charts": charts})
}

/// A file of the step as JSON (Python's NaN read as null); Err says why not.
fn read(dir: &Path, name: &str) -> Result<Value, String> {
    let p = dir.join(name);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{name}: {e}"))?;
    parse_py_json(&text).map_err(|e| format!("{name}: {e}"))
}

/// One step's figures for the page, and the report's view of it (None when its
/// summary is missing or unreadable: a step still running, cut short or foreign).
fn step(dir: &Path) -> (Value, Option<RunResult>) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let summary = read(dir, "benchmark_summary.json").and_then(|v| match v {
        Value::Object(m) => Ok(m),
        _ => Err("benchmark_summary.json: not a JSON object".into()),
    });
    let args = match read(dir, "benchmark_args.json") {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let percentiles = read(dir, "benchmark_percentile.json").unwrap_or(Value::Null);
    let windows = read(dir, "workload_throughput.json").unwrap_or(Value::Null);
    let timeline = crate::store::read_timeline(&dir.join("benchmark_data.db"))
        .and_then(|m| Timeline::from_json(&Value::Object(m)));
    let timeseries = crate::recorder::snapshot::read(dir);
    let mut out = json!({
        "name": name,
        "summary": summary.as_ref().ok(),
        "problem": summary.as_ref().err(),
        "percentiles": percentiles,
        "windows": windows,
        "timeseries": timeseries,
        "has_timeline": timeline.is_some(),
    });
    let Ok(summary) = summary else {
        return (out, None);
    };
    let scalar = |k: &str| -> Option<f64> {
        match args.get(k)? {
            Value::Array(a) => a.first()?.as_f64(),
            v => v.as_f64(),
        }
    };
    let point = SweepPoint {
        parallel: scalar("parallel").map_or(-1, |v| v as i64),
        number: scalar("number").map_or(0, |v| v as u64),
        rate: scalar("rate").unwrap_or(-1.0),
    };
    let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default();
    let result = RunResult {
        point,
        summary: Summary::from_json(&summary),
        columns: columns(&percentiles),
        dir: dir.to_path_buf(),
        encoder: crate::protocol::is_encoder_run(text("api"), text("url")),
        timeline,
        traces: None,
        workload: None,
        cut_short: None,
        agentx: Vec::new(),
        timeseries,
    };
    out["point"] = json!({"parallel": point_value(result.point.parallel as f64), "rate": point_value(result.point.rate), "number": result.point.number});
    (out, Some(result))
}

/// -1 (unbounded) as null.
fn point_value(v: f64) -> Value {
    if v < 0.0 {
        Value::Null
    } else {
        json!(v)
    }
}

/// The percentile columns of a `benchmark_percentile.json` (one object per
/// percentile label), in PERCENTILES order; NaN where a label or cell is missing.
pub fn columns(percentiles: &Value) -> Vec<Column> {
    let Some(rows) = percentiles.as_array() else {
        return Vec::new();
    };
    let row_of = |label: &str| {
        rows.iter()
            .find(|r| r.get("Percentiles").and_then(Value::as_str) == Some(label))
    };
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return Vec::new();
    };
    first
        .keys()
        .filter_map(|k| Col::from_key(k))
        .map(|col| Column {
            col,
            values: PERCENTILES
                .iter()
                .map(|(_, label)| {
                    row_of(label)
                        .and_then(|r| r.get(col.key()))
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN)
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_file_back_to_columns() {
        let cols = vec![
            Column {
                col: Col::Ttft,
                values: (0..11).map(|i| i as f64 * 1.5).collect(),
            },
            Column {
                col: Col::Latency,
                values: vec![f64::NAN; 11],
            },
        ];
        let text = crate::report::percentile_json(&cols);
        let back = columns(&parse_py_json(&text).unwrap());
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].col, Col::Ttft);
        assert_eq!(back[0].values, cols[0].values);
        assert!(back[1].values.iter().all(|v| v.is_nan()));
    }
}
