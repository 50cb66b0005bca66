//! `embedding_dataset` and `rerank_dataset` (evalscope's `embedding` / `rerank`
//! dataset plugins) from a local file; without `--dataset-path` the bundled open-QA
//! questions are used, so the simulator works out of the box.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::config::DatasetConfig;
use super::prompt::{in_range, Prompt};

/// evalscope's text field priority for embedding objects.
const TEXT_FIELDS: [&str; 4] = ["text", "input", "sentence", "content"];
const DOC_FIELDS: [&str; 3] = ["documents", "passages", "texts"];

/// Items of a `.json` list, or of each line of a `.jsonl` / `.txt` file (a line that
/// is not JSON is the item's text). Each comes with its location for errors.
fn items(path: &str) -> Result<Vec<(String, Value)>> {
    let text = super::prompt::read_dataset_text(path, "--dataset-path")?;
    if text.trim_start().starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}:{}: not a JSON list ({e})", e.line()))?;
        return Ok(list
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}: item {}", i + 1), v))
            .collect());
    }
    let jsonl = path.ends_with(".jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let at = format!("{path}:{}", i + 1);
        let v = match serde_json::from_str::<Value>(l) {
            Ok(v) => v,
            Err(e) if jsonl => bail!("{at}: not a JSON line ({e})"),
            Err(_) => Value::String(l.to_string()),
        };
        out.push((at, v));
    }
    Ok(out)
}

fn text_of(at: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Object(o) => TEXT_FIELDS
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(|s| s.trim().to_string())
            .with_context(|| format!("{at}: no string field text, input, sentence or content")),
        other => bail!("{at}: expected a string or an object, got {other}"),
    }
}

/// Texts to embed, one per request, or `batch_size` per request as an `input` list.
pub fn embedding(cfg: &DatasetConfig, count: u64) -> Result<Vec<Prompt>> {
    let texts: Vec<String> = match cfg.path.as_deref() {
        Some(path) => items(path)?
            .iter()
            .map(|(at, v)| text_of(at, v))
            .collect::<Result<_>>()?,
        None => super::openqa::bundled(),
    };
    let texts: Vec<String> = texts
        .into_iter()
        .filter(|t| !t.is_empty() && in_range(t, cfg))
        .collect();
    Ok(batches(texts, cfg.batch_size, count))
}

/// Up to `count` requests: one text each (a string `input`), or `batch_size` texts
/// each as an `input` list (evalscope's `*_batch` embedding datasets).
pub fn batches(texts: Vec<String>, batch_size: usize, count: u64) -> Vec<Prompt> {
    let n = batch_size.max(1);
    if n == 1 {
        return texts
            .into_iter()
            .take(count as usize)
            .map(Prompt::Text)
            .collect();
    }
    texts
        .chunks(n)
        .take(count as usize)
        .map(|c| {
            let mut m = Map::new();
            m.insert("input".into(), json!(c));
            Prompt::Body(m)
        })
        .collect()
}

fn doc_text(at: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Object(o) => o
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{at}: a document object needs a string `text`")),
        other => bail!("{at}: a document must be a string or {{\"text\": ...}}, got {other}"),
    }
}

/// `{query, documents}` pairs (documents also as `passages` or `texts`).
pub fn rerank(cfg: &DatasetConfig, count: u64) -> Result<Vec<Prompt>> {
    let mut out = Vec::new();
    match cfg.path.as_deref() {
        Some(path) => {
            for (at, v) in items(path)? {
                let query = v
                    .get("query")
                    .and_then(Value::as_str)
                    .with_context(|| format!("{at}: no string field \"query\""))?;
                let docs = DOC_FIELDS
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_array))
                    .with_context(|| {
                        format!("{at}: no list field \"documents\" (or \"passages\", \"texts\")")
                    })?;
                let docs: Vec<String> = docs
                    .iter()
                    .map(|d| doc_text(&at, d))
                    .collect::<Result<_>>()?;
                if docs.is_empty() {
                    bail!("{at}: the documents list is empty");
                }
                if in_range(query, cfg) {
                    out.push(pair(query, docs));
                }
            }
        }
        None => {
            // Each bundled question against the next four.
            let qs = super::openqa::bundled();
            for (i, q) in qs.iter().enumerate().filter(|(_, q)| in_range(q, cfg)) {
                let docs = (1..=4).map(|k| qs[(i + k) % qs.len()].clone()).collect();
                out.push(pair(q, docs));
            }
        }
    }
    out.truncate(count as usize);
    Ok(out)
}

pub fn pair(query: &str, docs: Vec<String>) -> Prompt {
    let mut m = Map::new();
    m.insert("query".into(), query.into());
    m.insert("documents".into(), docs.into());
    Prompt::Body(m)
}
