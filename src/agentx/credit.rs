//! What the AgentX replay schedule hands to and shares with its parts: the
//! credits it releases, their outcomes, its options and its statistics.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::Plan;
use super::tstar;

/// One request to send.
#[derive(Clone, Debug)]
pub struct Credit {
    pub lane: usize,
    /// The trace's play number in this run (0 for the first play of any trace).
    pub play: u64,
    /// Root trace index of the tree.
    pub trace: usize,
    pub conversation: usize,
    pub turn: usize,
    /// When the schedule released the request (effective latency runs from here).
    pub issued: Instant,
    /// `[rid:<12 hex>]\n\n`, one per tree play, prepended to the first user message.
    pub marker: Arc<str>,
    /// A warmup request: the turn's full prefix with `max_tokens = 1`, to prime
    /// the server's cache at t*; not a measured request.
    pub warmup: bool,
}

/// How a request ended, as the schedule needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// The server refused the prompt as longer than its context: the stream
    /// ends there (AIPerf's context-overflow short-circuit).
    Overflow,
}

pub type SendFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Sends one request.
pub trait Sender: Send + Sync + 'static {
    fn send(&self, credit: Credit) -> SendFuture;
}

#[derive(Clone)]
pub struct Options {
    pub lanes: usize,
    /// After this long, no request is released.
    pub deadline: Option<Duration>,
    pub idle_cap: Duration,
    /// Keys the cache-bust markers (AIPerf: the benchmark id).
    pub run_id: String,
    /// The run was stopped: nothing more is released.
    pub stopped: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Release on the precise timer (sub-millisecond, see `timer`); false on a
    /// paused test clock, which only tokio's timer follows.
    pub precise: bool,
    /// Where each lane's first tree starts (t*), and its seed.
    pub start: tstar::Start,
    /// Live gauges: lanes playing a tree, subagents running.
    pub live: Option<Live>,
}

/// The replay's live gauges (`/metrics`).
#[derive(Clone)]
pub struct Live {
    pub lanes: prometheus_client::metrics::gauge::Gauge,
    pub subagents: prometheus_client::metrics::gauge::Gauge,
}

/// What the schedule did: AIPerf's `branch_stats`, the plays and the warmup.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub plays_started: u64,
    pub plays_completed: u64,
    pub children_spawned: u64,
    /// Children whose final turn succeeded.
    pub children_completed: u64,
    /// Children whose final turn failed.
    pub children_errored: u64,
    /// Children cut short by a context overflow before their final turn.
    pub children_truncated: u64,
    /// Children whose first turn waited for its recorded offset from the spawn.
    pub children_delayed: u64,
    /// Parents that paused at a join-gated turn for their children.
    pub parents_suspended: u64,
    pub parents_resumed: u64,
    /// Joins released after the deadline, whose turn was not sent.
    pub joins_suppressed: u64,
    /// Warmup requests sent before the measured window.
    pub warmup_requests: u64,
    /// Most subagent conversations running at once.
    pub subagents_peak: u64,
    /// Each lane's first tree: (trace index, t* in ms on the trace's timeline).
    pub t_star: Vec<(usize, f64)>,
}

pub(super) struct Shared {
    pub(super) plan: Arc<Plan>,
    pub(super) opts: Options,
    pub(super) sender: Arc<dyn Sender>,
    pub(super) start: Instant,
    pub(super) next_root: AtomicU64,
    pub(super) in_flight: AtomicU64,
    /// Since when nothing has been in flight (None: something is).
    pub(super) idle_since: watch::Sender<Option<Instant>>,
    pub(super) stats: Mutex<Stats>,
    /// Subagent conversations running now.
    pub(super) subagents: AtomicU64,
}

impl Shared {
    pub(super) fn past_deadline(&self) -> bool {
        (self.opts.stopped)()
            || self
                .opts
                .deadline
                .is_some_and(|d| Instant::now() >= self.start + d)
    }

    pub(super) fn stat(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }
}

/// AIPerf's marker: the first 12 hex digits of
/// `sha256("<run>:<recycle pass>:<trajectory index>:<trace id>")`.
pub(super) fn marker(run_id: &str, pass: u64, index: u64, trace_id: &str) -> Arc<str> {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{run_id}:{pass}:{index}:{trace_id}").as_bytes(),
    );
    let hex: String = d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("[rid:{hex}]\n\n").into()
}
