//! Flattened-agent chain detection: AIPerf 0.12.0's `weka_agent_chains.py`.
//! Captures record some agents' requests (workflow agents, headerless
//! subagents) as flat top-level requests interleaved with the main agent's.
//! Detection splits a trace's top-level requests back into per-agent chains by
//! the longest common prefix (LCP) of their hash ids.
//!
//! Phase 1 builds the chains greedily. A request extends the chain whose last
//! request is a complete prefix of its own: the deepest such chain, of the same
//! model, already ended. Any other request forks a new chain. Phase 2 splices a
//! join seam (the same agent after a context edit such as a compaction) back
//! onto a chain whose longer state no later request ever extends. The election
//! and tie-breaks are AIPerf's, so the same requests end up in the same chains.

use super::trace::Request;

const EPSILON: f64 = 1e-6;
/// AIPerf's `AIPERF_DATASET_WEKA_SEAM_*` defaults.
pub const SEAM_MAX_GAP_S: f64 = 3600.0;
pub const SEAM_MIN_OVERLAP: f64 = 0.5;

/// One top-level request: its index in the trace's entries, and itself.
pub type Indexed<'a> = (usize, &'a Request);

pub(super) fn end(r: &Request) -> f64 {
    let d = r.api_time.filter(|a| a.is_finite()).unwrap_or(0.0);
    r.t + d.max(0.0)
}

pub(super) fn lcp(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where a chain split off another.
#[derive(Clone, Debug, PartialEq)]
pub struct Fork {
    pub parent: Option<usize>,
    pub fork_outer: Option<usize>,
    pub depth: usize,
    pub time: f64,
}

#[derive(Clone, Debug)]
pub struct Chain<'a> {
    pub requests: Vec<Indexed<'a>>,
    pub fork: Option<Fork>,
    pub spliced_into: Option<usize>,
    tail_outer: Option<usize>,
    tail: &'a [i64],
    tail_end: f64,
    tail_model: &'a str,
}

impl<'a> Chain<'a> {
    fn new(fork: Option<Fork>) -> Self {
        Chain {
            requests: Vec::new(),
            fork,
            spliced_into: None,
            tail_outer: None,
            tail: &[],
            tail_end: 0.0,
            tail_model: "",
        }
    }
}

/// The chains of a trace: the main one and the live workers, first request first.
#[derive(Debug)]
pub struct Detection<'a> {
    pub chains: Vec<Chain<'a>>,
    pub main: usize,
    pub workers: Vec<usize>,
}

struct Phase1<'a> {
    chains: Vec<Chain<'a>>,
    chain_of: std::collections::HashMap<usize, usize>,
    forks_by_tail: std::collections::BTreeMap<usize, Vec<usize>>,
    req_by_outer: std::collections::HashMap<usize, &'a Request>,
}

impl<'a> Phase1<'a> {
    fn append(&mut self, c: usize, outer: usize, r: &'a Request) {
        let ch = &mut self.chains[c];
        ch.requests.push((outer, r));
        self.chain_of.insert(outer, c);
        if !r.hash_ids.is_empty() {
            ch.tail_outer = Some(outer);
            ch.tail = &r.hash_ids;
            ch.tail_end = end(r);
            ch.tail_model = &r.model;
        }
    }

    fn classify(&mut self, outer: usize, r: &'a Request) {
        self.req_by_outer.insert(outer, r);
        if r.hash_ids.is_empty() {
            // No LCP evidence: kept on the main chain, invisible to tails.
            if self.chains.is_empty() {
                self.chains.push(Chain::new(None));
            }
            self.chains[0].requests.push((outer, r));
            self.chain_of.insert(outer, 0);
            return;
        }
        if self.chains.is_empty() {
            self.chains.push(Chain::new(None));
            self.append(0, outer, r);
            return;
        }
        if let Some(target) = self.extension_target(r) {
            self.append(target, outer, r);
            return;
        }
        let (parent, depth) = self.max_lcp_chain(&r.hash_ids);
        if parent.is_none() && self.chains.iter().all(|c| c.tail.is_empty()) {
            self.append(0, outer, r);
            return;
        }
        let fork_outer = parent.and_then(|p| self.chains[p].tail_outer);
        let idx = self.chains.len();
        self.chains.push(Chain::new(Some(Fork {
            parent,
            fork_outer,
            depth,
            time: r.t,
        })));
        self.append(idx, outer, r);
        if let (Some(fo), true) = (fork_outer, depth > 0) {
            self.forks_by_tail.entry(fo).or_default().push(idx);
        }
    }

    /// The deepest same-model chain, ended by `r.t`, whose tail is a prefix of
    /// `r` (ties: the lowest index).
    fn extension_target(&self, r: &Request) -> Option<usize> {
        let h = &r.hash_ids;
        let mut best: Option<(usize, usize)> = None;
        for (i, c) in self.chains.iter().enumerate() {
            let tl = c.tail.len();
            if tl == 0 || tl > h.len() || best.is_some_and(|(_, b)| tl <= b) {
                continue;
            }
            if c.tail_model != r.model || c.tail_end > r.t + EPSILON {
                continue;
            }
            if h[..tl] == *c.tail {
                best = Some((i, tl));
            }
        }
        best.map(|b| b.0)
    }

    /// The chain tail with the deepest LCP (ties: deeper tail, lower index).
    fn max_lcp_chain(&self, h: &[i64]) -> (Option<usize>, usize) {
        let mut best = (None, (0usize, 0usize));
        for (i, c) in self.chains.iter().enumerate() {
            if c.tail.is_empty() {
                continue;
            }
            let d = lcp(c.tail, h);
            if d == 0 {
                continue;
            }
            let key = (d, c.tail.len());
            if key > best.1 {
                best = (Some(i), key);
            }
        }
        (best.0, best.1 .0)
    }
}

/// Splits a trace's top-level requests into agent chains.
pub fn detect<'a>(normals: &[Indexed<'a>]) -> Detection<'a> {
    let mut ordered = normals.to_vec();
    ordered.sort_by(|a, b| a.1.t.total_cmp(&b.1.t).then(a.0.cmp(&b.0)));
    let mut p = Phase1 {
        chains: Vec::new(),
        chain_of: Default::default(),
        forks_by_tail: Default::default(),
        req_by_outer: Default::default(),
    };
    for (outer, r) in &ordered {
        p.classify(*outer, r);
    }
    if ordered.is_empty() {
        return Detection {
            chains: Vec::new(),
            main: 0,
            workers: Vec::new(),
        };
    }
    resolve_seams(&mut p);
    let resolve = |chains: &[Chain], mut i: usize| {
        while let Some(j) = chains[i].spliced_into {
            i = j;
        }
        i
    };
    for i in 0..p.chains.len() {
        if p.chains[i].spliced_into.is_none() {
            if let Some(parent) = p.chains[i].fork.as_ref().and_then(|f| f.parent) {
                let r = resolve(&p.chains, parent);
                if let Some(f) = p.chains[i].fork.as_mut() {
                    f.parent = Some(r);
                }
            }
        }
    }
    let main = resolve(&p.chains, p.chain_of[&ordered[0].0]);
    let mut workers: Vec<usize> = (0..p.chains.len())
        .filter(|&i| p.chains[i].spliced_into.is_none() && i != main)
        .collect();
    workers.sort_by(|&a, &b| {
        let (x, y) = (p.chains[a].requests[0], p.chains[b].requests[0]);
        x.1.t.total_cmp(&y.1.t).then(x.0.cmp(&y.0))
    });
    Detection {
        chains: p.chains,
        main,
        workers,
    }
}

fn last_hash_outer(c: &Chain) -> Option<usize> {
    c.requests
        .iter()
        .rev()
        .find(|(_, r)| !r.hash_ids.is_empty())
        .map(|(o, _)| *o)
}

/// Phase 2: for each fork source in order, if it is still its chain's last
/// hash-bearing request, splice the elected continuation onto it.
fn resolve_seams(p: &mut Phase1) {
    let resolve = |chains: &[Chain], mut i: usize| {
        while let Some(j) = chains[i].spliced_into {
            i = j;
        }
        i
    };
    let mut keys: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = p
        .forks_by_tail
        .keys()
        .map(|k| std::cmp::Reverse(*k))
        .collect();
    let mut processed = std::collections::HashSet::new();
    while let Some(std::cmp::Reverse(fo)) = keys.pop() {
        if !processed.insert(fo) {
            continue;
        }
        let owner = resolve(&p.chains, p.chain_of[&fo]);
        if last_hash_outer(&p.chains[owner]) != Some(fo) {
            continue;
        }
        let registered: Vec<usize> = p.forks_by_tail[&fo]
            .iter()
            .copied()
            .filter(|&c| p.chains[c].spliced_into.is_none())
            .collect();
        let Some(elected) = elect(&p.chains, &registered, p.req_by_outer[&fo]) else {
            continue;
        };
        let moved = std::mem::take(&mut p.chains[elected].requests);
        for (o, _) in &moved {
            p.chain_of.insert(*o, owner);
        }
        p.chains[owner].requests.extend(moved);
        p.chains[elected].spliced_into = Some(owner);
        let Some(new_tail) = last_hash_outer(&p.chains[owner]) else {
            continue;
        };
        // Re-key the other forks of the consumed tail against the new tail.
        let tail_hash = &p.req_by_outer[&new_tail].hash_ids;
        let mut rekeyed = false;
        for &c in &registered {
            if c == elected || p.chains[c].spliced_into.is_some() {
                continue;
            }
            let Some(first) = p.chains[c].requests.first().map(|r| r.1) else {
                continue;
            };
            let d = lcp(tail_hash, &first.hash_ids);
            if d == 0 {
                continue;
            }
            if let Some(f) = p.chains[c].fork.as_mut() {
                f.fork_outer = Some(new_tail);
                f.depth = d;
                f.parent = Some(owner);
                p.forks_by_tail.entry(new_tail).or_default().push(c);
                rekeyed = true;
            }
        }
        if rekeyed {
            processed.remove(&new_tail);
            keys.push(std::cmp::Reverse(new_tail));
        }
    }
}

/// The seam continuation among the forks of a dead tail `t`: positive depth,
/// starting after `t` ended, same model, not a distant low-overlap session;
/// deepest first, then the earliest fork, then the lowest index.
fn elect(chains: &[Chain], registered: &[usize], t: &Request) -> Option<usize> {
    let t_end = end(t);
    let tail_blocks = t.hash_ids.len();
    registered
        .iter()
        .copied()
        .filter(|&c| {
            let ch = &chains[c];
            let Some(f) = &ch.fork else { return false };
            let first = ch.requests[0].1;
            let blocked = tail_blocks > 0
                && first.t - t_end > SEAM_MAX_GAP_S
                && (f.depth as f64 / tail_blocks as f64) < SEAM_MIN_OVERLAP;
            f.depth > 0 && t_end <= first.t + EPSILON && first.model == t.model && !blocked
        })
        .max_by(|&a, &b| {
            let (fa, fb) = (&chains[a].fork, &chains[b].fork);
            let key = |f: &Option<Fork>| f.as_ref().map_or((0, 0.0), |f| (f.depth, f.time));
            let (ka, kb) = (key(fa), key(fb));
            ka.0.cmp(&kb.0).then(kb.1.total_cmp(&ka.1)).then(b.cmp(&a))
        })
}
