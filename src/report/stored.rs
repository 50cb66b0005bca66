//! A stored invocation's results, recomputed from its rows.

use anyhow::Result;
use std::path::Path;

use super::run::RunResult;
use crate::scheduler::SweepPoint;
use crate::store::{RunRows, Stored};

/// Every step's summary and percentiles, recomputed from its rows with the goodput
/// bounds it was run with.
pub fn load_all(stored: &[Stored]) -> Result<Vec<RunResult>> {
    stored
        .iter()
        .map(|s| load_run(&s.dir, s.point.clone(), goodput_of(s)))
        .collect()
}

/// The `--goodput` bounds a stored step was run with.
pub fn goodput_of(s: &Stored) -> Option<crate::stats::Goodput> {
    s.config
        .get("goodput")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .and_then(|g| crate::stats::Goodput::parse(&g).ok().flatten())
}

/// A run's summary and percentiles, computed from its stored rows alone (perfscope's
/// database, or evalscope's own).
pub fn load_run(
    dir: &Path,
    point: SweepPoint,
    goodput: Option<crate::stats::Goodput>,
) -> Result<RunResult> {
    let rows = RunRows::open_step(dir)?;
    let mut r = figures(&rows, point, goodput)?;
    r.dir = dir.to_path_buf();
    r.timeline = crate::stats::timeline(&rows)?;
    r.traces = crate::stats::trace_summary(&rows)?;
    r.workload = crate::stats::workload(&rows)?;
    r.cut_short = rows.cut_short.clone();
    r.agentx = crate::agentx::summary::tracked_in(dir);
    r.timeseries = crate::recorder::snapshot::read(dir);
    Ok(r)
}

/// A run's summary and percentile columns from rows (no timeline, no traces, no
/// directory): what a bootstrap resample recomputes.
pub fn figures(
    rows: &RunRows,
    point: SweepPoint,
    goodput: Option<crate::stats::Goodput>,
) -> Result<RunResult> {
    let encoder = crate::protocol::is_encoder_run(&rows.api, &rows.url);
    let summary = crate::stats::summary(
        rows,
        &crate::stats::RunInputs {
            parallel: point.parallel,
            rate: point.rate,
            goodput,
            encoder,
            decision: crate::protocol::is_decision_run(&rows.api),
        },
    )?;
    let columns = crate::stats::percentile_columns(rows, encoder)?;
    Ok(RunResult {
        point,
        summary,
        columns,
        dir: std::path::PathBuf::new(),
        encoder,
        timeline: None,
        traces: None,
        workload: None,
        cut_short: rows.cut_short.clone(),
        agentx: Vec::new(),
        timeseries: Vec::new(),
    })
}
