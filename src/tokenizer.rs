//! `--tokenizer-path`: a Hugging Face tokenizer (`tokenizer.json`, or a model
//! directory holding it) loaded with the `tokenizers` crate, and the model's chat
//! template from `tokenizer_config.json` (or `chat_template.jinja`) rendered with
//! minijinja. Used for token-unit prompt lengths (`random`, the length filter),
//! token counts when the server sends no usage, and by the simulator to count
//! prompts exactly as a server with that tokenizer would.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Used when the tokenizer has no chat template: ChatML, the format of Qwen and many
/// other open models.
pub const DEFAULT_CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{% if message.content is string %}{{ message.content }}{% else %}{% for part in message.content %}{% if part.type == 'text' %}{{ part.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Where the chat template came from (for the log).
    pub template_source: String,
    pub path: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .finish()
    }
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_str(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(o) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    }
}

impl Tokenizer {
    pub fn load(path: &str) -> Result<Arc<Tokenizer>> {
        let p = Path::new(path);
        let (file, dir): (PathBuf, PathBuf) = if p.is_dir() {
            (p.join("tokenizer.json"), p.to_path_buf())
        } else {
            (
                p.to_path_buf(),
                p.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        };
        if !file.is_file() {
            bail!(
                "--tokenizer-path: `{}` not found; give a tokenizer.json file or a model directory \
                 that holds one (e.g. huggingface-cli download Qwen/Qwen2.5-7B-Instruct \
                 tokenizer.json tokenizer_config.json --local-dir ./qwen)",
                file.display()
            );
        }
        let inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| anyhow!("--tokenizer-path: cannot load `{}`: {e}", file.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let config: Value = if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("--tokenizer-path: cannot read {}", cfg_path.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "--tokenizer-path: {}:{}: not valid JSON ({e})",
                    cfg_path.display(),
                    e.line()
                )
            })?
        } else {
            Value::Null
        };
        let jinja_file = dir.join("chat_template.jinja");
        let (template, source) = match config.get("chat_template") {
            Some(Value::String(t)) => (t.clone(), cfg_path.display().to_string()),
            // A list of named templates: the one called "default".
            Some(Value::Array(list)) => match list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
            {
                Some(t) => (t.to_string(), cfg_path.display().to_string()),
                None => (DEFAULT_CHAT_TEMPLATE.to_string(), "default (ChatML)".into()),
            },
            _ if jinja_file.is_file() => (
                std::fs::read_to_string(&jinja_file).with_context(|| {
                    format!("--tokenizer-path: cannot read {}", jinja_file.display())
                })?,
                jinja_file.display().to_string(),
            ),
            _ => (DEFAULT_CHAT_TEMPLATE.to_string(), "default (ChatML)".into()),
        };
        let mut env = minijinja::Environment::new();
        // Hugging Face templates call Python string methods and raise_exception.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", template).map_err(|e| {
            anyhow!("--tokenizer-path: the chat template from {source} does not parse: {e}")
        })?;
        Ok(Arc::new(Tokenizer {
            inner,
            env,
            bos_token: token_str(config.get("bos_token")),
            eos_token: token_str(config.get("eos_token")),
            template_source: source,
            path: file.display().to_string(),
        }))
    }

    /// Token ids of `text` without special tokens (evalscope's
    /// `encode(add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Tokens a server counts for a completions prompt (special tokens added, as
    /// vLLM does for `/v1/completions`).
    pub fn count_with_specials(&self, text: &str) -> u64 {
        self.inner
            .encode_fast(text, true)
            .map_or(0, |e| e.get_ids().len() as u64)
    }

    pub fn count(&self, text: &str) -> u64 {
        self.encode(text).len() as u64
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// evalscope's allowed vocabulary for random prompts: every id except special
    /// tokens and byte-fallback tokens (`<0xNN>`), which inflate re-encoded lengths.
    pub fn allowed_ids(&self) -> Vec<u32> {
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        let mut ids: Vec<u32> = self
            .inner
            .get_vocab(true)
            .into_iter()
            .filter(|(tok, id)| !special.contains(id) && !is_byte_fallback(tok))
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Allowed ids whose text starts a new word (byte-level `Ġ` or SentencePiece
    /// `▁`): appended to a prompt, they do not merge with the word before them.
    pub fn word_start_ids(&self) -> Vec<u32> {
        let allowed: std::collections::HashSet<u32> = self.allowed_ids().into_iter().collect();
        let mut ids: Vec<u32> = self
            .inner
            .get_vocab(false)
            .into_iter()
            .filter(|(tok, id)| {
                allowed.contains(id)
                    && (tok.starts_with('Ġ') || tok.starts_with('▁'))
                    && tok.chars().count() > 1
            })
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Word-start ids that survive a text round trip however they are joined: a
    /// space and ASCII letters only, and encoding the decoded token gives the
    /// token back. Pre-tokenizers split before every space-led word, so a prompt
    /// made of them re-encodes to exactly the same ids and a server counts
    /// exactly as many tokens as were built. Falls back to `word_start_ids` when
    /// the vocabulary has too few such words.
    pub fn stable_word_ids(&self) -> Vec<u32> {
        let all = self.word_start_ids();
        let stable: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&id| {
                let text = self.decode(&[id]);
                let word = text.strip_prefix(' ').unwrap_or("");
                !word.is_empty()
                    && word.bytes().all(|b| b.is_ascii_alphabetic())
                    && self.encode(&text) == [id]
            })
            .collect();
        if stable.len() >= 64 {
            stable
        } else {
            all
        }
    }

    /// The chat template applied to `messages` (a JSON list of messages).
    pub fn render_chat(&self, messages: &Value, add_generation_prompt: bool) -> Result<String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| anyhow!("chat template: {e}"))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| {
            anyhow!(
                "rendering the chat template from {}: {e}",
                self.template_source
            )
        })
    }

    /// Tokens of a chat prompt as a server counts them: template applied, then
    /// encoded without adding special tokens (the template has them).
    pub fn count_chat(&self, messages: &Value) -> Result<u64> {
        Ok(self.count(&self.render_chat(messages, true)?))
    }
}

fn is_byte_fallback(tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() == 6
        && tok.starts_with("<0x")
        && tok.ends_with('>')
        && b[3].is_ascii_hexdigit()
        && b[4].is_ascii_hexdigit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fallback_names() {
        assert!(is_byte_fallback("<0x0A>"));
        assert!(is_byte_fallback("<0xfF>"));
        assert!(!is_byte_fallback("<0x0A"));
        assert!(!is_byte_fallback("<0xZZ>"));
        assert!(!is_byte_fallback("hello"));
    }
}
