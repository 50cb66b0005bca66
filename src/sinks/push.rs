//! `perfscope push RUN_DIR --visualizer NAME`: sends a stored invocation to a tracker
//! from its SQLite databases alone (for when the tracker was down during the run, or
//! to log an old run to another tracker).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{final_payload, point, Outcome, RunMeta, Sink, SinkSettings};
use crate::config::SweepPoint;
use crate::report::{self, log};

/// One stored step: its directory and the `run` table's row.
struct Stored {
    dir: PathBuf,
    point: SweepPoint,
    name: String,
    started: f64,
    finished: f64,
    status: String,
    config: Map<String, Value>,
}

fn read_step(dir: &Path) -> Result<Stored> {
    let db = dir.join("benchmark_data.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", db.display()))?;
    let row = conn
        .query_row(
            "SELECT name, parallel, number, rate, started_unix, finished_unix, status, config_json \
             FROM run LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .with_context(|| format!("{}: no `run` row; is this a perfscope database?", db.display()))?;
    let config = row
        .7
        .and_then(|c| serde_json::from_str::<Map<String, Value>>(&c).ok())
        .unwrap_or_default();
    Ok(Stored {
        dir: dir.to_path_buf(),
        point: SweepPoint {
            parallel: row.1,
            number: row.2.max(0) as u64,
            rate: row.3,
        },
        name: row.0.unwrap_or_default(),
        started: row.4.unwrap_or(0.0),
        finished: row.5.or(row.4).unwrap_or(0.0),
        status: row.6.unwrap_or_default(),
        config,
    })
}

/// The step directories of an invocation directory (or the directory itself when it
/// is one step), in the order they ran.
fn steps(dir: &Path) -> Result<Vec<Stored>> {
    if !dir.is_dir() {
        bail!("{}: not a directory; give the <outputs-dir>/<timestamp>/<name|model> directory of a run", dir.display());
    }
    let mut out = Vec::new();
    if dir.join("benchmark_data.db").is_file() {
        out.push(read_step(dir)?);
    } else {
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let p = e?.path();
            if p.join("benchmark_data.db").is_file() {
                out.push(read_step(&p)?);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no benchmark_data.db here or in its subdirectories; give the \
             <outputs-dir>/<timestamp>/<name|model> directory of a run",
            dir.display()
        );
    }
    out.sort_by(|a, b| a.started.total_cmp(&b.started));
    Ok(out)
}

/// Pushes the stored run; returns the tracker's run URL.
pub fn push(dir: &Path, settings: &SinkSettings, name: Option<&str>) -> Result<String> {
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
    let mut runs = Vec::new();
    for s in &stored {
        // The goodput bounds the run was measured with, from its stored flags.
        let goodput = s
            .config
            .get("goodput")
            .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
            .and_then(|g| crate::stats::Goodput::parse(&g).ok().flatten());
        runs.push(report::load_run(&s.dir, s.point.clone(), goodput)?);
    }
    let meta = RunMeta {
        name: run_name,
        config: first.config.clone(),
        started_unix: started,
    };
    let sink = Sink::start(settings, &meta)?;
    let url = sink.url.clone();
    log::info(format!("{} run: {url}", settings.kind.title()));
    for (i, (s, r)) in stored.iter().zip(&runs).enumerate() {
        sink.point(point(i as u64, r, s.finished));
    }
    let outcome = if stored.iter().any(|s| s.status == "interrupted") {
        Outcome::Interrupted
    } else if runs.iter().any(|r| r.num("Success Requests") == 0.0) {
        Outcome::Failed
    } else {
        Outcome::Finished
    };
    let end = stored.iter().map(|s| s.finished).fold(started, f64::max);
    let fin = final_payload(&runs, outcome, end, end - started);
    if !sink.finish(fin, Duration::from_secs(600)) {
        bail!(
            "{}: pushing {} did not complete; see the warnings above",
            settings.kind.title(),
            dir.display()
        );
    }
    Ok(url)
}
