//! evalscope 1.14.1's `swe_smith` from a pre-built JSON file (`--dataset-path`):
//! `{"conversations": [[{"messages": [...], "prompt_tokens": N, "rid": "…"}, …], …]}`.
//! Each conversation is a list of turns; a turn's `messages` are the delta it adds
//! (the model's real replies go between turns). The list is rotated by
//! `--dataset-offset` (when smaller than its length, as evalscope's slicing does), a
//! `rid` on the first turn is carried to every turn's body as `<rid>_t<k>`, and
//! `--max-turns` truncates at run time.
//!
//! evalscope can also build the conversations from the SWE-smith trajectories it
//! downloads; perfscope never downloads, and says how to get a file. A malformed file
//! is refused naming the conversation and turn; evalscope skips empty ones silently.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::config::DatasetConfig;
use super::conversation::{Conversation, Turn};

fn path(cfg: &DatasetConfig) -> Result<&str> {
    cfg.path.as_deref().with_context(|| {
        "--dataset swe_smith needs --dataset-path: a pre-built JSON file \
         {\"conversations\": [[{\"messages\": [...], \"rid\": ...}, ...], ...]} (evalscope \
         builds one from ModelScope SWE-bench/SWE-smith-trajectories; perfscope never \
         downloads)"
    })
}

fn turn(v: &Value, at: &str) -> Result<Vec<Value>> {
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .with_context(|| format!("{at}: no `messages` list"))?;
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            bail!("{at}: `messages`[{i}] has no `role`");
        }
    }
    Ok(messages.clone())
}

fn parse(path: &str, text: &str) -> Result<Vec<Conversation>> {
    let v: Value =
        serde_json::from_str(text).with_context(|| format!("{path}: not a JSON document"))?;
    let list = v
        .get("conversations")
        .and_then(Value::as_array)
        .with_context(|| format!("{path}: no `conversations` list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (c, conv) in list.iter().enumerate() {
        let turns = conv
            .as_array()
            .with_context(|| format!("{path}: conversations[{c}] is not a list of turns"))?;
        let Some(first) = turns.first() else {
            continue;
        };
        let rid = first.get("rid").and_then(Value::as_str).map(str::to_string);
        let turns = turns
            .iter()
            .enumerate()
            .map(|(t, v)| {
                Ok(Turn {
                    messages: turn(v, &format!("{path}: conversations[{c}][{t}]"))?,
                    max_tokens: None,
                    tool_call_latency: None,
                    rid: rid.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Conversation { turns });
    }
    Ok(out)
}

/// Checked before the run: the file is there and well formed.
pub fn preflight(cfg: &DatasetConfig) -> Result<()> {
    let p = path(cfg)?;
    parse(p, &super::prompt::read_dataset_text(p, "--dataset-path")?).map(|_| ())
}

/// The file's conversations, rotated by --dataset-offset, up to `count`.
pub fn load(cfg: &DatasetConfig, count: u64) -> Result<Vec<Conversation>> {
    let p = path(cfg)?;
    let mut convs = parse(p, &super::prompt::read_dataset_text(p, "--dataset-path")?)?;
    let offset = cfg.dataset_offset as usize;
    if offset > 0 && offset < convs.len() {
        convs.rotate_left(offset);
    }
    convs.truncate(count.max(1) as usize);
    Ok(convs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_turns_and_rids() {
        let text = r#"{"conversations": [
            [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}], "prompt_tokens": 9, "rid": "r1"},
             {"messages": [{"role": "user", "content": "b"}], "prompt_tokens": 12}],
            [],
            [{"messages": [{"role": "user", "content": "c"}]}]]}"#;
        let c = parse("f.json", text).unwrap();
        assert_eq!(c.len(), 2, "an empty conversation is skipped");
        assert_eq!(c[0].turns.len(), 2);
        assert_eq!(c[0].turns[1].rid.as_deref(), Some("r1"));
        assert_eq!(c[1].turns[0].rid, None);
        let e = parse(
            "f.json",
            r#"{"conversations": [[{"messages": [{"content": "x"}]}]]}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "f.json: conversations[0][0]: `messages`[0] has no `role`"
        );
    }
}
