//! From Weka traces to what the replay sends: a root conversation per trace, a
//! child conversation per subagent (`<trace>::sa:<agent_id>`) and per flattened
//! agent found among the top-level requests (`::fa:`, `::aux:`, `::wg:`; see
//! `chains`), the SPAWN branch on the last root turn before the marker (or the
//! chain's first request), the join gate on the first later root turn whose start
//! is at or after the child's end (children sharing both form one branch; without
//! a join turn the branch runs in the background), the end-to-start delays
//! between turns, and each turn's theoretical prefix-cache blocks. This follows
//! AIPerf 0.12.0's `WekaTraceLoader` (`_build_reconstruction_plans`,
//! `_reconstruct_serial`, `weka_metric_prepass.py`); a subagent's own requests
//! are split into chains the same way (`_expand_subagent_to_child_plans`).

use super::chain_split::{FirstHash, Split, Worker};
use super::trace::{Entry, Request, Trace};

/// One request of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// Recorded start, seconds on the trace's timeline.
    pub t: f64,
    pub input: u64,
    /// The recorded output (the next turn's synthesized assistant size).
    pub output: u64,
    /// `max(out, 1)`.
    pub max_tokens: u64,
    pub hash_ids: Vec<i64>,
    /// Idle time after the previous turn completes: `max(0, t_k − (t_{k−1} +
    /// api_time_{k−1}))`, or the recorded think time with `think_time_only`; 0 for
    /// turn 0.
    pub delay_s: f64,
    /// Branches started when this turn completes.
    pub spawns: Vec<usize>,
    /// Branches that must complete before this turn is sent.
    pub joins: Vec<usize>,
    /// The theoretical prefix-cache blocks: (hit, total).
    pub prefix_blocks: (u64, u64),
}

/// A conversation: the trace's root or one subagent.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    /// `<trace id>` or `<trace id>::sa:<agent_id>`.
    pub id: String,
    pub trace: usize,
    /// 0 for a root, 1 for a subagent.
    pub depth: u32,
    pub tool_tokens: u64,
    pub system_tokens: u64,
    pub block_size: u64,
    pub turns: Vec<Turn>,
}

/// Children started together by one parent turn.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    pub parent: usize,
    pub children: Vec<usize>,
    /// No later parent turn waits for it.
    pub background: bool,
    /// Spawn time (the earliest marker of the branch), seconds.
    pub start_s: f64,
}

impl Branch {
    /// How long after the spawn a child's first turn is sent: its recorded offset
    /// from the branch start, never negative (AIPerf `_child_dispatch_offset_ms`).
    pub fn dispatch_offset_s(&self, child: &Conversation) -> f64 {
        child
            .turns
            .first()
            .map_or(0.0, |t| (t.t - self.start_s).max(0.0))
    }
}

/// Every conversation of a set, roots first in trace order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub conversations: Vec<Conversation>,
    pub branches: Vec<Branch>,
    /// The root conversation of each trace, in file order.
    pub roots: Vec<usize>,
    /// Subagent markers with no parent turn before them (dropped, as AIPerf does).
    pub dropped_subagents: Vec<(String, String)>,
}

/// AIPerf's tolerance for a join at exactly the subagent's end.
const JOIN_EPSILON: f64 = 1e-6;

fn turns(requests: &[&Request], think_time_only: bool) -> Vec<Turn> {
    let mut out: Vec<Turn> = Vec::with_capacity(requests.len());
    for (k, r) in requests.iter().enumerate() {
        let delay_s = match k {
            0 => 0.0,
            _ if think_time_only => r.think_time.unwrap_or(0.0),
            _ => {
                let prev = requests[k - 1];
                (r.t - (prev.t + prev.api_time.unwrap_or(0.0))).max(0.0)
            }
        };
        out.push(Turn {
            t: r.t,
            input: r.input,
            output: r.output,
            max_tokens: r.output.max(1),
            hash_ids: r.hash_ids.clone(),
            delay_s,
            spawns: Vec::new(),
            joins: Vec::new(),
            prefix_blocks: (0, r.hash_ids.len() as u64),
        });
    }
    out
}

/// Builds the plan of a set.
pub fn build(traces: &[Trace], think_time_only: bool) -> Plan {
    let mut plan = Plan::default();
    for (ti, trace) in traces.iter().enumerate() {
        add_trace(&mut plan, ti, trace, think_time_only);
    }
    plan
}

fn add_trace(plan: &mut Plan, ti: usize, trace: &Trace, think_time_only: bool) {
    // Top-level requests with their index in `entries`.
    let normals: Vec<(usize, &Request)> = trace
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Entry::Request(r) => Some((i, r)),
            Entry::Subagent(_) => None,
        })
        .collect();
    let split = split_flat_chains(trace, &normals);
    let parents = split.main;
    let root = plan.conversations.len();
    plan.roots.push(root);
    plan.conversations.push(Conversation {
        id: trace.id.clone(),
        trace: ti,
        depth: 0,
        tool_tokens: trace.tool_tokens,
        system_tokens: trace.system_tokens,
        block_size: trace.block_size,
        turns: turns(
            &parents.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            think_time_only,
        ),
    });
    let mut order: Vec<Ordered> = parents
        .iter()
        .enumerate()
        .map(|(k, (i, r))| ((r.t, *i, 0, 0), root, k))
        .collect();
    // Branches keyed by (spawn turn, join turn), in first-seen order.
    let mut groups: Vec<((usize, Option<usize>), usize)> = Vec::new();
    for (i, e) in trace.entries.iter().enumerate() {
        let Entry::Subagent(sa) = e else { continue };
        let Some(spawn) = parents.iter().rposition(|(pi, _)| *pi < i) else {
            plan.dropped_subagents
                .push((trace.id.clone(), sa.agent_id.clone()));
            continue;
        };
        let join = join_turn(&parents, i, sa.end());
        // The subagent's own chains: its main one, then any it flattened.
        for (ci, sc) in super::chain_split::split_subagent(sa, trace.block_size)
            .into_iter()
            .enumerate()
        {
            let child = plan.conversations.len();
            for (k, (_, r)) in sc.requests.iter().enumerate() {
                order.push(((r.t, i, ci, k), child, k));
            }
            let id = format!("{}::sa:{}{}", trace.id, sa.agent_id, sc.suffix);
            push_child(plan, id, ti, trace.block_size, &sc, think_time_only);
            add_to_branch(plan, &mut groups, root, (spawn, join), child, sa.t);
        }
    }
    // Detected flat chains: spawned by the main turn before their first request,
    // joined by the first later main turn at or after their end; grouped apart
    // from the subagents' branches.
    let mut flat_groups: Vec<((usize, Option<usize>), usize)> = Vec::new();
    for w in split.workers {
        let first = w.requests[0].0;
        let spawn = parents.iter().rposition(|(pi, _)| *pi < first).unwrap_or(0);
        let end = w
            .requests
            .iter()
            .map(|(_, r)| super::chains::end(r))
            .fold(f64::MIN, f64::max);
        let join = join_turn(&parents, first, end);
        let child = plan.conversations.len();
        for (k, (o, r)) in w.requests.iter().enumerate() {
            order.push(((r.t, *o, 0, 0), child, k));
        }
        let id = format!("{}::{}", trace.id, w.suffix);
        push_child(plan, id, ti, trace.block_size, &w, think_time_only);
        let start = w.requests[0].1.t;
        add_to_branch(plan, &mut flat_groups, root, (spawn, join), child, start);
    }
    prefix_blocks(plan, order);
}

/// (metric order key, conversation, turn) for the shared seen-set: AIPerf's
/// (t, outer index, chain, k).
type Ordered = ((f64, usize, usize, usize), usize, usize);

/// The theoretical prefix cache: one seen-set per trace, in time order.
fn prefix_blocks(plan: &mut Plan, mut order: Vec<Ordered>) {
    order.sort_by(|a, b| {
        a.0 .0
            .total_cmp(&b.0 .0)
            .then(a.0 .1.cmp(&b.0 .1))
            .then(a.0 .2.cmp(&b.0 .2))
            .then(a.0 .3.cmp(&b.0 .3))
    });
    let mut seen = std::collections::HashSet::new();
    for (_, c, k) in order {
        let turn = &mut plan.conversations[c].turns[k];
        let hit = turn
            .hash_ids
            .iter()
            .take_while(|h| seen.contains(*h))
            .count();
        turn.prefix_blocks = (hit as u64, turn.hash_ids.len() as u64);
        seen.extend(turn.hash_ids.iter().copied());
    }
}

/// The first root turn after entry `after` (by position in the trace) that
/// starts at or after `end` (AIPerf scans the root turns in file order).
fn join_turn(parents: &[(usize, &Request)], after: usize, end: f64) -> Option<usize> {
    let mut by_outer: Vec<(usize, usize)> = parents
        .iter()
        .enumerate()
        .map(|(k, (o, _))| (*o, k))
        .collect();
    by_outer.sort_unstable();
    by_outer
        .into_iter()
        .find(|(o, k)| *o > after && parents[*k].1.t + JOIN_EPSILON >= end)
        .map(|(_, k)| k)
}

/// A subagent or flattened-agent chain as a child conversation (depth 1).
fn push_child(plan: &mut Plan, id: String, ti: usize, bs: u64, w: &Worker, think_time_only: bool) {
    let reqs: Vec<&Request> = w.requests.iter().map(|(_, r)| *r).collect();
    plan.conversations.push(Conversation {
        id,
        trace: ti,
        depth: 1,
        tool_tokens: w.init.0,
        system_tokens: w.init.1,
        block_size: bs,
        turns: turns(&reqs, think_time_only),
    });
}

/// Adds `child` to the branch of `root` keyed (spawn turn, join turn), creating
/// it (and its SPAWN and join) on first use.
fn add_to_branch(
    plan: &mut Plan,
    groups: &mut Vec<((usize, Option<usize>), usize)>,
    root: usize,
    key: (usize, Option<usize>),
    child: usize,
    start: f64,
) {
    match groups.iter().find(|(k, _)| *k == key) {
        Some((_, b)) => {
            let b = &mut plan.branches[*b];
            b.children.push(child);
            b.start_s = b.start_s.min(start);
        }
        None => {
            let b = plan.branches.len();
            plan.branches.push(Branch {
                parent: root,
                children: vec![child],
                background: key.1.is_none(),
                start_s: start,
            });
            groups.push((key, b));
            plan.conversations[root].turns[key.0].spawns.push(b);
            if let Some(j) = key.1 {
                plan.conversations[root].turns[j].joins.push(b);
            }
        }
    }
}

/// The top-level split: the main chain and the flattened agents (none found:
/// every request on the root, in file order).
fn split_flat_chains<'a>(trace: &Trace, normals: &[(usize, &'a Request)]) -> Split<'a> {
    let declared = (trace.tool_tokens, trace.system_tokens);
    match super::chain_split::split(normals, declared, trace.block_size, FirstHash::FirstRequest) {
        Some(sp) if !sp.workers.is_empty() => sp,
        _ => Split {
            main: normals.to_vec(),
            workers: Vec::new(),
        },
    }
}

/// The theoretical prefix cache hit (%) over the given completed turns, AIPerf's
/// `theoretical_prefix_cache_hit`: 100 · Σhit / Σtotal, turns without blocks
/// skipped. None when no turn has blocks.
pub fn theoretical_hit<'a>(turns: impl IntoIterator<Item = &'a Turn>) -> Option<(f64, u64, u64)> {
    let (hit, total) =
        turns
            .into_iter()
            .filter(|t| t.prefix_blocks.1 > 0)
            .fold((0u64, 0u64), |(h, n), t| {
                (
                    h + t.prefix_blocks.0.min(t.prefix_blocks.1),
                    n + t.prefix_blocks.1,
                )
            });
    (total > 0).then(|| (100.0 * hit as f64 / total as f64, hit, total))
}
