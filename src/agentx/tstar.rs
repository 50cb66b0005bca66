//! Where a lane's first tree starts: AIPerf 0.12.0's t* sampling
//! (`timing/trajectory_source.py`). t* is drawn uniformly between the ratios of
//! the tree's span of turn timestamps, with numpy's generator seeded from
//! `sha256("<seed>:<trace id>:<lane>")`; every stream of the tree (root and
//! subagents) splits there: turns before t* are history, the first turn at or
//! after t* is where the replay resumes, at its recorded offset from t*. A stream
//! that had sent a request before t* is warmed by re-sending its last one.

use super::numpy_rng::Generator;
use super::plan::Plan;

/// The t* range and seed (`--trajectory-start-{min,max}-ratio`, the run's seed).
#[derive(Clone, Debug, PartialEq)]
pub struct Start {
    pub min_ratio: f64,
    pub max_ratio: f64,
    pub seed: u64,
}

/// One stream of a tree at t*.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub conversation: usize,
    /// The first turn at or after t*.
    pub next: usize,
    /// Its recorded offset from t*, seconds (never negative).
    pub offset_s: f64,
    /// The root waits at `next` for the children alive at t* (a join turn).
    pub waiting: bool,
    /// The branch a child belongs to (None for the root).
    pub branch: Option<usize>,
    /// The request to warm: (turn, ms it was sent before t*).
    pub warm: Option<(usize, f64)>,
}

/// A tree's live streams at t*.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub t_star_ms: f64,
    pub streams: Vec<Stream>,
}

/// AIPerf's `_seed_for_trace_lane`: the first 8 bytes (big-endian) of
/// `sha256("<seed>:<trace id>:<lane>")`.
pub fn lane_seed(seed: u64, trace_id: &str, lane: usize) -> u64 {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{seed}:{trace_id}:{lane}").as_bytes(),
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// The conversations of trace `trace`'s tree: its root and the root's children.
fn tree(plan: &Plan, trace: usize) -> Vec<usize> {
    let root = plan.roots[trace];
    let mut out = vec![root];
    for b in plan.branches.iter().filter(|b| b.parent == root) {
        out.extend(&b.children);
    }
    out
}

fn ms(t: f64) -> f64 {
    t * 1000.0
}

/// t* (ms on the trace's timeline) for `lane`'s first play of `trace`.
pub fn sample(plan: &Plan, trace: usize, lane: usize, start: &Start) -> f64 {
    let (mut lo_t, mut hi_t) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in tree(plan, trace) {
        for t in &plan.conversations[c].turns {
            lo_t = lo_t.min(ms(t.t));
            hi_t = hi_t.max(ms(t.t));
        }
    }
    if !lo_t.is_finite() {
        return 0.0;
    }
    let span = hi_t - lo_t;
    let lo = lo_t + start.min_ratio * span;
    let hi = (lo_t + start.max_ratio * span).max(lo);
    if hi == lo {
        return lo;
    }
    let id = &plan.conversations[plan.roots[trace]].id;
    Generator::new(lane_seed(start.seed, id, lane)).uniform(lo, hi)
}

fn next_at_or_after(plan: &Plan, conv: usize, t_star: f64) -> Option<usize> {
    plan.conversations[conv]
        .turns
        .iter()
        .position(|t| ms(t.t) >= t_star)
}

/// A fresh play: the root from turn 0, children spawned as it goes.
pub fn from_start(plan: &Plan, trace: usize) -> Snapshot {
    Snapshot {
        t_star_ms: f64::NEG_INFINITY,
        streams: vec![Stream {
            conversation: plan.roots[trace],
            next: 0,
            offset_s: 0.0,
            waiting: false,
            branch: None,
            warm: None,
        }],
    }
}

/// The tree's streams at t* (AIPerf's `_snapshot_for`); None when nothing of it
/// is left to send, or only a gated root.
pub fn snapshot(plan: &Plan, trace: usize, t_star: f64) -> Option<Snapshot> {
    let root = plan.roots[trace];
    let turns = &plan.conversations[root].turns;
    let root_next = next_at_or_after(plan, root, t_star);
    let stream = |conversation: usize, next: usize, branch: Option<usize>| {
        let turns = &plan.conversations[conversation].turns;
        Stream {
            conversation,
            next,
            offset_s: ((ms(turns[next].t) - t_star) / 1000.0).max(0.0),
            waiting: false,
            branch,
            warm: next.checked_sub(1).map(|w| (w, t_star - ms(turns[w].t))),
        }
    };
    let mut streams = Vec::new();
    let mut join_targets = Vec::new();
    for (b, branch) in plan.branches.iter().enumerate() {
        if branch.parent != root {
            continue;
        }
        let spawn = turns.iter().position(|t| t.spawns.contains(&b));
        let join = turns.iter().position(|t| t.joins.contains(&b));
        if t_star < ms(branch.start_s) {
            // Spawned after t*: the parent starts it live, unless its spawning
            // turn was already answered before t*.
            let not_spawned = match spawn {
                None => true,
                Some(k) => t_star < ms(turns[k].t) || root_next.is_some_and(|n| n <= k),
            };
            if not_spawned {
                continue;
            }
        }
        let before = streams.len();
        for &child in &branch.children {
            if let Some(next) = next_at_or_after(plan, child, t_star) {
                streams.push(stream(child, next, Some(b)));
            }
        }
        if streams.len() > before {
            if let Some(j) = join.filter(|_| !branch.background) {
                join_targets.push(j);
            }
        }
    }
    if let Some(next) = root_next {
        let mut s = stream(root, next, None);
        s.waiting = join_targets.contains(&next);
        streams.insert(0, s);
    }
    if streams.iter().all(|s| s.waiting) {
        return None;
    }
    Some(Snapshot {
        t_star_ms: t_star,
        streams,
    })
}
