//! What `compare` produces: per-point rows with their verdicts, the thresholds and
//! the crossings. Shared by the comparison and its renderings.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::sla::NamedMetric;

/// `--fail-on` item: fail when the metric's change crosses `limit` percent (upwards
/// when positive, downwards when negative).
#[derive(Clone, Debug, Serialize)]
pub struct Threshold {
    pub metric: String,
    pub limit: f64,
    #[serde(skip)]
    pub(crate) named: Option<NamedMetric>,
}

/// Parses `p99_ttft:+10%,rps:-5%`.
pub fn parse_fail_on(s: &str) -> Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, limit)) = item.split_once(':') else {
            bail!("--fail-on: `{item}` is not METRIC:+N% or METRIC:-N% (e.g. p99_ttft:+10%)");
        };
        let Some(named) = NamedMetric::parse(name.trim()) else {
            bail!(
                "--fail-on: unknown metric `{}`; use {}",
                name.trim(),
                crate::sla::METRIC_NAMES
            );
        };
        let l = limit.trim();
        let num = l.strip_suffix('%').unwrap_or(l);
        let signed = num.starts_with('+') || num.starts_with('-');
        let Some(v) = num.parse::<f64>().ok().filter(|v| v.is_finite() && signed) else {
            bail!(
                "--fail-on: `{item}`: the limit must be a signed percentage, +N% (fail on a rise) or -N% (fail on a fall)"
            );
        };
        out.push(Threshold {
            metric: named.name.clone(),
            limit: v,
            named: Some(named),
        });
    }
    if out.is_empty() {
        bail!("--fail-on: no threshold given");
    }
    Ok(out)
}

/// How many times --min-effect a figure without an interval must move.
pub const NO_CI_FACTOR: f64 = 5.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// One metric of one point.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: String,
    pub lower_is_better: bool,
    pub base: f64,
    pub new: f64,
    /// (new − base) / base × 100; None when base is 0.
    pub delta_pct: Option<f64>,
    /// The bootstrap interval of delta_pct (None: not a per-request figure).
    pub ci_low_pct: Option<f64>,
    pub ci_high_pct: Option<f64>,
    pub verdict: Verdict,
}

/// One sweep point present in both runs.
#[derive(Clone, Debug, Serialize)]
pub struct PointComparison {
    pub name: String,
    pub base_requests: u64,
    pub new_requests: u64,
    pub rows: Vec<Row>,
    /// Graded keys unknown in the base or the new run (token figures without
    /// token counts): not judged.
    pub unknown: Vec<String>,
    /// What differs in the load itself (concurrency, rate): said, not judged.
    pub notes: Vec<String>,
}

/// A `--fail-on` threshold crossed.
#[derive(Clone, Debug, Serialize)]
pub struct Crossing {
    pub point: String,
    pub metric: String,
    pub limit_pct: f64,
    /// None: the metric is unknown on one side, so the threshold cannot be
    /// checked (a failure: an unknown never passes a gate).
    pub delta_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub base: String,
    pub new: String,
    pub resamples: u32,
    pub confidence: f64,
    pub seed: u64,
    pub min_effect_pct: f64,
    pub points: Vec<PointComparison>,
    /// Points of only one of the runs.
    pub only_in_base: Vec<String>,
    pub only_in_new: Vec<String>,
    pub fail_on: Vec<Threshold>,
    pub crossed: Vec<Crossing>,
}

impl Comparison {
    /// Whether a --fail-on threshold was crossed.
    pub fn failed(&self) -> bool {
        !self.crossed.is_empty()
    }
}
