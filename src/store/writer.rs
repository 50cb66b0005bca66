//! The writer of a run's database: one thread owns the connection. Group commit: a transaction takes every row
//! that arrives within 100 ms, up to `--db-commit-interval` rows (evalscope commits
//! every `db_commit_interval` rows), so a slow disk slows commits, never requests,
//! and every row is committed within about 100 ms of its request ending.
//!
//! The store waits, it never drops (DESIGN principle 5):
//! - a database another process holds locked is waited out: the rows of the failed
//!   transaction stay in memory, more are taken from the queue while the lock lasts
//!   (up to `BUFFER_ROWS` rows or `BUFFER_BYTES`, then the queue backs up into the
//!   request tasks), and the transaction is retried every `BUSY_RETRY`; only a lock
//!   held for `BUSY_LIMIT` is a failure;
//! - any other write error (a full disk, an I/O error, a read-only file) is a
//!   failure at once: the run is told (`on_failure` stops dispatch and cancels the
//!   requests in flight), the invocation's [`Reserve`] is released to make room, and
//!   the rows still held are written again. Rows that still cannot be written are
//!   counted and the count is stored with the run's status.

use crate::telemetry::log;
use anyhow::{Context, Result};
use rusqlite::params;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Longest a transaction stays open waiting for more rows.
const COMMIT_WINDOW: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(2);

use super::reserve::Reserve;
use super::schema::open;
use rusqlite::ErrorCode;
use std::sync::Arc;

/// SQLite's own wait for a lock before it returns SQLITE_BUSY: short, so the
/// thread goes back to the queue while another process holds the database.
const SQLITE_BUSY_WAIT: Duration = Duration::from_millis(100);
/// Pause between retries of a transaction that met a lock.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// A lock held this long is a failure of the store (the run stops).
pub const BUSY_LIMIT: Duration = Duration::from_secs(60);
/// Rows held in memory while the database is locked, at most.
const BUFFER_ROWS: usize = 200_000;
const BUFFER_BYTES: usize = 256 << 20;
use crate::record::{Clock, RequestRecord};

const INSERT: &str = "INSERT INTO result(request,start_time,inter_token_latencies,success,
 response_messages,completed_time,latency,first_chunk_latency,prompt_tokens,completion_tokens,
 max_gpu_memory_cost,time_per_output_token,request_id,is_stream,seq,intended_start,headers_time,
 first_event_time,first_token_time,end_time,time_to_first_event,http_status,failure_kind,error,
 cached_tokens,output_chunks,finish_reason,trace_id,start_unix,end_unix,decode_chunks,resent,
 session_id,turn,is_last_turn,shard,cached_tokens_estimate,agent_depth)
 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32,?33,?34,?35,?36,?37,?38)";

/// Run metadata written when the run starts and updated when it ends.
pub struct RunMeta {
    pub run_id: String,
    pub name: String,
    pub model: String,
    pub api: String,
    pub url: String,
    pub parallel: i64,
    pub number: u64,
    pub rate: f64,
    pub config_json: String,
    /// This shard's index, on every row (None: not a sharded run).
    pub shard: Option<u64>,
}

/// What the writer thread stored, and why it stopped storing when it did.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    pub rows: u64,
    /// Rows that reached the writer but could not be written.
    pub lost: u64,
    /// The write error that failed the store (None: every write succeeded).
    pub failure: Option<String>,
}

/// How the writer thread works: the group-commit size, its queue, the space to free
/// when the disk fills, and whom to tell when writing fails.
pub struct WriterOptions {
    pub commit_every: usize,
    pub queue: usize,
    pub reserve: Option<Arc<Reserve>>,
    /// Called once, from the writer thread, with the cause, when a write fails.
    pub on_failure: Box<dyn Fn(&str) + Send>,
    /// Which rows keep their response text (`--store-responses`).
    pub responses: StoreResponses,
}

/// `--store-responses`: which rows keep `response_messages`. The rest of a row
/// (timings, tokens, the error text, the request) is always stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreResponses {
    /// Every row, as evalscope.
    #[default]
    All,
    /// Failed requests only (what a failure needs to be understood).
    Failures,
    None,
}

impl StoreResponses {
    pub fn parse(s: &str) -> Option<StoreResponses> {
        Some(match s {
            "all" => StoreResponses::All,
            "failures" => StoreResponses::Failures,
            "none" => StoreResponses::None,
            _ => return None,
        })
    }
    fn keeps(self, r: &RequestRecord) -> bool {
        match self {
            StoreResponses::All => true,
            StoreResponses::Failures => !r.success,
            StoreResponses::None => false,
        }
    }
}

pub struct Writer {
    tx: Option<mpsc::Sender<RequestRecord>>,
    handle: Option<std::thread::JoinHandle<Stored>>,
    pub path: PathBuf,
}

/// A JSON list as Python's `json.dumps` writes it (`[0.5, 1e-05]`); `{:?}` is the
/// shortest round-trip form, with an exponent for very small values, and allocates
/// nothing per value.
fn json_list(v: &[f64]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(v.len() * 24 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if x.is_finite() {
            let _ = write!(s, "{x:?}");
        } else {
            s.push_str("null");
        }
    }
    s.push(']');
    s
}

fn insert(
    tx: &rusqlite::Transaction,
    clock: &Clock,
    shard: Option<i64>,
    r: &RequestRecord,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(INSERT)?;
    let tl = &r.timeline;
    let latency = r.latency();
    let ttft = if r.success { r.ttft() } else { None };
    st.execute(params![
        stored_request(&r.request),
        tl.send,
        json_list(&r.itl),
        r.success as i64,
        r.response_messages,
        // evalscope 1.14: failure rows carry their real completion time too.
        tl.end,
        latency,
        ttft,
        if r.success {
            r.prompt_tokens.map(|v| v as i64)
        } else {
            None
        },
        if r.success {
            r.completion_tokens.map(|v| v as i64)
        } else {
            None
        },
        if r.success { Some(0.0) } else { None },
        r.tpot(),
        r.request_id,
        r.is_stream as i64,
        r.seq as i64,
        tl.intended_start,
        tl.headers,
        tl.first_event,
        tl.first_output,
        tl.end,
        tl.first_event.map(|t| t - tl.send),
        r.http_status,
        r.failure.map(|k| k.as_str()),
        r.error,
        r.cached_tokens.map(|v| v as i64),
        r.output_chunks,
        r.finish_reason,
        r.trace.map(|t| t.trace_id_hex()),
        clock.unix(tl.send),
        clock.unix(tl.end),
        r.decode_chunks,
        r.resent as i64,
        r.session.as_ref().map(|s| s.id.as_str()),
        r.session.as_ref().map(|s| s.turn),
        r.session.as_ref().map(|s| s.is_last as i64),
        shard,
        r.session
            .as_ref()
            .and_then(|s| s.cached_estimate.map(|v| v as i64)),
        r.session.as_ref().and_then(|s| s.agent_depth),
    ])?;
    Ok(())
}

/// Largest request body stored whole in a row (evalscope stores every body whole;
/// one 600 MB prompt per row would fill the disk and the report's memory).
pub const STORED_REQUEST_MAX: usize = 1 << 20;

/// The `request` column: the body as sent, or for a body over STORED_REQUEST_MAX
/// a JSON object with its length, its SHA-256 and its first 4 KiB.
fn stored_request(body: &[u8]) -> std::borrow::Cow<'_, str> {
    if body.len() <= STORED_REQUEST_MAX {
        // Borrowed, not copied, for a UTF-8 body (every JSON body).
        return String::from_utf8_lossy(body);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let head = String::from_utf8_lossy(&body[..4096]).into_owned();
    serde_json::json!({
        "perfscope_request_truncated": {"bytes": body.len(), "sha256": hex, "head": head}
    })
    .to_string()
    .into()
}

/// A lock held by another connection: worth waiting for.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A write error as the run's log and status show it: SQLite's words and the file.
fn describe(e: &rusqlite::Error, path: &std::path::Path) -> String {
    let what = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the disk is full",
        Some(ErrorCode::ReadOnly) => "the database is read-only",
        Some(ErrorCode::SystemIoFailure) => "an I/O error",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process held the database locked"
        }
        _ => "a write error",
    };
    format!("{what} writing {}: {e}", path.display())
}

/// Rows in memory, with their size.
#[derive(Default)]
struct Pending {
    rows: Vec<RequestRecord>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, mut r: RequestRecord, responses: StoreResponses) {
        if !responses.keeps(&r) {
            r.response_messages = None;
        }
        self.bytes += r.request.len() + r.response_messages.as_ref().map_or(0, |m| m.len());
        self.rows.push(r);
    }
    fn full(&self) -> bool {
        self.rows.len() >= BUFFER_ROWS || self.bytes >= BUFFER_BYTES
    }
    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

/// Writes `rows` in one transaction (rolled back on any error).
fn write_batch(
    conn: &mut rusqlite::Connection,
    clock: &Clock,
    shard: Option<i64>,
    rows: &[RequestRecord],
) -> rusqlite::Result<()> {
    let t = conn.transaction()?;
    for r in rows {
        insert(&t, clock, shard, r)?;
    }
    t.commit()
}

/// The writer thread's state.
struct Thread {
    conn: rusqlite::Connection,
    path: PathBuf,
    clock: Clock,
    shard: Option<i64>,
    commit_every: usize,
    reserve: Option<Arc<Reserve>>,
    on_failure: Box<dyn Fn(&str) + Send>,
    responses: StoreResponses,
    out: Stored,
    /// The first time a lock was met, while it lasts.
    busy_since: Option<Instant>,
    /// A write failed and the rows could not be written after the reserve was freed.
    given_up: bool,
}

impl Thread {
    fn run(mut self, mut rx: mpsc::Receiver<RequestRecord>) -> Stored {
        let mut pending = Pending::default();
        let mut open = true;
        loop {
            if pending.rows.is_empty() {
                match rx.blocking_recv() {
                    Some(r) => pending.push(r, self.responses),
                    None => break,
                }
            }
            open = self.fill(&mut rx, &mut pending) && open;
            if self.given_up {
                self.out.lost += pending.rows.len() as u64;
                pending.clear();
            } else {
                self.write(&mut pending);
            }
            if !open && pending.rows.is_empty() {
                break;
            }
        }
        self.out
    }

    /// Group commit: take what arrives within COMMIT_WINDOW, up to
    /// --db-commit-interval rows; while the database is locked, take whatever is
    /// queued, up to the buffer's bounds. False when every sender is gone.
    fn fill(&self, rx: &mut mpsc::Receiver<RequestRecord>, pending: &mut Pending) -> bool {
        let opened = Instant::now();
        let waiting = self.busy_since.is_some() || self.given_up;
        loop {
            let room = if waiting {
                !pending.full()
            } else {
                pending.rows.len() < self.commit_every
            };
            if !room {
                return true;
            }
            match rx.try_recv() {
                Ok(r) => pending.push(r, self.responses),
                Err(TryRecvError::Empty) if !waiting && opened.elapsed() < COMMIT_WINDOW => {
                    std::thread::sleep(POLL);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// One attempt to store the pending rows; they are cleared once stored (or
    /// counted lost).
    fn write(&mut self, pending: &mut Pending) {
        let e = match write_batch(&mut self.conn, &self.clock, self.shard, &pending.rows) {
            Ok(()) => {
                if let Some(since) = self.busy_since.take() {
                    log::info(format!(
                        "{}: the lock was released after {:.1} s; {} held rows stored",
                        self.path.display(),
                        since.elapsed().as_secs_f64(),
                        pending.rows.len()
                    ));
                }
                self.out.rows += pending.rows.len() as u64;
                pending.clear();
                return;
            }
            Err(e) => e,
        };
        if is_busy(&e) {
            let since = *self.busy_since.get_or_insert_with(|| {
                log::warn(format!(
                    "{} is locked by another process; rows are held in memory (at most {BUFFER_ROWS}) and written when it is released, or the run stops after {} s",
                    self.path.display(),
                    BUSY_LIMIT.as_secs()
                ));
                Instant::now()
            });
            if since.elapsed() < BUSY_LIMIT {
                std::thread::sleep(BUSY_RETRY);
                return;
            }
        }
        let cause = describe(&e, &self.path);
        if self.out.failure.is_none() {
            log::error(format!(
                "{cause}; stopping the run: no new requests, requests in flight cancelled"
            ));
            (self.on_failure)(&cause);
            self.out.failure = Some(cause.clone());
            // Room for the rows held and those still to come: retried at once.
            if let Some(freed) = self.reserve.as_ref().and_then(|r| r.release()) {
                log::warn(format!(
                    "freed the {} MiB reserved on the output disk to store the remaining rows",
                    freed >> 20
                ));
                self.busy_since = None;
                return;
            }
        }
        log::error(format!(
            "{cause}; {} rows could not be stored",
            pending.rows.len()
        ));
        self.given_up = true;
        self.out.lost += pending.rows.len() as u64;
        pending.clear();
    }
}

impl Writer {
    /// Creates the database (it must not exist: one database per run) and starts the
    /// writer thread.
    pub fn start(
        path: PathBuf,
        meta: &RunMeta,
        clock: Clock,
        opts: WriterOptions,
    ) -> Result<Writer> {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; choose another --outputs-dir or --name, or drop --no-timestamp",
                path.display()
            );
        }
        let conn = open(&path)?;
        conn.execute(
            "INSERT INTO run(run_id,name,model,api,url,parallel,number,rate,started_unix,status,config_json)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,'running',?10)",
            params![
                meta.run_id,
                meta.name,
                meta.model,
                meta.api,
                meta.url,
                meta.parallel,
                meta.number as i64,
                meta.rate,
                clock.unix(0.0),
                meta.config_json
            ],
        )?;
        conn.busy_timeout(SQLITE_BUSY_WAIT)?;
        let (tx, rx) = mpsc::channel::<RequestRecord>(opts.queue.max(1));
        let thread = Thread {
            conn,
            path: path.clone(),
            clock,
            shard: meta.shard.map(|s| s as i64),
            commit_every: opts.commit_every.max(1),
            reserve: opts.reserve,
            on_failure: opts.on_failure,
            responses: opts.responses,
            out: Stored::default(),
            busy_since: None,
            given_up: false,
        };
        // The thread logs to the invocation's log, like the task that started it.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        let handle = std::thread::Builder::new()
            .name("perfscope-sqlite".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&log);
                thread.run(rx)
            })?;
        Ok(Writer {
            tx: Some(tx),
            handle: Some(handle),
            path,
        })
    }

    pub fn sender(&self) -> mpsc::Sender<RequestRecord> {
        self.tx.clone().expect("writer already finished")
    }

    /// Closes the queue, waits for the last commit, and closes the run's row:
    /// `status` (completed, interrupted, failed), why it stopped when it did
    /// (`stop_reason`: the signal, or the write error with the rows lost), and
    /// `not_sent`, the requests that were scheduled but never sent (interrupted
    /// while waiting for a slot; they are not rows). Waits out a lock like the rows
    /// do.
    pub fn finish(mut self, status: &str, reason: Option<&str>, not_sent: u64) -> Result<Stored> {
        drop(self.tx.take());
        let stored = match self.handle.take().map(|h| h.join()) {
            Some(Ok(s)) => s,
            Some(Err(_)) => anyhow::bail!("the SQLite writer thread panicked"),
            None => Stored::default(),
        };
        let (status, reason) = match &stored.failure {
            Some(f) => (
                "failed",
                Some(if stored.lost > 0 {
                    format!("{f}; {} rows not stored", stored.lost)
                } else {
                    f.clone()
                }),
            ),
            None => (status, reason.map(str::to_string)),
        };
        let conn = open(&self.path)?;
        conn.busy_timeout(BUSY_LIMIT)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        conn.execute(
            "UPDATE run SET finished_unix=?1, status=?2, requests=?3, not_sent=?4, stop_reason=?5",
            params![now, status, stored.rows as i64, not_sent as i64, reason],
        )
        .with_context(|| format!("cannot close the run in {}", self.path.display()))?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_large_request_is_stored_as_its_length_and_digest() {
        assert_eq!(super::stored_request(b"{\"a\":1}"), "{\"a\":1}");
        let big = vec![b'x'; super::STORED_REQUEST_MAX + 1];
        let v: serde_json::Value = serde_json::from_str(&super::stored_request(&big)).unwrap();
        let t = &v["perfscope_request_truncated"];
        assert_eq!(t["bytes"].as_u64(), Some(big.len() as u64));
        assert_eq!(t["sha256"].as_str().map(str::len), Some(64));
        assert_eq!(t["head"].as_str().map(str::len), Some(4096));
    }

    #[test]
    fn json_list_format_matches_python() {
        assert_eq!(
            super::json_list(&[0.5, 0.25, 1e-5, 2.0]),
            "[0.5, 0.25, 1e-5, 2.0]"
        );
        let back: Vec<f64> = serde_json::from_str(&super::json_list(&[0.1 + 0.2, 3e-7])).unwrap();
        assert_eq!(back, vec![0.1 + 0.2, 3e-7]);
        assert_eq!(super::json_list(&[]), "[]");
    }
}
