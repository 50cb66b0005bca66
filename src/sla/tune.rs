//! The `--sla-auto-tune` loop: each constraint group is its own search; each tested
//! value runs `--sla-num-runs` times and is judged on the averaged results; values
//! are cached across groups.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::criteria::{point_passes, Criterion, Op};
use super::search::{average, constraint_search, optimise};
use crate::report::{self, RunResult};
use crate::scheduler::SweepPoint;
use crate::stats::PERCENTILES;
use crate::telemetry::log;

#[derive(Clone, Debug)]
pub struct SlaConfig {
    /// `parallel` or `rate`.
    pub variable: String,
    pub groups: Vec<Vec<Criterion>>,
    pub num_runs: u32,
    pub lower: i64,
    pub upper: i64,
    pub number_multiplier: f64,
    /// Concurrency cap in rate mode (evalscope: --sla-fixed-parallel or the upper bound).
    pub fixed_parallel: i64,
    pub start: i64,
}

/// Every tested value's averaged result, by value.
pub type Tested = BTreeMap<i64, RunResult>;

/// One search: the evaluator runs a sweep point as run `name` (the `index`-th run
/// of the search) and returns its result.
struct Search<'a, F> {
    sla: &'a SlaConfig,
    sleep_interval: f64,
    cancelled: &'a dyn Fn() -> bool,
    run: F,
    cache: Tested,
    index: u64,
}

impl<F: FnMut(&SweepPoint, u64, String) -> Result<RunResult>> Search<'_, F> {
    /// The averaged result of value `v` (run `--sla-num-runs` times, once).
    fn eval(&mut self, v: i64) -> Result<RunResult> {
        if let Some(r) = self.cache.get(&v) {
            return Ok(r.clone());
        }
        let sla = self.sla;
        let number = ((v as f64) * sla.number_multiplier).round().max(1.0) as u64;
        let point = if sla.variable == "rate" {
            SweepPoint {
                parallel: sla.fixed_parallel,
                number,
                rate: v as f64,
            }
        } else {
            SweepPoint {
                parallel: v,
                number,
                rate: -1.0,
            }
        };
        let mut runs = Vec::new();
        for i in 0..sla.num_runs {
            if self.index > 0 && self.sleep_interval > 0.0 {
                // In steps, so that a signal is not held for --sleep-interval.
                let until =
                    std::time::Instant::now() + Duration::from_secs_f64(self.sleep_interval);
                while std::time::Instant::now() < until && !(self.cancelled)() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if (self.cancelled)() {
                // What ran of this value is kept (averaged) for sla_summary.json.
                if let Some(avg) = average(&runs) {
                    self.cache.insert(v, avg);
                }
                return Err(Stopped.into());
            }
            let name = format!("sla_{}_{v}_run_{i}", sla.variable);
            log::info(format!(
                "SLA auto-tune: {} = {v}, run {} of {} ({number} requests)",
                sla.variable,
                i + 1,
                sla.num_runs
            ));
            match (self.run)(&point, self.index, name) {
                Ok(r) => runs.push(r),
                Err(_) if (self.cancelled)() => {
                    if let Some(avg) = average(&runs) {
                        self.cache.insert(v, avg);
                    }
                    return Err(Stopped.into());
                }
                Err(e) => return Err(e),
            }
            self.index += 1;
        }
        let avg = average(&runs).context("no run")?;
        self.cache.insert(v, avg.clone());
        Ok(avg)
    }

    /// One constraint group's row of the summary table.
    fn group(&mut self, group: &[Criterion]) -> Result<Vec<String>> {
        let sla = self.sla;
        let criteria = group
            .iter()
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join(", ");
        let opt = group.iter().find(|c| matches!(c.op, Op::Max | Op::Min));
        let (best, note) = match opt {
            Some(c) => {
                let (best, val) =
                    optimise(sla.start, sla.lower, sla.upper, c.op == Op::Max, |v| {
                        let r = self.eval(v)?;
                        Ok(if point_passes(&r, &[]) {
                            c.read(&r)
                        } else {
                            None
                        })
                    })?;
                (
                    best,
                    match val {
                        Some(x) => format!("Best {}: {}", c.name, crate::stats::round(x, 4)),
                        None => format!("Failed at the start ({})", sla.start),
                    },
                )
            }
            None => constraint_search(sla.start, sla.lower, sla.upper, |v| {
                Ok(point_passes(&self.eval(v)?, group))
            })?,
        };
        Ok(vec![
            criteria,
            sla.variable.clone(),
            best.map_or("None".into(), |b| b.to_string()),
            note,
        ])
    }
}

/// evalscope's search per constraint group. `run` executes one sweep point
/// (blocking); `cancelled` says a signal stopped the invocation. Returns the summary
/// table's rows and every tested value's averaged result.
pub fn tune(
    sla: &SlaConfig,
    sleep_interval: f64,
    cancelled: &dyn Fn() -> bool,
    run: impl FnMut(&SweepPoint, u64, String) -> Result<RunResult>,
) -> Result<(Vec<Vec<String>>, Tested)> {
    let mut search = Search {
        sla,
        sleep_interval,
        cancelled,
        run,
        cache: Tested::new(),
        index: 0,
    };
    let mut rows = Vec::new();
    for group in &sla.groups {
        match search.group(group) {
            Ok(row) => rows.push(row),
            // A signal: the groups searched so far, this one marked, and every value
            // tested, so that sla_summary.json is still written.
            Err(e) if e.is::<Stopped>() => {
                let criteria = group
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join(", ");
                rows.push(vec![
                    criteria,
                    sla.variable.clone(),
                    "None".into(),
                    "Interrupted: the search did not finish".into(),
                ]);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((rows, search.cache))
}

/// The search was stopped by a signal.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted during the SLA search")
    }
}

impl std::error::Error for Stopped {}

/// sla_summary.json: every tested value's averaged summary and percentiles.
pub fn write_summary(root: &Path, variable: &str, tested: &Tested) -> Result<()> {
    let mut out = serde_json::Map::new();
    for (v, r) in tested {
        let mut pct = serde_json::Map::new();
        pct.insert(
            "Percentiles".into(),
            PERCENTILES
                .iter()
                .map(|p| serde_json::Value::from(p.1))
                .collect(),
        );
        for c in &r.columns {
            pct.insert(
                c.name().into(),
                c.values
                    .iter()
                    .map(|x| serde_json::Value::from(*x))
                    .collect(),
            );
        }
        out.insert(
            format!("{variable}_{v}"),
            serde_json::json!({"metrics": r.summary, "percentiles": pct}),
        );
    }
    let path = root.join("sla_summary.json");
    std::fs::write(&path, report::to_py_json(&serde_json::Value::Object(out)))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The "SLA Auto-tune Summary" console table.
pub fn summary_table(rows: Vec<Vec<String>>) -> String {
    let lines: Vec<report::table::Line> =
        rows.into_iter().map(report::table::Line::Cells).collect();
    report::table::render(
        Some("SLA Auto-tune Summary"),
        &["Criteria", "Variable", "Max Satisfied", "Note"],
        &lines,
    )
}
