//! A comparison as a console table or Markdown (for a CI comment); JSON is the
//! serialised `Comparison`.

use super::model::{Comparison, Row, Verdict};
use crate::report::table::{render, Line};

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |d| format!("{d:+.2}%"))
}

fn ci(r: &Row) -> String {
    match (r.ci_low_pct, r.ci_high_pct) {
        (Some(a), Some(b)) => format!("[{a:+.2}%, {b:+.2}%]"),
        _ => "—".into(),
    }
}

fn label(r: &Row) -> String {
    // Summary keys carry their unit already (`Avg TTFT (ms)`).
    if r.unit.is_empty() || r.metric.contains('(') {
        r.metric.clone()
    } else {
        format!("{} ({})", r.metric, r.unit)
    }
}

const HEADERS: [&str; 6] = ["Metric", "Base", "New", "Change", "CI", "Verdict"];

fn cells(r: &Row) -> Vec<String> {
    vec![
        label(r),
        num(r.base),
        num(r.new),
        pct(r.delta_pct),
        ci(r),
        r.verdict.as_str().to_string(),
    ]
}

fn footer(c: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    for p in &c.only_in_base {
        out.push(format!("Only in base: {p}"));
    }
    for p in &c.only_in_new {
        out.push(format!("Only in new: {p}"));
    }
    for p in &c.points {
        for n in p.notes.iter().chain(&p.unknown) {
            out.push(format!("Note {}: {n}", p.name));
        }
    }
    for x in &c.crossed {
        out.push(match x.delta_pct {
            Some(d) => format!(
                "FAIL {}: {} changed {d:+.2}% (limit {:+}%)",
                x.point, x.metric, x.limit_pct
            ),
            None => format!(
                "FAIL {}: {} is unknown (no token counts), so --fail-on {}:{:+}% cannot pass",
                x.point, x.metric, x.metric, x.limit_pct
            ),
        });
    }
    if !c.fail_on.is_empty() && c.crossed.is_empty() {
        out.push("No --fail-on threshold crossed.".into());
    }
    out
}

/// How the intervals were made, for both renderings.
fn method(c: &Comparison) -> String {
    format!(
        "{}% bootstrap intervals over {} resamples (seed {}), min effect {}%",
        c.confidence * 100.0,
        c.resamples,
        c.seed,
        c.min_effect_pct
    )
}

/// A point's heading: its name and request counts.
fn heading(p: &super::model::PointComparison) -> String {
    format!(
        "{} ({} vs {} requests)",
        p.name, p.base_requests, p.new_requests
    )
}

/// The console tables, one per point.
pub fn console(c: &Comparison) -> String {
    let mut s = format!(
        "Comparing {} (base) with {} (new): {}\n",
        c.base,
        c.new,
        method(c)
    );
    for p in &c.points {
        let lines: Vec<Line> = p.rows.iter().map(|r| Line::Cells(cells(r))).collect();
        let title = heading(p);
        s.push_str(&render(Some(&title), &HEADERS, &lines));
        s.push('\n');
    }
    for l in footer(c) {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// GitHub-flavoured Markdown: a heading and a table per point.
pub fn markdown(c: &Comparison) -> String {
    let mut s = format!(
        "## perfscope compare\n\nBase `{}`, new `{}`: {}.\n",
        c.base,
        c.new,
        method(c)
    );
    for p in &c.points {
        s.push_str(&format!(
            "\n### {}\n\n| {} |\n|{}|\n",
            heading(p),
            HEADERS.join(" | "),
            HEADERS.map(|_| "---").join("|")
        ));
        for r in &p.rows {
            let mut c = cells(r);
            c[5] = match r.verdict {
                Verdict::Worse => "**worse**".into(),
                Verdict::Better => "better".into(),
                Verdict::WithinNoise => "within noise".into(),
            };
            s.push_str(&format!("| {} |\n", c.join(" | ")));
        }
    }
    let f = footer(c);
    if !f.is_empty() {
        s.push('\n');
        for l in f {
            s.push_str(&format!("- {l}\n"));
        }
    }
    s
}
