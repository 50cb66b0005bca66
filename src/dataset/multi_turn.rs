//! Multi-turn conversations (evalscope 1.14.1): `random_multi_turn`,
//! `share_gpt_{zh,en}_multi_turn` and `custom_multi_turn`. A conversation is a list of
//! turns; a turn is the messages it adds to the context (the model's real replies are
//! added between turns by the session driver, never the dataset's own).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::config::DatasetConfig;
use super::prompt::{in_range, read_jsonl};

pub use super::conversation::{Conversation, Turn};

pub use super::config::{MultiTurnKind, TrieSet, TurnBounds};

fn user(text: String) -> Value {
    json!({"role": "user", "content": text})
}

/// Up to `count` conversations of run `run_index`, in dataset order.
pub fn load(
    kind: MultiTurnKind,
    cfg: &DatasetConfig,
    turns: TurnBounds,
    count: u64,
    run_index: u64,
) -> Result<Vec<Conversation>> {
    let out = match kind {
        MultiTurnKind::Random => random(cfg, turns, count, run_index)?,
        MultiTurnKind::ShareGpt { zh } => {
            share_gpt(share_gpt_path(cfg, zh)?, cfg, turns.max, count)?
        }
        MultiTurnKind::Custom => {
            let path = cfg.path.as_deref().with_context(|| {
                "--dataset custom_multi_turn needs --dataset-path: a JSONL file with one JSON \
                 array of {\"role\", \"content\"} messages per line"
            })?;
            custom(path, cfg, turns.max, count)?
        }
        MultiTurnKind::Trie(set) => super::trie::load(set, cfg, count, run_index)?,
        MultiTurnKind::SweSmith => super::swe_smith::load(cfg, count)?,
    };
    if out.is_empty() {
        bail!(
            "--dataset {}: the dataset produced no conversations (check --dataset-path and \
             the length filter --min-prompt-length/--max-prompt-length)",
            cfg.name
        );
    }
    Ok(out)
}

/// `random_multi_turn`: per conversation a turn count uniform in
/// [max(1, --min-turns), --max-turns]; per turn a random prompt of a length uniform in
/// [--min-prompt-length, --max-prompt-length] (tokens with --tokenizer-path, else
/// characters) after the shared --prefix-length prefix, which evalscope prepends to
/// every turn.
fn random(
    cfg: &DatasetConfig,
    turns: TurnBounds,
    count: u64,
    run_index: u64,
) -> Result<Vec<Conversation>> {
    let Some(max) = turns.max else {
        bail!("--dataset random_multi_turn needs --max-turns (e.g. --min-turns 2 --max-turns 5)");
    };
    let lo = turns.min.max(1);
    if max < lo {
        bail!("--max-turns {max} must be >= --min-turns {lo}");
    }
    let mut rng = super::random::run_rng(cfg, run_index);
    let shape: Vec<u64> = (0..count).map(|_| rng.u64(lo..=max)).collect();
    let total: u64 = shape.iter().sum();
    let (prefix, texts) = super::random::turn_texts(cfg, &mut rng, total as usize)?;
    let mut texts = texts.into_iter();
    Ok(shape
        .into_iter()
        .map(|n| Conversation {
            turns: (0..n)
                .map(|_| Turn {
                    messages: vec![user(format!(
                        "{prefix}{}",
                        texts.next().unwrap_or_default()
                    ))],
                    max_tokens: None,
                    tool_call_latency: None,
                    rid: None,
                })
                .collect(),
        })
        .collect())
}

/// The `conversation` list of every line of a ShareGPT JSONL file (`{"conversation":
/// [{"human", "assistant"}, …]}`); a line without one is an error naming it.
fn share_gpt_lines(path: &str) -> Result<Vec<Vec<Value>>> {
    read_jsonl(path)?
        .into_iter()
        .map(
            |(line, v)| match v.get("conversation").and_then(Value::as_array) {
                Some(c) => Ok(c.clone()),
                None => bail!(
                "{path}:{line}: no \"conversation\" list of {{\"human\", \"assistant\"}} objects"
            ),
            },
        )
        .collect()
}

/// `share_gpt_*_multi_turn`: one turn per non-empty `human` message of
/// `{"conversation": [{"human", "assistant"}, …]}`, truncated to --max-turns; the
/// dataset's assistant texts are discarded; the length filter applies to the first
/// user message only.
fn share_gpt(
    path: &str,
    cfg: &DatasetConfig,
    max_turns: Option<u64>,
    count: u64,
) -> Result<Vec<Conversation>> {
    let mut out = Vec::new();
    for conv in share_gpt_lines(path)? {
        if out.len() as u64 >= count {
            break;
        }
        let humans: Vec<String> = conv
            .iter()
            .filter_map(|t| t.get("human").and_then(Value::as_str))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .take(max_turns.unwrap_or(u64::MAX) as usize)
            .collect();
        let Some(first) = humans.first() else {
            continue;
        };
        if !in_range(first, cfg) {
            continue;
        }
        out.push(Conversation {
            turns: humans
                .into_iter()
                .map(|h| Turn {
                    messages: vec![user(h)],
                    max_tokens: None,
                    tool_call_latency: None,
                    rid: None,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// `custom_multi_turn`: one JSON array of `{"role", "content"}` messages per line,
/// split into turns at `assistant` messages (whose contents are discarded), truncated
/// to --max-turns. Lines that are not such arrays are skipped with a warning, as
/// evalscope does.
fn custom(
    path: &str,
    cfg: &DatasetConfig,
    max_turns: Option<u64>,
    count: u64,
) -> Result<Vec<Conversation>> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (line, v) in read_jsonl(path)? {
        if out.len() as u64 >= count {
            break;
        }
        let msgs = match v.as_array() {
            Some(a)
                if a.iter()
                    .all(|m| m.get("role").is_some() && m.get("content").is_some()) =>
            {
                a
            }
            _ => {
                skipped.push(line);
                continue;
            }
        };
        let mut turns: Vec<Turn> = Vec::new();
        let mut cur: Vec<Value> = Vec::new();
        for m in msgs {
            if m.get("role").and_then(Value::as_str) == Some("assistant") {
                if !cur.is_empty() {
                    turns.push(Turn {
                        messages: std::mem::take(&mut cur),
                        max_tokens: None,
                        tool_call_latency: None,
                        rid: None,
                    });
                }
            } else {
                cur.push(m.clone());
            }
        }
        if !cur.is_empty() {
            turns.push(Turn {
                messages: cur,
                max_tokens: None,
                tool_call_latency: None,
                rid: None,
            });
        }
        turns.truncate(max_turns.unwrap_or(u64::MAX) as usize);
        let first_user = turns.first().and_then(|t| {
            t.messages
                .iter()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        });
        if let Some(Value::String(s)) = first_user.and_then(|m| m.get("content")) {
            if !in_range(s, cfg) {
                continue;
            }
        }
        if !turns.is_empty() {
            out.push(Conversation { turns });
        }
    }
    if !skipped.is_empty() {
        crate::telemetry::log::warn(format!(
            "{path}: skipped {} line(s) that are not a JSON array of {{\"role\", \"content\"}} \
             messages (first: line {})",
            skipped.len(),
            skipped[0]
        ));
    }
    Ok(out)
}

/// `--dataset-path` of a ShareGPT dataset, or an error saying where to get the file
/// (perfscope never downloads).
fn share_gpt_path(cfg: &DatasetConfig, zh: bool) -> Result<&str> {
    cfg.path.as_deref().with_context(|| {
        format!(
            "--dataset {} needs --dataset-path: {} and pass the path of \
             sharegpt_jsonl/common_{}_70k.jsonl",
            cfg.name,
            cfg.hub
                .download_hint("swift/sharegpt", "shareAI/ShareGPT-Chinese-English-90k"),
            if zh { "zh" } else { "en" }
        )
    })
}

/// Single-turn `share_gpt_zh` / `share_gpt_en` prompts: the conversation as chat
/// messages, or its last user message for a completions endpoint.
pub fn share_gpt_prompts(
    cfg: &DatasetConfig,
    zh: bool,
    chat: bool,
    count: u64,
) -> Result<Vec<super::prompt::Prompt>> {
    Ok(share_gpt_single(share_gpt_path(cfg, zh)?, cfg, count)?
        .into_iter()
        .map(|m| {
            if chat {
                super::prompt::Prompt::Messages(m)
            } else {
                let last = m.as_array().and_then(|a| a.last()).cloned();
                super::prompt::Prompt::Text(
                    last.and_then(|l| l["content"].as_str().map(str::to_string))
                        .unwrap_or_default(),
                )
            }
        })
        .collect())
}

/// Single-turn `share_gpt_zh` / `share_gpt_en`: the conversation as alternating
/// user/assistant messages with a trailing assistant message dropped, sent as one
/// request; only the last user message is length-filtered.
pub fn share_gpt_single(path: &str, cfg: &DatasetConfig, count: u64) -> Result<Vec<Value>> {
    let fit = super::fit::Fitter::new(cfg)?;
    let mut out = Vec::new();
    for conv in share_gpt_lines(path)? {
        if out.len() as u64 >= count {
            break;
        }
        let mut msgs = Vec::new();
        for t in conv {
            if let Some(h) = t.get("human").and_then(Value::as_str) {
                msgs.push(json!({"role": "user", "content": h}));
            }
            if let Some(a) = t.get("assistant").and_then(Value::as_str) {
                msgs.push(json!({"role": "assistant", "content": a}));
            }
        }
        while msgs.last().is_some_and(|m| m["role"] == "assistant") {
            msgs.pop();
        }
        if let Some(m) = super::fit::conversation(msgs, cfg, fit.as_ref()) {
            out.push(Value::Array(m));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{test_config, DatasetKind};

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn random_turn_counts_and_shared_prefix() {
        let mut cfg = test_config(DatasetKind::Random);
        cfg.min_prompt_length = 10;
        cfg.max_prompt_length = 20;
        cfg.prefix_length = 6;
        let b = TurnBounds {
            min: 2,
            max: Some(4),
        };
        let convs = load(MultiTurnKind::Random, &cfg, b, 50, 0).unwrap();
        assert_eq!(convs.len(), 50);
        let prefix = convs[0].turns[0].messages[0]["content"].as_str().unwrap()[..6].to_string();
        let mut counts = std::collections::BTreeSet::new();
        for c in &convs {
            counts.insert(c.turns.len());
            for t in &c.turns {
                let s = t.messages[0]["content"].as_str().unwrap();
                assert!(s.starts_with(&prefix), "{s}");
                assert!((16..=26).contains(&s.len()), "{}", s.len());
            }
        }
        assert_eq!(counts, [2, 3, 4].into_iter().collect());
        let e = load(
            MultiTurnKind::Random,
            &cfg,
            TurnBounds { min: 1, max: None },
            5,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--max-turns"), "{e}");
    }

    #[test]
    fn share_gpt_and_custom_split_into_turns() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(DatasetKind::Random);
        cfg.path = Some(write(
            &dir,
            "common_en_70k.jsonl",
            "{\"conversation\":[{\"human\":\"hi there\",\"assistant\":\"yo\"},{\"human\":\"  \",\"assistant\":\"x\"},{\"human\":\"more\",\"assistant\":\"z\"},{\"human\":\"third\"}]}\n\
             {\"conversation\":[{\"human\":\"a\",\"assistant\":\"b\"}]}\n",
        ));
        cfg.min_prompt_length = 2;
        let b = TurnBounds {
            min: 1,
            max: Some(2),
        };
        let c = load(MultiTurnKind::ShareGpt { zh: false }, &cfg, b, 10, 0).unwrap();
        assert_eq!(c.len(), 1, "the 1-char first message is filtered out");
        let texts: Vec<&str> = c[0]
            .turns
            .iter()
            .map(|t| t.messages[0]["content"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["hi there", "more"]);
        let single = share_gpt_single(cfg.path.as_deref().unwrap(), &cfg, 10).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].as_array().unwrap().len(), 7);

        cfg.path = Some(write(
            &dir,
            "c.jsonl",
            "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"q2\"}]\n\
             {\"not\":\"an array\"}\n",
        ));
        let c = load(
            MultiTurnKind::Custom,
            &cfg,
            TurnBounds { min: 1, max: None },
            10,
            0,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].turns.len(), 2);
        assert_eq!(c[0].turns[0].messages.len(), 2);
        assert_eq!(c[0].turns[1].messages[0]["content"], "q2");
        cfg.path = None;
        let e = load(MultiTurnKind::ShareGpt { zh: true }, &cfg, b, 1, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("common_zh_70k.jsonl"), "{e}");
    }
}
