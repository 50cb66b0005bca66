//! The AgentX replay schedule (AIPerf 0.12.0's `agentic_replay` timing): `lanes`
//! session-tree lanes each play one trace's tree at a time: the root conversation
//! turn by turn, each subagent branch started when its spawning turn completes
//! (a child's first turn after its recorded offset from the spawn), a join-gated
//! turn held until its branch's children have finished, background branches never
//! waited for. A turn k > 0 is sent its end-to-start delay after turn k − 1
//! completes. When a tree has drained (root and every descendant done) the lane
//! takes the next trace in file order, wrapping, as a new play with its own
//! cache-bust marker. Subagents do not take lanes, so more than `lanes` requests
//! may be in flight. When nothing has been in flight for `idle_cap`, every
//! pending delay ends at once (AIPerf's 10 s global idle cap). After `deadline`
//! no request is sent.
//!
//! The sending itself is the caller's (`Sender`), so the schedule is testable on
//! a paused clock and the engine supplies the HTTP client and the records.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::Plan;

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
}

pub type SendFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Sends one request; resolves to whether it succeeded.
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
    /// The timer wakes this much early and the last stretch is yielded away, so
    /// a release lands within a fraction of a millisecond of its time (tokio's
    /// timer rounds up to whole milliseconds). 0 on a paused test clock.
    pub spin: Duration,
}

/// What the schedule did (AIPerf's `branch_stats` and plays).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub plays_started: u64,
    pub plays_completed: u64,
    pub children_spawned: u64,
    pub children_completed: u64,
    pub children_errored: u64,
    /// Join-gated parent turns that had to wait for their children.
    pub parents_suspended: u64,
}

struct Shared {
    plan: Arc<Plan>,
    opts: Options,
    sender: Arc<dyn Sender>,
    start: Instant,
    next_root: AtomicU64,
    in_flight: AtomicU64,
    /// Since when nothing has been in flight (None: something is).
    idle_since: watch::Sender<Option<Instant>>,
    stats: Mutex<Stats>,
}

impl Shared {
    fn past_deadline(&self) -> bool {
        (self.opts.stopped)()
            || self
                .opts
                .deadline
                .is_some_and(|d| Instant::now() >= self.start + d)
    }

    fn stat(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Waits `secs`, cut short when nothing has been in flight for the idle cap.
    async fn delay(&self, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let coarse = end.checked_sub(self.opts.spin).unwrap_or(end);
        let mut idle = self.idle_since.subscribe();
        loop {
            let since = *idle.borrow_and_update();
            let wake = since.map_or(coarse, |s| coarse.min(s + self.opts.idle_cap));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= coarse {
                        while Instant::now() < end {
                            tokio::task::yield_now().await;
                        }
                        return;
                    }
                    let still = *idle.borrow();
                    if still.is_some_and(|s| Instant::now() >= s + self.opts.idle_cap) {
                        return;
                    }
                }
                changed = idle.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(end).await;
                        return;
                    }
                }
            }
        }
    }

    async fn send(&self, credit: Credit) -> bool {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.idle_since.send_replace(None);
        }
        let ok = self.sender.send(credit).await;
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.send_replace(Some(Instant::now()));
        }
        ok
    }
}

/// AIPerf's marker: the first 12 hex digits of
/// `sha256("<run>:<recycle pass>:<trajectory index>:<trace id>")`.
fn marker(run_id: &str, pass: u64, index: u64, trace_id: &str) -> Arc<str> {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{run_id}:{pass}:{index}:{trace_id}").as_bytes(),
    );
    let hex: String = d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("[rid:{hex}]\n\n").into()
}

/// Plays the schedule until the deadline (or, without one, until every trace has
/// been played once); returns what it did.
pub async fn run(plan: Arc<Plan>, opts: Options, sender: Arc<dyn Sender>) -> Stats {
    let (idle_since, _) = watch::channel(Some(Instant::now()));
    let shared = Arc::new(Shared {
        plan,
        opts,
        sender,
        start: Instant::now(),
        next_root: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        idle_since,
        stats: Mutex::new(Stats::default()),
    });
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..shared.opts.lanes.max(1) {
        lanes.spawn(run_lane(shared.clone(), lane));
    }
    while lanes.join_next().await.is_some() {}
    let stats = shared.stats.lock().map(|s| s.clone()).unwrap_or_default();
    stats
}

async fn run_lane(s: Arc<Shared>, lane: usize) {
    let roots = s.plan.roots.len() as u64;
    if roots == 0 {
        return;
    }
    loop {
        if s.past_deadline() {
            return;
        }
        let index = s.next_root.fetch_add(1, Ordering::SeqCst);
        // Without a deadline each trace is played once.
        if s.opts.deadline.is_none() && index >= roots {
            return;
        }
        let trace = (index % roots) as usize;
        let conv = s.plan.roots[trace];
        let id = &s.plan.conversations[conv].id;
        let tree = Arc::new(Tree {
            lane,
            play: index / roots,
            trace,
            marker: marker(&s.opts.run_id, index / roots, index, id),
            branches: Mutex::new(std::collections::HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        s.stat(|st| st.plays_started += 1);
        let complete = run_conversation(s.clone(), tree.clone(), conv).await;
        // Drain the tree: every child, background ones included.
        loop {
            let pending: Vec<_> = tree
                .tasks
                .lock()
                .map(|mut t| std::mem::take(&mut *t))
                .unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            for t in pending {
                let _ = t.await;
            }
        }
        if complete == End::Done {
            s.stat(|st| st.plays_completed += 1);
        }
    }
}

/// One play of a trace's tree.
struct Tree {
    lane: usize,
    play: u64,
    trace: usize,
    marker: Arc<str>,
    /// Spawned branches of this play: children still running.
    branches: Mutex<std::collections::HashMap<usize, watch::Sender<usize>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How a conversation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Every turn sent and answered.
    Done,
    /// A request failed: the conversation stops there.
    Failed,
    /// The deadline came first.
    Cut,
}

/// Runs one conversation's turns.
fn run_conversation(
    s: Arc<Shared>,
    tree: Arc<Tree>,
    conv: usize,
) -> Pin<Box<dyn Future<Output = End> + Send>> {
    Box::pin(async move {
        let turns = s.plan.conversations[conv].turns.len();
        for k in 0..turns {
            let turn = &s.plan.conversations[conv].turns[k];
            if k > 0 {
                s.delay(turn.delay_s).await;
            }
            for b in &turn.joins {
                let rx = tree
                    .branches
                    .lock()
                    .ok()
                    .and_then(|m| m.get(b).map(|tx| tx.subscribe()));
                if let Some(mut rx) = rx {
                    if *rx.borrow() > 0 {
                        s.stat(|st| st.parents_suspended += 1);
                        let _ = rx.wait_for(|left| *left == 0).await;
                    }
                }
            }
            if s.past_deadline() {
                return End::Cut;
            }
            let credit = Credit {
                lane: tree.lane,
                play: tree.play,
                trace: tree.trace,
                conversation: conv,
                turn: k,
                issued: Instant::now(),
                marker: tree.marker.clone(),
            };
            if !s.send(credit).await {
                return End::Failed;
            }
            for &b in &s.plan.conversations[conv].turns[k].spawns {
                spawn_branch(&s, &tree, b);
            }
        }
        End::Done
    })
}

fn spawn_branch(s: &Arc<Shared>, tree: &Arc<Tree>, b: usize) {
    let branch = &s.plan.branches[b];
    let (tx, _) = watch::channel(branch.children.len());
    if let Ok(mut m) = tree.branches.lock() {
        m.insert(b, tx);
    }
    for &child in &branch.children {
        let offset = branch.dispatch_offset_s(&s.plan.conversations[child]);
        let (s2, tree2) = (s.clone(), tree.clone());
        s.stat(|st| st.children_spawned += 1);
        let task = tokio::spawn(async move {
            s2.delay(offset).await;
            let end = run_conversation(s2.clone(), tree2.clone(), child).await;
            s2.stat(|st| match end {
                End::Done => st.children_completed += 1,
                End::Failed => st.children_errored += 1,
                End::Cut => {}
            });
            if let Ok(m) = tree2.branches.lock() {
                if let Some(tx) = m.get(&b) {
                    tx.send_modify(|left| *left = left.saturating_sub(1));
                }
            }
        });
        if let Ok(mut t) = tree.tasks.lock() {
            t.push(task);
        }
    }
}
