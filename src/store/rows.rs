//! The rows of one stored run, as `stats` asks for them: counts, aggregates and
//! sorted scans of expressions over the `result` columns. The SQL text, the table
//! names and the connection stay here; `stats` speaks in `query`'s fields,
//! expressions and filters.
//!
//! Every figure is an SQL aggregate or an ordered scan that SQLite sorts itself, so
//! reading a run of 200,000 requests (12 million ITL values) needs no more memory
//! than one of 1,000.

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use std::cell::OnceCell;
use std::collections::HashSet;
use std::path::Path;

use super::query::{Agg, Columns, Expr, Filter};

/// The rows an expression runs over: one per request, or one per inter-token gap
/// of each request (`j.value`, see `Field::Gap`).
fn from(gaps: bool) -> &'static str {
    if gaps {
        "result, json_each(result.inter_token_latencies) AS j"
    } else {
        "result"
    }
}

/// One successful turn of a multi-turn run (times in seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct TurnRow {
    pub session: String,
    pub turn: i64,
    pub start: f64,
    pub end: f64,
    pub ttft: f64,
    pub latency: f64,
    pub prompt: i64,
    pub completion: i64,
    pub cached: i64,
    /// `cached` is evalscope's multi-turn estimate (the server reported none).
    pub estimated: bool,
}

/// The samples of one server series: `?1` its name, and when `?2` is not NULL
/// only those whose label (JSON path `?2`) has the value `?3` (see `series`).
const SERIES: &str = "name = ?1 AND (?2 IS NULL OR json_extract(labels, ?2) = ?3)";

/// A series as the figures name it: `name`, or `name{label=value}` for the
/// samples of one label value (vLLM's `prompt_tokens_by_source_total{source=…}`).
fn series(name: &str) -> (&str, Option<String>, Option<&str>) {
    match name.split_once('{') {
        Some((base, rest)) => {
            let (label, value) = rest
                .trim_end_matches('}')
                .split_once('=')
                .unwrap_or((rest, ""));
            (base, Some(format!("$.\"{label}\"")), Some(value))
        }
        None => (name, None, None),
    }
}

/// A server sample taken while the run's requests were on the wire.
const IN_RUN: &str =
    "ts >= (SELECT MIN(start_unix) FROM result) AND ts <= (SELECT MAX(end_unix) FROM result)";

/// One stored run's rows, read-only, with the API and URL it was run against.
pub struct RunRows {
    conn: Connection,
    pub api: String,
    pub url: String,
    /// The run was made with `--enable-pd-metrics`.
    pub pd_metrics: bool,
    /// `--n-choices` (1 when unset): choices asked per request.
    pub n_choices: u64,
    /// How the run ended when it did not complete (interrupted, failed, or never
    /// closed: the process was killed), with the stored reason; None when it
    /// completed.
    pub cut_short: Option<String>,
    /// The `result` table's columns, read at the first query that names one.
    columns: OnceCell<HashSet<String>>,
}

/// How a stored run ended, when it did not complete: its status, why, and what
/// was not sent or stored.
fn cut_short(conn: &Connection) -> Option<String> {
    let (status, reason, not_sent): (Option<String>, Option<String>, Option<i64>) = conn
        .query_row(
            "SELECT status, stop_reason, not_sent FROM run LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()?;
    let status = status.unwrap_or_default();
    let unsent = match not_sent {
        Some(n) if n > 0 => format!("; {n} scheduled requests were not sent"),
        _ => String::new(),
    };
    match status.as_str() {
        "completed" => None,
        "running" => Some(
            "it never finished (the process was killed or crashed): rows of requests in flight then are missing"
                .to_string(),
        ),
        s => Some(match reason {
            Some(r) => format!("{s} ({r}){unsent}"),
            None => format!("{s}{unsent}"),
        }),
    }
}

/// How much of a run's database the readers map (`PRAGMA mmap_size`): the mapped
/// pages are the page cache's (clean, file-backed), but they count in the
/// process's resident set while a report is computed, so the map is bounded.
const MMAP_BYTES: i64 = 1 << 30;

impl RunRows {
    /// The rows of a step directory's `benchmark_data.db`: perfscope's, or
    /// evalscope's own (then read into memory, the file never written, the API and
    /// URL from its benchmark_args.json).
    pub fn open_step(dir: &Path) -> Result<RunRows> {
        let db = dir.join("benchmark_data.db");
        if super::read::is_evalscope_db(&db)? {
            let args = super::read::evalscope_args(dir);
            let text = |k: &str| {
                args.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Ok(RunRows {
                conn: super::read::import_evalscope(&db)?,
                api: text("api"),
                url: text("url"),
                pd_metrics: args.get("enable_pd_metrics").and_then(Value::as_bool) == Some(true),
                n_choices: args
                    .get("n_choices")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1),
                cut_short: None,
                columns: OnceCell::new(),
            });
        }
        let conn = super::schema::open(&db)?;
        // The statistics read every row several times; with the response payloads
        // stored, each row spans overflow pages that are walked to reach the columns
        // after `response_messages`. Mapped, they are read in place instead of
        // copied page by page (most of a report's CPU otherwise).
        let _ = conn.pragma_update(None, "mmap_size", MMAP_BYTES);
        let (api, url, config): (String, String, Option<String>) = conn
            .query_row("SELECT api, url, config_json FROM run LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap_or_default();
        let config = config.and_then(|c| serde_json::from_str::<Value>(&c).ok());
        let pd_metrics = config
            .as_ref()
            .and_then(|c| c.get("enable_pd_metrics").and_then(Value::as_bool))
            == Some(true);
        let n_choices = config
            .as_ref()
            .and_then(|c| c.get("n_choices").and_then(Value::as_u64))
            .unwrap_or(1)
            .max(1);
        let cut_short = cut_short(&conn);
        Ok(RunRows {
            conn,
            api,
            url,
            pd_metrics,
            n_choices,
            cut_short,
            columns: OnceCell::new(),
        })
    }

    /// Rows held by a connection (tests build them in memory).
    pub fn from_connection(conn: Connection) -> RunRows {
        RunRows {
            conn,
            api: String::new(),
            url: String::new(),
            pd_metrics: false,
            n_choices: 1,
            cut_short: None,
            columns: OnceCell::new(),
        }
    }

    /// An in-memory copy of this run's request rows to resample (a bootstrap): the
    /// copy's `result` table is replaced by each `resample`. Server samples are not
    /// copied (they are not per request).
    pub fn resampler(&self) -> Result<RunRows> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(super::schema::SCHEMA)?;
        let cols: Vec<String> = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('result')")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let list = cols.join(",");
        conn.execute_batch(&format!(
            "CREATE TABLE orig AS SELECT {list} FROM result WHERE 0"
        ))?;
        {
            let marks = vec!["?"; cols.len()].join(",");
            let mut ins = conn.prepare(&format!("INSERT INTO orig({list}) VALUES ({marks})"))?;
            let mut st = self
                .conn
                .prepare(&format!("SELECT {list} FROM result ORDER BY rowid"))?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let vals: Vec<rusqlite::types::Value> = (0..cols.len())
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<_>>()?;
                ins.execute(rusqlite::params_from_iter(vals))?;
            }
        }
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE picks(k INTEGER); INSERT INTO result({list}) SELECT {list} FROM orig ORDER BY rowid"
        ))?;
        Ok(RunRows {
            conn,
            api: self.api.clone(),
            url: self.url.clone(),
            pd_metrics: self.pd_metrics,
            n_choices: self.n_choices,
            cut_short: self.cut_short.clone(),
            columns: OnceCell::new(),
        })
    }

    /// Request rows in the copy (see `resampler`).
    pub fn resample_len(&self) -> Result<u64> {
        let n: Option<i64> = self.one("SELECT COUNT(*) FROM orig")?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Replaces the rows by the copy's rows `picks` (0-based, repeats allowed), in
    /// that order.
    pub fn resample(&mut self, picks: &[u64]) -> Result<()> {
        let t = self.conn.transaction()?;
        t.execute_batch("DELETE FROM result; DELETE FROM picks;")?;
        {
            let mut ins = t.prepare_cached("INSERT INTO picks(k) VALUES (?1)")?;
            for k in picks {
                ins.execute([*k as i64 + 1])?;
            }
        }
        t.execute_batch(
            "INSERT INTO result SELECT o.* FROM picks p JOIN orig o ON o.rowid = p.k ORDER BY p.rowid",
        )?;
        t.commit()?;
        Ok(())
    }

    /// The inter-token gap lists (seconds) of the rows meeting a filter, in row
    /// order (PD metrics need each request's own list).
    pub fn itl_lists(&self, filter: &Filter) -> Result<Vec<Vec<f64>>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT inter_token_latencies FROM result WHERE {} ORDER BY rowid",
            filter.sql(self)
        ))?;
        let lists = st
            .query_map([], |r| r.get::<_, Option<String>>(0))?
            .map(|t| {
                Ok(t?
                    .and_then(|t| serde_json::from_str::<Vec<Option<f64>>>(&t).ok())
                    .map(|v| v.into_iter().flatten().collect())
                    .unwrap_or_default())
            })
            .collect::<rusqlite::Result<Vec<Vec<f64>>>>()?;
        Ok(lists)
    }

    /// The successful turns of a multi-turn run, ordered by conversation and turn.
    pub fn session_turns(&self) -> Result<Vec<TurnRow>> {
        if !self.has("session_id") {
            return Ok(Vec::new());
        }
        let estimate = if self.has("cached_tokens_estimate") {
            "cached_tokens_estimate"
        } else {
            "NULL"
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT session_id, turn, start_time, completed_time, COALESCE(first_chunk_latency, 0),
                    COALESCE(latency, 0), COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0),
                    COALESCE(cached_tokens, {estimate}, 0),
                    cached_tokens IS NULL AND {estimate} IS NOT NULL
             FROM result WHERE success=1 AND session_id IS NOT NULL ORDER BY session_id, turn",
        ))?;
        let rows = st
            .query_map([], |r| {
                Ok(TurnRow {
                    session: r.get(0)?,
                    turn: r.get(1)?,
                    start: r.get(2)?,
                    end: r.get(3)?,
                    ttft: r.get(4)?,
                    latency: r.get(5)?,
                    prompt: r.get(6)?,
                    completion: r.get(7)?,
                    cached: r.get(8)?,
                    estimated: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The successful rows in recorded order: (start_time, completed_time,
    /// prompt, completion, server-reported cached tokens), unknown counts as 0.
    pub fn completions_in_order(&self, mut f: impl FnMut(f64, f64, i64, i64, i64)) -> Result<()> {
        let mut st = self.conn.prepare(
            "SELECT start_time, completed_time, COALESCE(prompt_tokens, 0),
                    COALESCE(completion_tokens, 0), COALESCE(cached_tokens, 0)
             FROM result WHERE success=1 AND start_time IS NOT NULL
               AND completed_time IS NOT NULL ORDER BY rowid",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        }
        Ok(())
    }

    /// How many rows meet a filter.
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        let n: Option<i64> = self.one(&format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            from(filter.over_gaps()),
            filter.sql(self)
        ))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// An aggregate of an expression over the rows meeting a filter (over every
    /// inter-token gap when it names `Field::Gap`); None when no row contributes.
    pub fn aggregate(
        &self,
        agg: Agg,
        expr: impl Into<Expr>,
        filter: &Filter,
    ) -> Result<Option<f64>> {
        let expr = expr.into();
        self.one(&format!(
            "SELECT {}({}) FROM {} WHERE {}",
            agg.sql(),
            expr.sql(self),
            from(expr.over_gaps() || filter.over_gaps()),
            filter.sql(self)
        ))
    }

    /// The known values of an expression over the rows meeting a filter, handed
    /// in ascending order to `f` with their count; sorted by SQLite and streamed.
    pub fn sorted<R>(
        &self,
        expr: impl Into<Expr>,
        filter: &Filter,
        f: impl FnOnce(usize, &mut dyn Iterator<Item = f64>) -> R,
    ) -> Result<R> {
        let expr = expr.into();
        let base = format!(
            "SELECT {} AS v FROM {} WHERE {}",
            expr.sql(self),
            from(expr.over_gaps() || filter.over_gaps()),
            filter.sql(self)
        );
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM ({base}) WHERE v IS NOT NULL"),
            [],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare(&format!(
            "SELECT v FROM ({base}) WHERE v IS NOT NULL ORDER BY v"
        ))?;
        let mut values = st
            .query_map([], |r| r.get::<_, f64>(0))?
            .filter_map(|r| r.ok());
        Ok(f(n.max(0) as usize, &mut values))
    }

    /// The failed rows counted by their stored failure kind (None: not classified),
    /// in the kinds' order.
    pub fn failure_kinds(&self) -> Result<Vec<(Option<String>, u64)>> {
        let mut st = self.conn.prepare(
            "SELECT failure_kind, COUNT(*) FROM result WHERE success = 0 GROUP BY 1 ORDER BY 1",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (k, n) = row?;
            out.push((k, n.max(0) as u64));
        }
        Ok(out)
    }

    /// Most requests in flight at once (send to end), by a running sum over start
    /// (+1) and end (−1) events in time order; ends sort before starts at the same
    /// instant.
    pub fn peak_in_flight(&self) -> Result<u64> {
        let n: Option<i64> = self.one(
            "SELECT MAX(c) FROM (SELECT SUM(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS c FROM (
                SELECT start_time AS t, 1 AS d FROM result
                UNION ALL SELECT MAX(end_time, start_time) AS t, -1 AS d FROM result))",
        )?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Whether the run has samples of a server metric (`server_metrics.name`).
    pub fn server_has(&self, name: &str) -> Result<bool> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT 1 FROM server_metrics WHERE {SERIES} AND value IS NOT NULL LIMIT 1"
        ))?;
        let (base, path, value) = series(name);
        Ok(st.exists(rusqlite::params![base, path, value])?)
    }

    /// A server counter's change over the run: Σ over its series (source and labels)
    /// of the last sample minus the first. A series that appears after its source's
    /// first scrape started from 0 there (a counter is created at its first event).
    /// None without samples.
    pub fn server_delta(&self, name: &str) -> Result<Option<f64>> {
        self.server_one(
            &format!(
                "SELECT SUM(last - CASE WHEN t0 > s0 THEN 0 ELSE first END) FROM (
               SELECT source,
                      MAX(CASE WHEN ts = t1 THEN value END) AS last,
                      MAX(CASE WHEN ts = t0 THEN value END) AS first,
                      MIN(t0) AS t0
               FROM (SELECT source, labels, ts, value,
                            MIN(ts) OVER w AS t0, MAX(ts) OVER w AS t1
                     FROM server_metrics WHERE {SERIES} AND value IS NOT NULL
                     WINDOW w AS (PARTITION BY source, labels))
               GROUP BY source, labels)
             JOIN (SELECT source, MIN(ts) AS s0 FROM server_metrics GROUP BY source)
             USING (source)"
            ),
            name,
        )
    }

    /// The highest total of a server gauge in one scrape (Σ over its series of one
    /// source at one time, e.g. over engines or GPUs).
    ///
    /// Only scrapes taken while requests were on the wire count (between the first
    /// request's start and the last one's end): the scrapes before and after a run
    /// see an idle server, and a run shorter than the scrape interval has none
    /// inside it; its peak is then unknown (None), never 0.
    pub fn server_peak_sum(&self, name: &str) -> Result<Option<f64>> {
        self.server_one(
            &format!(
                "SELECT MAX(v) FROM (SELECT SUM(value) AS v FROM server_metrics
                 WHERE {SERIES} AND value IS NOT NULL AND {IN_RUN} GROUP BY source, ts)"
            ),
            name,
        )
    }

    /// The highest single sample of a server gauge, over the scrapes taken while
    /// requests were on the wire (see `server_peak_sum`).
    pub fn server_max(&self, name: &str) -> Result<Option<f64>> {
        self.server_one(
            &format!("SELECT MAX(value) FROM server_metrics WHERE {SERIES} AND {IN_RUN}"),
            name,
        )
    }

    /// The mean over scrapes of the mean over series of a server gauge.
    pub fn server_mean(&self, name: &str) -> Result<Option<f64>> {
        self.server_one(
            &format!(
                "SELECT AVG(v) FROM (SELECT AVG(value) AS v FROM server_metrics
                 WHERE {SERIES} AND value IS NOT NULL GROUP BY source, ts)"
            ),
            name,
        )
    }

    /// The scrape times of the first source, in order.
    pub fn scrape_times(&self) -> Result<Vec<f64>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT ts FROM server_metrics
             WHERE source = (SELECT MIN(source) FROM server_metrics) ORDER BY ts",
        )?;
        let rows = st.query_map([], |r| r.get::<_, f64>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// A server series' total (Σ over its labels) at each scrape, in time order.
    pub fn server_totals(&self, name: &str) -> Result<Vec<(f64, f64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ts, SUM(value) FROM server_metrics WHERE name = ?1 AND value IS NOT NULL
             GROUP BY ts ORDER BY ts",
        )?;
        let rows = st.query_map([name], |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Pairs of expressions over the rows meeting a filter, in ascending order of
    /// the first, unknown ones left out, streamed to `f`.
    pub fn ordered_pairs(
        &self,
        key: impl Into<Expr>,
        value: impl Into<Expr>,
        filter: &Filter,
        mut f: impl FnMut(f64, f64),
    ) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        let gaps = key.over_gaps() || value.over_gaps() || filter.over_gaps();
        let mut st = self.conn.prepare(&format!(
            "SELECT {} AS k, {} AS v FROM {} WHERE ({}) AND k IS NOT NULL AND v IS NOT NULL ORDER BY k",
            key.sql(self),
            value.sql(self),
            from(gaps),
            filter.sql(self)
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(r.get(0)?, r.get(1)?);
        }
        Ok(())
    }

    fn server_one(&self, sql: &str, name: &str) -> Result<Option<f64>> {
        let (base, path, value) = series(name);
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(rusqlite::params![base, path, value], |r| {
                r.get::<_, Option<f64>>(0)
            })
            .optional()
            .with_context(|| format!("reading server_metrics {name}"))?
            .flatten())
    }

    /// Requests released but never sent because the run was stopped (kept on the
    /// `run` row; 0 for databases without it).
    pub fn not_sent(&self) -> Result<u64> {
        if !self.table_has_column("run", "not_sent")? {
            return Ok(0);
        }
        let n: Option<i64> = self.one("SELECT MAX(not_sent) FROM run")?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    fn table_has_column(&self, table: &str, name: &str) -> Result<bool> {
        let mut st = self
            .conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
        Ok(st.exists([table, name])?)
    }

    fn one<T: rusqlite::types::FromSql>(&self, sql: &str) -> Result<Option<T>> {
        Ok(self
            .conn
            .query_row(sql, [], |r| r.get::<_, Option<T>>(0))
            .optional()
            .with_context(|| format!("reading the stored rows: {sql}"))?
            .flatten())
    }
}

/// Whether the rows have a column: databases of older versions, and evalscope's
/// own, lack perfscope's later additions.
impl Columns for RunRows {
    fn has(&self, column: &str) -> bool {
        self.columns
            .get_or_init(|| {
                let read = || -> rusqlite::Result<HashSet<String>> {
                    self.conn
                        .prepare("SELECT name FROM pragma_table_info('result')")?
                        .query_map([], |r| r.get::<_, String>(0))?
                        .collect()
                };
                // Unreadable: no column counts as present, and the query itself
                // reports what is wrong with the database.
                read().unwrap_or_default()
            })
            .contains(column)
    }
}
