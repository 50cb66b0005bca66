//! evalscope's JSON files, written as Python's `json.dump(..., indent=4)` writes them.

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::run::RunResult;
use crate::stats::{Column, PercentileRow};

/// Writes JSON as Python's `json.dump(..., indent=4, ensure_ascii=False)`, with
/// non-finite floats as the bare `NaN` token Python writes.
pub fn to_py_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, 0, &mut out);
    out
}

fn write_value(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| "    ".repeat(n);
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push_str("{\n");
            for (i, (k, x)) in m.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_value(x, indent + 1, out);
                if i + 1 < m.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_value(x, indent + 1, out);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A float cell of the percentile file (already rounded), NaN as Python writes it.
fn pct_value(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        // serde_json cannot hold NaN; a sentinel string is swapped for the bare token.
        .unwrap_or_else(|| Value::String("\u{0}NaN".into()))
}

/// benchmark_percentile.json: one object per percentile point, evalscope's
/// `Percentiles` label first, then each column's key.
pub fn percentile_json(columns: &[Column]) -> String {
    let rows: Vec<Value> = PercentileRow::of(columns)
        .into_iter()
        .map(|row| {
            let mut m = Map::new();
            m.insert("Percentiles".into(), Value::String(row.label.to_string()));
            for (col, v) in row.cells {
                m.insert(col.key().into(), pct_value(v));
            }
            Value::Object(m)
        })
        .collect();
    to_py_json(&Value::Array(rows)).replace("\"\\u0000NaN\"", "NaN")
}

/// Reads JSON as Python's `json` writes it: the bare `NaN`, `Infinity` and
/// `-Infinity` tokens (outside strings) read as null.
pub fn parse_py_json(text: &str) -> serde_json::Result<Value> {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            in_str = c != '"' || escaped;
            escaped = c == '\\' && !escaped;
        } else if c == '"' {
            in_str = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out)
}

pub fn write_run_files(r: &RunResult, args: &Map<String, Value>) -> Result<()> {
    let w = |name: &str, text: String| -> Result<()> {
        let p = r.dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    w(
        "benchmark_args.json",
        to_py_json(&Value::Object(args.clone())),
    )?;
    w(
        "benchmark_summary.json",
        to_py_json(&Value::Object(r.summary.to_json())),
    )?;
    // evalscope writes the percentile file always, all NaN when nothing succeeded.
    w("benchmark_percentile.json", percentile_json(&r.columns))?;
    // evalscope: multi-turn runs add per-conversation figures.
    if let Some(t) = &r.traces {
        w("trace_summary.json", to_py_json(t))?;
    }
    // evalscope 1.14.1: every run with a success has the workload windows.
    if let Some(wl) = &r.workload {
        w(
            "workload_throughput.json",
            to_py_json(&wl.throughput_json()),
        )?;
        w("workload_timeline.json", to_py_json(&wl.timeline_json()))?;
    }
    // perfscope: the client and server on one time axis, kept in the database (not
    // a file: the tree keeps evalscope's file names) so that a viewer draws it
    // without reading every row again.
    if let Some(serde_json::Value::Object(series)) = r.timeline.as_ref().map(|t| t.to_json()) {
        crate::store::write_timeline(&r.dir.join("benchmark_data.db"), &series)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_json_layout_and_nan() {
        let v = serde_json::json!({"a": 1, "b": [1.5, "x"], "c": {}});
        assert_eq!(
            to_py_json(&v),
            "{\n    \"a\": 1,\n    \"b\": [\n        1.5,\n        \"x\"\n    ],\n    \"c\": {}\n}"
        );
        let cols = vec![Column {
            col: crate::stats::Col::Ttft,
            values: vec![f64::NAN; 11],
        }];
        let j = percentile_json(&cols);
        assert!(j.contains("\"TTFT (ms)\": NaN"), "{j}");
        let back = parse_py_json(&j).unwrap();
        assert_eq!(back[0]["TTFT (ms)"], Value::Null);
        let odd = parse_py_json(r#"{"NaN \" x": [-Infinity, Infinity, 1.5]}"#).unwrap();
        assert_eq!(odd, serde_json::json!({"NaN \" x": [null, null, 1.5]}));
    }
}
