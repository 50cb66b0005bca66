//! The writer of a run's database: one thread owns the connection. Group commit: a transaction takes every row
//! that arrives within 100 ms, up to `--db-commit-interval` rows (evalscope commits
//! every `db_commit_interval` rows), so a slow disk slows commits, never requests,
//! and every row is committed within about 100 ms of its request ending.

use anyhow::Result;
use rusqlite::params;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Longest a transaction stays open waiting for more rows.
const COMMIT_WINDOW: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(2);

use super::schema::open;
use crate::record::{Clock, RequestRecord};

const INSERT: &str = "INSERT INTO result(request,start_time,inter_token_latencies,success,
 response_messages,completed_time,latency,first_chunk_latency,prompt_tokens,completion_tokens,
 max_gpu_memory_cost,time_per_output_token,request_id,is_stream,seq,intended_start,headers_time,
 first_event_time,first_token_time,end_time,time_to_first_event,http_status,failure_kind,error,
 cached_tokens,output_chunks,finish_reason,trace_id,start_unix,end_unix,decode_chunks,resent,
 session_id,turn,is_last_turn,shard)
 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32,?33,?34,?35,?36)";

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

pub struct Writer {
    tx: Option<mpsc::Sender<RequestRecord>>,
    handle: Option<std::thread::JoinHandle<Result<u64>>>,
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
        String::from_utf8_lossy(&r.request),
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
    ])?;
    Ok(())
}

impl Writer {
    /// Creates the database (it must not exist: one database per run) and starts the
    /// writer thread.
    pub fn start(
        path: PathBuf,
        meta: &RunMeta,
        clock: Clock,
        commit_every: usize,
        queue: usize,
    ) -> Result<Writer> {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; choose another --outputs-dir or --name, or drop --no-timestamp",
                path.display()
            );
        }
        let mut conn = open(&path)?;
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
        let shard = meta.shard.map(|s| s as i64);
        let (tx, mut rx) = mpsc::channel::<RequestRecord>(queue.max(1));
        // The thread logs to the invocation's log, like the task that started it.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        let handle = std::thread::Builder::new()
            .name("perfscope-sqlite".into())
            .spawn(move || -> Result<u64> {
                let _log = tracing::dispatcher::set_default(&log);
                let mut rows = 0u64;
                while let Some(first) = rx.blocking_recv() {
                    let opened = Instant::now();
                    let t = conn.transaction()?;
                    insert(&t, &clock, shard, &first)?;
                    let mut n = 1;
                    // Group commit: keep the transaction open while rows keep coming,
                    // up to --db-commit-interval rows or COMMIT_WINDOW. One commit (a
                    // few syscalls and a WAL append) then serves many requests, and
                    // the thread wakes a bounded number of times per second.
                    while n < commit_every {
                        match rx.try_recv() {
                            Ok(r) => {
                                insert(&t, &clock, shard, &r)?;
                                n += 1;
                            }
                            Err(TryRecvError::Empty) if opened.elapsed() < COMMIT_WINDOW => {
                                std::thread::sleep(POLL);
                            }
                            Err(_) => break,
                        }
                    }
                    t.commit()?;
                    rows += n as u64;
                }
                Ok(rows)
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

    /// Closes the queue, waits for the last commit, marks the run finished.
    /// Closes the store: `not_sent` counts requests that were scheduled but never sent
    /// (interrupted while waiting for a slot); they are not rows.
    pub fn finish(mut self, status: &str, not_sent: u64) -> Result<u64> {
        drop(self.tx.take());
        let rows = match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r?,
            Some(Err(_)) => anyhow::bail!("the SQLite writer thread panicked"),
            None => 0,
        };
        let conn = open(&self.path)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        conn.execute(
            "UPDATE run SET finished_unix=?1, status=?2, requests=?3, not_sent=?4",
            params![now, status, rows as i64, not_sent as i64],
        )?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
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
