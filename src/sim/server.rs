//! The simulator's shared state and its plain JSON replies.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::config::{count_tokens, SimConfig};
use super::engine::{self, EngineState, Seq};
use super::{metrics, stream, ticker};

pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) counter: AtomicU64,
    pub(crate) engine: Option<mpsc::UnboundedSender<Seq>>,
    pub(crate) ticker: Option<std::sync::Mutex<std::sync::mpsc::Sender<ticker::Job>>>,
    pub state: Arc<EngineState>,
    pub(crate) created: u64,
    /// Tokens generated and prompt tokens received, for tests and logs.
    pub prompt_tokens_total: AtomicU64,
    pub generation_tokens_total: AtomicU64,
    pub requests_total: AtomicU64,
    /// The next `x-request-id`.
    pub request_ids: AtomicU64,
    /// Fixed-delay mode: actual first-token delay per request id.
    pub first_tokens: Arc<stream::FirstTokenLog>,
    /// The `vllm:*` metrics served on the simulator's own `/metrics`.
    pub server_metrics: Arc<metrics::ServerMetrics>,
    /// `tokenizer_path`: count prompts as a server with this tokenizer would.
    pub(crate) tokenizer: Option<Arc<crate::tokenizer::Tokenizer>>,
    /// The prefix cache (None with `no_prefix_cache`).
    pub prefix: Option<std::sync::Mutex<super::prefix::PrefixCache>>,
}

impl Sim {
    /// Must be called inside a tokio runtime (the batching engine is a task).
    pub fn new(cfg: SimConfig, tokenizer: Option<Arc<crate::tokenizer::Tokenizer>>) -> Arc<Sim> {
        let state = Arc::new(EngineState::default());
        let fixed = cfg.ttft_ms.is_some() || cfg.itl_ms.is_some();
        let engine = (!cfg.zero_delay && !fixed).then(|| engine::spawn(cfg.clone(), state.clone()));
        let ticker = (!cfg.zero_delay && fixed)
            .then(ticker::start)
            .and_then(Result::ok)
            .map(std::sync::Mutex::new);
        let prefix = (!cfg.no_prefix_cache).then(|| {
            std::sync::Mutex::new(super::prefix::PrefixCache::new(
                cfg.block_size as usize,
                cfg.kv_cache_tokens,
            ))
        });
        Arc::new(Sim {
            prefix,
            created: chrono::Utc::now().timestamp().max(0) as u64,
            cfg,
            counter: AtomicU64::new(0),
            engine,
            ticker,
            state,
            prompt_tokens_total: AtomicU64::new(0),
            generation_tokens_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            first_tokens: Arc::default(),
            server_metrics: Arc::default(),
            tokenizer,
        })
    }

    /// Prompt tokens of a text (a completions prompt or an embedding input).
    pub fn count_tokens(&self, text: &str) -> u64 {
        match &self.tokenizer {
            Some(t) => t.count_with_specials(text),
            None => count_tokens(text),
        }
    }

    /// The request's prompt as the cache sees it, and the answer `answer` appended
    /// after it (a conversation's next turn sends both back): token ids with a
    /// tokenizer (the answer is then left out: the template separates the turns),
    /// word pieces without one.
    pub(crate) fn cache_lookup(
        &self,
        req: &Value,
        messages: Option<&Value>,
        flat: &str,
        answer: &str,
    ) -> Option<u64> {
        let cache = self.prefix.as_ref()?;
        let mut prompt = Vec::new();
        let mut ans = Vec::new();
        match &self.tokenizer {
            Some(t) => {
                let text = match messages {
                    Some(m) => t.render_chat(m, true).unwrap_or_else(|_| flat.to_string()),
                    None => flat.to_string(),
                };
                prompt.extend(t.encode(&text).into_iter().map(u64::from));
            }
            None => {
                super::prefix::word_pieces(flat, &mut prompt);
                super::prefix::word_pieces(answer, &mut ans);
            }
        }
        if let Some(ids) = token_ids(req) {
            prompt = ids;
            ans.clear();
        }
        let mut c = cache.lock().ok()?;
        Some(c.lookup(&prompt, &ans))
    }

    /// Prompt tokens of a request: chat messages go through the tokenizer's chat
    /// template, as vLLM counts them.
    pub(crate) fn prompt_tokens(&self, req: &Value, messages: Option<&Value>, flat: &str) -> u64 {
        if let Some(ids) = token_ids(req) {
            // A completions prompt of token ids (`--tokenize-prompt`): one token each.
            return ids.len() as u64;
        }
        match (&self.tokenizer, messages) {
            (Some(t), Some(m)) => t.count_chat(m).unwrap_or_else(|_| t.count(flat)),
            _ => self.count_tokens(flat),
        }
    }
}

/// A completions `prompt` given as token ids.
fn token_ids(req: &Value) -> Option<Vec<u64>> {
    let a = req.get("prompt")?.as_array()?;
    a.iter().map(Value::as_u64).collect()
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

pub(crate) fn error_response(status: StatusCode, msg: &str) -> Response {
    json_response(
        status,
        serde_json::json!({"object": "error", "message": msg, "type": "BadRequestError",
                           "code": status.as_u16()})
        .to_string(),
    )
}
