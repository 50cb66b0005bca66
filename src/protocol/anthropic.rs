//! The Anthropic Messages API (`POST /v1/messages`), which vLLM, SGLang and
//! llama.cpp serve and AIPerf benchmarks.
//!
//! Body: `{"model", "messages", "max_tokens", "stream", "temperature", "top_p",
//! "top_k", "stop_sequences"}` and `--extra-args`; system messages move to the
//! top-level `system` (the API has no system role), a text prompt becomes one user
//! message. Streams are typed events without `[DONE]`: `message_start` (usage with
//! the input tokens), `content_block_delta` (output: `text_delta`, `thinking_delta`,
//! `input_json_delta`), `message_delta` (`stop_reason`, usage with the output
//! tokens), `message_stop`; `error` fails the request. The input tokens of Anthropic
//! usage exclude the cached ones, so the prompt is `input_tokens +
//! cache_read_input_tokens + cache_creation_input_tokens` and the cached tokens are
//! `cache_read_input_tokens` (vLLM reports them with `--enable-prompt-tokens-details`).

use serde_json::{Map, Value};

use super::body::{json_error, malformed, put};
use super::chunk::{ChunkInfo, Usage};
use super::params::GenParams;
use crate::dataset::Prompt;

/// The `anthropic-version` header every request carries (unless `--headers` sets it).
pub const VERSION: &str = "2023-06-01";

/// Chat messages with their system messages taken out: (system text, the rest).
fn split_system(messages: &Value) -> (Option<String>, Value) {
    let Some(items) = messages.as_array() else {
        return (None, messages.clone());
    };
    let mut system: Vec<String> = Vec::new();
    let mut rest = Vec::with_capacity(items.len());
    for m in items {
        if m.get("role").and_then(Value::as_str) == Some("system") {
            system.push(super::body::messages_text(&Value::Array(vec![m.clone()])));
        } else {
            rest.push(m.clone());
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n"));
    (system, Value::Array(rest))
}

/// Builds the JSON body. `rng` samples `--max-tokens MIN MAX` per request.
pub fn build_body(prompt: &Prompt, p: &GenParams, rng: &mut fastrand::Rng) -> Map<String, Value> {
    let mut body = Map::new();
    let user_body = matches!(prompt, Prompt::Body(_));
    body.insert("model".into(), p.model.clone().into());
    let messages = match prompt {
        Prompt::Text(s) => Some(serde_json::json!([{"role": "user", "content": s}])),
        Prompt::Messages(m) => Some(m.clone()),
        Prompt::Body(b) => {
            body = b.clone();
            body.entry("model")
                .or_insert_with(|| p.model.clone().into());
            body.shift_remove("messages")
        }
    };
    if let Some(m) = messages {
        let (system, rest) = split_system(&m);
        if let Some(s) = system {
            body.entry("system").or_insert(Value::String(s));
        }
        body.insert("messages".into(), rest);
    }
    let max_tokens = p.sample_max_tokens(rng);
    put(&mut body, user_body, "max_tokens", max_tokens.into());
    put(&mut body, user_body, "stream", p.stream.into());
    put(&mut body, user_body, "temperature", p.temperature.into());
    if let Some(v) = p.top_p {
        put(&mut body, user_body, "top_p", v.into());
    }
    if let Some(v) = p.top_k {
        put(&mut body, user_body, "top_k", v.into());
    }
    if !p.stop.is_empty() {
        put(
            &mut body,
            user_body,
            "stop_sequences",
            p.stop.clone().into(),
        );
    }
    for (k, v) in &p.extra_args {
        put(&mut body, user_body, k, v.clone());
    }
    body
}

/// Anthropic usage as prompt / completion / cached tokens (see the module comment).
fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = n("input_tokens");
    let (read, created) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Usage {
        prompt_tokens: input.map(|i| i + read.unwrap_or(0) + created.unwrap_or(0)),
        completion_tokens: n("output_tokens"),
        cached_tokens: read,
    }
}

/// The output text of one content block or delta.
fn block_text(b: &Value) -> &str {
    ["text", "thinking", "partial_json"]
        .iter()
        .find_map(|k| b.get(*k).and_then(Value::as_str))
        .unwrap_or("")
}

/// The output text of a payload (a `content_block_delta` or a whole message).
pub fn output_text(v: &Value) -> String {
    match v.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => v.get("delta").map_or("", block_text).to_string(),
        Some("message") => v
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(block_text)
            .collect(),
        _ => String::new(),
    }
}

/// `end_turn` / `stop_sequence` read as `stop`, `max_tokens` as `length` (the
/// OpenAI names the other APIs' rows carry).
fn finish(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop".into(),
        "max_tokens" => "length".into(),
        other => other.into(),
    }
}

/// Reads one event, or a whole non-stream reply.
pub fn parse(data: &[u8]) -> Result<ChunkInfo, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| malformed(data, &e.to_string()))?;
    let mut info = ChunkInfo::default();
    match v.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            info.output_chars = v.get("delta").map_or(0, |d| block_text(d).chars().count());
        }
        Some("message_start") => {
            if let Some(u) = v.pointer("/message/usage") {
                let mut u = usage(u);
                // Output tokens arrive with message_delta; 0 here is no count yet.
                u.completion_tokens = None;
                info.usage = Some(u);
            }
        }
        Some("message_delta") => {
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                info.finish_reason = Some(finish(r));
            }
            if let Some(u) = v.get("usage") {
                info.usage = Some(usage(u));
            }
        }
        Some("message") => {
            info.output_chars = output_text(&v).chars().count();
            info.finish_reason = v.get("stop_reason").and_then(Value::as_str).map(finish);
            info.usage = v.get("usage").map(usage);
        }
        Some("error") => {
            info.error = Some(
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map_or_else(|| v.to_string(), str::to_string),
            );
        }
        Some(_) => {}
        None => {
            info.error = Some(json_error(&v).unwrap_or_else(|| v.to_string()));
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_moves_the_system_message() {
        let p = GenParams {
            max_tokens: (32, 32),
            stop: vec!["END".into()],
            ..crate::protocol::test_params("m")
        };
        let msgs = json!([{"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"}]);
        let b = build_body(
            &Prompt::Messages(msgs),
            &p,
            &mut fastrand::Rng::with_seed(0),
        );
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi"}],"max_tokens":32,"stream":true,"temperature":0.0,"stop_sequences":["END"]}"#
        );
    }

    #[test]
    fn events_as_vllm_sends_them() {
        let s = parse(br#"{"type":"message_start","message":{"id":"chatcmpl-1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":{"input_tokens":20,"output_tokens":0}}}"#).unwrap();
        assert_eq!(s.usage.and_then(|u| u.prompt_tokens), Some(20));
        assert_eq!(s.usage.and_then(|u| u.completion_tokens), None);
        let d = parse(br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":" forestry"},"index":0}"#).unwrap();
        assert_eq!(d.output_chars, 9);
        let end = parse(br#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":4,"cache_read_input_tokens":16,"output_tokens":3}}"#).unwrap();
        assert_eq!(end.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            end.usage,
            Some(Usage {
                prompt_tokens: Some(20),
                completion_tokens: Some(3),
                cached_tokens: Some(16)
            })
        );
        assert_eq!(
            parse(br#"{"type":"message_stop"}"#).unwrap(),
            ChunkInfo::default()
        );
        let e = parse(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("Overloaded"));
        let whole = parse(br#"{"id":"chatcmpl-2","type":"message","role":"assistant","content":[{"type":"text","text":"(window"}],"model":"m","stop_reason":"end_turn","usage":{"input_tokens":20,"output_tokens":3}}"#).unwrap();
        assert_eq!(
            (whole.output_chars, whole.finish_reason.as_deref()),
            (7, Some("stop"))
        );
    }
}
