//! The OpenAI Responses API (`POST /v1/responses`), which vLLM and SGLang serve:
//! evalscope 1.14.1's `openai_responses` plugin (aliases `openai_response`,
//! `responses`).
//!
//! Body: `{"input", "model", "max_output_tokens", "stream", "temperature", "top_p"}`
//! and `--extra-args`, in evalscope's order; chat messages become `input` items (text
//! parts `input_text`, image parts `input_image`). Events are typed: output is the
//! non-empty `delta` of `response.output_text.delta`, `response.refusal.delta`,
//! `response.reasoning_text.delta` and `response.reasoning_summary_text.delta`;
//! `response.completed` / `response.incomplete` carry the usage (`input_tokens`,
//! `output_tokens`, `input_tokens_details.cached_tokens`) and end the stream (no
//! `[DONE]`); `response.failed` and `error` fail the request. A non-stream reply is
//! the response object itself.

use serde_json::{Map, Value};

use super::body::{json_error, malformed, put};
use super::chunk::{ChunkInfo, Usage};
use super::params::GenParams;
use crate::dataset::Prompt;

/// Output-carrying event types (evalscope's `_DELTA_EVENT_TYPES`).
const DELTA_EVENTS: [&str; 4] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
];

/// Chat content parts as Responses input parts (evalscope's
/// `normalize_responses_content_part`).
fn normalize_part(part: &Value) -> Value {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => serde_json::json!({
            "type": "input_text",
            "text": part.get("text").cloned().unwrap_or_else(|| "".into()),
        }),
        Some("image_url") => {
            let (url, detail) = match part.get("image_url") {
                Some(Value::String(u)) => (Value::String(u.clone()), Value::from("auto")),
                Some(o) => (
                    o.get("url").cloned().unwrap_or(Value::Null),
                    o.get("detail").cloned().unwrap_or_else(|| "auto".into()),
                ),
                None => (Value::Null, "auto".into()),
            };
            serde_json::json!({"type": "input_image", "image_url": url, "detail": detail})
        }
        _ => part.clone(),
    }
}

/// Chat messages as Responses `input` (string contents unchanged).
pub fn normalize_input(messages: &Value) -> Value {
    match messages {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|m| match m.get("content") {
                    Some(Value::Array(parts)) => {
                        let mut m = m.clone();
                        m["content"] = Value::Array(parts.iter().map(normalize_part).collect());
                        m
                    }
                    _ => m.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Builds the JSON body. `rng` samples `--max-tokens MIN MAX` per request.
pub fn build_body(prompt: &Prompt, p: &GenParams, rng: &mut fastrand::Rng) -> Map<String, Value> {
    let mut body = Map::new();
    match prompt {
        Prompt::Text(s) => {
            body.insert("input".into(), Value::String(s.clone()));
        }
        Prompt::Messages(m) => {
            body.insert("input".into(), normalize_input(m));
        }
        Prompt::Body(b) => {
            body = b.clone();
            if !body.contains_key("input") {
                if let Some(m) = body.shift_remove("messages") {
                    body.insert("input".into(), normalize_input(&m));
                }
            }
        }
    }
    // evalscope sets these over a dataset's own body (no set-default here).
    put(&mut body, false, "model", p.model.clone().into());
    let max_tokens = p.sample_max_tokens(rng);
    put(&mut body, false, "max_output_tokens", max_tokens.into());
    put(&mut body, false, "stream", p.stream.into());
    put(&mut body, false, "temperature", p.temperature.into());
    if let Some(v) = p.top_p {
        put(&mut body, false, "top_p", v.into());
    }
    for (k, v) in &p.extra_args {
        put(&mut body, false, k, v.clone());
    }
    body
}

/// The usage of a response object: `input_tokens` / `output_tokens` (else the chat
/// names), cached from `input_tokens_details` (else `prompt_tokens_details`).
fn usage(response: &Value) -> Option<Usage> {
    let u = response.get("usage").filter(|u| u.is_object())?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let (prompt, completion) =
        if u.get("input_tokens").is_some() || u.get("output_tokens").is_some() {
            (n("input_tokens"), n("output_tokens"))
        } else if u.get("prompt_tokens").is_some() || u.get("completion_tokens").is_some() {
            (n("prompt_tokens"), n("completion_tokens"))
        } else {
            return None;
        };
    let cached = u
        .get("input_tokens_details")
        .or_else(|| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64);
    Some(Usage {
        prompt_tokens: prompt.or(Some(0)),
        completion_tokens: completion.or(Some(0)),
        cached_tokens: cached,
    })
}

/// The finish reason of a finished response: `stop` when completed, `length` when
/// cut by `max_output_tokens`, else the incomplete reason.
fn finish(response: &Value) -> String {
    match response.get("status").and_then(Value::as_str) {
        Some("incomplete") => match response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
        {
            Some("max_output_tokens") | None => "length".into(),
            Some(r) => r.into(),
        },
        _ => "stop".into(),
    }
}

/// Characters of output text in a response object (`output_text`, else the message
/// items' `output_text` and `refusal` parts).
fn response_chars(response: &Value) -> usize {
    if let Some(t) = response.get("output_text").and_then(Value::as_str) {
        return t.chars().count();
    }
    output_text(response).chars().count()
}

/// The output text of a response object or of one delta event.
pub fn output_text(v: &Value) -> String {
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        if DELTA_EVENTS.contains(&t) {
            return v
                .get("delta")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
        }
        if t.starts_with("response.") {
            return String::new();
        }
    }
    let mut out = String::new();
    for item in v
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item.get("type").and_then(Value::as_str) != Some("message") {
            continue;
        }
        for c in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = match c.get("type").and_then(Value::as_str) {
                Some("output_text") => "text",
                Some("refusal") => "refusal",
                _ => continue,
            };
            out.push_str(c.get(key).and_then(Value::as_str).unwrap_or(""));
        }
    }
    out
}

/// The response's `id` (vLLM logs it, `resp_…`, and ignores an `X-Request-Id`).
fn response_id(response: Option<&Value>) -> Option<String> {
    response?.get("id")?.as_str().map(str::to_string)
}

/// Reads one event, or a whole non-stream reply.
pub fn parse(data: &[u8]) -> Result<ChunkInfo, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| malformed(data, &e.to_string()))?;
    let mut info = ChunkInfo::default();
    match v.get("type").and_then(Value::as_str) {
        Some(t) if DELTA_EVENTS.contains(&t) => {
            info.output_chars = v
                .get("delta")
                .and_then(Value::as_str)
                .map_or(0, |d| d.chars().count());
        }
        Some("response.created") => info.body_id = response_id(v.get("response")),
        Some("response.completed" | "response.incomplete") => {
            let r = v.get("response").unwrap_or(&Value::Null);
            info.usage = usage(r);
            info.finish_reason = Some(finish(r));
            info.body_id = response_id(Some(r));
        }
        Some("response.failed" | "error") => {
            let e = v.get("response").unwrap_or(&v);
            info.error = Some(
                e.pointer("/error/message")
                    .or_else(|| e.get("message"))
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_string),
            );
        }
        Some(_) => {}
        None => {
            // A non-stream reply: the response object.
            if let Some(e) = json_error(&v) {
                info.error = Some(e);
            } else if v.get("status").and_then(Value::as_str) == Some("failed") {
                info.error = Some(v.to_string());
            } else {
                info.output_chars = response_chars(&v);
                info.body_id = response_id(Some(&v));
                info.usage = usage(&v);
                info.finish_reason = Some(finish(&v));
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_in_evalscope_order() {
        let p = GenParams {
            max_tokens: (64, 64),
            top_p: Some(0.9),
            extra_args: json!({"reasoning": {"effort": "low"}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..crate::protocol::test_params("m")
        };
        let msgs = json!([{"role": "user", "content": [{"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "data:x"}}]}]);
        let b = build_body(
            &Prompt::Messages(msgs),
            &p,
            &mut fastrand::Rng::with_seed(0),
        );
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:x","detail":"auto"}]}],"model":"m","max_output_tokens":64,"stream":true,"temperature":0.0,"top_p":0.9,"reasoning":{"effort":"low"}}"#
        );
    }

    #[test]
    fn events_as_vllm_sends_them() {
        let d = parse(br#"{"content_index":0,"delta":" ger","item_id":"msg_1","logprobs":[],"output_index":0,"sequence_number":4,"type":"response.output_text.delta"}"#).unwrap();
        assert_eq!(d.output_chars, 4);
        let other = parse(br#"{"type":"response.output_text.done","text":"abc"}"#).unwrap();
        assert_eq!(other, ChunkInfo::default());
        let done = parse(br#"{"response":{"id":"resp_1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":16},"output_tokens":3,"total_tokens":23}},"sequence_number":9,"type":"response.completed"}"#).unwrap();
        assert_eq!(done.finish_reason.as_deref(), Some("length"));
        assert_eq!(done.body_id.as_deref(), Some("resp_1"));
        assert_eq!(
            done.usage,
            Some(Usage {
                prompt_tokens: Some(20),
                completion_tokens: Some(3),
                cached_tokens: Some(16)
            })
        );
        let failed =
            parse(br#"{"type":"response.failed","response":{"error":{"message":"boom"}}}"#)
                .unwrap();
        assert_eq!(failed.error.as_deref(), Some("boom"));
        let whole = parse(br#"{"id":"resp_2","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"hello"}]}],"usage":{"input_tokens":5,"output_tokens":2}}"#).unwrap();
        assert_eq!(
            (whole.output_chars, whole.finish_reason.as_deref()),
            (5, Some("stop"))
        );
        assert!(parse(br#"{"status":"failed","output":[]}"#)
            .unwrap()
            .error
            .is_some());
    }
}
