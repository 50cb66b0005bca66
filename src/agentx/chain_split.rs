//! Classifying the detected chains as AIPerf 0.12.0 does (`weka_trace.py`,
//! `weka_agent_chains.py`): a leading title-generation preamble set aside, each
//! worker chain a sidecar (`aux`), a member of a parallel fan-out (`wg`) or an
//! agent (`fa`), and the turn-0 prefix a worker inherits.

use super::chains::{detect, end, lcp, Detection, Indexed};
use super::trace::Request;

/// AIPerf's `AIPERF_DATASET_WEKA_*` defaults.
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
fn overlap_components(cands: Vec<Interval>) -> Vec<Vec<Interval>> {
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

/// A detected worker chain: its session-id suffix (`fa:NNN`, `aux:NNN`,
/// `wg:GGG_MMM`), its requests and its turn-0 (tool, system) tokens.
pub struct Worker<'a> {
    pub suffix: String,
    pub requests: Vec<Indexed<'a>>,
    pub init: (u64, u64),
}

/// Requests split into their main chain (a set-aside preamble put back, in
/// (t, index) order) and classified workers.
pub struct Split<'a> {
    pub main: Vec<Indexed<'a>>,
    pub workers: Vec<Worker<'a>>,
}

/// How a worker's first hash list is found for its turn-0 prefix: the first
/// request's (top level) or the first hash-bearing one's (inside a subagent).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FirstHash {
    FirstRequest,
    FirstWithHashes,
}

/// AIPerf's split (`_detect_and_split_flat_chains`, and the same inside
/// `_expand_subagent_to_child_plans`): the preamble set aside, the chains
/// detected, and each worker classified by the detected main chain (without the
/// preamble) as a sidecar, a parallel fan-out member or an agent. The declared
/// (tool, system) prefix passes to a worker only when it starts with the main
/// chain's declared blocks. None when nothing is left to detect.
pub fn split<'a>(
    normals: &[Indexed<'a>],
    declared: (u64, u64),
    bs: u64,
    first_hash: FirstHash,
) -> Option<Split<'a>> {
    let (preamble, rest) = split_preamble(normals);
    if rest.is_empty() {
        return None;
    }
    let d = detect(&rest);
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
    let groups = worker_groups(&d);
    let mut workers = Vec::new();
    for (n, &ci) in d.workers.iter().enumerate() {
        let c = &d.chains[ci];
        let reqs: Vec<&Request> = c.requests.iter().map(|(_, r)| *r).collect();
        let aux = is_aux(&reqs, main_peak, main_model);
        let reduction = !aux && is_reduction(&reqs);
        let wg = (!aux && !reduction)
            .then(|| groups.get(&ci).copied())
            .flatten();
        let first: &[i64] = match first_hash {
            FirstHash::FirstRequest => &reqs[0].hash_ids,
            FirstHash::FirstWithHashes => reqs
                .iter()
                .find(|r| !r.hash_ids.is_empty())
                .map_or(&[], |r| &r.hash_ids),
        };
        workers.push(Worker {
            suffix: suffix(n, aux || reduction, wg),
            requests: c.requests.clone(),
            init: init_tokens(declared.0, declared.1, bs, main_first, first),
        });
    }
    let mut main_reqs = main.requests.clone();
    if !preamble.is_empty() {
        main_reqs.extend(preamble);
        main_reqs.sort_by(|a, b| a.1.t.total_cmp(&b.1.t).then(a.0.cmp(&b.0)));
    }
    Some(Split {
        main: main_reqs,
        workers,
    })
}

/// A subagent's conversations (AIPerf's `_expand_subagent_to_child_plans`): the
/// chain with its first request keeps the subagent's id (suffix ""), every other
/// chain is a sibling child (`:fa:NNN`, `:aux:NNN`, `:wg:GGG_MMM`) in the same
/// branch. Each is (suffix, requests as (inner index, request), turn-0 tokens).
pub fn split_subagent<'a>(sa: &'a super::trace::Subagent, bs: u64) -> Vec<Worker<'a>> {
    let declared = (sa.tool_tokens, sa.system_tokens);
    let inner: Vec<Indexed<'a>> = sa.requests.iter().enumerate().collect();
    let Some(sp) = split(&inner, declared, bs, FirstHash::FirstWithHashes) else {
        let mut all = inner;
        all.sort_by(|a, b| a.1.t.total_cmp(&b.1.t).then(a.0.cmp(&b.0)));
        return vec![Worker {
            suffix: String::new(),
            requests: all,
            init: declared,
        }];
    };
    let mut out = vec![Worker {
        suffix: String::new(),
        requests: sp.main,
        init: declared,
    }];
    out.extend(sp.workers.into_iter().map(|w| Worker {
        suffix: format!(":{}", w.suffix),
        ..w
    }));
    out
}
