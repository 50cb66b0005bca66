//! The console tables: each run's summary and percentiles (evalscope §4.3), the
//! multi-run summary (§4.4) written to performance_summary.txt, and the
//! speed_benchmark table.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

use super::json::to_py_json;
use super::run::{dash, recommendations, sweep_order, RunResult};
use super::table::{render, Line};
use crate::scheduler::SweepPoint;
use crate::stats::PERCENTILES;

fn fmt_num(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            format!("{f:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        }
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// The per-run "Benchmarking summary" table (evalscope §4.3 layout, plus our rows).
pub fn summary_table(r: &RunResult) -> String {
    let s = &r.summary;
    let g = |k: &str| s.get(k).map(fmt_num).unwrap_or_default();
    let cell = |k: &str, v: String| Line::Cells(vec![k.to_string(), v]);
    let mut lines = vec![Line::Section("── General ──".into())];
    lines.push(cell("Test Duration (s)", g("Test Duration (s)")));
    lines.push(cell(
        "Concurrency",
        if r.point.parallel < 0 {
            "INF".into()
        } else {
            g("Concurrency")
        },
    ));
    lines.push(cell("Request Rate (req/s)", g("Request Rate (req/s)")));
    lines.push(cell(
        "Total / Success / Failed",
        format!(
            "{} / {} / {}",
            g("Total Requests"),
            g("Success Requests"),
            g("Failed Requests")
        ),
    ));
    if r.num("Stream Requests") > 0.0 && r.num("Non-Stream Requests") > 0.0 {
        lines.push(cell(
            "Stream / Non-Stream",
            format!("{} / {}", g("Stream Requests"), g("Non-Stream Requests")),
        ));
    }
    lines.push(cell("Req Throughput (req/s)", g("Req Throughput (req/s)")));
    lines.push(cell(
        "Measured Request Rate (req/s)",
        g("Measured Request Rate (req/s)"),
    ));
    lines.push(cell(
        "Measured Concurrency (avg / peak)",
        format!(
            "{} / {}",
            g("Measured Concurrency (avg)"),
            g("Measured Concurrency (peak)")
        ),
    ));
    if s.contains_key("Goodput (req/s)") {
        lines.push(cell(
            "Goodput (req/s) / (%)",
            format!("{} / {}", g("Goodput (req/s)"), g("Goodput (%)")),
        ));
    }
    lines.push(Line::Section("── Latency ──".into()));
    lines.push(cell("Avg Latency (s)", g("Avg Latency (s)")));
    for k in [
        "Avg TTFT (ms)",
        "Avg Time to First Event (ms)",
        "Avg TPOT (ms)",
        "Avg ITL (ms)",
    ] {
        if r.num(k) != 0.0 {
            lines.push(cell(k, g(k)));
        }
    }
    if r.num("Avg Schedule Lag (ms)") > 0.0 {
        lines.push(cell("Avg Schedule Lag (ms)", g("Avg Schedule Lag (ms)")));
    }
    lines.push(Line::Section("── Tokens ──".into()));
    let token_rows: &[&str] = if r.encoder {
        &["Avg Input Tokens", "Input Throughput (tok/s)"]
    } else {
        &[
            "Avg Input Tokens",
            "Avg Output Tokens",
            "Output Throughput (tok/s)",
            "Total Throughput (tok/s)",
        ]
    };
    for k in token_rows {
        lines.push(cell(k, g(k)));
    }
    if let Some(Value::String(t)) = s.get("Token Counts") {
        if t != "server usage" {
            lines.push(cell(
                "Token Counts",
                "UNKNOWN for some requests (no usage from server)".into(),
            ));
        }
    }
    if let Some(Value::Object(kinds)) = s.get("Failures by Kind") {
        if !kinds.is_empty() {
            lines.push(Line::Section("── Failures ──".into()));
            for (k, v) in kinds {
                lines.push(cell(k, v.to_string()));
            }
        }
    }
    render(None, &["Key", "Value"], &lines)
}

/// Python's `format(v, "g")`, which tabulate applies to the percentile cells: six
/// significant digits, trailing zeros dropped, an exponent below 1e-4 or from 1e6.
fn fmt_g(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent after rounding to six significant digits.
    let sci = format!("{v:.5e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let dp = (5 - exp).max(0) as usize;
        trim(&format!("{v:.dp$}"))
    }
}

/// "Percentile results": rows = metrics, columns = min … max (evalscope §4.3), the
/// 4-dp values as tabulate prints them.
pub fn percentile_table(r: &RunResult) -> String {
    let mut headers = vec!["Metrics"];
    headers.extend(PERCENTILES.iter().map(|p| p.1));
    let lines: Vec<Line> = r
        .columns
        .iter()
        .map(|c| {
            let mut cells = vec![c.name.to_string()];
            cells.extend(
                c.values
                    .iter()
                    .map(|v| fmt_g(crate::stats::round(*v, crate::stats::PERCENTILE_DP))),
            );
            Line::Cells(cells)
        })
        .collect();
    render(None, &headers, &lines)
}

fn conc(p: &SweepPoint) -> String {
    if p.parallel < 0 {
        "-".into()
    } else {
        p.parallel.to_string()
    }
}

pub fn multi_run_summary(
    runs: &[RunResult],
    model_id: &str,
    dataset: &str,
    api: &str,
    out_path: &Path,
) -> String {
    if runs.first().is_some_and(|r| r.encoder) {
        return encoder_summary(runs, model_id, dataset, api, out_path);
    }
    let sorted = sweep_order(runs);
    let mut out = Vec::new();
    out.push("Performance Test Summary Report".to_string());
    out.push(basic_information(runs, model_id, dataset, api, out_path));
    let overview: Vec<Line> = sorted
        .iter()
        .map(|r| {
            Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                format!("{}", r.num("Total Requests")),
                format!("{:.2}", r.num("Req Throughput (req/s)")),
                format!("{:.2}", r.num("Output Throughput (tok/s)")),
                format!("{:.1}%", r.success_rate()),
            ])
        })
        .collect();
    out.push(render(
        Some("Performance Overview"),
        &["Conc.", "Rate", "Num", "RPS", "Gen/s", "Success"],
        &overview,
    ));
    let mut detail = Vec::new();
    for r in &sorted {
        let metric = |name: &str, avg_key: &str, col: &str, dp: usize| {
            let f = |v: f64| {
                if v == 0.0 || v.is_nan() {
                    "-".to_string()
                } else {
                    format!("{v:.dp$}")
                }
            };
            Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                name.into(),
                f(r.num(avg_key)),
                f(r.pct(col, "50%")),
                f(r.pct(col, "99%")),
                f(r.pct(col, "max")),
            ])
        };
        detail.push(metric("Latency (s)", "Avg Latency (s)", "Latency (s)", 3));
        detail.push(metric("TTFT (ms)", "Avg TTFT (ms)", "TTFT (ms)", 2));
        detail.push(metric("TPOT (ms)", "Avg TPOT (ms)", "TPOT (ms)", 2));
        detail.push(metric(
            "Input Tokens",
            "Avg Input Tokens",
            "Input tokens",
            1,
        ));
        detail.push(metric(
            "Output Tokens",
            "Avg Output Tokens",
            "Output tokens",
            1,
        ));
        let tpot = r.num("Avg TPOT (ms)");
        if tpot > 0.0 {
            detail.push(Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                "Decode toks/s".into(),
                format!("{:.2}", 1000.0 / tpot),
                "-".into(),
                "-".into(),
                "-".into(),
            ]));
        }
    }
    out.push(render(
        Some("Per-Request Metrics"),
        &["Conc.", "Rate", "Metric", "avg", "p50", "p99", "max"],
        &detail,
    ));
    out.push(recommendations(&sorted).join("\n"));
    out.join("\n\n")
}

/// The "Basic Information" table; generation totals only for LLM runs.
fn basic_information(
    runs: &[RunResult],
    model_id: &str,
    dataset: &str,
    api: &str,
    out_path: &Path,
) -> String {
    let total_time: f64 = runs.iter().map(|r| r.num("Test Duration (s)")).sum();
    let mut info = vec![
        Line::Cells(vec!["Model".into(), model_id.into()]),
        Line::Cells(vec!["Test Dataset".into(), dataset.into()]),
        Line::Cells(vec!["API Type".into(), api.into()]),
    ];
    if !runs.first().is_some_and(|r| r.encoder) {
        let generated: f64 = runs
            .iter()
            .map(|r| r.num("Avg Output Tokens").max(0.0) * r.num("Success Requests"))
            .sum();
        let rate = if total_time > 0.0 {
            generated / total_time
        } else {
            0.0
        };
        info.push(Line::Cells(vec![
            "Total Generated".into(),
            format!("{generated:.1} tokens"),
        ]));
        info.push(Line::Cells(vec![
            "Avg Output Rate".into(),
            format!("{rate:.2} tokens/sec"),
        ]));
    }
    info.push(Line::Cells(vec![
        "Total Test Time".into(),
        format!("{total_time:.2} seconds"),
    ]));
    info.push(Line::Cells(vec![
        "Output Path".into(),
        out_path.display().to_string(),
    ]));
    render(Some("Basic Information"), &["Item", "Value"], &info)
}

/// evalscope's "Embedding/Rerank Performance Test Summary" (§4.4): one table of
/// latency and input throughput per run.
fn encoder_summary(
    runs: &[RunResult],
    model_id: &str,
    dataset: &str,
    api: &str,
    out_path: &Path,
) -> String {
    let sorted = sweep_order(runs);
    let rows: Vec<Line> = sorted
        .iter()
        .map(|r| {
            Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                format!("{:.2}", r.num("Req Throughput (req/s)")),
                format!("{:.3}", r.num("Avg Latency (s)")),
                format!("{:.3}", r.pct("Latency (s)", "99%")),
                format!("{:.2}", r.num("Input Throughput (tok/s)")),
                format!("{:.2}", r.pct("Input (tok/s)", "99%")),
                format!("{:.1}", r.num("Avg Input Tokens")),
                format!("{:.1}%", r.success_rate()),
            ])
        })
        .collect();
    [
        "Embedding/Rerank Performance Test Summary".to_string(),
        basic_information(runs, model_id, dataset, api, out_path),
        render(
            Some("Detailed Performance Metrics"),
            &[
                "Conc.",
                "Rate",
                "RPS",
                "Avg Lat.(s)",
                "P99 Lat.(s)",
                "Avg Inp.TPS",
                "P99 Inp.TPS",
                "Avg Inp.Tok",
                "Success Rate",
            ],
            &rows,
        ),
        recommendations(&sorted).join("\n"),
    ]
    .join("\n\n")
}

/// evalscope's speed_benchmark report for one run: generation speed and GPU memory
/// per prompt length, written to `speed_benchmark.json`; returns the console table.
pub fn speed_benchmark(dir: &Path) -> Result<String> {
    let rows = crate::store::speed_rows(&dir.join("benchmark_data.db"))?;
    let json: Vec<Value> = rows
        .iter()
        .map(|(p, v, m)| {
            serde_json::json!({"Prompt Tokens": p, "Speed(tokens/s)": v, "GPU Memory(GB)": m})
        })
        .collect();
    let p = dir.join("speed_benchmark.json");
    std::fs::write(&p, to_py_json(&Value::Array(json)))
        .with_context(|| format!("cannot write {}", p.display()))?;
    let lines: Vec<Line> = rows
        .iter()
        .map(|(p, v, m)| {
            let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
            Line::Cells(vec![p.map_or("-".into(), |p| p.to_string()), f(*v), f(*m)])
        })
        .collect();
    Ok(render(
        Some("Speed Benchmark Results"),
        &["Prompt Tokens", "Speed(tokens/s)", "GPU Memory(GB)"],
        &lines,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_g_format() {
        for (v, want) in [
            (123.4567, "123.457"),
            (0.5, "0.5"),
            (1234567.0, "1.23457e+06"),
            (0.00001234, "1.234e-05"),
            (0.0001234, "0.0001234"),
            (100.0, "100"),
            (999999.5, "1e+06"),
            (-2.5, "-2.5"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(fmt_g(v), want, "{v}");
        }
    }
}
