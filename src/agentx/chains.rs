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
/// AIPerf's `AIPERF_DATASET_WEKA_*` defaults.
pub const SEAM_MAX_GAP_S: f64 = 3600.0;
pub const SEAM_MIN_OVERLAP: f64 = 0.5;
pub const AUX_MAX_REQUESTS: usize = 1;
pub const AUX_ISL_RATIO: f64 = 0.10;
pub const AUX_ISL_FLOOR: u64 = 16384;
pub const REDUCTION_OSL_MAX: u64 = 4000;
pub const REDUCTION_RATIO: f64 = 20.0;
pub const WORKER_GROUP_MIN: usize = 3;
/// A leading request with at most this many output tokens may be a title call.
const TITLE_GEN_MAX_OUTPUT: u64 = 64;

/// A worker's interval for fan-out grouping: (start, end, first index, chain).
type Interval = (f64, f64, usize, usize);

/// One top-level request: its index in the trace's entries, and itself.
pub type Indexed<'a> = (usize, &'a Request);

fn end(r: &Request) -> f64 {
    let d = r.api_time.filter(|a| a.is_finite()).unwrap_or(0.0);
    r.t + d.max(0.0)
}

fn lcp(a: &[i64], b: &[i64]) -> usize {
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

/// A leading title-generation or one-shot request set aside before detection
/// (AIPerf `_split_off_preamble`): the earliest request, when it shares no
/// prefix with any other and is small or fully block-disjoint.
pub fn split_preamble<'a>(normals: &[Indexed<'a>]) -> (Vec<Indexed<'a>>, Vec<Indexed<'a>>) {
    if normals.len() < 2 {
        return (Vec::new(), normals.to_vec());
    }
    let mut ordered = normals.to_vec();
    ordered.sort_by(|a, b| a.1.t.total_cmp(&b.1.t).then(a.0.cmp(&b.0)));
    let first = ordered[0];
    if first.1.hash_ids.is_empty() {
        return (Vec::new(), normals.to_vec());
    }
    let rest = &ordered[1..];
    if rest
        .iter()
        .any(|(_, o)| !o.hash_ids.is_empty() && lcp(&first.1.hash_ids, &o.hash_ids) > 0)
    {
        return (Vec::new(), normals.to_vec());
    }
    if first.1.output > TITLE_GEN_MAX_OUTPUT {
        let others: std::collections::HashSet<i64> = rest
            .iter()
            .flat_map(|(_, o)| o.hash_ids.iter().copied())
            .collect();
        if first.1.hash_ids.iter().any(|h| others.contains(h)) {
            return (Vec::new(), normals.to_vec());
        }
    }
    let mut rest = rest.to_vec();
    rest.sort_by_key(|r| r.0);
    (vec![first], rest)
}

/// A short chain on another model, or from a small fresh context: a sidecar.
pub fn is_aux(reqs: &[&Request], main_peak_isl: u64, main_model: Option<&str>) -> bool {
    let Some(first) = reqs.first() else {
        return false;
    };
    if reqs.len() > AUX_MAX_REQUESTS {
        return false;
    }
    if main_model.is_some_and(|m| m != first.model) {
        return true;
    }
    let threshold = AUX_ISL_FLOOR.max((AUX_ISL_RATIO * main_peak_isl as f64) as u64);
    first.input < threshold
}

/// A single large-input, short-output request: a reduction sidecar.
pub fn is_reduction(reqs: &[&Request]) -> bool {
    let [r] = reqs else { return false };
    r.output > 0
        && r.output < REDUCTION_OSL_MAX
        && r.input >= AUX_ISL_FLOOR
        && r.input as f64 > REDUCTION_RATIO * r.output as f64
}

/// Parallel fan-out members: workers forked at the same parent request with
/// overlapping intervals, in groups of at least `WORKER_GROUP_MIN`, numbered by
/// start; `{chain: (group, member)}`.
pub fn worker_groups(d: &Detection) -> std::collections::HashMap<usize, (usize, usize)> {
    // (t0, t1, first outer, chain) per fork point.
    let mut buckets: std::collections::BTreeMap<(usize, usize), Vec<Interval>> = Default::default();
    for &ci in &d.workers {
        let c = &d.chains[ci];
        let Some(f) = &c.fork else { continue };
        let (Some(parent), Some(fo)) = (f.parent, f.fork_outer) else {
            continue;
        };
        if f.depth == 0 || c.requests.is_empty() {
            continue;
        }
        let t0 = c.requests[0].1.t;
        let t1 = c.requests.iter().map(|r| end(r.1)).fold(f64::MIN, f64::max);
        buckets
            .entry((parent, fo))
            .or_default()
            .push((t0, t1, c.requests[0].0, ci));
    }
    let mut groups: Vec<Vec<Interval>> = Vec::new();
    for cands in buckets.into_values() {
        groups.extend(overlap_components(cands));
    }
    groups.retain(|g| g.len() >= WORKER_GROUP_MIN);
    let first = |g: &Vec<Interval>| {
        g.iter()
            .map(|c| (c.0, c.2))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
    };
    groups.sort_by(|a, b| {
        let (x, y) = (first(a), first(b));
        match (x, y) {
            (Some(x), Some(y)) => x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)),
            _ => std::cmp::Ordering::Equal,
        }
    });
    let mut out = std::collections::HashMap::new();
    for (g, mut comp) in groups.into_iter().enumerate() {
        comp.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
        for (m, c) in comp.iter().enumerate() {
            out.insert(c.3, (g, m));
        }
    }
    out
}

/// Connected components of overlapping `[t0, t1)` intervals (touching ones do
/// not overlap), each in input order.
fn overlap_components(cands: Vec<(f64, f64, usize, usize)>) -> Vec<Vec<(f64, f64, usize, usize)>> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| {
        cands[a]
            .0
            .total_cmp(&cands[b].0)
            .then(cands[a].2.cmp(&cands[b].2))
    });
    let mut parent: Vec<usize> = (0..cands.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    // Active intervals: (end, index), the earliest end first.
    let mut active: Vec<(f64, usize)> = Vec::new();
    for i in order {
        let t0 = cands[i].0;
        active.retain(|(e, _)| *e > t0);
        active.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if let Some(&(_, j)) = active.first() {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            parent[a] = b;
        }
        active.push((cands[i].1, i));
    }
    let mut comps: Vec<(usize, Vec<Interval>)> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let r = find(&mut parent, i);
        match comps.iter_mut().find(|(k, _)| *k == r) {
            Some((_, v)) => v.push(*c),
            None => comps.push((r, vec![*c])),
        }
    }
    comps.into_iter().map(|(_, v)| v).collect()
}

/// The session-id suffix of a worker chain (`aux:NNN`, `wg:GGG_MMM`, `fa:NNN`).
pub fn suffix(n: usize, aux: bool, wg: Option<(usize, usize)>) -> String {
    match (aux, wg) {
        (true, _) => format!("aux:{n:03}"),
        (false, Some((g, m))) => format!("wg:{g:03}_{m:03}"),
        _ => format!("fa:{n:03}"),
    }
}

/// A worker's turn-0 (tool, system) tokens: the trace's declared ones only when
/// its first request starts with the same declared-prefix blocks as the main
/// chain's, else none (AIPerf `_chain_init_tokens`).
pub fn init_tokens(tool: u64, system: u64, bs: u64, base: &[i64], chain: &[i64]) -> (u64, u64) {
    let blocks = (tool + system).div_ceil(bs.max(1)) as usize;
    let covered = blocks > 0
        && chain.len() >= blocks
        && base.len() >= blocks
        && chain[..blocks] == base[..blocks];
    if covered {
        (tool, system)
    } else {
        (0, 0)
    }
}

/// One conversation of a subagent: its id suffix after `::sa:<agent_id>` (empty
/// for the subagent's main chain), its requests (inner index, request) in time
/// order, and its turn-0 (tool, system) tokens.
pub struct SubChain<'a> {
    pub suffix: String,
    pub requests: Vec<Indexed<'a>>,
    pub init: (u64, u64),
}

/// AIPerf's `_expand_subagent_to_child_plans`: the same detection run on a
/// subagent's own requests. The chain with its first request keeps the
/// subagent's id; every other chain is a sibling child (`:fa:NNN`, `:aux:NNN`,
/// `:wg:GGG_MMM`) in the same branch.
pub fn split_subagent<'a>(sa: &'a super::trace::Subagent, bs: u64) -> Vec<SubChain<'a>> {
    let inner: Vec<Indexed<'a>> = sa.requests.iter().enumerate().collect();
    let by_time = |v: &mut Vec<Indexed<'a>>| {
        v.sort_by(|a, b| a.1.t.total_cmp(&b.1.t).then(a.0.cmp(&b.0)));
    };
    let (preamble, rest) = split_preamble(&inner);
    if rest.is_empty() {
        let mut all = inner;
        by_time(&mut all);
        return vec![SubChain {
            suffix: String::new(),
            requests: all,
            init: (sa.tool_tokens, sa.system_tokens),
        }];
    }
    let d = detect(&rest);
    // The yardstick is the detected main chain, without the preamble.
    let main = &d.chains[d.main];
    let main_first: &[i64] = main
        .requests
        .iter()
        .find(|(_, r)| !r.hash_ids.is_empty())
        .map_or(&[], |(_, r)| &r.hash_ids);
    let main_peak = main
        .requests
        .iter()
        .map(|(_, r)| r.input)
        .max()
        .unwrap_or(0);
    let main_model = main.requests.first().map(|(_, r)| r.model.as_str());
    let mut main_reqs = main.requests.clone();
    if !preamble.is_empty() {
        main_reqs.extend(preamble);
        by_time(&mut main_reqs);
    }
    let mut out = vec![SubChain {
        suffix: String::new(),
        requests: main_reqs,
        init: (sa.tool_tokens, sa.system_tokens),
    }];
    let groups = worker_groups(&d);
    for (n, &ci) in d.workers.iter().enumerate() {
        let c = &d.chains[ci];
        let reqs: Vec<&Request> = c.requests.iter().map(|(_, r)| *r).collect();
        let aux = is_aux(&reqs, main_peak, main_model);
        let reduction = !aux && is_reduction(&reqs);
        let wg = (!aux && !reduction)
            .then(|| groups.get(&ci).copied())
            .flatten();
        let first: &[i64] = reqs
            .iter()
            .find(|r| !r.hash_ids.is_empty())
            .map_or(&[], |r| &r.hash_ids);
        out.push(SubChain {
            suffix: format!(":{}", suffix(n, aux || reduction, wg)),
            requests: c.requests.clone(),
            init: init_tokens(sa.tool_tokens, sa.system_tokens, bs, main_first, first),
        });
    }
    out
}
