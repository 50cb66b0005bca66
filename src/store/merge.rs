//! One sweep point's shard databases merged into one: every row, with its shard,
//! on one time axis.
//!
//! Each shard stores times in seconds on its own run clock, whose unix time is the
//! `run` row's `started_unix`. The merge moves every shard's clock times onto the
//! earliest shard's clock (adding the difference of their `started_unix`), so the
//! summary's wall window is the union's: from the first request of any shard to the
//! last end of any. Unix columns stay as they are.

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags};
use std::path::{Path, PathBuf};

use super::schema::open;
use crate::scheduler::SweepPoint;

/// Columns on a run's clock (seconds since its anchor).
const CLOCK_COLUMNS: &[&str] = &[
    "start_time",
    "completed_time",
    "intended_start",
    "headers_time",
    "first_event_time",
    "first_token_time",
    "end_time",
];

/// The merged run's identity.
pub struct MergedRun {
    pub run_id: String,
    pub point: SweepPoint,
    pub config_json: String,
}

/// One shard's `run` row.
struct ShardRun {
    index: u64,
    db: PathBuf,
    started: f64,
    finished: f64,
    status: String,
    requests: i64,
    not_sent: i64,
    name: Option<String>,
    model: Option<String>,
    api: Option<String>,
    url: Option<String>,
}

fn read_run(index: u64, db: &Path) -> Result<ShardRun> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db.display()))?;
    conn.query_row(
        "SELECT started_unix, finished_unix, status, requests, not_sent, name, model, api, url \
         FROM run LIMIT 1",
        [],
        |r| {
            Ok(ShardRun {
                index,
                db: db.to_path_buf(),
                started: r.get::<_, Option<f64>>(0)?.unwrap_or(0.0),
                finished: r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                status: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                requests: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                not_sent: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                name: r.get(5)?,
                model: r.get(6)?,
                api: r.get(7)?,
                url: r.get(8)?,
            })
        },
    )
    .with_context(|| {
        format!(
            "{}: no `run` row; only perfscope shard databases can be merged",
            db.display()
        )
    })
}

/// Writes `out` (which must not exist) from the shards' databases of one point;
/// returns the number of rows.
pub fn merge_point(out: &Path, shards: &[(u64, PathBuf)], m: &MergedRun) -> Result<u64> {
    if out.exists() {
        bail!(
            "{} already exists; give merge an empty output directory",
            out.display()
        );
    }
    let runs: Vec<ShardRun> = shards
        .iter()
        .map(|(i, db)| read_run(*i, db))
        .collect::<Result<_>>()?;
    let t0 = runs.iter().map(|r| r.started).fold(f64::INFINITY, f64::min);
    let conn = open(out)?;
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('result')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    conn.execute_batch("CREATE TEMP TABLE merged AS SELECT * FROM result WHERE 0")?;
    let mut server_from: Option<u64> = None;
    for r in &runs {
        attach(&conn, &r.db)?;
        let have: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('result', 'shard_db')")?
            .query_map([], |x| x.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let shift = r.started - t0;
        let select: Vec<String> = cols
            .iter()
            .map(|c| match c.as_str() {
                "shard" => r.index.to_string(),
                c if !have.iter().any(|h| h == c) => "NULL".into(),
                c if CLOCK_COLUMNS.contains(&c) => format!("{c} + {shift:?}"),
                c => c.to_string(),
            })
            .collect();
        conn.execute(
            &format!(
                "INSERT INTO merged({}) SELECT {} FROM shard_db.result ORDER BY rowid",
                cols.join(","),
                select.join(",")
            ),
            [],
        )
        .with_context(|| format!("{}: cannot read its rows", r.db.display()))?;
        // The shards scrape the same servers: one shard's samples (the lowest index
        // that has any) stand for all, or every counter would be counted N times.
        if server_from.is_none() {
            let n = conn.execute(
                "INSERT INTO server_metrics(ts, source, name, labels, value)
                 SELECT ts, source, name, labels, value FROM shard_db.server_metrics",
                [],
            )?;
            if n > 0 {
                server_from = Some(r.index);
            }
        }
        conn.execute_batch("DETACH DATABASE shard_db")?;
    }
    let rows = conn.execute(
        "INSERT INTO result SELECT * FROM merged ORDER BY start_time, shard, seq",
        [],
    )? as u64;
    let first = &runs[0];
    let status = runs
        .iter()
        .map(|r| r.status.as_str())
        .find(|s| *s != "completed")
        .unwrap_or("completed");
    conn.execute(
        "INSERT INTO run(run_id,name,model,api,url,parallel,number,rate,started_unix,
           finished_unix,status,requests,config_json,not_sent)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
        params![
            m.run_id,
            first.name,
            first.model,
            first.api,
            first.url,
            m.point.parallel,
            m.point.number as i64,
            m.point.rate,
            t0,
            runs.iter().map(|r| r.finished).fold(t0, f64::max),
            status,
            runs.iter().map(|r| r.requests).sum::<i64>(),
            m.config_json,
            runs.iter().map(|r| r.not_sent).sum::<i64>(),
        ],
    )?;
    conn.execute_batch("DROP TABLE merged")?;
    Ok(rows)
}

fn attach(conn: &Connection, db: &Path) -> Result<()> {
    conn.execute(
        "ATTACH DATABASE ?1 AS shard_db",
        [super::schema::read_only_uri(db)],
    )
    .with_context(|| format!("cannot open {} read-only", db.display()))?;
    Ok(())
}
