//! Trace replay: requests with their own arrival times.
//!
//! - `mooncake_trace`: JSONL rows of `timestamp` (ms), `input_length`,
//!   `output_length` and `hash_ids`, as Mooncake's FAST'25 traces and the replayers of
//!   vLLM, SGLang and AIPerf read them. Each hash id stands for one block of
//!   `--trace-block-size` tokens: the prompt is built so that two requests share
//!   exactly the blocks their `hash_ids` share. With `--tokenizer-path` the blocks
//!   are real tokens (ids that stay one token when re-encoded next to each other);
//!   without one they are words the simulator counts as one token each.
//! - `workload_trace` (evalscope): recorded bodies replayed at their timestamps
//!   (seconds, numeric strings or ISO-8601), with optional headers, request ids and
//!   completion lengths.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use super::config::DatasetConfig;
use super::prompt::Prompt;

/// A loaded trace: one prompt per row, and the rows' arrival offsets in seconds
/// from the first (already divided by the replay speed).
#[derive(Debug)]
pub struct Trace {
    pub prompts: Vec<Prompt>,
    pub offsets: Vec<f64>,
    /// Per-row headers and request ids (workload_trace).
    pub extras: Vec<RowExtras>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowExtras {
    pub headers: Vec<(String, String)>,
    pub request_id: Option<String>,
}

/// The vocabulary of trace prompts: "words" that count as exactly one token and keep
/// their token boundaries when concatenated with a space between them.
enum BlockVocab {
    /// Simulator word tokens: lowercase words of 1–4 letters.
    Words,
    /// Ids of word-start tokens made only of ASCII letters that re-encode to
    /// themselves, and to one token without their space.
    Tokens(Vec<u32>),
}

impl BlockVocab {
    fn new(cfg: &DatasetConfig) -> Result<BlockVocab> {
        let Some(t) = &cfg.tokenizer else {
            return Ok(BlockVocab::Words);
        };
        let ids: Vec<u32> = t
            .word_start_ids()
            .into_iter()
            .filter(|&id| {
                let s = t.decode(&[id]);
                s.len() > 1
                    && s.starts_with(' ')
                    && s[1..].bytes().all(|b| b.is_ascii_alphabetic())
                    && t.encode(&s) == [id]
                    // A template that strips the message keeps the count.
                    && t.encode(&s[1..]).len() == 1
            })
            .collect();
        if ids.len() < 16 {
            bail!(
                "--tokenizer-path {}: too few plain word tokens ({}) to build trace prompts",
                t.path,
                ids.len()
            );
        }
        Ok(BlockVocab::Tokens(ids))
    }

    /// `n` units of text for the block seeded by `seed` (each unit starts with a space).
    fn units(
        &self,
        seed: u64,
        n: usize,
        out: &mut String,
        tok: Option<&crate::tokenizer::Tokenizer>,
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        match (self, tok) {
            (BlockVocab::Tokens(ids), Some(t)) => {
                let pick: Vec<u32> = (0..n).map(|_| ids[rng.usize(..ids.len())]).collect();
                out.push_str(&t.decode(&pick));
            }
            _ => {
                for _ in 0..n {
                    out.push(' ');
                    for _ in 0..rng.usize(1..=4) {
                        out.push(rng.lowercase());
                    }
                }
            }
        }
    }
}

fn block_seed(seed: u64, hash: u64) -> u64 {
    (seed ^ 0x5DEE_CE66_D1CE_4E5B).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ hash.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// One Mooncake row's prompt text: the blocks of its hash ids in order, the last one
/// cut to the input length; tokens past the blocks (a length longer than its blocks)
/// are unique to the row.
fn mooncake_text(
    vocab: &BlockVocab,
    cfg: &DatasetConfig,
    blocks: &mut HashMap<u64, String>,
    hash_ids: &[u64],
    input_length: u64,
    block: u64,
    row: u64,
) -> String {
    let tok = cfg.tokenizer.as_deref();
    let mut text = String::new();
    let mut left = input_length;
    for &h in hash_ids {
        if left == 0 {
            break;
        }
        let n = left.min(block);
        if n == block {
            let b = blocks.entry(h).or_insert_with(|| {
                let mut s = String::new();
                vocab.units(block_seed(cfg.seed, h), block as usize, &mut s, tok);
                s
            });
            text.push_str(b);
        } else {
            // A partial last block: the first n units of the block's own sequence.
            vocab.units(block_seed(cfg.seed, h), n as usize, &mut text, tok);
        }
        left -= n;
    }
    if left > 0 {
        vocab.units(
            block_seed(cfg.seed, u64::MAX - row),
            left as usize,
            &mut text,
            tok,
        );
    }
    // The text starts with the first unit's space, kept so that it encodes to
    // exactly these tokens (a template that strips it changes one token, not the
    // count).
    text
}

fn field_u64(v: &Value, k: &str, path: &str, line: usize) -> Result<u64> {
    v.get(k)
        .and_then(Value::as_u64)
        .with_context(|| format!("{path}:{line}: `{k}` must be a non-negative integer"))
}

/// Reads a Mooncake trace: up to `count` rows, sorted by timestamp.
pub fn mooncake(
    cfg: &DatasetConfig,
    chat: bool,
    block: u64,
    speed: f64,
    count: u64,
) -> Result<Trace> {
    let path = cfg
        .path
        .as_deref()
        .context("--dataset mooncake_trace needs --dataset-path")?;
    let vocab = BlockVocab::new(cfg)?;
    let mut rows = Vec::new();
    for (line, v) in super::prompt::read_jsonl(path)? {
        let ts = v
            .get("timestamp")
            .and_then(Value::as_f64)
            .with_context(|| format!("{path}:{}: `timestamp` (ms) must be a number", line))?;
        let input = field_u64(&v, "input_length", path, line)?;
        let output = field_u64(&v, "output_length", path, line)?;
        let hashes: Vec<u64> = match v.get("hash_ids") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|h| h.as_u64())
                .collect::<Option<_>>()
                .with_context(|| {
                    format!("{path}:{}: `hash_ids` must be a list of integers", line)
                })?,
            Some(_) => bail!("{path}:{}: `hash_ids` must be a list of integers", line),
        };
        rows.push((ts, input, output.max(1), hashes));
    }
    if rows.is_empty() {
        bail!("--dataset-path {path}: the trace has no rows");
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows.truncate(count as usize);
    let t0 = rows[0].0;
    let mut blocks = HashMap::new();
    let mut out = Trace {
        prompts: Vec::with_capacity(rows.len()),
        offsets: Vec::with_capacity(rows.len()),
        extras: Vec::new(),
    };
    for (row, (ts, input, output, hashes)) in rows.into_iter().enumerate() {
        let text = mooncake_text(&vocab, cfg, &mut blocks, &hashes, input, block, row as u64);
        let mut body = Map::new();
        if chat {
            body.insert(
                "messages".into(),
                json!([{"role": "user", "content": text}]),
            );
        } else {
            body.insert("prompt".into(), Value::String(text));
        }
        body.insert("max_tokens".into(), output.into());
        out.prompts.push(Prompt::Body(body));
        out.offsets.push((ts - t0) / 1000.0 / speed);
    }
    Ok(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An ISO-8601 date-time (`2025-01-02T03:04:05.5Z`, `…+08:00`; no zone = UTC) in
/// unix seconds.
fn iso_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, m, day) = (
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<i64>().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0.0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1.0 } else { 1.0 };
        // `+08:00`, `+0800` or `+08`; anything else (a user's file) is not a date.
        let zone = z.get(1..)?;
        let (h, mi) = match zone.split_once(':') {
            Some(hm) => hm,
            None => (zone.get(..2)?, zone.get(2..)?),
        };
        let mins = h.parse::<f64>().ok()? * 60.0
            + if mi.is_empty() {
                0.0
            } else {
                mi.parse::<f64>().ok()?
            };
        (c, sign * mins * 60.0)
    } else {
        (time, 0.0)
    };
    let mut c = clock.split(':');
    let h = c.next()?.parse::<f64>().ok()?;
    let mi = c.next()?.parse::<f64>().ok()?;
    let sec = c.next().map_or(Some(0.0), |x| x.parse::<f64>().ok())?;
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec - offset)
}

/// A workload_trace timestamp: seconds, a numeric string, or ISO-8601.
fn timestamp(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().or_else(|| iso_seconds(s)),
        _ => None,
    }
}

const RESERVED: [&str; 4] = [
    "__evalscope_headers",
    "__evalscope_request_id",
    "__evalscope_arrival_offset",
    "__evalscope_is_warmup",
];

/// evalscope 1.14.1's `workload_trace`: every line is validated and all errors are
/// reported together; rows are stably sorted by timestamp.
pub fn workload(cfg: &DatasetConfig, speed: f64, count: u64) -> Result<Trace> {
    let path = cfg
        .path
        .as_deref()
        .context("--dataset workload_trace needs --dataset-path")?;
    let text = super::prompt::read_dataset_text(path, "--dataset-path")?;
    let args = &cfg.args;
    let mut errors = Vec::new();
    let mut rows: Vec<(f64, Map<String, Value>, RowExtras)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        match workload_row(l, args) {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(format!("{path}:{}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        bail!(
            "--dataset workload_trace: {} invalid line(s):\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    if rows.is_empty() {
        bail!("--dataset-path {path}: the trace has no rows");
    }
    if rows.windows(2).any(|w| w[1].0 < w[0].0) {
        crate::telemetry::log::warn(format!("{path}: timestamps are not in order; sorted"));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows.truncate(count as usize);
    let t0 = rows[0].0;
    let mut out = Trace {
        prompts: Vec::new(),
        offsets: Vec::new(),
        extras: Vec::new(),
    };
    for (ts, body, extras) in rows {
        out.offsets.push((ts - t0) / speed);
        out.prompts.push(Prompt::Body(body));
        out.extras.push(extras);
    }
    Ok(out)
}

fn workload_row(
    line: &str,
    args: &super::config::DatasetArgs,
) -> std::result::Result<(f64, Map<String, Value>, RowExtras), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    if let Some(k) = o.keys().find(|k| {
        ![
            "body",
            "timestamp",
            "headers",
            "request_id",
            "completion_tokens",
        ]
        .contains(&k.as_str())
    }) {
        return Err(format!("unknown key `{k}`"));
    }
    let mut body = match o.get("body") {
        Some(Value::Object(b)) => b.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(b)) => b,
            _ => return Err("`body` is a string but not a JSON object".into()),
        },
        _ => return Err("`body` must be a JSON object".into()),
    };
    if let Some(k) = body.keys().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(format!("`body` must not contain `{k}`"));
    }
    body.retain(|k, _| !k.starts_with("__evalscope_"));
    let ts = o
        .get("timestamp")
        .and_then(timestamp)
        .ok_or("`timestamp` must be seconds, a numeric string or ISO-8601")?;
    let mut extras = RowExtras::default();
    if let Some(h) = o.get("headers") {
        let h = h
            .as_object()
            .ok_or("`headers` must be an object of strings")?;
        for (k, v) in h {
            let v = v.as_str().ok_or("`headers` must be an object of strings")?;
            extras.headers.push((k.clone(), v.to_string()));
        }
    }
    if let Some(r) = o.get("request_id") {
        extras.request_id = Some(
            r.as_str()
                .ok_or("`request_id` must be a string")?
                .to_string(),
        );
    }
    let completion = match o.get("completion_tokens") {
        None => None,
        Some(c) => Some(
            c.as_u64()
                .filter(|n| *n > 0)
                .ok_or("`completion_tokens` must be an integer > 0")?,
        ),
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(m) = model.as_deref().and_then(|m| args.model_mapping.get(m)) {
        body.insert("model".into(), m.clone());
    } else if let Some(m) = &args.model_override {
        body.insert("model".into(), Value::String(m.clone()));
    }
    if let (true, Some(n)) = (args.match_output_length, completion) {
        body.insert("max_tokens".into(), n.into());
        // evalscope skips ignore_eos for constrained decoding.
        let constrained = body
            .get("response_format")
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "json_object" || t == "json_schema")
            || (body.contains_key("tools")
                && body
                    .get("tool_choice")
                    .is_some_and(|c| c != "none" && c != "auto" && !c.is_null()));
        if !constrained {
            body.insert("ignore_eos".into(), Value::Bool(true));
        }
    }
    Ok((ts, body, extras))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{test_config, DatasetKind};

    #[test]
    fn shared_hash_ids_share_exactly_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(
            &p,
            "{\"timestamp\": 1000, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1, 2, 3]}\n\
             {\"timestamp\": 0, \"input_length\": 9, \"output_length\": 5, \"hash_ids\": [1, 2, 4]}\n\
             {\"timestamp\": 2500, \"input_length\": 14, \"output_length\": 5, \"hash_ids\": [7]}\n",
        )
        .unwrap();
        let mut cfg = test_config(DatasetKind::MooncakeTrace);
        cfg.path = Some(p.to_string_lossy().into_owned());
        let t = mooncake(&cfg, false, 4, 2.0, 100).unwrap();
        assert_eq!(t.offsets, vec![0.0, 0.5, 1.25]);
        let words = |i: usize| -> Vec<String> {
            match &t.prompts[i] {
                Prompt::Body(b) => b["prompt"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                o => panic!("{o:?}"),
            }
        };
        let (a, b, c) = (words(0), words(1), words(2));
        assert_eq!((a.len(), b.len(), c.len()), (9, 10, 14));
        assert!(a.iter().chain(&b).all(|w| crate::sim::count_tokens(w) == 1));
        assert_eq!(a[..8], b[..8], "blocks 1 and 2 are shared");
        assert_ne!(a[8], b[8], "blocks 4 and 3 differ");
        assert_ne!(c[..4], a[..4]);
        match &t.prompts[0] {
            Prompt::Body(b) => assert_eq!(b["max_tokens"], 5),
            _ => unreachable!(),
        }
    }

    #[test]
    fn workload_rows_validate_and_rewrite() {
        assert_eq!(iso_seconds("1970-01-02T00:00:01Z"), Some(86_401.0));
        assert_eq!(iso_seconds("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(iso_seconds("2024-03-01 00:00:00"), Some(1_709_251_200.0));
        assert_eq!(iso_seconds("1970-01-01T08:00:00+0800"), Some(0.0));
        assert_eq!(iso_seconds("1970-01-01T00:00:00+é"), None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.jsonl");
        std::fs::write(
            &p,
            "{\"timestamp\": \"1970-01-01T00:00:02Z\", \"body\": {\"model\": \"a\", \"messages\": [], \"__evalscope_x\": 1}, \"completion_tokens\": 7, \"request_id\": \"r1\", \"headers\": {\"x-t\": \"1\"}}\n\
             {\"timestamp\": 1.5, \"body\": \"{\\\"model\\\": \\\"b\\\", \\\"prompt\\\": \\\"hi\\\"}\"}\n",
        )
        .unwrap();
        let mut cfg = test_config(DatasetKind::WorkloadTrace);
        cfg.path = Some(p.to_string_lossy().into_owned());
        cfg.args.match_output_length = true;
        cfg.args.model_mapping.insert("a".into(), "A".into());
        let t = workload(&cfg, 1.0, 10).unwrap();
        assert_eq!(t.offsets, vec![0.0, 0.5]);
        let Prompt::Body(b) = &t.prompts[1] else {
            panic!()
        };
        assert_eq!(b["model"], "A");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["ignore_eos"], true);
        assert!(b.get("__evalscope_x").is_none());
        assert_eq!(t.extras[1].request_id.as_deref(), Some("r1"));
        std::fs::write(
            &p,
            "{\"timestamp\": 1, \"body\": {}, \"x\": 1}\n{\"timestamp\": \"soon\", \"body\": {}}\n",
        )
        .unwrap();
        let e = workload(&cfg, 1.0, 10).unwrap_err().to_string();
        assert!(
            e.contains("2 invalid") && e.contains("unknown key `x`") && e.contains(":2:"),
            "{e}"
        );
    }
}
