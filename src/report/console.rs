//! The console tables: each run's summary and percentiles (evalscope), the
//! multi-run summary written to performance_summary.txt, and the
//! speed_benchmark table.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

use super::json::to_py_json;
use super::run::{dash, recommendations, sweep_order, RunResult};
use super::table::{render, Line};
use crate::scheduler::SweepPoint;
use crate::stats::catalogue::{Format, Section};
use crate::stats::{Col, Metric, Summary, PERCENTILES};

/// A summary value as the console shows it: integers plainly, floats to 4 dp with
/// trailing zeros dropped.
fn fmt_metric(s: &Summary, m: Metric) -> String {
    let Some(v) = s.get(m) else {
        return String::new();
    };
    if v.is_nan() {
        return "n/a".into();
    }
    match m.def().format {
        Format::Int => format!("{}", v as i64),
        _ => format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

/// The per-run table being built: its lines and the metrics its layout has placed.
struct Layout<'a> {
    r: &'a RunResult,
    lines: Vec<Line>,
    placed: Vec<Metric>,
}

impl Layout<'_> {
    /// A row of one or more metrics (`a / b`), when `show`; either way the metrics
    /// count as placed.
    fn row(&mut self, label: &str, ms: &[Metric], show: bool) {
        self.placed.extend_from_slice(ms);
        if show {
            let v: Vec<String> = ms.iter().map(|&m| fmt_metric(&self.r.summary, m)).collect();
            self.lines
                .push(Line::Cells(vec![label.to_string(), v.join(" / ")]));
        }
    }
    fn one(&mut self, m: Metric) {
        self.row(m.key(), &[m], true);
    }
    fn one_if(&mut self, m: Metric, show: bool) {
        self.row(m.key(), &[m], show);
    }
    /// The section's metrics the layout does not place, in the catalogue's order:
    /// a metric declared with a section shows up with no change here.
    fn rest(&mut self, section: Section) {
        for &m in Metric::ALL {
            let d = m.def();
            if d.section == Some(section)
                && d.scope.applies(self.r.encoder)
                && !self.placed.contains(&m)
                && self.r.summary.get(m).is_some()
            {
                self.one(m);
            }
        }
    }
    fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(format!("── {title} ──")));
    }
}

/// The per-run "Benchmarking summary" table (evalscope's layout, plus our rows).
pub fn summary_table(r: &RunResult) -> String {
    use Metric::*;
    let s = &r.summary;
    let mut t = Layout {
        r,
        lines: Vec::new(),
        placed: Vec::new(),
    };
    t.section("General");
    t.one(TestDuration);
    t.placed.push(Concurrency);
    let conc = if r.point.parallel < 0 {
        "INF".into()
    } else {
        fmt_metric(s, Concurrency)
    };
    t.lines
        .push(Line::Cells(vec![Concurrency.key().into(), conc]));
    t.one(RequestRate);
    let counts = [TotalRequests, SuccessRequests, FailedRequests];
    t.row("Total / Success / Failed", &counts, true);
    let both = r.num(StreamRequests) > 0.0 && r.num(NonStreamRequests) > 0.0;
    t.row(
        "Stream / Non-Stream",
        &[StreamRequests, NonStreamRequests],
        both,
    );
    t.one(ReqThroughput);
    t.one(MeasuredRequestRate);
    t.row(
        "Measured Concurrency (avg / peak)",
        &[MeasuredConcurrencyAvg, MeasuredConcurrencyPeak],
        true,
    );
    t.row(
        "Goodput (req/s) / (%)",
        &[GoodputRps, GoodputPct],
        s.has(GoodputRps),
    );
    t.rest(Section::General);
    t.section("Latency");
    t.one(AvgLatency);
    for m in [AvgTtft, AvgTimeToFirstEvent, AvgTpot, AvgItl] {
        t.one_if(m, r.num(m) != 0.0);
    }
    t.one_if(AvgScheduleLag, r.num(AvgScheduleLag) > 0.0);
    t.rest(Section::Latency);
    t.section("Tokens");
    let tokens: &[Metric] = if r.encoder {
        &[AvgInputTokens, InputThroughput]
    } else {
        &[
            AvgInputTokens,
            AvgOutputTokens,
            OutputThroughput,
            TotalThroughput,
        ]
    };
    for &m in tokens {
        t.one(m);
    }
    // The other layout's rows are placed too: evalscope shows one or the other.
    t.placed.extend_from_slice(&[
        AvgOutputTokens,
        OutputThroughput,
        TotalThroughput,
        InputThroughput,
    ]);
    t.rest(Section::Tokens);
    match s.token_counts() {
        Some(c) if c.starts_with("none") => {
            t.lines
                .push(Line::Cells(vec![TokenCounts.key().into(), c.into()]));
        }
        Some(c) if c != "server usage" => {
            t.lines.push(Line::Cells(vec![
                TokenCounts.key().into(),
                "UNKNOWN for some requests (no usage from server)".into(),
            ]));
        }
        _ => {}
    }
    // evalscope's optional `── Multi-turn ──` group, then the server's figures.
    for (section, title) in [
        (Section::MultiTurn, "Multi-turn & Cache"),
        (Section::Server, "Server"),
    ] {
        let any = Metric::ALL
            .iter()
            .any(|m| m.def().section == Some(section) && s.has(*m));
        if any {
            t.section(title);
            t.rest(section);
        }
    }
    let kinds = s.failures_by_kind();
    if !kinds.is_empty() {
        t.section("Failures");
        for (k, n) in kinds {
            t.lines.push(Line::Cells(vec![k.clone(), n.to_string()]));
        }
    }
    render(None, &["Key", "Value"], &t.lines)
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

/// "Percentile results": rows = metrics, columns = min … max (evalscope), the
/// 4-dp values as tabulate prints them.
pub fn percentile_table(r: &RunResult) -> String {
    let mut headers = vec!["Metrics"];
    headers.extend(PERCENTILES.iter().map(|p| p.1));
    let lines: Vec<Line> = r
        .columns
        .iter()
        .map(|c| {
            let mut cells = vec![c.name().to_string()];
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

pub fn multi_run_summary(runs: &[RunResult], h: &super::run::Header, out_path: &Path) -> String {
    let text = if runs.first().is_some_and(|r| r.encoder) {
        encoder_summary(runs, h, out_path)
    } else {
        llm_summary(runs, h, out_path)
    };
    let notes = run_notes(runs);
    if notes.is_empty() {
        text
    } else {
        format!("{text}\n\n{}", notes.join("\n"))
    }
}

/// One line per run that did not complete (its figures cover only what it
/// stored), and per run whose last `--snapshot-interval` window drifted.
pub fn run_notes(runs: &[RunResult]) -> Vec<String> {
    let name = |r: &RunResult| {
        r.dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let cut = runs.iter().filter_map(|r| {
        let why = r.cut_short.as_ref()?;
        Some(format!(
            "Note: run {} was cut short: {why}. Its figures cover the {} requests it stored.",
            name(r),
            r.num(Metric::TotalRequests)
        ))
    });
    let drift = runs.iter().filter_map(|r| {
        let note = r.timeseries.last()?.drift_note()?;
        Some(format!("Note: run {}: {note}.", name(r)))
    });
    cut.chain(drift).collect()
}

/// evalscope's multi-turn scalar rows of the detail table (and the estimate).
const SCALAR_ROWS: &[(&str, Metric, usize)] = &[
    ("Turns/Req", Metric::AvgTurnsPerRequest, 2),
    ("Cache Hit (%)", Metric::KvCacheHitRate, 2),
    ("Est. Cache Hit (%)", Metric::EstKvCacheHitRate, 2),
    ("1st-Turn TTFT", Metric::AvgFirstTurnTtft, 2),
    ("Subseq. TTFT", Metric::AvgSubsequentTurnTtft, 2),
];

fn llm_summary(runs: &[RunResult], h: &super::run::Header, out_path: &Path) -> String {
    let sorted = sweep_order(runs);
    let mut out = Vec::new();
    out.push("Performance Test Summary Report".to_string());
    out.push(basic_information(runs, h, out_path));
    // evalscope: a Traces column when the runs are multi-turn.
    let multi_turn = sorted.iter().any(|r| r.traces.is_some());
    let overview: Vec<Line> = sorted
        .iter()
        .map(|r| {
            let mut cells = vec![
                conc(&r.point),
                dash(r.point.rate),
                format!("{}", r.num(Metric::TotalRequests)),
                format!("{:.2}", r.num(Metric::ReqThroughput)),
                match r.summary.is_unknown(Metric::OutputThroughput) {
                    true => "n/a".into(),
                    false => format!("{:.2}", r.num(Metric::OutputThroughput)),
                },
                format!("{:.1}%", r.success_rate()),
            ];
            if multi_turn {
                let n = r.traces.as_ref().and_then(|t| t["n_traces"].as_u64());
                cells.push(n.map_or("-".into(), |n| n.to_string()));
            }
            Line::Cells(cells)
        })
        .collect();
    let mut headers = vec!["Conc.", "Rate", "Num", "RPS", "Gen/s", "Success"];
    if multi_turn {
        headers.push("Traces");
    }
    out.push(render(Some("Performance Overview"), &headers, &overview));
    let mut detail = Vec::new();
    for r in &sorted {
        // evalscope's rows: its label, the summary average and the column.
        let metric = |name: &str, avg: Metric, col: Col, dp: usize| {
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
                f(r.num(avg)),
                f(r.pct(col, "50%")),
                f(r.pct(col, "99%")),
                f(r.pct(col, "max")),
            ])
        };
        detail.push(metric(
            Col::Latency.key(),
            Metric::AvgLatency,
            Col::Latency,
            3,
        ));
        detail.push(metric(Col::Ttft.key(), Metric::AvgTtft, Col::Ttft, 2));
        detail.push(metric(Col::Tpot.key(), Metric::AvgTpot, Col::Tpot, 2));
        detail.push(metric(
            "Input Tokens",
            Metric::AvgInputTokens,
            Col::InputTokens,
            1,
        ));
        detail.push(metric(
            "Output Tokens",
            Metric::AvgOutputTokens,
            Col::OutputTokens,
            1,
        ));
        let scalar = |name: &str, v: String| {
            Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                name.into(),
                v,
                "-".into(),
                "-".into(),
                "-".into(),
            ])
        };
        // evalscope's scalar rows, where the run has them.
        for &(name, m, dp) in SCALAR_ROWS {
            if r.summary.has(m) {
                detail.push(scalar(name, format!("{:.dp$}", r.num(m))));
            }
        }
        let tpot = r.num(Metric::AvgTpot);
        if tpot > 0.0 {
            detail.push(scalar("Decode toks/s", format!("{:.2}", 1000.0 / tpot)));
        }
        for (name, m) in [
            ("Decoded Tok/Iter", Metric::AvgDecodedTokPerIter),
            ("Spec. Accept Rate", Metric::SpecAcceptRate),
        ] {
            if r.summary.has(m) {
                detail.push(scalar(name, format!("{:.4}", r.num(m))));
            }
        }
    }
    out.push(render(
        Some("Per-Request Metrics"),
        &["Conc.", "Rate", "Metric", "avg", "p50", "p99", "max"],
        &detail,
    ));
    if multi_turn {
        out.push(per_trace_table(&sorted));
    }
    if sorted.iter().any(|r| r.workload.is_some()) {
        out.push(workload_table(&sorted));
    }
    out.push(recommendations(&sorted).join("\n"));
    out.join("\n\n")
}

/// evalscope's "Per-Trace Metrics" table of multi-turn runs: each conversation
/// figure's mean, p50, p90, p99 and max (from trace_summary.json).
fn per_trace_table(runs: &[&RunResult]) -> String {
    let mut lines = Vec::new();
    for r in runs {
        let Some(rows) = r.traces.as_ref().and_then(|t| t["rows"].as_array()) else {
            continue;
        };
        for row in rows {
            let f = |k: &str| row[k].as_f64().map_or("-".into(), |v| format!("{v:.4}"));
            lines.push(Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                row["metric"].as_str().unwrap_or("").to_string(),
                f("mean"),
                f("p50"),
                f("p90"),
                f("p99"),
                f("max"),
            ]));
        }
    }
    render(
        Some("Per-Trace Metrics"),
        &[
            "Conc.", "Rate", "Metric", "mean", "p50", "p90", "p99", "max",
        ],
        &lines,
    )
}

/// evalscope 1.14.1's "Workload Throughput" table: each run's token rates over the
/// whole run, the last 30 s and the steady state (workload_throughput.json).
fn workload_table(runs: &[&RunResult]) -> String {
    use crate::stats::workload::{RATES, WINDOWS};
    let mut lines = Vec::new();
    for r in runs {
        let Some(w) = &r.workload else { continue };
        for (i, name) in RATES.iter().enumerate() {
            let mut cells = vec![conc(&r.point), dash(r.point.rate), name.to_string()];
            cells.extend(w.rates[i].iter().map(|v| format!("{v:.2}")));
            lines.push(Line::Cells(cells));
        }
    }
    let mut heads = vec!["Conc.", "Rate", "Metric (tok/s)"];
    heads.extend(WINDOWS);
    render(Some("Workload Throughput"), &heads, &lines)
}

/// The "Basic Information" table; generation totals only for LLM runs.
fn basic_information(runs: &[RunResult], h: &super::run::Header, out_path: &Path) -> String {
    let total_time: f64 = runs.iter().map(|r| r.num(Metric::TestDuration)).sum();
    let mut info = vec![Line::Cells(vec!["Model".into(), h.model_id.clone()])];
    // evalscope 1.14.1: an Alias row when set, and the Endpoint after the API type.
    if let Some(a) = &h.alias {
        info.push(Line::Cells(vec!["Alias".into(), a.clone()]));
    }
    info.push(Line::Cells(vec!["Test Dataset".into(), h.dataset.clone()]));
    info.push(Line::Cells(vec!["API Type".into(), h.api.clone()]));
    info.push(Line::Cells(vec!["Endpoint".into(), h.endpoint.clone()]));
    if !runs.first().is_some_and(|r| r.encoder) {
        let generated: f64 = runs
            .iter()
            .map(|r| r.num(Metric::AvgOutputTokens).max(0.0) * r.num(Metric::SuccessRequests))
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

/// evalscope's "Embedding/Rerank Performance Test Summary": one table of
/// latency and input throughput per run.
fn encoder_summary(runs: &[RunResult], h: &super::run::Header, out_path: &Path) -> String {
    let sorted = sweep_order(runs);
    let rows: Vec<Line> = sorted
        .iter()
        .map(|r| {
            Line::Cells(vec![
                conc(&r.point),
                dash(r.point.rate),
                format!("{:.2}", r.num(Metric::ReqThroughput)),
                format!("{:.3}", r.num(Metric::AvgLatency)),
                format!("{:.3}", r.pct(Col::Latency, "99%")),
                format!("{:.2}", r.num(Metric::InputThroughput)),
                format!("{:.2}", r.pct(Col::InputTps, "99%")),
                format!("{:.1}", r.num(Metric::AvgInputTokens)),
                format!("{:.1}%", r.success_rate()),
            ])
        })
        .collect();
    [
        "Embedding/Rerank Performance Test Summary".to_string(),
        basic_information(runs, h, out_path),
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
