//! The criteria of `--sla-params` and whether a tested point passes them.

use anyhow::{bail, Result};
use serde_json::Value;

use crate::report::RunResult;
use crate::stats::{Col, Metric};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Le,
    Ge,
    Lt,
    Gt,
    Eq,
    Max,
    Min,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<=" | "≤" => Op::Le,
            ">=" | "≥" | "≧" => Op::Ge,
            "<" => Op::Lt,
            ">" => Op::Gt,
            "==" | "=" => Op::Eq,
            "max" => Op::Max,
            "min" => Op::Min,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Eq => "==",
            Op::Max => "max",
            Op::Min => "min",
        }
    }
}

/// Where a metric's value is read: a summary key or a percentile cell, times a
/// scale into the user's unit.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Summary(Metric),
    Pct(Col, &'static str),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    pub name: String,
    metric: NamedMetric,
    pub op: Op,
    pub value: f64,
}

impl Criterion {
    /// The metric's value in the user's unit; None when the run has no such value.
    pub fn read(&self, r: &RunResult) -> Option<f64> {
        self.metric.read(r)
    }

    pub fn passes(&self, v: f64) -> bool {
        match self.op {
            Op::Le => v <= self.value,
            Op::Ge => v >= self.value,
            Op::Lt => v < self.value,
            Op::Gt => v > self.value,
            Op::Eq => (v - self.value).abs() <= 1e-9 * self.value.abs().max(1.0),
            Op::Max | Op::Min => true,
        }
    }

    /// The p99 latency bound (milliseconds) this criterion sets, for the run's live
    /// objectives: `p99_ttft`, `p99_tpot` or `p99_latency` with `<=` or `<`.
    pub fn p99_bound_ms(&self) -> Option<(Col, f64)> {
        let Source::Pct(col, "99%") = self.metric.source else {
            return None;
        };
        if !matches!(self.op, Op::Le | Op::Lt) {
            return None;
        }
        // The value is in the user's unit (column unit × scale); TTFT and TPOT
        // columns are in ms, latency in seconds.
        let in_col = self.value / self.metric.scale;
        let ms = if col == Col::Latency {
            in_col * 1000.0
        } else {
            in_col
        };
        Some((col, ms))
    }

    pub fn describe(&self) -> String {
        match self.op {
            Op::Max | Op::Min => format!("{} {}", self.name, self.op.as_str()),
            op => format!("{} {} {}", self.name, op.as_str(), self.value),
        }
    }
}

/// A metric named as in `--sla-params` (`p99_ttft`, `rps`, …), read from a run's
/// result in the user's unit.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedMetric {
    pub name: String,
    source: Source,
    scale: f64,
}

impl NamedMetric {
    pub fn parse(name: &str) -> Option<NamedMetric> {
        let (source, scale) = metric(name, false)?;
        Some(NamedMetric {
            name: name.to_string(),
            source,
            scale,
        })
    }
    /// The value in the user's unit; None when the run has none (evalscope's -1
    /// means "no denominator": not a measured value).
    pub fn read(&self, r: &RunResult) -> Option<f64> {
        let raw = match &self.source {
            Source::Summary(m) => r.summary.get(*m),
            Source::Pct(c, p) => Some(r.pct(*c, p)),
        }?;
        (raw.is_finite() && raw >= 0.0).then_some(raw * self.scale)
    }
    /// Whether the run has the metric but cannot know it (token figures without
    /// token counts).
    pub fn is_unknown(&self, r: &RunResult) -> bool {
        match &self.source {
            Source::Summary(m) => r.summary.is_unknown(*m),
            Source::Pct(..) => false,
        }
    }
    /// Whether a lower value is better (latencies), from the catalogue.
    pub fn lower_is_better(&self) -> bool {
        match &self.source {
            Source::Summary(m) => m.def().direction == crate::stats::Direction::LowerIsBetter,
            Source::Pct(..) => true,
        }
    }
}

/// The metric names --sla-params and `compare --fail-on` accept.
pub const METRIC_NAMES: &str = NAMES;

/// Maps a metric name to its source and scale.
fn metric(name: &str, seed_format: bool) -> Option<(Source, f64)> {
    use Source::*;
    let s = |k| Some((Summary(k), 1.0));
    if seed_format {
        return match name {
            "latency" => s(Metric::AvgLatency),
            "ttft" => Some((Summary(Metric::AvgTtft), 1e-3)),
            "tpot" => Some((Summary(Metric::AvgTpot), 1e-3)),
            "request_throughput" => s(Metric::ReqThroughput),
            "output_token_throughput" => s(Metric::OutputThroughput),
            "total_token_throughput" => s(Metric::TotalThroughput),
            "goodput" => s(Metric::GoodputRps),
            _ => None,
        };
    }
    match name {
        "avg_latency" | "avg_latency_s" => return s(Metric::AvgLatency),
        "avg_ttft" | "avg_ttft_ms" => return s(Metric::AvgTtft),
        "avg_ttft_s" => return Some((Summary(Metric::AvgTtft), 1e-3)),
        "avg_tpot" | "avg_tpot_ms" => return s(Metric::AvgTpot),
        "avg_tpot_s" => return Some((Summary(Metric::AvgTpot), 1e-3)),
        "rps" | "request_throughput" => return s(Metric::ReqThroughput),
        "tps" | "output_token_throughput" => return s(Metric::OutputThroughput),
        "total_token_throughput" => return s(Metric::TotalThroughput),
        "goodput" | "goodput_rps" => return s(Metric::GoodputRps),
        "goodput_pct" => return s(Metric::GoodputPct),
        _ => {}
    }
    // p50/p90/p99 of latency (s), ttft and tpot (ms).
    let (p, rest) = name.split_once('_')?;
    let label = match p {
        "p50" => "50%",
        "p90" => "90%",
        "p99" => "99%",
        _ => return None,
    };
    match rest {
        "latency" | "latency_s" => Some((Pct(Col::Latency, label), 1.0)),
        "ttft" | "ttft_ms" => Some((Pct(Col::Ttft, label), 1.0)),
        "ttft_s" => Some((Pct(Col::Ttft, label), 1e-3)),
        "tpot" | "tpot_ms" => Some((Pct(Col::Tpot, label), 1.0)),
        "tpot_s" => Some((Pct(Col::Tpot, label), 1e-3)),
        _ => None,
    }
}

const NAMES: &str = "avg_latency (s), avg_ttft, avg_tpot (ms), p50/p90/p99_latency (s), \
p50/p90/p99_ttft, p50/p90/p99_tpot (ms), rps, tps, total_token_throughput, goodput, goodput_pct; \
add _s or _ms to say the unit";

/// Parses `--sla-params` (either format) into groups; each group is one search.
pub fn parse_params(text: &str) -> Result<Vec<Vec<Criterion>>> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!("--sla-params: not JSON ({e}); e.g. '[{{\"p99_ttft\": \"<=500\"}}]'")
    })?;
    let items = match v {
        Value::Array(a) if !a.is_empty() => a,
        Value::Object(o) => vec![Value::Object(o)],
        _ => bail!("--sla-params: expected a non-empty JSON list"),
    };
    let seed = items
        .iter()
        .all(|i| i.get("name").is_some() && i.get("operator").is_some());
    let mut groups = Vec::new();
    if seed {
        let mut g = Vec::new();
        for i in &items {
            let name = i["name"].as_str().unwrap_or_default();
            let op_s = i["operator"].as_str().unwrap_or_default();
            let Some((source, scale)) = metric(name, true) else {
                bail!(
                    "--sla-params: unknown metric `{name}`; use latency, ttft, tpot (seconds), \
                     request_throughput, output_token_throughput, total_token_throughput, goodput"
                );
            };
            let Some(op) = Op::parse(op_s).filter(|o| !matches!(o, Op::Max | Op::Min)) else {
                bail!("--sla-params: `{name}`: operator `{op_s}` is not one of <= >= < > ==");
            };
            let Some(value) = i["value"].as_f64() else {
                bail!("--sla-params: `{name}`: `value` must be a number");
            };
            g.push(Criterion {
                name: name.into(),
                metric: NamedMetric {
                    name: name.into(),
                    source,
                    scale,
                },
                op,
                value,
            });
        }
        groups.push(g);
    } else {
        for i in &items {
            let Some(obj) = i.as_object().filter(|o| !o.is_empty()) else {
                bail!("--sla-params: each group is an object like {{\"p99_ttft\": \"<=500\"}}");
            };
            let mut g = Vec::new();
            for (name, crit) in obj {
                let Some((source, scale)) = metric(name, false) else {
                    bail!("--sla-params: unknown metric `{name}`; use {NAMES}");
                };
                let c = crit.as_str().map(str::trim).unwrap_or_default();
                let (op, rest) = ["<=", ">=", "≤", "≥", "≧", "==", "<", ">", "max", "min"]
                    .iter()
                    .find_map(|p| c.strip_prefix(p).map(|r| (Op::parse(p), r.trim())))
                    .unwrap_or((None, ""));
                let Some(op) = op else {
                    bail!("--sla-params: `{name}`: `{c}` is not <=x, >=x, <x, >x, ==x, max or min");
                };
                let value = if matches!(op, Op::Max | Op::Min) {
                    f64::NAN
                } else {
                    rest.parse::<f64>().map_err(|_| {
                        anyhow::anyhow!(
                            "--sla-params: `{name}`: `{c}` has no number after the operator"
                        )
                    })?
                };
                g.push(Criterion {
                    name: name.clone(),
                    metric: NamedMetric {
                        name: name.clone(),
                        source,
                        scale,
                    },
                    op,
                    value,
                });
            }
            groups.push(g);
        }
    }
    let optimising = groups
        .iter()
        .flatten()
        .filter(|c| matches!(c.op, Op::Max | Op::Min))
        .count();
    if optimising > 0 && !(groups.len() == 1 && groups[0].len() == 1) {
        bail!("--sla-params: max/min must be the only criterion (one group with one metric)");
    }
    Ok(groups)
}

/// Whether a test point passes: every request succeeded (evalscope rounds the rate
/// to 0.1%) and every criterion holds; a missing metric fails.
pub fn point_passes(r: &RunResult, group: &[Criterion]) -> bool {
    let rate = (r.success_rate() * 10.0).round() / 10.0;
    rate >= 100.0 && group.iter().all(|c| c.read(r).is_some_and(|v| c.passes(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{constraint_search, optimise};

    #[test]
    fn p99_criteria_give_live_bounds_in_ms() {
        let g = parse_params(
            r#"[{"p99_ttft": "<=500", "p99_latency_s": "<2", "p99_tpot_s": "<=0.05", "p90_ttft": "<=1", "rps": ">=3"}, {"p99_ttft": ">=1"}]"#,
        )
        .unwrap();
        let b: Vec<_> = g
            .iter()
            .flatten()
            .filter_map(|c| c.p99_bound_ms())
            .collect();
        assert_eq!(b.len(), 3, "{b:?}");
        assert_eq!(b[0], (Col::Ttft, 500.0));
        assert_eq!(b[1].0, Col::Latency);
        assert!((b[1].1 - 2000.0).abs() < 1e-9);
        assert_eq!(b[2].0, Col::Tpot);
        assert!((b[2].1 - 50.0).abs() < 1e-9);
    }

    #[test]
    fn both_formats_parse_with_units() {
        let g = parse_params(r#"[{"p99_ttft": "<=50", "avg_latency": "<= 2"}, {"rps": ">=10"}]"#)
            .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0][0].metric.source, Source::Pct(Col::Ttft, "99%"));
        assert_eq!((g[0][0].op, g[0][0].value), (Op::Le, 50.0));
        let g = parse_params(r#"[{"avg_ttft_s": "≤0.05"}]"#).unwrap();
        assert_eq!((g[0][0].metric.scale, g[0][0].value), (1e-3, 0.05));
        let g = parse_params(
            r#"[{"name": "ttft", "operator": "<=", "value": 0.5}, {"name": "request_throughput", "operator": ">", "value": 3}]"#,
        )
        .unwrap();
        assert_eq!(g.len(), 1, "the seed format is one ANDed group");
        assert_eq!(g[0][0].metric.scale, 1e-3, "seed-format ttft is in seconds");
        assert_eq!(
            parse_params(r#"[{"rps": "max"}]"#).unwrap()[0][0].op,
            Op::Max
        );
        for bad in [
            "nope",
            "[]",
            r#"[{"p98_ttft": "<=1"}]"#,
            r#"[{"rps": "~3"}]"#,
            r#"[{"rps": "max", "avg_ttft": "<=1"}]"#,
            r#"[{"name": "ttft", "operator": "max", "value": 1}]"#,
        ] {
            let e = parse_params(bad).unwrap_err().to_string();
            assert!(e.contains("--sla-params"), "{bad}: {e}");
        }
    }

    /// A synthetic system: passes up to `limit`; the search visits evalscope's points.
    #[test]
    fn constraint_search_finds_the_limit() {
        for (start, limit, lb, ub) in [
            (1, 37, 1, 1000),
            (1, 1, 1, 64),
            (64, 5, 1, 1000),
            (8, 1000, 1, 100),
            (3, 3, 1, 9),
        ] {
            let mut seen = Vec::new();
            let (best, _) = constraint_search(start, lb, ub, |v| {
                seen.push(v);
                Ok(v <= limit)
            })
            .unwrap();
            assert_eq!(
                best,
                Some(limit.min(ub)),
                "start {start} limit {limit}: {seen:?}"
            );
        }
        let (best, note) = constraint_search(4, 2, 100, |_| Ok(false)).unwrap();
        assert_eq!((best, note.as_str()), (None, "Failed at lower bound (2)"));
        // From 1 with the limit at 37: 1 2 4 8 16 32 64, then the binary search.
        let mut seen = Vec::new();
        constraint_search(1, 1, 1000, |v| {
            seen.push(v);
            Ok(v <= 37)
        })
        .unwrap();
        assert_eq!(&seen[..7], &[1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn optimisation_finds_the_peak() {
        // Throughput that saturates at 23: the search returns a value reaching it.
        let f = |v: i64| v.min(23) as f64;
        let (best, val) = optimise(1, 1, 512, true, |v| Ok(Some(f(v)))).unwrap();
        assert_eq!(val, Some(23.0));
        assert_eq!(f(best.unwrap()), 23.0);
        // Rising to 40 then falling: the doubling stops at 64, the search finds 40..48.
        let g = |v: i64| if v <= 40 { v as f64 } else { 80.0 - v as f64 };
        let (best, val) = optimise(1, 1, 512, true, |v| Ok(Some(g(v)))).unwrap();
        assert_eq!((best, val), (Some(40), Some(40.0)));
        let (best, _) = optimise(1, 1, 512, false, |v| Ok(Some((v - 6).abs() as f64))).unwrap();
        assert_eq!(best, Some(6));
    }
}
