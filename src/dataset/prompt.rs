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

/// `--max-request-mib` in bytes: the longest dataset line read, and the largest
/// prompt built. Set once per invocation when its flags are resolved.
static MAX_REQUEST_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(64 << 20);

/// Largest JSON-list dataset file read whole.
const JSON_LIST_MAX: u64 = 4 << 30;

pub fn set_max_request_bytes(n: usize) {
    MAX_REQUEST_BYTES.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

pub fn max_request_bytes() -> usize {
    MAX_REQUEST_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// A dataset file as text, read line by line so that a line over
/// `--max-request-mib` (a runaway line, a file of zeros) stops the read at that
/// size instead of filling memory. `flag` names where the path came from.
pub fn read_dataset_text(path: &str, flag: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::{BufRead, Read};
    let max = max_request_bytes();
    let f = std::fs::File::open(path).with_context(|| format!("{flag}: cannot read `{path}`"))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    // A JSON list (LongAlpaca's `.json`, a list of rows) is one document, often
    // on one line: bounded as a whole file instead.
    if r.fill_buf()
        .with_context(|| format!("{flag}: cannot read `{path}`"))?
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        == Some(&b'[')
    {
        let mut text = String::new();
        let limit = JSON_LIST_MAX.max(max as u64);
        (&mut r)
            .take(limit + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("{flag}: cannot read `{path}` as UTF-8 text"))?;
        if text.len() as u64 > limit {
            anyhow::bail!(
                "{flag}: `{path}` is a JSON list over {} GiB; split it into JSONL (one row per line)",
                limit >> 30
            );
        }
        return Ok(text);
    }
    let mut out = String::new();
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let got = (&mut r)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("{flag}: cannot read `{path}`"))?;
        if got == 0 {
            break;
        }
        if line.len() > max && !line.ends_with(b"\n") {
            anyhow::bail!(
                "{flag}: line {n} of `{path}` is longer than --max-request-mib ({} MiB); \
                 raise --max-request-mib, or check the file (one prompt per line)",
                max >> 20
            );
        }
        let text = std::str::from_utf8(&line)
            .with_context(|| format!("{flag}: line {n} of `{path}` is not UTF-8 text"))?;
        out.push_str(text);
    }
    Ok(out)
}

/// About how many bytes a prompt puts in a request body.
pub fn prompt_bytes(p: &Prompt) -> usize {
    match p {
        Prompt::Text(t) => t.len(),
        Prompt::Messages(v) => v.to_string().len(),
        Prompt::Body(m) => Value::Object(m.clone()).to_string().len(),
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
    let text = read_dataset_text(path, "--dataset-path")?;
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
