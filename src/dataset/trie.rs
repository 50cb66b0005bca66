//! evalscope 1.14.1's trie trace replay (`trie_agentic_coding`, `trie_code_qa`,
//! `trie_office_work`; traces from applied-compute/trie, re-hosted on ModelScope as
//! `evalscope/trie-workloads`). One JSON object per line:
//! `input_prompt_length`, `num_turns`, `assistant_response_length[num_turns]`,
//! `tool_call_output_length[num_turns]`, `tool_call_latency[num_turns]` (seconds) and
//! `final_assistant_response_length`.
//!
//! A trace is `num_turns + 1` turns: turn 0 a synthetic prompt of
//! `input_prompt_length` tokens capped at `assistant_response_length[0]` (the final
//! length when `num_turns` is 0); turn i ≥ 1 a synthetic tool output of
//! `tool_call_output_length[i−1]` tokens sent `tool_call_latency[i−1]` seconds after
//! the previous answer, capped at `assistant_response_length[i]`, the last at
//! `final_assistant_response_length`. Texts are exact to the token with
//! `--tokenizer-path` (required: the lengths are tokens), at least one token each,
//! after the shared `--prefix-length` prefix. `--dataset-offset` is not applied, as in
//! evalscope.
//!
//! evalscope skips a malformed trace with a warning; perfscope refuses the file,
//! naming the line and the field, before anything is sent.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::config::{DatasetConfig, TrieSet};
use super::conversation::{Conversation, Turn};

/// One trace as recorded.
#[derive(Clone, Debug, PartialEq)]
struct Trace {
    input: u64,
    responses: Vec<u64>,
    tool_outputs: Vec<u64>,
    latencies: Vec<f64>,
    final_response: u64,
}

/// The path of a set's file, or an error naming the flag and where to get it.
fn path(set: TrieSet, cfg: &DatasetConfig) -> Result<&str> {
    cfg.path.as_deref().with_context(|| {
        format!(
            "--dataset {} needs --dataset-path: download `{}` from ModelScope \
             evalscope/trie-workloads (perfscope never downloads) and pass its path",
            cfg.name,
            set.file()
        )
    })
}

/// What can be checked before the run: the file and the tokenizer.
pub fn preflight(set: TrieSet, cfg: &DatasetConfig) -> Result<()> {
    let p = path(set, cfg)?;
    if cfg.tokenizer.is_none() {
        bail!(
            "--dataset {}: the traces give lengths in tokens; pass --tokenizer-path (the served \
             model's tokenizer.json or model directory)",
            cfg.name
        );
    }
    parse_file(p).map(|_| ())
}

fn field<'a>(v: &'a Value, at: &str, key: &str) -> Result<&'a Value> {
    v.get(key).with_context(|| format!("{at}: no `{key}`"))
}

fn count(v: &Value, at: &str, key: &str) -> Result<u64> {
    field(v, at, key)?
        .as_u64()
        .with_context(|| format!("{at}: `{key}` must be a whole number of tokens >= 0"))
}

fn list<T>(v: &Value, at: &str, key: &str, read: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
    let items = field(v, at, key)?
        .as_array()
        .with_context(|| format!("{at}: `{key}` must be a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            read(x).with_context(|| format!("{at}: `{key}`[{i}] = {x} must be a number >= 0"))
        })
        .collect()
}

fn parse_line(v: &Value, at: &str) -> Result<Trace> {
    let n = count(v, at, "num_turns")? as usize;
    let t = Trace {
        input: count(v, at, "input_prompt_length")?,
        responses: list(v, at, "assistant_response_length", Value::as_u64)?,
        tool_outputs: list(v, at, "tool_call_output_length", Value::as_u64)?,
        latencies: list(v, at, "tool_call_latency", |x| {
            x.as_f64().filter(|s| s.is_finite() && *s >= 0.0)
        })?,
        final_response: count(v, at, "final_assistant_response_length")?,
    };
    for (key, len) in [
        ("assistant_response_length", t.responses.len()),
        ("tool_call_output_length", t.tool_outputs.len()),
        ("tool_call_latency", t.latencies.len()),
    ] {
        if len != n {
            bail!("{at}: `{key}` has {len} entries, `num_turns` is {n}");
        }
    }
    Ok(t)
}

fn parse_file(path: &str) -> Result<Vec<Trace>> {
    let text = super::prompt::read_dataset_text(path, "--dataset-path")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{path}:{}", i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{at}: not a JSON object"))?;
        out.push(parse_line(&v, &at)?);
    }
    if out.is_empty() {
        bail!("{path}: no traces (one JSON object per line)");
    }
    Ok(out)
}

/// Up to `count` conversations, one per trace in file order (cycled by the session
/// driver when there are fewer).
pub fn load(
    set: TrieSet,
    cfg: &DatasetConfig,
    count: u64,
    run_index: u64,
) -> Result<Vec<Conversation>> {
    preflight(set, cfg)?;
    let traces = parse_file(path(set, cfg)?)?;
    let traces = &traces[..traces.len().min(count.max(1) as usize)];
    // Every turn's length, in order, built in one pass (and in parallel).
    let lens: Vec<usize> = traces
        .iter()
        .flat_map(|t| std::iter::once(t.input).chain(t.tool_outputs.iter().copied()))
        .map(|n| n as usize)
        .collect();
    let mut rng = super::random::run_rng(cfg, run_index);
    let what = format!("{} turns of {} traces", lens.len(), traces.len());
    let (prefix, texts) = super::random::texts_of_lengths(cfg, &mut rng, &lens, &what)?;
    let mut texts = texts.into_iter();
    let mut text = || json!({"role": "user", "content": format!("{prefix}{}", texts.next().unwrap_or_default())});
    Ok(traces
        .iter()
        .map(|t| {
            let n = t.responses.len();
            let cap = |i: usize| {
                if i < n {
                    t.responses[i]
                } else {
                    t.final_response
                }
            };
            let mut turns = vec![Turn {
                messages: vec![text()],
                max_tokens: Some(cap(0).max(1)),
                tool_call_latency: None,
                rid: None,
            }];
            for i in 0..n {
                turns.push(Turn {
                    messages: vec![text()],
                    max_tokens: Some(cap(i + 1).max(1)),
                    tool_call_latency: Some(t.latencies[i]),
                    rid: None,
                });
            }
            Conversation { turns }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_field_by_field() {
        let ok = json!({"input_prompt_length": 10, "num_turns": 2,
            "assistant_response_length": [3, 4], "tool_call_output_length": [5, 6],
            "tool_call_latency": [0.5, 0.0], "final_assistant_response_length": 7});
        let t = parse_line(&ok, "f:1").unwrap();
        assert_eq!((t.input, t.final_response, t.latencies[0]), (10, 7, 0.5));
        let mut short = ok.clone();
        short["tool_call_latency"] = json!([0.5]);
        let e = parse_line(&short, "f:2").unwrap_err().to_string();
        assert_eq!(
            e,
            "f:2: `tool_call_latency` has 1 entries, `num_turns` is 2"
        );
        let mut negative = ok.clone();
        negative["tool_call_output_length"] = json!([5, -6]);
        let e = parse_line(&negative, "f:3").unwrap_err().to_string();
        assert!(
            e.starts_with("f:3: `tool_call_output_length`[1] = -6"),
            "{e}"
        );
        let mut late = ok;
        late["tool_call_latency"] = json!([-1.0, 0.0]);
        assert!(parse_line(&late, "f:4").is_err());
    }
}
