//! Precise token timing for the fixed-delay mode.
//!
//! tokio's timer wheel has a 1 ms tick and fires at or after the deadline, so a
//! timer per stream would add 0.5–1.5 ms of its own to every injected delay. One OS
//! thread instead keeps every stream's next deadline in a heap and sleeps on a
//! channel with a timeout (futex-precise, tens of microseconds), then hands the
//! token to the stream's task. The injected delays are therefore what the client
//! should measure, to well under a millisecond.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

use super::engine::Ev;

pub struct Job {
    pub first: Instant,
    pub gap: Duration,
    pub tokens: u64,
    pub tx: UnboundedSender<Ev>,
}

struct Entry {
    at: Instant,
    left: u64,
    job: usize,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.at.cmp(&o.at)
    }
}

/// Starts the timing thread; it ends when every sender is dropped.
pub fn start() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("perfscope-sim-ticker".into())
        .spawn(move || run(rx))?;
    Ok(tx)
}

fn run(rx: mpsc::Receiver<Job>) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    // Slab of live jobs; freed slots are reused.
    let mut jobs: Vec<Option<Job>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    loop {
        let incoming = match heap.peek() {
            None => match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            },
            Some(Reverse(e)) => {
                let wait = e.at.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    rx.try_recv().ok()
                } else {
                    match rx.recv_timeout(wait) {
                        Ok(j) => Some(j),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        };
        if let Some(j) = incoming {
            if j.tokens > 0 {
                let at = j.first;
                let left = j.tokens;
                let slot = match free.pop() {
                    Some(i) => {
                        jobs[i] = Some(j);
                        i
                    }
                    None => {
                        jobs.push(Some(j));
                        jobs.len() - 1
                    }
                };
                heap.push(Reverse(Entry {
                    at,
                    left,
                    job: slot,
                }));
            }
            continue;
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Some(Reverse(e)) = heap.pop() else { break };
            let Some(job) = jobs[e.job].as_ref() else {
                continue;
            };
            let alive = job.tx.send(Ev::Token).is_ok();
            if alive && e.left > 1 {
                heap.push(Reverse(Entry {
                    at: e.at + job.gap,
                    left: e.left - 1,
                    job: e.job,
                }));
            } else {
                jobs[e.job] = None;
                free.push(e.job);
            }
        }
    }
}
