//! The Weka coding-agent trace format (SemiAnalysis "cc-traces", replayed by
//! InferenceX AgentX): one trace object per line of `traces.jsonl`, or one per
//! `.json` file of a directory. The schema is AIPerf 0.12.0's
//! (`weka_trace_models.py`): unknown keys are refused everywhere; a trace is an
//! ordered mix of requests (`type` `n` or `s`) and subagent markers (`type`
//! `subagent`) holding their own requests.
//!
//! Stricter than AIPerf on purpose: negative times, durations or token counts, and a
//! request whose `hash_ids` cover more blocks than its `in` allows, are errors
//! naming the trace and field (AIPerf clamps or pads them silently).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// One API call of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Start, seconds from the trace start (subagent requests on the same timeline).
    pub t: f64,
    pub streaming: bool,
    pub model: String,
    /// Input tokens (the whole prompt, history included).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// One id per KV block of the input, in order.
    pub hash_ids: Vec<i64>,
    /// Recorded server time, seconds.
    pub api_time: Option<f64>,
    /// Recorded client delay before this request, seconds.
    pub think_time: Option<f64>,
}

/// A subagent marker and its requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Subagent {
    /// Spawn time, seconds from the trace start.
    pub t: f64,
    pub agent_id: String,
    pub subagent_type: String,
    pub status: String,
    pub duration_ms: Option<i64>,
    pub requests: Vec<Request>,
    pub tool_tokens: u64,
    pub system_tokens: u64,
}

impl Subagent {
    /// The recorded end: `t + duration_ms`, else the latest inner request end,
    /// else `t` (AIPerf's `_sa_end_seconds`).
    pub fn end(&self) -> f64 {
        if let Some(ms) = self.duration_ms {
            return self.t + ms as f64 / 1000.0;
        }
        self.requests
            .iter()
            .map(|r| r.t + r.api_time.unwrap_or(0.0))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .unwrap_or(self.t)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Request(Request),
    Subagent(Subagent),
}

/// One trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub id: String,
    pub block_size: u64,
    pub tool_tokens: u64,
    pub system_tokens: u64,
    pub entries: Vec<Entry>,
    /// Where it was read (`file:line` or `file`), for messages.
    pub source: String,
}

/// Inner requests of a subagent whose `t` lies before the marker were recorded
/// relative to it (older captures); AIPerf's tolerance.
const JOIN_EPSILON: f64 = 1e-6;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    id: String,
    models: Vec<String>,
    block_size: i64,
    hash_id_scope: String,
    #[serde(default)]
    tool_tokens: i64,
    #[serde(default)]
    system_tokens: i64,
    requests: Vec<RawEntry>,
    #[serde(default)]
    #[allow(dead_code)]
    totals: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum RawEntry {
    #[serde(rename = "n")]
    Normal(RawRequest),
    #[serde(rename = "s")]
    Streaming(RawRequest),
    #[serde(rename = "subagent")]
    Subagent(RawSubagent),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    t: f64,
    model: String,
    #[serde(rename = "in")]
    input: i64,
    #[serde(rename = "out")]
    output: i64,
    #[serde(default)]
    hash_ids: Vec<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    input_types: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    output_types: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    stop: String,
    #[serde(default)]
    api_time: Option<f64>,
    #[serde(default)]
    think_time: Option<f64>,
    /// Streaming (`s`) requests only: the recorded TTFT (unused by the replay).
    #[serde(default)]
    ttft: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubagent {
    t: f64,
    agent_id: String,
    subagent_type: String,
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    total_tokens: Option<i64>,
    #[serde(default)]
    tool_use_count: Option<i64>,
    status: String,
    requests: Vec<RawInner>,
    #[allow(dead_code)]
    models: Vec<String>,
    #[serde(default)]
    tool_tokens: i64,
    #[serde(default)]
    system_tokens: i64,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum RawInner {
    #[serde(rename = "n")]
    Normal(RawRequest),
    #[serde(rename = "s")]
    Streaming(RawRequest),
}

/// Where in a trace a value sits, for messages: `requests[3].api_time`.
struct At<'a> {
    trace: &'a str,
    source: &'a str,
}

impl At<'_> {
    fn non_negative_f(&self, field: &str, v: f64) -> Result<f64> {
        if !v.is_finite() || v < 0.0 {
            bail!(
                "{}: trace `{}`: {field} is {v}; it must be a non-negative number",
                self.source,
                self.trace
            );
        }
        Ok(v)
    }
    fn non_negative_i(&self, field: &str, v: i64) -> Result<u64> {
        u64::try_from(v).map_err(|_| {
            anyhow::anyhow!(
                "{}: trace `{}`: {field} is {v}; it must be ≥ 0",
                self.source,
                self.trace
            )
        })
    }
    fn opt(&self, field: &str, v: Option<f64>) -> Result<Option<f64>> {
        v.map(|x| self.non_negative_f(field, x)).transpose()
    }
}

fn request(raw: RawRequest, streaming: bool, at: &At, field: &str, block: u64) -> Result<Request> {
    // AIPerf's models forbid `ttft` on a normal (`n`) request.
    match raw.ttft {
        Some(_) if !streaming => bail!(
            "{}: trace `{}`: {field}: unknown field `ttft` (only streaming `s` requests have one)",
            at.source,
            at.trace
        ),
        Some(v) => {
            at.non_negative_f(&format!("{field}.ttft"), v)?;
        }
        None => {}
    }
    let input = at.non_negative_i(&format!("{field}.in"), raw.input)?;
    let blocks = input.div_ceil(block);
    if raw.hash_ids.len() as u64 > blocks {
        bail!(
            "{}: trace `{}`: {field}.hash_ids has {} blocks, more than `in` = {input} allows \
             ({blocks} blocks of {block} tokens)",
            at.source,
            at.trace,
            raw.hash_ids.len()
        );
    }
    Ok(Request {
        t: at.non_negative_f(&format!("{field}.t"), raw.t)?,
        streaming,
        model: raw.model,
        input,
        output: at.non_negative_i(&format!("{field}.out"), raw.output)?,
        hash_ids: raw.hash_ids,
        api_time: at.opt(&format!("{field}.api_time"), raw.api_time)?,
        think_time: at.opt(&format!("{field}.think_time"), raw.think_time)?,
    })
}

/// Checks and converts one parsed trace. `block_override`: the block size the
/// `traces.jsonl` path uses whatever the trace says (AIPerf's weka_hf loader: 64).
fn convert(raw: RawTrace, source: String, block_override: Option<u64>) -> Result<Trace> {
    let at = At {
        trace: &raw.id,
        source: &source,
    };
    if raw.hash_id_scope != "local" {
        bail!(
            "{source}: trace `{}`: hash_id_scope is `{}`; only `local` is supported",
            raw.id,
            raw.hash_id_scope
        );
    }
    let _ = raw.models;
    let declared = at.non_negative_i("block_size", raw.block_size)?;
    if declared == 0 {
        bail!("{source}: trace `{}`: block_size must be > 0", raw.id);
    }
    let block = block_override.unwrap_or(declared);
    let mut entries = Vec::with_capacity(raw.requests.len());
    let mut agents = std::collections::HashSet::new();
    for (i, e) in raw.requests.into_iter().enumerate() {
        let field = format!("requests[{i}]");
        entries.push(match e {
            RawEntry::Normal(r) => Entry::Request(request(r, false, &at, &field, block)?),
            RawEntry::Streaming(r) => Entry::Request(request(r, true, &at, &field, block)?),
            RawEntry::Subagent(s) => {
                // Only retained subagents need unique ids: one before any parent
                // request is dropped (AIPerf accepts a duplicate among those).
                let retained = entries.iter().any(|e| matches!(e, Entry::Request(_)));
                if retained && !agents.insert(s.agent_id.clone()) {
                    bail!(
                        "{source}: trace `{}`: {field}.agent_id `{}` appears twice",
                        raw.id,
                        s.agent_id
                    );
                }
                let t = at.non_negative_f(&format!("{field}.t"), s.t)?;
                if let Some(d) = s.duration_ms {
                    at.non_negative_i(&format!("{field}.duration_ms"), d)?;
                }
                for (k, v) in [
                    ("total_tokens", s.total_tokens),
                    ("tool_use_count", s.tool_use_count),
                ] {
                    if let Some(v) = v {
                        at.non_negative_i(&format!("{field}.{k}"), v)?;
                    }
                }
                let mut requests = Vec::with_capacity(s.requests.len());
                for (j, r) in s.requests.into_iter().enumerate() {
                    let inner = format!("{field}.requests[{j}]");
                    let mut r = match r {
                        RawInner::Normal(r) => request(r, false, &at, &inner, block)?,
                        RawInner::Streaming(r) => request(r, true, &at, &inner, block)?,
                    };
                    // AIPerf: an inner time before the marker is relative to it.
                    if r.t + JOIN_EPSILON < t {
                        r.t += t;
                    }
                    requests.push(r);
                }
                Entry::Subagent(Subagent {
                    t,
                    agent_id: s.agent_id,
                    subagent_type: s.subagent_type,
                    status: s.status,
                    duration_ms: s.duration_ms,
                    requests,
                    tool_tokens: at
                        .non_negative_i(&format!("{field}.tool_tokens"), s.tool_tokens)?,
                    system_tokens: at
                        .non_negative_i(&format!("{field}.system_tokens"), s.system_tokens)?,
                })
            }
        });
    }
    let trace = Trace {
        block_size: block,
        tool_tokens: at.non_negative_i("tool_tokens", raw.tool_tokens)?,
        system_tokens: at.non_negative_i("system_tokens", raw.system_tokens)?,
        id: raw.id,
        entries,
        source,
    };
    check_prefixes(&trace)?;
    Ok(trace)
}

/// Turn 0's tool + system prefix is rebuilt from its first hash blocks: a first
/// request with fewer blocks than the prefix needs cannot be replayed (AIPerf
/// refuses it too, rather than fake the cached prefix with random tokens).
fn check_prefixes(trace: &Trace) -> Result<()> {
    let bs = trace.block_size;
    let check = |what: &str, tool: u64, system: u64, first: Option<&Request>| -> Result<()> {
        let need = (tool + system).div_ceil(bs) as usize;
        match first {
            Some(r) if need > 0 && r.hash_ids.len() < need => bail!(
                "{}: trace `{}`: {what}'s first request has {} hash_ids, but tool_tokens + \
                 system_tokens = {} need {need} blocks of {bs}",
                trace.source,
                trace.id,
                r.hash_ids.len(),
                tool + system
            ),
            _ => Ok(()),
        }
    };
    let first_parent = trace.entries.iter().find_map(|e| match e {
        Entry::Request(r) => Some(r),
        Entry::Subagent(_) => None,
    });
    check(
        "the root",
        trace.tool_tokens,
        trace.system_tokens,
        first_parent,
    )?;
    for e in &trace.entries {
        if let Entry::Subagent(s) = e {
            let first = s.requests.iter().min_by(|a, b| a.t.total_cmp(&b.t));
            check(
                &format!("subagent `{}`", s.agent_id),
                s.tool_tokens,
                s.system_tokens,
                first,
            )?;
        }
    }
    Ok(())
}

/// AIPerf's block size for `traces.jsonl` (its weka_hf loader ignores the trace's).
pub const HF_BLOCK_SIZE: u64 = 64;

/// Reads a Weka set: a `traces.jsonl` file (or a directory holding one), or a
/// directory of per-trace `.json` files (sorted by name). Duplicate trace ids are
/// an error naming both places.
pub fn read(path: &Path) -> Result<Vec<Trace>> {
    let jsonl = if path.is_dir() {
        let j = path.join("traces.jsonl");
        j.is_file().then_some(j)
    } else {
        Some(path.to_path_buf())
    };
    let traces = match jsonl {
        Some(f) => read_jsonl(&f)?,
        None => read_dir(path)?,
    };
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for t in &traces {
        if let Some(first) = seen.insert(&t.id, &t.source) {
            bail!("{}: trace id `{}` already used at {first}", t.source, t.id);
        }
    }
    if traces.is_empty() {
        bail!("--dataset-path: {} holds no traces", path.display());
    }
    Ok(traces)
}

fn read_jsonl(file: &Path) -> Result<Vec<Trace>> {
    let text =
        crate::dataset::prompt::read_dataset_text(&file.to_string_lossy(), "--dataset-path")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let source = format!("{}:{}", file.display(), i + 1);
        let raw: RawTrace =
            serde_json::from_str(line).with_context(|| format!("{source}: not a Weka trace"))?;
        out.push(convert(raw, source, Some(HF_BLOCK_SIZE))?);
    }
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<Trace>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--dataset-path: cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "--dataset-path: {} holds neither traces.jsonl nor per-trace .json files",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for f in files {
        let source = f.display().to_string();
        let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {source}"))?;
        let raw: RawTrace =
            serde_json::from_str(&text).with_context(|| format!("{source}: not a Weka trace"))?;
        out.push(convert(raw, source, None)?);
    }
    Ok(out)
}
