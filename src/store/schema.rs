//! The schema of `benchmark_data.db`: the `result` table is evalscope's, column for
//! column, followed by our additions; the `run` table holds the resolved
//! configuration and status; `server_metrics` every sample scraped from the served
//! model's `/metrics` (`ts` in unix seconds on the run's clock, as `start_unix`).

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::path::Path;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS result(
  request TEXT,
  start_time REAL,
  inter_token_latencies TEXT,
  success INTEGER,
  response_messages TEXT,
  completed_time REAL,
  latency REAL,
  first_chunk_latency REAL,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  max_gpu_memory_cost REAL,
  time_per_output_token REAL,
  request_id TEXT,
  is_stream INTEGER,
  seq INTEGER,
  intended_start REAL,
  headers_time REAL,
  first_event_time REAL,
  first_token_time REAL,
  end_time REAL,
  time_to_first_event REAL,
  http_status INTEGER,
  failure_kind TEXT,
  error TEXT,
  cached_tokens INTEGER,
  output_chunks INTEGER,
  finish_reason TEXT,
  trace_id TEXT,
  start_unix REAL,
  end_unix REAL,
  decode_chunks INTEGER,
  resent INTEGER,
  session_id TEXT,
  turn INTEGER,
  is_last_turn INTEGER,
  shard INTEGER,
  cached_tokens_estimate INTEGER,
  agent_depth INTEGER
);
CREATE TABLE IF NOT EXISTS run(
  run_id TEXT,
  name TEXT,
  model TEXT,
  api TEXT,
  url TEXT,
  parallel INTEGER,
  number INTEGER,
  rate REAL,
  started_unix REAL,
  finished_unix REAL,
  status TEXT,
  requests INTEGER,
  config_json TEXT,
  not_sent INTEGER,
  stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS server_metrics(
  ts REAL,
  source TEXT,
  name TEXT,
  labels TEXT,
  value REAL
);
CREATE INDEX IF NOT EXISTS server_metrics_series ON server_metrics(name, source, labels, ts);
";

/// An SQLite URI opening `db` read-only (for ATTACH): `%`, `?` and `#` in the path
/// are escaped.
pub(crate) fn read_only_uri(db: &Path) -> String {
    format!(
        "file:{}?mode=ro",
        db.display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    )
}

/// Opens (creating) a run's database with the schema.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot create the database {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Reports sort millions of ITL values; SQLite's sorter may use a second thread.
    conn.pragma_update(None, "threads", 2)?;
    conn.execute_batch(SCHEMA)?;
    // Databases written before these columns existed gain them when opened.
    for (table, column, kind) in [
        ("run", "stop_reason", "TEXT"),
        ("result", "cached_tokens_estimate", "INTEGER"),
        ("result", "agent_depth", "INTEGER"),
    ] {
        let has = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name='{column}'"
            ))?
            .exists([])?;
        if !has {
            // Best effort: a read-only copy is still readable without it.
            let _ = conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"));
        }
    }
    Ok(conn)
}
