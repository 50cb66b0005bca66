//! The results of one sweep point, as the reports read them.

use crate::scheduler::{py_float, SweepPoint};
use crate::stats::{percentile_of, Col, Column, Metric, Summary, Timeline};

/// The results of one sweep point.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub point: SweepPoint,
    pub summary: Summary,
    pub columns: Vec<Column>,
    pub dir: std::path::PathBuf,
    /// An embedding or rerank run: evalscope's input-throughput layout.
    pub encoder: bool,
    /// Client and server on one time axis (when the server was scraped).
    pub timeline: Option<Timeline>,
    /// A multi-turn run's `trace_summary.json` (None otherwise).
    pub traces: Option<serde_json::Value>,
    /// The workload windows (None when nothing succeeded).
    pub workload: Option<crate::stats::Workload>,
    /// How the run ended when it did not complete (see `RunRows::cut_short`): its
    /// figures cover only the rows it stored.
    pub cut_short: Option<String>,
    /// `--scenario agentx`: the run's AgentX figures, pushed to trackers per step.
    pub agentx: Vec<(String, f64)>,
    /// `--snapshot-interval` windows (`timeseries.jsonl`; empty without).
    pub timeseries: Vec<crate::recorder::snapshot::Snapshot>,
}

impl RunResult {
    /// A summary value, 0 when the run has no such key.
    pub fn num(&self, m: Metric) -> f64 {
        self.summary.num(m)
    }
    /// A percentile of a column (label as in PERCENTILES), NaN when absent.
    pub fn pct(&self, col: Col, label: &str) -> f64 {
        percentile_of(&self.columns, col, label)
    }
    pub fn success_rate(&self) -> f64 {
        let t = self.num(Metric::TotalRequests);
        if t > 0.0 {
            100.0 * self.num(Metric::SuccessRequests) / t
        } else {
            0.0
        }
    }
}

/// The multi-run "Performance Test Summary Report" (evalscope), plus the best
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

/// evalscope's best-configuration and recommendation rules.
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
        a.1.num(Metric::ReqThroughput)
            .total_cmp(&b.1.num(Metric::ReqThroughput))
    }) else {
        return out;
    };
    out.push(format!(
        "  Highest RPS: {} ({:.2} req/sec)",
        label(best_rps.1),
        best_rps.1.num(Metric::ReqThroughput)
    ));
    if let Some(low) = sorted
        .iter()
        .filter(|r| r.num(Metric::AvgLatency) >= 0.0)
        .min_by(|a, b| {
            a.num(Metric::AvgLatency)
                .total_cmp(&b.num(Metric::AvgLatency))
        })
    {
        out.push(format!(
            "  Lowest Latency: {} ({:.3} seconds)",
            label(low),
            low.num(Metric::AvgLatency)
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
            sorted[0].num(Metric::AvgLatency),
            sorted[sorted.len() - 1].num(Metric::AvgLatency),
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

pub(crate) fn dash(v: f64) -> String {
    if v == -1.0 {
        "-".into()
    } else {
        py_float(v).trim_end_matches(".0").to_string()
    }
}

/// What the reports say about an invocation (evalscope 1.14.1's Basic Information:
/// model, alias, dataset, API type and endpoint).
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub model_id: String,
    /// `--alias`: a display label.
    pub alias: Option<String>,
    pub dataset: String,
    pub api: String,
    /// `host[:port]` of the URL (evalscope 1.14.1's "Endpoint" row).
    pub endpoint: String,
}

impl Header {
    /// The header of a stored invocation, from its first run's arguments.
    pub fn from_args(
        model_id: String,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Header {
        let text = |k: &str, d: &str| {
            args.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or(d)
                .to_string()
        };
        Header {
            model_id,
            alias: args
                .get("alias")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            dataset: text("dataset", "openqa"),
            api: text("api", "openai"),
            endpoint: endpoint(&text("url", "")),
        }
    }
}

/// evalscope 1.14.1: `host[:port]`, the host lower-cased, the port only when the URL
/// names one, IPv6 in brackets; `—` when the URL cannot be parsed.
pub fn endpoint(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "—".into();
    };
    let Some(host) = u.host_str() else {
        return "—".into();
    };
    let host = host.to_ascii_lowercase();
    // A default port is dropped by the parser; evalscope keeps any port written.
    let written = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once(':'))
        .filter(|(h, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with('[')
        })
        .map(|(_, p)| p.to_string());
    match written {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}
