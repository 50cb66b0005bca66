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
