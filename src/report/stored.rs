//! Reading an invocation back from its step databases alone (for `perfscope report`
//! and `perfscope push`).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use super::RunResult;
use crate::config::SweepPoint;

/// One stored step: its directory and the `run` table's row.
pub struct Stored {
    pub dir: PathBuf,
    pub point: SweepPoint,
    pub name: String,
    pub started: f64,
    pub finished: f64,
    pub status: String,
    /// The step's flags as stored (benchmark_args.json), secrets masked.
    pub config: Map<String, Value>,
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
pub fn steps(dir: &Path) -> Result<Vec<Stored>> {
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

/// Every step's summary and percentiles, recomputed from its rows with the goodput
/// bounds it was run with.
pub fn load_all(stored: &[Stored]) -> Result<Vec<RunResult>> {
    stored
        .iter()
        .map(|s| {
            let goodput = s
                .config
                .get("goodput")
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                .and_then(|g| crate::stats::Goodput::parse(&g).ok().flatten());
            super::load_run(&s.dir, s.point.clone(), goodput)
        })
        .collect()
}
