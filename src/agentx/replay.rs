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

use super::credit::{marker, Shared};
pub use super::credit::{Credit, Live, Options, Outcome, SendFuture, Sender, Stats};
use super::plan::Plan;
use super::tstar::{self, Snapshot};
pub use super::warmup::WarmupFailed;
use super::warmup::{first_trees, warmup, First};

impl Shared {
    /// Waits `secs`, cut short when nothing has been in flight for the idle cap.
    async fn delay(&self, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut idle = self.idle_since.subscribe();
        loop {
            let since = *idle.borrow_and_update();
            let wake = since.map_or(end, |s| end.min(s + self.opts.idle_cap));
            tokio::select! {
                _ = self.sleep_until(wake) => {
                    if Instant::now() >= end {
                        return;
                    }
                    let still = *idle.borrow();
                    if still.is_some_and(|s| Instant::now() >= s + self.opts.idle_cap) {
                        return;
                    }
                }
                changed = idle.changed() => {
                    if changed.is_err() {
                        self.sleep_until(end).await;
                        return;
                    }
                }
            }
        }
    }

    async fn sleep_until(&self, at: Instant) {
        if self.opts.precise {
            super::timer::sleep_until(at).await;
        } else {
            tokio::time::sleep_until(at).await;
        }
    }

    async fn send(&self, credit: Credit) -> Outcome {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.idle_since.send_replace(None);
        }
        let out = self.sender.send(credit).await;
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.send_replace(Some(Instant::now()));
        }
        out
    }
}

/// Plays the schedule until the deadline (or, without one, until every trace has
/// been played once); returns what it did.
pub async fn run(
    plan: Arc<Plan>,
    opts: Options,
    sender: Arc<dyn Sender>,
) -> Result<Stats, WarmupFailed> {
    Ok(prepare(plan, opts, sender).await?.play().await)
}

/// A schedule whose warmup is done, ready to play.
pub struct Prepared {
    shared: Shared,
    firsts: Vec<Option<First>>,
}

/// Picks each lane's first tree and its t*, and warms the streams that were
/// mid-flight then: each one's last request before t* with `max_tokens = 1`,
/// spread so that every lane's t* lands at the warmup's end (AIPerf's warmup
/// phase). The measured window, and the deadline, start with `play`.
pub async fn prepare(
    plan: Arc<Plan>,
    opts: Options,
    sender: Arc<dyn Sender>,
) -> Result<Prepared, WarmupFailed> {
    let (idle_since, _) = watch::channel(Some(Instant::now()));
    let shared = Shared {
        plan,
        opts,
        sender,
        start: Instant::now(),
        next_root: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        idle_since,
        stats: Mutex::new(Stats::default()),
        subagents: AtomicU64::new(0),
    };
    let firsts = first_trees(&shared);
    warmup(&shared, &firsts).await?;
    Ok(Prepared { shared, firsts })
}

impl Prepared {
    /// Plays the lanes from their first trees until the deadline.
    pub async fn play(self) -> Stats {
        let Prepared { mut shared, firsts } = self;
        shared.start = Instant::now();
        shared.idle_since.send_replace(Some(shared.start));
        let shared = Arc::new(shared);
        let mut lanes = tokio::task::JoinSet::new();
        for (lane, first) in firsts.into_iter().enumerate() {
            lanes.spawn(run_lane(shared.clone(), lane, first));
        }
        while lanes.join_next().await.is_some() {}
        let stats = shared.stats.lock().map(|s| s.clone()).unwrap_or_default();
        stats
    }
}

async fn run_lane(s: Arc<Shared>, lane: usize, first: Option<First>) {
    let roots = s.plan.roots.len() as u64;
    let Some(first) = first else { return };
    let mut next = Some(first);
    loop {
        if s.past_deadline() {
            return;
        }
        let f = match next.take() {
            Some(f) => f,
            None => {
                let index = s.next_root.fetch_add(1, Ordering::SeqCst);
                // Without a deadline each trace is played once.
                if s.opts.deadline.is_none() && index >= roots {
                    return;
                }
                let trace = (index % roots) as usize;
                let id = &s.plan.conversations[s.plan.roots[trace]].id;
                First {
                    index,
                    snapshot: tstar::from_start(&s.plan, trace),
                    marker: marker(&s.opts.run_id, index / roots, index, id),
                }
            }
        };
        let tree = Arc::new(Tree {
            lane,
            play: f.index / roots,
            trace: (f.index % roots) as usize,
            marker: f.marker,
            branches: Mutex::new(std::collections::HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        s.stat(|st| st.plays_started += 1);
        if let Some(l) = &s.opts.live {
            l.lanes.inc();
        }
        let root_end = play_snapshot(&s, &tree, &f.snapshot).await;
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
        if let Some(l) = &s.opts.live {
            l.lanes.dec();
        }
        if matches!(root_end, Some(End::Done | End::Failed)) {
            s.stat(|st| st.plays_completed += 1);
        }
    }
}

/// Starts a tree from its snapshot: the children alive at t* from their next
/// turns, and the root from its next turn (gated on those children when it was
/// waiting for them). Returns how the root ended (None: no root stream).
async fn play_snapshot(s: &Arc<Shared>, tree: &Arc<Tree>, snap: &Snapshot) -> Option<End> {
    let mut per_branch: std::collections::HashMap<usize, usize> = Default::default();
    for st in &snap.streams {
        if let Some(b) = st.branch {
            *per_branch.entry(b).or_default() += 1;
        }
    }
    if let Ok(mut m) = tree.branches.lock() {
        for (&b, &n) in &per_branch {
            m.insert(b, watch::channel(n).0);
        }
    }
    let mut root = None;
    for st in &snap.streams {
        let lead = if st.waiting {
            Lead::Gate
        } else {
            Lead::Delay(st.offset_s)
        };
        match st.branch {
            Some(b) => {
                // A child alive at t* counts as spawned by this play.
                s.stat(|x| {
                    x.children_spawned += 1;
                    x.children_delayed += u64::from(st.offset_s > 0.0);
                });
                start_child(s, tree, b, st.conversation, st.next, lead)
            }
            None => root = Some((st.conversation, st.next, lead)),
        }
    }
    let (conv, from, lead) = root?;
    Some(run_conversation(s.clone(), tree.clone(), conv, from, lead).await)
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

impl Tree {
    /// The branches a turn joins that still have children running.
    fn pending_gates(&self, joins: &[usize]) -> Vec<watch::Receiver<usize>> {
        let Ok(m) = self.branches.lock() else {
            return Vec::new();
        };
        joins
            .iter()
            .filter_map(|b| m.get(b).map(|tx| tx.subscribe()))
            .filter(|rx| *rx.borrow() > 0)
            .collect()
    }
}

/// How a conversation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Its final turn was answered.
    Done,
    /// Its final turn failed (earlier failures do not stop a conversation).
    Failed,
    /// A context overflow before the final turn ended it.
    Overflow,
    /// The deadline came after it had sent a turn: its remaining turns were
    /// not sent (AIPerf's truncated child).
    Stopped,
    /// The deadline came before it sent anything.
    Cut,
}

/// What comes before a stream's first turn.
#[derive(Clone, Copy, Debug)]
enum Lead {
    /// Wait this long (seconds).
    Delay(f64),
    /// Wait for the turn's join gate, then send at once.
    Gate,
}

/// Runs a conversation from turn `from`. A later turn whose join gate is still
/// open when the turn before it completes is sent the moment its children are
/// done; otherwise it waits its end-to-start delay (AIPerf's suspended parent
/// versus a gate already satisfied).
fn run_conversation(
    s: Arc<Shared>,
    tree: Arc<Tree>,
    conv: usize,
    from: usize,
    lead: Lead,
) -> Pin<Box<dyn Future<Output = End> + Send>> {
    Box::pin(async move {
        let turns = s.plan.conversations[conv].turns.len();
        let mut end = End::Done;
        for k in from..turns {
            let turn = &s.plan.conversations[conv].turns[k];
            let gates = match (k == from, lead) {
                (true, Lead::Delay(x)) => {
                    s.delay(x).await;
                    Vec::new()
                }
                (true, Lead::Gate) => tree.pending_gates(&turn.joins),
                (false, _) => {
                    let g = tree.pending_gates(&turn.joins);
                    if g.is_empty() {
                        s.delay(turn.delay_s).await;
                    }
                    g
                }
            };
            if !gates.is_empty() {
                s.stat(|st| st.parents_suspended += 1);
                for mut rx in gates {
                    let _ = rx.wait_for(|left| *left == 0).await;
                }
                if s.past_deadline() {
                    s.stat(|st| st.joins_suppressed += 1);
                    return cut(k > from);
                }
                s.stat(|st| st.parents_resumed += 1);
            }
            if s.past_deadline() {
                return cut(k > from);
            }
            let credit = Credit {
                lane: tree.lane,
                play: tree.play,
                trace: tree.trace,
                conversation: conv,
                turn: k,
                issued: Instant::now(),
                marker: tree.marker.clone(),
                warmup: false,
            };
            let out = s.send(credit).await;
            let last = k + 1 == turns;
            if out == Outcome::Overflow && !last {
                return End::Overflow;
            }
            end = if out == Outcome::Ok {
                End::Done
            } else {
                End::Failed
            };
            for &b in &s.plan.conversations[conv].turns[k].spawns {
                spawn_branch(&s, &tree, b);
            }
        }
        end
    })
}

fn cut(sent_some: bool) -> End {
    if sent_some {
        End::Stopped
    } else {
        End::Cut
    }
}

fn spawn_branch(s: &Arc<Shared>, tree: &Arc<Tree>, b: usize) {
    let branch = &s.plan.branches[b];
    if let Ok(mut m) = tree.branches.lock() {
        m.insert(b, watch::channel(branch.children.len()).0);
    }
    for &child in &branch.children {
        let offset = branch.dispatch_offset_s(&s.plan.conversations[child]);
        s.stat(|st| {
            st.children_spawned += 1;
            st.children_delayed += u64::from(offset > 0.0);
        });
        start_child(s, tree, b, child, 0, Lead::Delay(offset));
    }
}

/// Runs a child of branch `b` from turn `from`; its end releases one place of
/// the branch's join.
fn start_child(s: &Arc<Shared>, tree: &Arc<Tree>, b: usize, child: usize, from: usize, lead: Lead) {
    let (s2, tree2) = (s.clone(), tree.clone());
    let task = tokio::spawn(async move {
        let running = s2.subagents.fetch_add(1, Ordering::SeqCst) + 1;
        s2.stat(|st| st.subagents_peak = st.subagents_peak.max(running));
        if let Some(l) = &s2.opts.live {
            l.subagents.inc();
        }
        let end = run_conversation(s2.clone(), tree2.clone(), child, from, lead).await;
        s2.subagents.fetch_sub(1, Ordering::SeqCst);
        if let Some(l) = &s2.opts.live {
            l.subagents.dec();
        }
        s2.stat(|st| match end {
            End::Done => st.children_completed += 1,
            End::Failed => st.children_errored += 1,
            End::Overflow | End::Stopped => st.children_truncated += 1,
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
