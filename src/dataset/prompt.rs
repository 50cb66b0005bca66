//! What a dataset yields for one request.

use serde_json::{Map, Value};

use super::config::DatasetConfig;

/// What a dataset yields for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Plain prompt: body `prompt` (completions).
    Text(String),
    /// Chat messages, sent verbatim as body `messages`.
    Messages(Value),
    /// A whole request body (JSON-object lines of `line_by_line`); CLI parameters are
    /// merged with set-default semantics.
    Body(Map<String, Value>),
}

impl Prompt {
    pub(crate) fn wrap(text: String, chat: bool) -> Prompt {
        if chat {
            Prompt::Messages(serde_json::json!([{"role": "user", "content": text}]))
        } else {
            Prompt::Text(text)
        }
    }
}

/// evalscope's length filter: tokens with --tokenizer-path, else characters.
pub(crate) fn in_range(text: &str, cfg: &DatasetConfig) -> bool {
    if cfg.min_prompt_length == 0 && cfg.max_prompt_length == u64::MAX {
        return true;
    }
    let n = match &cfg.tokenizer {
        Some(t) => t.count(text),
        None => text.chars().count() as u64,
    };
    n >= cfg.min_prompt_length && n <= cfg.max_prompt_length
}

/// The non-empty lines of a JSONL file as JSON values with their 1-based line
/// numbers; errors name the file and the line.
pub(crate) fn read_jsonl(path: &str) -> anyhow::Result<Vec<(usize, Value)>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--dataset-path: cannot read `{path}`"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l)
            .with_context(|| format!("{path}:{}: not a JSON object line", i + 1))?;
        out.push((i + 1, v));
    }
    Ok(out)
}
