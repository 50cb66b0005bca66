//! A run's computed figures, typed by the catalogue: `Summary` (benchmark_summary.json)
//! and the percentile `Column`s with their `PercentileRow`s (benchmark_percentile.json),
//! each serialising to evalscope's keys in evalscope's order.

use serde_json::{Map, Value};

use super::catalogue::{Col, Format, Metric};
use super::percentile::{round, PERCENTILES, PERCENTILE_DP};

/// benchmark_summary.json of one run. Values are held as written (rounded by the
/// catalogue's format), so every reader sees the figures of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    values: Vec<Option<f64>>,
    failures_by_kind: Option<Vec<(String, u64)>>,
    token_counts: Option<String>,
    not_applicable: Option<Vec<&'static str>>,
    /// What the computation found suspicious (logged, not written to the file).
    warnings: Vec<String>,
}

impl Default for Summary {
    fn default() -> Summary {
        Summary {
            values: vec![None; Metric::ALL.len()],
            failures_by_kind: None,
            token_counts: None,
            not_applicable: None,
            warnings: Vec::new(),
        }
    }
}

impl Summary {
    /// Sets a numeric metric, rounded as the catalogue says it is written.
    pub fn set(&mut self, m: Metric, v: f64) {
        let v = match m.def().format {
            Format::Dp(dp) => round(v, dp),
            Format::Int => v.round(),
            Format::Float | Format::Counts | Format::Text | Format::Names => v,
        };
        self.values[m as usize] = Some(v);
    }
    /// Sets a numeric metric as given (an average of repeats keeps evalscope's 4 dp
    /// whatever the metric's own rounding).
    pub fn set_as_is(&mut self, m: Metric, v: f64) {
        self.values[m as usize] = Some(v);
    }
    /// A metric the run cannot know (token counts no server reported): NaN here,
    /// `null` in the JSON files, `n/a` on the console, never a 0 that reads as
    /// measured.
    pub fn set_unknown(&mut self, m: Metric) {
        self.values[m as usize] = Some(f64::NAN);
    }
    /// Whether the metric is present but unknown.
    pub fn is_unknown(&self, m: Metric) -> bool {
        self.get(m).is_some_and(f64::is_nan)
    }
    /// The metric's value; None when the run has no such key.
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.values[m as usize]
    }
    /// The metric's value, 0 when absent (evalscope's reports read missing keys as 0).
    pub fn num(&self, m: Metric) -> f64 {
        self.get(m).unwrap_or(0.0)
    }
    pub fn has(&self, m: Metric) -> bool {
        match m {
            Metric::FailuresByKind => self.failures_by_kind.is_some(),
            Metric::TokenCounts => self.token_counts.is_some(),
            Metric::NotApplicable => self.not_applicable.is_some(),
            _ => self.get(m).is_some(),
        }
    }
    pub fn set_failures_by_kind(&mut self, kinds: Vec<(String, u64)>) {
        self.failures_by_kind = Some(kinds);
    }
    pub fn failures_by_kind(&self) -> &[(String, u64)] {
        self.failures_by_kind.as_deref().unwrap_or_default()
    }
    pub fn set_token_counts(&mut self, text: String) {
        self.token_counts = Some(text);
    }
    /// Metrics that do not apply to this run (evalscope's decision runs).
    pub fn set_not_applicable(&mut self, names: Vec<&'static str>) {
        self.not_applicable = Some(names);
    }
    pub fn not_applicable(&self) -> &[&'static str] {
        self.not_applicable.as_deref().unwrap_or_default()
    }
    pub fn token_counts(&self) -> Option<&str> {
        self.token_counts.as_deref()
    }
    pub fn warn(&mut self, text: String) {
        self.warnings.push(text);
    }
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    /// A summary read back from its `benchmark_summary.json` (the numbers and the
    /// failures by kind; keys this version does not know are skipped).
    pub fn from_json(map: &Map<String, Value>) -> Summary {
        let mut s = Summary::default();
        for (k, v) in map {
            let Some(m) = Metric::from_key(k) else {
                continue;
            };
            match v {
                Value::Number(n) => s.set_as_is(m, n.as_f64().unwrap_or(f64::NAN)),
                Value::Null => s.set_unknown(m),
                Value::Object(kinds) if m == Metric::FailuresByKind => s.set_failures_by_kind(
                    kinds
                        .iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect(),
                ),
                _ => {}
            }
        }
        s
    }
    /// Only the numeric metrics present, in the file's order.
    pub fn numbers(&self) -> impl Iterator<Item = (Metric, f64)> + '_ {
        Metric::ALL
            .iter()
            .filter_map(|&m| self.get(m).map(|v| (m, v)))
    }

    /// The JSON object evalscope writes: its keys in its order, then ours.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for &m in Metric::ALL {
            let value = match m.def().format {
                Format::Counts => self.failures_by_kind.as_ref().map(|kinds| {
                    Value::Object(
                        kinds
                            .iter()
                            .map(|(k, n)| (k.clone(), Value::from(*n)))
                            .collect(),
                    )
                }),
                Format::Text => self.token_counts.clone().map(Value::String),
                Format::Names => self.not_applicable.as_ref().map(|n| {
                    Value::Array(n.iter().map(|s| Value::String(s.to_string())).collect())
                }),
                Format::Int => self.get(m).map(|v| {
                    if v.is_nan() {
                        Value::Null
                    } else {
                        Value::from(v as i64)
                    }
                }),
                Format::Dp(_) | Format::Float => self.get(m).map(Value::from),
            };
            if let Some(v) = value {
                out.insert(m.key().into(), v);
            }
        }
        out
    }
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// One percentile column: its values at the PERCENTILES points.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub col: Col,
    pub values: Vec<f64>,
}

impl Column {
    pub fn name(&self) -> &'static str {
        self.col.key()
    }
}

/// One row of benchmark_percentile.json: a percentile point and every column's
/// value there, rounded to 4 dp (evalscope 1.13+).
#[derive(Clone, Debug, PartialEq)]
pub struct PercentileRow {
    pub label: &'static str,
    pub cells: Vec<(Col, f64)>,
}

impl PercentileRow {
    /// The rows of a run's columns, one per percentile point, as evalscope lists them.
    pub fn of(columns: &[Column]) -> Vec<PercentileRow> {
        PERCENTILES
            .iter()
            .enumerate()
            .map(|(i, (_, label))| PercentileRow {
                label,
                cells: columns
                    .iter()
                    .map(|c| (c.col, round(c.values[i], PERCENTILE_DP)))
                    .collect(),
            })
            .collect()
    }
}

/// A run's percentile of one column (label as in PERCENTILES), NaN when absent.
pub fn percentile_of(columns: &[Column], col: Col, label: &str) -> f64 {
    let i = PERCENTILES.iter().position(|p| p.1 == label).unwrap_or(0);
    columns
        .iter()
        .find(|c| c.col == col)
        .map_or(f64::NAN, |c| c.values[i])
}
