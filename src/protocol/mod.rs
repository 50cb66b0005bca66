//! API protocols: how a prompt becomes a request body and how a response payload is
//! read. One module per wire format; [`Protocol`] picks one for a run.

pub mod anthropic;
mod api;
pub mod body;
pub mod chunk;
pub mod custom;
pub mod dashscope;
pub mod decision;
pub mod embedding;
pub mod openai;
pub mod params;
pub mod responses;

pub use api::Api;
pub use params::GenParams;

use serde_json::{Map, Value};
use std::sync::Arc;

use crate::dataset::Prompt;
pub use body::{messages_text, prompt_text};
pub use chunk::{ChunkInfo, Usage};

/// The wire format of a run.
#[derive(Clone, Debug)]
pub enum Protocol {
    /// OpenAI chat/completions (also `local`, `local_vllm` and the simulator).
    OpenAi,
    /// The OpenAI Responses API, `/v1/responses`.
    Responses,
    /// The Anthropic Messages API, `/v1/messages`.
    Anthropic,
    /// OpenAI `/v1/embeddings`.
    Embedding,
    /// `/v1/rerank` in the vLLM / Jina / Cohere shape.
    Rerank,
    /// DashScope's native text-generation API.
    DashScope,
    /// evalscope's decision APIs (`systemone`, `autotrust`): complete JSON bodies,
    /// one validated JSON decision back.
    Decision(decision::DecisionApi),
    /// A declarative API from `--api-config`.
    Custom(Arc<custom::CustomApi>),
}

impl Protocol {
    /// Embedding, rerank and decision runs generate no token stream: evalscope's
    /// input-throughput summary layout applies (its `is_input_only`).
    pub fn is_encoder(&self) -> bool {
        matches!(
            self,
            Protocol::Embedding | Protocol::Rerank | Protocol::Decision(_)
        )
    }

    /// The request body for one prompt.
    pub fn build_body(
        &self,
        prompt: &Prompt,
        p: &GenParams,
        rng: &mut fastrand::Rng,
    ) -> anyhow::Result<Map<String, Value>> {
        Ok(match self {
            Protocol::OpenAi => openai::build_body(prompt, p, rng),
            Protocol::Responses => responses::build_body(prompt, p, rng),
            Protocol::Anthropic => anthropic::build_body(prompt, p, rng),
            Protocol::Embedding => embedding::embedding_body(prompt, p),
            Protocol::Rerank => embedding::rerank_body(prompt, p),
            Protocol::DashScope => dashscope::build_body(prompt, p, rng),
            Protocol::Decision(api) => decision::build_body(*api, prompt, &p.model)?,
            Protocol::Custom(c) => c.build_body(prompt, p, rng)?,
        })
    }

    /// A cheap request that proves the endpoint answers this protocol.
    pub fn connection_test_body(
        &self,
        chat: bool,
        p: &GenParams,
    ) -> anyhow::Result<Map<String, Value>> {
        let prompt = if chat {
            Prompt::Messages(serde_json::json!([{"role": "user", "content": "hello"}]))
        } else {
            Prompt::Text("hello".into())
        };
        match self {
            Protocol::OpenAi => Ok(openai::connection_test_body(chat, p)),
            _ => {
                let mut params = p.clone();
                params.max_tokens = (1, 1);
                params.min_tokens = None;
                params.extra_args.shift_remove("ignore_eos");
                self.build_body(&prompt, &params, &mut fastrand::Rng::with_seed(0))
            }
        }
    }

    /// Interprets one payload (an SSE data event or a whole JSON body).
    #[inline]
    pub fn parse(&self, data: &[u8]) -> Result<ChunkInfo, String> {
        match self {
            Protocol::OpenAi => chunk::parse_payload(data),
            Protocol::Responses => responses::parse(data),
            Protocol::Anthropic => anthropic::parse(data),
            Protocol::Embedding | Protocol::Rerank => embedding::parse(data),
            Protocol::DashScope => dashscope::parse(data),
            // A decision is read whole, against its request (`parse_decision`).
            Protocol::Decision(_) => {
                Err("a decision reply is one JSON body, not a stream of events".into())
            }
            Protocol::Custom(c) => c.parse(data),
        }
    }

    /// The `gen_ai.operation.name` of this run's spans.
    pub fn operation(&self, chat: bool) -> &'static str {
        match self {
            Protocol::Embedding => "embeddings",
            Protocol::Rerank => "rerank",
            _ if chat => "chat",
            _ => "text_completion",
        }
    }
}

/// Generation parameters at evalscope's defaults, for the protocol tests.
#[cfg(test)]
pub(crate) fn test_params(model: &str) -> GenParams {
    GenParams {
        model: model.into(),
        max_tokens: (2048, 2048),
        min_tokens: None,
        temperature: 0.0,
        top_p: None,
        top_k: None,
        frequency_penalty: None,
        repetition_penalty: None,
        n_choices: None,
        seed: None,
        stop: vec![],
        stop_token_ids: vec![],
        logprobs: false,
        stream: true,
        extra_args: Map::new(),
    }
}

/// Whether a stored run used one of evalscope's decision APIs.
pub fn is_decision_run(api: &str) -> bool {
    matches!(api, "systemone" | "autotrust")
}

/// Whether a stored run used an embedding or rerank endpoint (its API, or for the
/// simulator its URL path): such runs use evalscope's input-throughput layout.
pub fn is_encoder_run(api: &str, url: &str) -> bool {
    match api {
        "embedding" | "rerank" | "systemone" | "autotrust" => true,
        "sim" => {
            let path = crate::redact::split_query(url).0.trim_end_matches('/');
            path.ends_with("/embeddings") || path.ends_with("/rerank") || path.ends_with("/reranks")
        }
        _ => false,
    }
}

impl Protocol {
    /// The output text one payload carries (for counting tokens locally).
    pub(crate) fn output_text(&self, v: &Value) -> String {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
        match self {
            Protocol::OpenAi => [
                "/choices/0/delta/content",
                "/choices/0/delta/reasoning_content",
                "/choices/0/message/content",
                "/choices/0/message/reasoning_content",
                "/choices/0/text",
            ]
            .iter()
            .map(|p| s(p))
            .collect(),
            Protocol::DashScope => [
                "/output/choices/0/message/content",
                "/output/choices/0/message/reasoning_content",
                "/output/text",
            ]
            .iter()
            .map(|p| s(p))
            .collect(),
            Protocol::Responses => responses::output_text(v),
            Protocol::Anthropic => anthropic::output_text(v),
            Protocol::Custom(c) => c.content(v).to_string(),
            Protocol::Embedding | Protocol::Rerank | Protocol::Decision(_) => String::new(),
        }
    }

    /// Appends the output text of one payload (a multi-turn session sends it back).
    pub fn push_output_text(&self, data: &[u8], out: &mut String) {
        match self {
            Protocol::OpenAi => chunk::push_output_text(data, out),
            _ => {
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    out.push_str(&self.output_text(&v));
                }
            }
        }
    }

    /// With `--tokenizer-path`, fills the token counts a server left out: prompt
    /// tokens from the request body (chat messages through the chat template),
    /// completion tokens from the output text of the kept payloads.
    pub fn fill_token_counts(
        &self,
        tok: &crate::tokenizer::Tokenizer,
        rec: &mut crate::record::RequestRecord,
    ) {
        if !rec.success {
            return;
        }
        if rec.prompt_tokens.is_none() {
            if let Ok(body) = serde_json::from_slice::<Value>(&rec.request) {
                rec.prompt_tokens = Some(prompt_tokens(tok, &body));
            }
        }
        if rec.completion_tokens.is_none() {
            if self.is_encoder() {
                rec.completion_tokens = Some(0);
            } else if let Some(Ok(Value::Array(payloads))) = rec
                .response_messages
                .as_deref()
                .map(serde_json::from_str::<Value>)
            {
                let text: String = payloads.iter().map(|p| self.output_text(p)).collect();
                rec.completion_tokens = Some(tok.count(&text));
            }
        }
    }
}

/// Prompt tokens of a request body of any supported API.
fn prompt_tokens(tok: &crate::tokenizer::Tokenizer, body: &Value) -> u64 {
    let texts = |v: &Value| -> u64 {
        match v {
            Value::String(s) => tok.count(s),
            Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => tok.count(s),
                    other => tok.count(other.get("text").and_then(Value::as_str).unwrap_or("")),
                })
                .sum(),
            _ => 0,
        }
    };
    // Chat messages: `messages`, DashScope's `input.messages`, or a Responses
    // `input` list of role items.
    let role_items = body.get("input").filter(|i| {
        i.as_array()
            .and_then(|a| a.first())
            .is_some_and(|m| m.get("role").is_some())
    });
    let messages = body
        .get("messages")
        .or_else(|| body.pointer("/input/messages"))
        .or(role_items);
    if let Some(m) = messages {
        return tok
            .count_chat(m)
            .unwrap_or_else(|_| tok.count(&messages_text(m)));
    }
    if let Some(q) = body.get("query").and_then(Value::as_str) {
        // A cross-encoder reads the query with every document.
        let docs = body.get("documents").and_then(Value::as_array);
        let n = docs.map_or(1, |d| d.len().max(1)) as u64;
        return n * tok.count(q) + body.get("documents").map_or(0, texts);
    }
    body.get("prompt")
        .or_else(|| body.get("input"))
        .or_else(|| body.pointer("/input/prompt"))
        .map_or(0, texts)
}
