//! Writing the served model's `/metrics` samples into a run's `server_metrics`
//! table. Its own connection (WAL lets it write beside the request writer; each
//! scrape is one short transaction, and the busy timeout covers a request commit).

use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use std::path::Path;

pub struct ServerSamples {
    conn: Connection,
}

impl ServerSamples {
    /// Opens a run's database (created by the request writer first).
    pub fn open(db: &Path) -> Result<ServerSamples> {
        Ok(ServerSamples {
            conn: super::schema::open(db)?,
        })
    }

    /// One scrape: its time (unix seconds), its source URL and its samples as
    /// (name, labels as a JSON object, value).
    pub fn insert(
        &mut self,
        ts: f64,
        source: &str,
        samples: &[(String, String, f64)],
    ) -> Result<()> {
        let t = self.conn.transaction()?;
        {
            let mut st = t.prepare_cached(
                "INSERT INTO server_metrics(ts, source, name, labels, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (name, labels, value) in samples {
                st.execute(params![ts, source, name, labels, value])?;
            }
        }
        t.commit().context("writing server_metrics")
    }
}

/// Keeps the client-vs-server time axis a report drew (`server_timeline`: one row
/// per series, its values as a JSON array, null where missing), so that a viewer
/// draws it without reading every request row again. In the database rather than
/// a file: the output tree keeps evalscope's file names.
pub fn write_timeline(
    db: &Path,
    series: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut conn = Connection::open(db).with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let t = conn.transaction()?;
    t.execute_batch(
        "CREATE TABLE IF NOT EXISTS server_timeline(series TEXT PRIMARY KEY, points TEXT NOT NULL);
         DELETE FROM server_timeline;",
    )?;
    {
        let mut st = t.prepare("INSERT INTO server_timeline(series, points) VALUES (?1, ?2)")?;
        for (name, points) in series {
            st.execute(params![name, points.to_string()])?;
        }
    }
    t.commit().context("writing server_timeline")
}

/// The series `write_timeline` kept (None: the run has none, or the database
/// predates them).
pub fn read_timeline(db: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let mut st = conn
        .prepare("SELECT series, points FROM server_timeline")
        .ok()?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ok()?;
    let mut out = serde_json::Map::new();
    for row in rows.flatten() {
        out.insert(row.0, serde_json::from_str(&row.1).ok()?);
    }
    (!out.is_empty()).then_some(out)
}
