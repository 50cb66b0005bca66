//! `perfscope push RUN_DIR --visualizer NAME`: sends a stored invocation to a tracker
//! from its SQLite databases (and each step's `timeseries.jsonl`), for when the
//! tracker was down during the run, or to log an old run to another tracker.

use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

use super::{final_payload, point, snapshot_point, Outcome, RunMeta, TrackerRun, TrackerSettings};
use crate::report::stored;
use crate::store::steps;
use crate::telemetry::log;

/// Pushes the stored run; returns the tracker's run URL.
pub fn push(dir: &Path, settings: &TrackerSettings, name: Option<&str>) -> Result<String> {
    let stored = steps(dir)?;
    let first = &stored[0];
    let started = first.started;
    let run_name = match name {
        Some(n) => n.to_string(),
        None => {
            let stamp = chrono::DateTime::from_timestamp(started as i64, 0)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y%m%d_%H%M%S")
                        .to_string()
                })
                .unwrap_or_default();
            format!("{}_{stamp}", first.name)
        }
    };
    let runs = stored::load_all(&stored)?;
    let meta = RunMeta {
        name: run_name,
        config: first.config.clone(),
        started_unix: started,
    };
    let tracker = TrackerRun::start(settings, &meta)?;
    let url = tracker.url.clone();
    log::info(format!("{} run: {url}", settings.kind.title()));
    // As live: each step's `--snapshot-interval` windows, then the step.
    for (i, (s, r)) in stored.iter().zip(&runs).enumerate() {
        for w in &r.timeseries {
            tracker.point(snapshot_point(w));
        }
        tracker.point(point(i as u64, r, s.finished));
    }
    let outcome = if stored.iter().any(|s| s.status == "interrupted") {
        Outcome::Interrupted
    } else if runs
        .iter()
        .any(|r| r.num(crate::stats::Metric::SuccessRequests) == 0.0)
    {
        Outcome::Failed
    } else {
        Outcome::Finished
    };
    let end = stored.iter().map(|s| s.finished).fold(started, f64::max);
    let fin = final_payload(&runs, outcome, end, end - started);
    if !tracker.finish(fin, Duration::from_secs(600)) {
        bail!(
            "{}: pushing {} did not complete; see the warnings above",
            settings.kind.title(),
            dir.display()
        );
    }
    Ok(url)
}
