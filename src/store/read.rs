//! Reading an invocation back from its step databases alone (`perfscope report`,
//! `perfscope push`), evalscope's own databases included.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use crate::scheduler::SweepPoint;

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
    /// The database is evalscope's own (a `result` table and nothing else).
    pub evalscope: bool,
}

/// Whether a database was written by evalscope: it has the `result` table and no
/// `run` table. Opened read-only.
pub fn is_evalscope_db(db: &Path) -> Result<bool> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", db.display()))?;
    let has = |t: &str| -> Result<bool> {
        Ok(conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1")?
            .exists([t])?)
    };
    let result =
        has("result").with_context(|| format!("{}: not an SQLite database", db.display()))?;
    if !result {
        bail!(
            "{}: no `result` table; is this a perfscope or evalscope benchmark_data.db?",
            db.display()
        );
    }
    Ok(!has("run")?)
}

/// evalscope's benchmark_args.json of a step (empty when missing or unreadable).
pub fn evalscope_args(dir: &Path) -> Map<String, Value> {
    std::fs::read_to_string(dir.join("benchmark_args.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(&t.replace("NaN", "null")).ok())
        .unwrap_or_default()
}

/// evalscope's rows in an in-memory database of perfscope's schema. The file is
/// opened read-only and never written; `response_messages` (base64 pickles) is not
/// read. Columns evalscope does not keep are derived where they can be: the end of
/// a row is its completed_time (its start for HEAD-era failures, stored as 0), its
/// intended start is its start, and `failure_kind` stays empty.
pub fn import_evalscope(db: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(super::schema::SCHEMA)?;
    conn.execute(
        "ATTACH DATABASE ?1 AS src",
        [super::schema::read_only_uri(db)],
    )
    .with_context(|| format!("cannot open {} read-only", db.display()))?;
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('result', 'src')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let col = |c: &str, default: &str| {
        if cols.iter().any(|x| x == c) {
            c.to_string()
        } else {
            default.to_string()
        }
    };
    // is_stream and request_id exist from evalscope 1.x on.
    let sql = format!(
        "INSERT INTO result(request, start_time, inter_token_latencies, success, completed_time,
           latency, first_chunk_latency, prompt_tokens, completion_tokens, max_gpu_memory_cost,
           time_per_output_token, request_id, is_stream, seq, intended_start, end_time)
         SELECT request, start_time, inter_token_latencies, success, completed_time,
           latency, first_chunk_latency, prompt_tokens, completion_tokens, max_gpu_memory_cost,
           time_per_output_token, {rid}, {stream}, rowid - 1, start_time,
           CASE WHEN completed_time >= start_time THEN completed_time ELSE start_time END
         FROM src.result ORDER BY rowid",
        rid = col("request_id", "NULL"),
        stream = col("is_stream", "0"),
    );
    conn.execute(&sql, [])
        .with_context(|| format!("{}: cannot read evalscope's result table", db.display()))?;
    conn.execute_batch("DETACH DATABASE src")?;
    Ok(conn)
}

fn read_step(dir: &Path) -> Result<Stored> {
    let db = dir.join("benchmark_data.db");
    if is_evalscope_db(&db)? {
        return read_evalscope_step(dir, &db);
    }
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
        evalscope: false,
    })
}

/// A step of an evalscope output directory: the point from its benchmark_args.json,
/// else from the directory name (`parallel_P_number_N`, `rate_R_number_N`).
fn read_evalscope_step(dir: &Path, db: &Path) -> Result<Stored> {
    let config = evalscope_args(dir);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let from_name = |key: &str| -> Option<f64> {
        let mut it = name.split('_');
        while let Some(k) = it.next() {
            if k == key {
                return it.next()?.parse().ok();
            }
        }
        None
    };
    let num = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_f64)
            .or_else(|| from_name(key))
    };
    let point = SweepPoint {
        parallel: num("parallel").unwrap_or(-1.0) as i64,
        number: num("number").unwrap_or(0.0).max(0.0) as u64,
        rate: num("rate").unwrap_or(-1.0),
    };
    // evalscope keeps perf_counter times, not wall clock: the database's
    // modification time orders the steps.
    let modified = std::fs::metadata(db)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(Stored {
        dir: dir.to_path_buf(),
        point,
        name: config
            .get("name")
            .or_else(|| config.get("model"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        started: modified,
        finished: modified,
        status: "completed".into(),
        config,
        evalscope: true,
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

/// One speed_benchmark row: prompt tokens, generation speed (tokens/s), GPU memory.
pub type SpeedRow = (Option<i64>, Option<f64>, Option<f64>);

/// evalscope's speed_benchmark rows of a run, one per prompt length.
pub fn speed_rows(db: &Path) -> Result<Vec<SpeedRow>> {
    let conn = super::schema::open(db)?;
    let mut st = conn.prepare(
        "SELECT prompt_tokens, ROUND(AVG(completion_tokens * 1.0 / latency), 2), \
         ROUND(AVG(COALESCE(max_gpu_memory_cost, 0)), 2) FROM result \
         WHERE success=1 AND latency > 0 GROUP BY prompt_tokens ORDER BY prompt_tokens",
    )?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}
