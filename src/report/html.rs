//! `perf_report.html`: one self-contained file (inline CSS and SVG, no CDN, no
//! fonts or scripts fetched), so it opens on an offline machine. Charts are drawn as
//! SVG here rather than by a charting library in the browser: the file stays small
//! and renders the same everywhere.

use super::charts::{charts, esc, num};
use super::run::{recommendations, sweep_order, RunResult};
use crate::stats::{Col, Metric, PercentileRow};

/// What the report says about the invocation.
pub struct Meta<'a> {
    pub header: &'a super::run::Header,
    pub generated: String,
    pub output_path: String,
}

/// The whole report for the given runs (any order).
pub fn render(runs: &[RunResult], meta: &Meta) -> String {
    let sorted = sweep_order(runs);
    let encoder = sorted.first().is_some_and(|r| r.encoder);
    let charts = charts(&sorted);
    let (headers, rows) = summary_rows(&sorted, encoder);
    let mut sections = section_tables(&sorted);
    sections.extend(workload_table(&sorted));
    let page = Page {
        model: &meta.header.model_id,
        alias: meta.header.alias.as_deref(),
        endpoint: &meta.header.endpoint,
        dataset: &meta.header.dataset,
        api: &meta.header.api,
        runs: sorted.len(),
        output_path: &meta.output_path,
        generated: &meta.generated,
        css: CSS,
        headers,
        rows,
        sections,
        recs: recs(&recommendations(&sorted)),
        charts,
        tables: sorted.iter().map(|r| percentile_table(r)).collect(),
        notes: super::console::run_notes(runs),
    };
    let mut env = minijinja::Environment::new();
    env.add_filter("esc", |s: String| esc(&s));
    // Named without `.html`: values are escaped where the template says `esc`, as
    // they always were, not by minijinja's own HTML escaping.
    let page_html = env
        .add_template("report", TEMPLATE)
        .and_then(|()| env.get_template("report"))
        .and_then(|t| t.render(&page));
    match page_html {
        Ok(mut h) => {
            h.push('\n');
            h
        }
        // The template is part of the binary; a failure here is a bug, shown in the
        // page rather than losing the run's report.
        Err(e) => format!(
            "<!DOCTYPE html><html><body><pre>{}</pre></body></html>\n",
            esc(&e.to_string())
        ),
    }
}

/// The report's page layout (minijinja).
const TEMPLATE: &str = include_str!("report.html.j2");

/// What the template shows.
#[derive(serde::Serialize)]
struct Page<'a> {
    model: &'a str,
    alias: Option<&'a str>,
    endpoint: &'a str,
    dataset: &'a str,
    api: &'a str,
    runs: usize,
    output_path: &'a str,
    generated: &'a str,
    css: &'a str,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// The multi-turn and server tables, where some run has their keys.
    sections: Vec<SectionTable>,
    recs: Vec<Rec>,
    charts: Vec<String>,
    tables: Vec<PctTable>,
    /// Runs that did not complete (see `console::run_notes`).
    notes: Vec<String>,
}

/// One line of the recommendations: a heading or an item under it.
#[derive(serde::Serialize)]
struct Rec {
    heading: bool,
    text: String,
}

/// A table of one catalogue section's keys (`Multi-turn & Cache`, `Server`).
#[derive(serde::Serialize)]
struct SectionTable {
    title: &'static str,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// One run's percentile table.
#[derive(serde::Serialize)]
struct PctTable {
    name: String,
    columns: Vec<&'static str>,
    rows: Vec<(&'static str, Vec<String>)>,
}

/// The sweep point's cells: concurrency (`INF` for rate-only runs) and rate.
fn point_cells(r: &RunResult) -> Vec<String> {
    vec![
        if r.point.parallel < 0 {
            "INF".to_string()
        } else {
            r.point.parallel.to_string()
        },
        if r.point.rate < 0.0 {
            "-".to_string()
        } else {
            num(r.point.rate, 2)
        },
    ]
}

/// The tables of the catalogue's Multi-turn and Server sections: every metric of
/// the section that some run has (named as the catalogue names it, so an estimate
/// reads as one), one row per run ("-" where a run lacks it).
fn section_tables(sorted: &[&RunResult]) -> Vec<SectionTable> {
    use crate::stats::catalogue::{Format, Section};
    let mut tables = Vec::new();
    for (section, title) in [
        (Section::MultiTurn, "Multi-turn & Cache"),
        (Section::Server, "Server"),
    ] {
        let metrics: Vec<Metric> = Metric::ALL
            .iter()
            .copied()
            .filter(|m| m.def().section == Some(section))
            .filter(|m| sorted.iter().any(|r| r.summary.get(*m).is_some()))
            .collect();
        if metrics.is_empty() {
            continue;
        }
        let rows =
            sorted
                .iter()
                .map(|r| {
                    let mut cells = point_cells(r);
                    cells.extend(metrics.iter().map(|m| {
                        match (r.summary.get(*m), m.def().format) {
                            (None, _) => "-".to_string(),
                            (Some(v), Format::Dp(dp)) => num(v, dp),
                            (Some(v), _) => format!("{v}"),
                        }
                    }));
                    cells
                })
                .collect();
        tables.push(SectionTable {
            title,
            headers: metrics.iter().map(|m| m.key()).collect(),
            rows,
        });
    }
    tables
}

/// evalscope 1.14.1's Workload Throughput: each run's token rates in the three
/// windows (Overall, Last 30 s, Steady), one row per run and rate.
fn workload_table(sorted: &[&RunResult]) -> Option<SectionTable> {
    use crate::stats::workload::{RATES, WINDOWS};
    let mut rows = Vec::new();
    for r in sorted {
        let Some(w) = &r.workload else { continue };
        for (i, name) in RATES.iter().enumerate() {
            let mut cells = point_cells(r);
            cells.push(name.to_string());
            cells.extend(w.rates[i].iter().map(|v| num(*v, 2)));
            rows.push(cells);
        }
    }
    let mut headers = vec!["Metric (tok/s)"];
    headers.extend(WINDOWS);
    (!rows.is_empty()).then_some(SectionTable {
        title: "Workload Throughput",
        headers,
        rows,
    })
}

/// The summary table's extra headers and every run's cells.
fn summary_rows(sorted: &[&RunResult], encoder: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers: &[&str] = if encoder {
        &[
            "Avg input tok/s",
            "P99 input tok/s",
            "Avg input tokens",
            "Total tok/s",
        ]
    } else {
        &[
            Metric::AvgTtft.key(),
            "P99 TTFT (ms)",
            Metric::AvgTpot.key(),
            "P99 TPOT (ms)",
            "Output tok/s",
            "Total tok/s",
        ]
    };
    let rows = sorted
        .iter()
        .map(|r| {
            let mut cells = point_cells(r);
            cells.extend([
                r.num(Metric::TotalRequests).to_string(),
                format!("{:.1}%", r.success_rate()),
                num(r.num(Metric::ReqThroughput), 2),
                num(r.num(Metric::AvgLatency), 3),
                num(r.pct(Col::Latency, "99%"), 3),
            ]);
            if encoder {
                cells.extend([
                    num(r.num(Metric::InputThroughput), 1),
                    num(r.pct(Col::InputTps, "99%"), 1),
                    num(r.num(Metric::AvgInputTokens), 1),
                    num(r.num(Metric::TotalThroughput), 1),
                ]);
            } else {
                cells.extend([
                    num(r.num(Metric::AvgTtft), 2),
                    num(r.pct(Col::Ttft, "99%"), 2),
                    num(r.num(Metric::AvgTpot), 2),
                    num(r.pct(Col::Tpot, "99%"), 2),
                    num(r.num(Metric::OutputThroughput), 1),
                    num(r.num(Metric::TotalThroughput), 1),
                ]);
            }
            cells
        })
        .collect();
    (headers.to_vec(), rows)
}

/// The console's recommendation lines as headings and items (the first line is the
/// console title).
fn recs(lines: &[String]) -> Vec<Rec> {
    lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let t = line.trim().trim_start_matches('•').trim();
            (!t.is_empty()).then(|| Rec {
                heading: !line.starts_with(' '),
                text: t.to_string(),
            })
        })
        .collect()
}

fn percentile_table(r: &RunResult) -> PctTable {
    PctTable {
        name: r
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        columns: r.columns.iter().map(|c| c.name()).collect(),
        rows: PercentileRow::of(&r.columns)
            .into_iter()
            .map(|row| {
                (
                    row.label,
                    row.cells.iter().map(|&(_, v)| num(v, 4)).collect(),
                )
            })
            .collect(),
    }
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}\
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f5f8}.info th,.info td{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}\
svg.chart{border:1px solid #e5e5e5;background:#fff}.ct{font-size:14px;font-weight:600;text-anchor:middle}\
.yt{font-size:10px;text-anchor:end}.xt{font-size:10px;text-anchor:middle}.xl{font-size:11px;text-anchor:middle}\
.lg{font-size:11px}.rec li{margin:4px 0}";
