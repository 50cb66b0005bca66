//! The report's SVG charts (inline, no script): the sweep charts, each run's
//! percentile curves, and each run's client and server on one time axis.

use std::fmt::Write as _;

use super::run::RunResult;
use crate::stats::{Col, Metric, PERCENTILES};

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A line chart over categorical x positions (sweep values are often doubling, so
/// equal spacing reads better than a linear axis).
fn line_chart(
    title: &str,
    x_label: &str,
    xs: &[String],
    series: &[(String, Vec<f64>)],
    y_label: &str,
) -> String {
    let (w, h, l, r, t, b) = (560.0, 300.0, 64.0, 16.0, 34.0, 70.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let finite = series
        .iter()
        .flat_map(|s| s.1.iter())
        .copied()
        .filter(|v| v.is_finite());
    let ymax = finite.fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 {
        nice_ceiling(ymax * 1.05)
    } else {
        1.0
    };
    let n = xs.len().max(1);
    let xpos = |i: usize| {
        if n == 1 {
            l + pw / 2.0
        } else {
            l + pw * i as f64 / (n - 1) as f64
        }
    };
    let ypos = |v: f64| t + ph * (1.0 - v / ymax);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-title="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" class="ct">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let y = ypos(v);
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" class="yt">{}</text>"##,
            l + pw,
            l - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    for (i, x) in xs.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="xt">{}</text>"#,
            xpos(i),
            t + ph + 16.0,
            esc(x)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{}" stroke="#888"/><line x1="{l}" x2="{}" y1="{}" y2="{}" stroke="#888"/>"##,
        t + ph,
        l + pw,
        t + ph,
        t + ph
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="xl">{}</text>"#,
        l + pw / 2.0,
        t + ph + 34.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(14 {}) rotate(-90)" class="xl">{}</text>"#,
        t + ph / 2.0,
        esc(y_label)
    );
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let pts: Vec<String> = ys
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", xpos(i), ypos(*v)))
            .collect();
        if pts.len() > 1 {
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
        }
        let (row, colm) = ((k / 4) as f64, (k % 4) as f64);
        let (lx, ly) = (l + colm * 120.0, h - 26.0 + row * 14.0);
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{}" y="{:.1}" class="lg">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            ly,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.2, 1.5, 2.0, 2.5, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn num(v: f64, dp: usize) -> String {
    if v.is_finite() {
        format!("{v:.dp$}")
    } else {
        "-".into()
    }
}

/// The x axis of the sweep charts: concurrency for closed-loop sweeps, otherwise
/// the rate. Returns whether it is the rate, its label and its values.
fn x_axis(sorted: &[&RunResult]) -> (bool, &'static str, Vec<String>) {
    let by_rate = sorted.iter().all(|r| r.point.parallel < 0)
        || (sorted
            .windows(2)
            .all(|w| w[0].point.parallel == w[1].point.parallel)
            && sorted.iter().any(|r| r.point.rate > 0.0)
            && sorted.len() > 1);
    let (x_label, xs): (&str, Vec<String>) = if by_rate {
        (
            "Request rate (req/s)",
            sorted
                .iter()
                .map(|r| {
                    if r.point.rate < 0.0 {
                        "INF".into()
                    } else {
                        num(r.point.rate, 1)
                    }
                })
                .collect(),
        )
    } else {
        (
            "Concurrency",
            sorted
                .iter()
                .map(|r| r.point.parallel.to_string())
                .collect(),
        )
    };
    (by_rate, x_label, xs)
}

/// Every chart: the sweep charts (x = concurrency or rate), then each run's
/// percentile curves.
pub(super) fn charts(sorted: &[&RunResult]) -> Vec<String> {
    let (by_rate, x_label, xs) = x_axis(sorted);
    let col = |m: Metric| {
        sorted
            .iter()
            .map(|r| r.num(m))
            .map(|v| if v < 0.0 { f64::NAN } else { v })
            .collect::<Vec<_>>()
    };
    let pct = |c: Col, p: &str| sorted.iter().map(|r| r.pct(c, p)).collect::<Vec<_>>();
    let mut charts = Vec::new();
    // Embedding / rerank runs have no tokens out: their charts show input throughput.
    let encoder = sorted.first().is_some_and(|r| r.encoder);
    let latency_charts: &[(&str, Metric, Col, &str)] = if encoder {
        &[
            ("Latency", Metric::AvgLatency, Col::Latency, "seconds"),
            (
                "Input throughput per request",
                Metric::InputThroughput,
                Col::InputTps,
                "tokens / s",
            ),
        ]
    } else {
        &[
            ("Latency", Metric::AvgLatency, Col::Latency, "seconds"),
            ("Time to first token", Metric::AvgTtft, Col::Ttft, "ms"),
            ("Time per output token", Metric::AvgTpot, Col::Tpot, "ms"),
        ]
    };
    for &(title, avg, c, unit) in latency_charts {
        charts.push(line_chart(
            &format!("{title} vs {}", x_label.to_lowercase()),
            x_label,
            &xs,
            &[
                ("avg".into(), col(avg)),
                ("p50".into(), pct(c, "50%")),
                ("p90".into(), pct(c, "90%")),
                ("p99".into(), pct(c, "99%")),
            ],
            unit,
        ));
    }
    charts.push(line_chart(
        "Request throughput",
        x_label,
        &xs,
        &[("req/s".into(), col(Metric::ReqThroughput))],
        "requests / s",
    ));
    charts.push(line_chart(
        "Token throughput",
        x_label,
        &xs,
        &if encoder {
            vec![("input tok/s".into(), col(Metric::TotalThroughput))]
        } else {
            vec![
                ("output tok/s".into(), col(Metric::OutputThroughput)),
                ("total tok/s".into(), col(Metric::TotalThroughput)),
            ]
        },
        "tokens / s",
    ));
    charts.push(line_chart(
        "Success rate",
        x_label,
        &xs,
        &[(
            "success %".into(),
            sorted.iter().map(|r| r.success_rate()).collect(),
        )],
        "%",
    ));
    // Per-run percentile curves: x = percentile, one line per run.
    let labels: Vec<String> = PERCENTILES.iter().map(|p| p.1.to_string()).collect();
    let pct_charts: &[(Col, &str)] = if encoder {
        &[(Col::Latency, "seconds"), (Col::InputTokens, "tokens")]
    } else {
        &[
            (Col::Latency, "seconds"),
            (Col::Ttft, "ms"),
            (Col::Tpot, "ms"),
        ]
    };
    for &(c, unit) in pct_charts {
        let series: Vec<(String, Vec<f64>)> = sorted
            .iter()
            .map(|r| {
                let name = if by_rate {
                    format!("rate {}", r.point.rate)
                } else {
                    format!("conc. {}", r.point.parallel)
                };
                let vals = r
                    .columns
                    .iter()
                    .find(|x| x.col == c)
                    .map(|x| x.values.clone())
                    .unwrap_or_default();
                (name, vals)
            })
            .collect();
        charts.push(line_chart(
            &format!("{} percentiles per run", c.key()),
            "percentile",
            &labels,
            &series,
            unit,
        ));
    }
    charts.extend(sorted.iter().flat_map(|r| over_time(r)));
    charts
}

/// A run's charts over time: client and server per scrape, then its
/// `--snapshot-interval` windows.
fn over_time(r: &RunResult) -> Vec<String> {
    let mut out = r
        .timeline
        .as_ref()
        .map(|t| timeline_charts(r, t))
        .unwrap_or_default();
    if !r.timeseries.is_empty() {
        out.extend(timeseries_charts(r));
    }
    out
}

/// A long run over time: one point per `--snapshot-interval` window (x: the
/// window's end, seconds since the run started).
fn timeseries_charts(r: &RunResult) -> Vec<String> {
    let ts = &r.timeseries;
    let stage = ts.first().map_or("", |s| s.stage.as_str());
    let every = ts.len().div_ceil(10).max(1);
    let xs: Vec<String> = ts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i % every == 0 {
                format!("{:.0}", s.end_s)
            } else {
                String::new()
            }
        })
        .collect();
    type Pick = fn(&crate::recorder::snapshot::Snapshot) -> Option<f64>;
    let series = |picks: &[(&str, Pick)]| -> Vec<(String, Vec<f64>)> {
        picks
            .iter()
            .map(|(n, f)| {
                (
                    n.to_string(),
                    ts.iter().map(|s| f(s).unwrap_or(f64::NAN)).collect(),
                )
            })
            .filter(|(_, v): &(String, Vec<f64>)| v.iter().any(|x| x.is_finite()))
            .collect()
    };
    let mut out = Vec::new();
    for (title, unit, s) in [
        (
            "TTFT over time",
            "ms",
            series(&[
                ("p50", |s| s.ttft_ms.map(|f| f.p50)),
                ("p99", |s| s.ttft_ms.map(|f| f.p99)),
            ]),
        ),
        (
            "TPOT over time",
            "ms",
            series(&[
                ("p50", |s| s.tpot_ms.map(|f| f.p50)),
                ("p99", |s| s.tpot_ms.map(|f| f.p99)),
            ]),
        ),
        (
            "throughput over time",
            "req/s",
            series(&[("succeeded", |s| Some(s.request_throughput))]),
        ),
        (
            "errors over time",
            "%",
            series(&[("error rate", |s| Some(100.0 * s.error_rate))]),
        ),
    ] {
        if !s.is_empty() {
            out.push(line_chart(
                &format!("{stage}: {title}"),
                "seconds",
                &xs,
                &s,
                unit,
            ));
        }
    }
    out
}

/// One run's client and server on one time axis (x: seconds since the first
/// scrape of the served model's /metrics).
fn timeline_charts(r: &RunResult, t: &crate::stats::Timeline) -> Vec<String> {
    let stage = r
        .dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // At most about ten time labels, however many scrapes.
    let every = t.secs.len().div_ceil(10).max(1);
    let xs: Vec<String> = t
        .secs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i % every == 0 {
                format!("{s:.0}")
            } else {
                String::new()
            }
        })
        .collect();
    let keep = |series: Vec<(&str, &Vec<f64>)>| -> Vec<(String, Vec<f64>)> {
        series
            .into_iter()
            .filter(|(_, v)| v.iter().any(|x| x.is_finite()))
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    };
    let mut out = Vec::new();
    for (title, unit, series) in [
        (
            "requests in flight",
            "requests",
            keep(vec![
                ("client in flight", &t.client_in_flight),
                ("server running", &t.server_running),
                ("server waiting", &t.server_waiting),
            ]),
        ),
        (
            "TTFT per interval",
            "ms",
            keep(vec![
                ("client TTFT", &t.client_ttft_ms),
                ("server TTFT", &t.server_ttft_ms),
            ]),
        ),
        (
            "KV-cache usage",
            "%",
            keep(vec![("KV cache", &t.server_kv_pct)]),
        ),
    ] {
        if !series.is_empty() {
            out.push(line_chart(
                &format!("{stage}: {title}"),
                "seconds",
                &xs,
                &series,
                unit,
            ));
        }
    }
    out
}
