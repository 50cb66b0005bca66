//! `--dataset-args` input-length fitting for the real-text datasets (openqa,
//! longalpaca, line_by_line text lines, share_gpt_zh/en), as evalscope's
//! `prepare_messages` does it:
//!
//! - `target_input_len` T (tokens, needs --tokenizer-path): a longer prompt is cut to
//!   its first T bare tokens; a shorter one is kept (`input_len_mode` `cap`) or
//!   dropped (`drop`). The length filter is not applied then.
//! - `prefix_file`: a corpus tokenised once, sliced (tiled if short) to exactly
//!   T − the prompt's tokens, and placed as a leading system message (`prefix_role`
//!   `system`, chat) or in front of the first message's text (`user`).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::sync::Arc;

use super::config::{DatasetConfig, InputLenMode};
use super::prompt::{in_range, Prompt};
use crate::tokenizer::Tokenizer;

pub(crate) struct Fitter {
    target: usize,
    drop_short: bool,
    tok: Arc<Tokenizer>,
    corpus: Option<Vec<u32>>,
    system: bool,
}

impl Fitter {
    /// The fitter `--dataset-args` asks for (None: the length filter applies).
    pub(crate) fn new(cfg: &DatasetConfig) -> Result<Option<Fitter>> {
        let (Some(target), Some(tok)) = (cfg.args.target_input_len, cfg.tokenizer.clone()) else {
            return Ok(None);
        };
        let corpus = match &cfg.args.prefix_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| {
                    format!("--dataset-args prefix_file: cannot read `{p}` (UTF-8 text)")
                })?;
                let ids = tok.encode(&text);
                anyhow::ensure!(
                    !ids.is_empty(),
                    "--dataset-args prefix_file `{p}` has no tokens"
                );
                Some(ids)
            }
            None => None,
        };
        Ok(Some(Fitter {
            target: target as usize,
            drop_short: cfg.args.input_len_mode == InputLenMode::Drop,
            tok,
            corpus,
            system: cfg.args.prefix_system,
        }))
    }

    /// `text` cut to the target, or None when it is short and `drop` is set.
    fn cut(&self, text: &str) -> Option<(String, usize)> {
        let ids = self.tok.encode(text);
        if ids.len() > self.target {
            let t = self.tok.decode(&ids[..self.target]);
            let n = self.tok.count(&t) as usize;
            return Some((t, n));
        }
        if ids.len() < self.target && self.drop_short {
            return None;
        }
        Some((text.to_string(), ids.len()))
    }

    /// The corpus padding for a prompt of `have` tokens (None: nothing to add).
    fn padding(&self, have: usize) -> Option<String> {
        let corpus = self.corpus.as_ref()?;
        let need = self.target.checked_sub(have).filter(|n| *n > 0)?;
        let ids: Vec<u32> = corpus.iter().copied().cycle().take(need).collect();
        Some(self.tok.decode(&ids))
    }

    /// Messages `msgs` with the padding placed where `prefix_role` says.
    fn place(&self, mut msgs: Vec<Value>, pad: Option<String>, chat: bool) -> Vec<Value> {
        let Some(pad) = pad else { return msgs };
        if chat && self.system {
            msgs.insert(0, json!({"role": "system", "content": pad}));
        } else if let Some(first) = msgs.first_mut() {
            let text = first["content"].as_str().unwrap_or("").to_string();
            first["content"] = Value::String(format!("{pad}{text}"));
        }
        msgs
    }
}

/// One text prompt: fitted when a fitter is given, else length-filtered.
pub(crate) fn text_prompt(
    text: &str,
    cfg: &DatasetConfig,
    fit: Option<&Fitter>,
    chat: bool,
) -> Option<Prompt> {
    let Some(f) = fit else {
        return in_range(text, cfg).then(|| Prompt::wrap(text.to_string(), chat));
    };
    let (t, n) = f.cut(text)?;
    let msgs = f.place(
        vec![json!({"role": "user", "content": t})],
        f.padding(n),
        chat,
    );
    Some(if chat {
        Prompt::Messages(Value::Array(msgs))
    } else {
        Prompt::Text(msgs[0]["content"].as_str().unwrap_or("").to_string())
    })
}

/// A share_gpt conversation: its last user message fitted (or filtered); with a
/// prefix file the padding covers the whole conversation.
pub(crate) fn conversation(
    mut msgs: Vec<Value>,
    cfg: &DatasetConfig,
    fit: Option<&Fitter>,
) -> Option<Vec<Value>> {
    let last = msgs.last()?["content"].as_str()?.to_string();
    let Some(f) = fit else {
        return in_range(&last, cfg).then_some(msgs);
    };
    let (t, _) = f.cut(&last)?;
    if let Some(m) = msgs.last_mut() {
        m["content"] = Value::String(t);
    }
    let have: usize = msgs
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| f.tok.count(c) as usize)
        .sum();
    let pad = f.padding(have);
    Some(f.place(msgs, pad, true))
}
