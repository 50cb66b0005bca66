//! Reports computed from stored rows: evalscope's JSON files, the per-run console
//! tables (§4.3) and the multi-run summary (§4.4) written to performance_summary.txt.

pub mod html;
pub mod log;
pub mod stored;
pub mod table;

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

use crate::scheduler::{py_float, SweepPoint};
use crate::stats::{Column, PERCENTILES};
use table::{render, Line};

/// The results of one sweep point.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub point: SweepPoint,
    pub summary: Map<String, Value>,
    pub columns: Vec<Column>,
    pub dir: std::path::PathBuf,
    /// An embedding or rerank run: evalscope's input-throughput layout.
    pub encoder: bool,
}

impl RunResult {
    pub fn num(&self, key: &str) -> f64 {
        self.summary.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }
    fn col(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// A percentile of a column (label as in PERCENTILES), NaN when absent.
    pub fn pct(&self, name: &str, label: &str) -> f64 {
        let i = PERCENTILES.iter().position(|p| p.1 == label).unwrap_or(0);
        self.col(name).map_or(f64::NAN, |c| c.values[i])
    }
    pub fn success_rate(&self) -> f64 {
        let t = self.num("Total Requests");
        if t > 0.0 {
            100.0 * self.num("Success Requests") / t
        } else {
            0.0
        }
    }
}

/// evalscope's speed_benchmark report for one run: generation speed and GPU memory
/// per prompt length, written to `speed_benchmark.json`; returns the console table.
pub fn speed_benchmark(dir: &Path) -> Result<String> {
    let conn = crate::recorder::sqlite::open(&dir.join("benchmark_data.db"))?;
    let mut st = conn.prepare(
        "SELECT prompt_tokens, ROUND(AVG(completion_tokens * 1.0 / latency), 2), \
         ROUND(AVG(COALESCE(max_gpu_memory_cost, 0)), 2) FROM result \
         WHERE success=1 AND latency > 0 GROUP BY prompt_tokens ORDER BY prompt_tokens",
    )?;
    let rows: Vec<(Option<i64>, Option<f64>, Option<f64>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
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

/// Writes `perf_report.html` for an invocation.
pub fn write_html(
    runs: &[RunResult],
    root: &Path,
    model: &str,
    dataset: &str,
    api: &str,
) -> Result<()> {
    write_html_as(runs, root, "perf_report.html", model, dataset, api)
}

fn write_html_as(
    runs: &[RunResult],
    root: &Path,
    file: &str,
    model: &str,
    dataset: &str,
    api: &str,
) -> Result<()> {
    let meta = html::Meta {
        model,
        dataset,
        api,
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        output_path: root.display().to_string(),
    };
    let p = root.join(file);
    std::fs::write(&p, html::render(runs, &meta))
        .with_context(|| format!("cannot write {}", p.display()))
}

/// `perfscope report DIR`: every output file of an invocation (each step's three
/// JSON files, performance_summary.txt and perf_report.html) from its SQLite
/// databases alone. For an evalscope output directory, perfscope's summary and HTML
/// report are written beside evalscope's files (`perfscope_summary.txt`,
/// `perfscope_report.html`), which stay as they are.
pub fn regenerate(dir: &Path) -> Result<()> {
    let stored = stored::steps(dir)?;
    let runs = stored::load_all(&stored)?;
    // An evalscope output directory keeps its own files: perfscope's go beside them.
    let evalscope = stored.iter().any(|s| s.evalscope);
    if !evalscope {
        for (s, r) in stored.iter().zip(&runs) {
            write_run_files(r, &s.config)?;
            let dataset = s
                .config
                .get("dataset")
                .and_then(Value::as_str)
                .unwrap_or("");
            if dataset.starts_with("speed_benchmark") {
                speed_benchmark(&s.dir)?;
            }
        }
    }
    let cfg = &stored[0].config;
    let text = |k: &str, d: &str| cfg.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    // The model id as the run showed it: the directory name (--name or the model's
    // basename).
    let model_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| text("model", ""));
    let (dataset, api) = (text("dataset", "openqa"), text("api", "openai"));
    let summary = multi_run_summary(&runs, &model_id, &dataset, &api, dir);
    let (summary_name, html_name) = if evalscope {
        ("perfscope_summary.txt", "perfscope_report.html")
    } else {
        ("performance_summary.txt", "perf_report.html")
    };
    let p = dir.join(summary_name);
    std::fs::write(&p, format!("{summary}\n"))
        .with_context(|| format!("cannot write {}", p.display()))?;
    write_html_as(&runs, dir, html_name, &model_id, &dataset, &api)?;
    log::info(format!(
        "Regenerated {} runs' {}{summary_name} and {html_name} in {}",
        runs.len(),
        if evalscope {
            "reports (evalscope's files untouched): "
        } else {
            "files, "
        },
        dir.display()
    ));
    Ok(())
}

/// A run's summary and percentiles, computed from its stored rows alone. The
/// database is perfscope's, or evalscope's own (`result` table only): then its rows
/// are read into memory (the file is never written) and the API comes from its
/// benchmark_args.json.
pub fn load_run(
    dir: &Path,
    point: SweepPoint,
    goodput: Option<crate::stats::Goodput>,
) -> Result<RunResult> {
    let db = dir.join("benchmark_data.db");
    let (conn, api, url) = if stored::is_evalscope_db(&db)? {
        let args = stored::evalscope_args(dir);
        let text = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (stored::import_evalscope(&db)?, text("api"), text("url"))
    } else {
        let conn = crate::recorder::sqlite::open(&db)?;
        let (api, url): (String, String) = conn
            .query_row("SELECT api, url FROM run LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap_or_default();
        (conn, api, url)
    };
    let encoder = crate::protocol::is_encoder_run(&api, &url);
    let summary = crate::stats::summary(
        &conn,
        &crate::stats::RunInputs {
            parallel: point.parallel,
            rate: point.rate,
            goodput,
            encoder,
        },
    )?;
    let columns = crate::stats::percentile_columns(&conn, encoder)?;
    Ok(RunResult {
        point,
        summary,
        columns,
        dir: dir.to_path_buf(),
        encoder,
    })
}

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

/// A float cell of the percentile file: rounded to 4 dp (evalscope 1.13+), NaN as
/// Python writes it.
fn pct_value(v: f64) -> Value {
    serde_json::Number::from_f64(crate::stats::round(v, crate::stats::PERCENTILE_DP))
        .map(Value::Number)
        // serde_json cannot hold NaN; a sentinel string is swapped for the bare token.
        .unwrap_or_else(|| Value::String("\u{0}NaN".into()))
}

pub fn percentile_json(columns: &[Column]) -> String {
    let rows: Vec<Value> = PERCENTILES
        .iter()
        .enumerate()
        .map(|(i, (_, label))| {
            let mut m = Map::new();
            m.insert("Percentiles".into(), Value::String(label.to_string()));
            for c in columns {
                m.insert(c.name.into(), pct_value(c.values[i]));
            }
            Value::Object(m)
        })
        .collect();
    to_py_json(&Value::Array(rows)).replace("\"\\u0000NaN\"", "NaN")
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
        to_py_json(&Value::Object(r.summary.clone())),
    )?;
    // evalscope writes the percentile file always, all NaN when nothing succeeded.
    w("benchmark_percentile.json", percentile_json(&r.columns))?;
    Ok(())
}

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

fn dash(v: f64) -> String {
    if v == -1.0 {
        "-".into()
    } else {
        py_float(v).trim_end_matches(".0").to_string()
    }
}

fn conc(p: &SweepPoint) -> String {
    if p.parallel < 0 {
        "-".into()
    } else {
        p.parallel.to_string()
    }
}

/// The multi-run "Performance Test Summary Report" (evalscope §4.4), plus the best
/// configuration and recommendations evalscope shows in its HTML report.
/// Runs by concurrency, then rate (unbounded last), as evalscope's summary lists them.
pub fn sweep_order(runs: &[RunResult]) -> Vec<&RunResult> {
    let mut sorted: Vec<&RunResult> = runs.iter().collect();
    let inf = |v: f64| if v < 0.0 { f64::INFINITY } else { v };
    sorted.sort_by(|a, b| {
        inf(a.point.parallel as f64)
            .total_cmp(&inf(b.point.parallel as f64))
            .then(inf(a.point.rate).total_cmp(&inf(b.point.rate)))
    });
    sorted
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

/// evalscope's best-configuration and recommendation rules (§4.4).
pub fn recommendations(sorted: &[&RunResult]) -> Vec<String> {
    let mut out = vec!["Best Performance Configuration".to_string()];
    let label = |r: &RunResult| {
        if r.point.parallel < 0 {
            format!("rate={}", dash(r.point.rate))
        } else {
            format!("concurrency={}", r.point.parallel)
        }
    };
    let Some(best_rps) = sorted.iter().enumerate().max_by(|a, b| {
        a.1.num("Req Throughput (req/s)")
            .total_cmp(&b.1.num("Req Throughput (req/s)"))
    }) else {
        return out;
    };
    out.push(format!(
        "  Highest RPS: {} ({:.2} req/sec)",
        label(best_rps.1),
        best_rps.1.num("Req Throughput (req/s)")
    ));
    if let Some(low) = sorted
        .iter()
        .filter(|r| r.num("Avg Latency (s)") >= 0.0)
        .min_by(|a, b| {
            a.num("Avg Latency (s)")
                .total_cmp(&b.num("Avg Latency (s)"))
        })
    {
        out.push(format!(
            "  Lowest Latency: {} ({:.3} seconds)",
            label(low),
            low.num("Avg Latency (s)")
        ));
    }
    out.push(String::new());
    out.push("Performance Recommendations".to_string());
    if sorted.len() >= 2 {
        let i = best_rps.0;
        if i + 1 == sorted.len() {
            out.push("  • The system seems not to have reached its performance bottleneck, try higher concurrency".into());
        } else if i == 0 {
            out.push("  • Consider lowering concurrency, current load may be too high".into());
        } else {
            out.push(format!(
                "  • Optimal concurrency range is around {}",
                label(sorted[i])
            ));
        }
        let (first, last) = (
            sorted[0].num("Avg Latency (s)"),
            sorted[sorted.len() - 1].num("Avg Latency (s)"),
        );
        if first > 0.0 && last / first > 3.0 {
            out.push(format!(
                "  • Latency grew {:.1}× from lowest to highest load",
                last / first
            ));
        }
    } else {
        out.push(
            "  • Run several --parallel values (a sweep) to find the best configuration".into(),
        );
    }
    if let Some(last) = sorted.last() {
        if last.success_rate() < 95.0 {
            out.push("  • Success rate is low at high concurrency, check system resources or reduce concurrency".into());
        }
    }
    out
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
            name: "TTFT (ms)",
            values: vec![f64::NAN; 11],
        }];
        let j = percentile_json(&cols);
        assert!(j.contains("\"TTFT (ms)\": NaN"), "{j}");
    }

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
