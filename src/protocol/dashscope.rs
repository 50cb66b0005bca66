//! DashScope's native text-generation API
//! (`POST /api/v1/services/aigc/text-generation/generation`).
//!
//! Body: `{"model", "input": {"messages"} | {"prompt"}, "parameters": {...}}` with
//! `result_format: "message"`. Streaming is requested with the `X-DashScope-SSE:
//! enable` header (added by the configuration) and `incremental_output: true`, so each
//! event carries only new text; without it every event repeats the whole answer and
//! inter-token gaps would be meaningless. Usage is `usage.input_tokens` /
//! `usage.output_tokens` (cumulative in every event); the stream ends with a
//! `finish_reason` other than the string `"null"`. evalscope's plugin builds a body
//! but never sends it (no `process_request`); this one is exercised against a mock
//! server in the tests.

use serde_json::{Map, Value};

use super::body::malformed;
use super::chunk::{ChunkInfo, Usage};
use super::params::GenParams;
use crate::dataset::Prompt;

pub const DEFAULT_URL: &str =
    "https://dashscope.aliyuncs.com/api/v1/services/aigc/text-generation/generation";

pub fn build_body(prompt: &Prompt, p: &GenParams, rng: &mut fastrand::Rng) -> Map<String, Value> {
    let (mut body, user) = match prompt {
        Prompt::Text(s) => {
            let mut m = Map::new();
            m.insert("input".into(), serde_json::json!({ "prompt": s }));
            (m, false)
        }
        Prompt::Messages(msgs) => {
            let mut m = Map::new();
            m.insert("input".into(), serde_json::json!({ "messages": msgs }));
            (m, false)
        }
        Prompt::Body(b) => (b.clone(), true),
    };
    if user {
        body.entry("model")
            .or_insert_with(|| p.model.clone().into());
    } else {
        // Key order as DashScope's documentation shows: model, input, parameters.
        let mut m = Map::new();
        m.insert("model".into(), p.model.clone().into());
        m.append(&mut body);
        body = m;
    }
    let mut params = match body.shift_remove("parameters") {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let mut put = |k: &str, v: Value| {
        params.entry(k.to_string()).or_insert(v);
    };
    put("result_format", "message".into());
    let max_tokens = p.sample_max_tokens(rng);
    put("max_tokens", max_tokens.into());
    if let Some(v) = p.frequency_penalty {
        put("frequency_penalty", v.into());
    }
    if let Some(v) = p.repetition_penalty {
        put("repetition_penalty", v.into());
    }
    if p.logprobs {
        put("logprobs", true.into());
    }
    if let Some(v) = p.n_choices {
        put("n", v.into());
    }
    if let Some(v) = p.seed {
        put("seed", v.into());
    }
    if !p.stop.is_empty() {
        put("stop", p.stop.clone().into());
    }
    if p.stream {
        put("incremental_output", true.into());
    }
    put("temperature", p.temperature.into());
    if let Some(v) = p.top_p {
        put("top_p", v.into());
    }
    if let Some(v) = p.top_k {
        put("top_k", v.into());
    }
    // --extra-args are generation parameters here; they override the defaults above
    // unless the body came from the dataset or a template.
    for (k, v) in &p.extra_args {
        if user {
            params.entry(k.clone()).or_insert_with(|| v.clone());
        } else {
            params.insert(k.clone(), v.clone());
        }
    }
    body.insert("parameters".into(), Value::Object(params));
    body
}

fn chars(v: Option<&Value>) -> usize {
    v.and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

/// Reads one event or a whole reply.
pub fn parse(data: &[u8]) -> Result<ChunkInfo, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| malformed(data, &e.to_string()))?;
    let code = v.get("code").and_then(Value::as_str).unwrap_or("");
    if !code.is_empty() && v.get("output").is_none() {
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        return Ok(ChunkInfo {
            error: Some(format!("{code}: {msg}")),
            ..Default::default()
        });
    }
    let Some(output) = v.get("output") else {
        return Err(malformed(data, "no `output`"));
    };
    let mut info = ChunkInfo::default();
    let (text, finish) = match output.pointer("/choices/0") {
        Some(c) => {
            info.has_choices = true;
            let m = c.get("message");
            (
                chars(m.and_then(|m| m.get("content")))
                    + chars(m.and_then(|m| m.get("reasoning_content"))),
                c.get("finish_reason"),
            )
        }
        None => (chars(output.get("text")), output.get("finish_reason")),
    };
    info.output_chars = text;
    info.finish_reason = finish
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty() && *f != "null")
        .map(str::to_string);
    if let Some(u) = v.get("usage") {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        info.usage = Some(Usage {
            prompt_tokens: n("input_tokens"),
            completion_tokens: n("output_tokens"),
            cached_tokens: u
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_shape() {
        let p = GenParams {
            max_tokens: (64, 64),
            top_p: Some(0.8),
            seed: Some(3),
            extra_args: json!({"enable_search": false})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..crate::protocol::test_params("qwen-plus")
        };
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let b = build_body(
            &Prompt::Messages(msgs),
            &p,
            &mut fastrand::Rng::with_seed(0),
        );
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"model":"qwen-plus","input":{"messages":[{"role":"user","content":"hi"}]},"parameters":{"result_format":"message","max_tokens":64,"seed":3,"incremental_output":true,"temperature":0.0,"top_p":0.8,"enable_search":false}}"#
        );
    }

    #[test]
    fn events() {
        let e = parse(br#"{"output":{"choices":[{"message":{"content":"Hel","role":"assistant"},"finish_reason":"null"}]},"usage":{"total_tokens":12,"input_tokens":10,"output_tokens":2},"request_id":"r"}"#).unwrap();
        assert_eq!((e.output_chars, e.finish_reason.clone()), (3, None));
        assert_eq!(e.usage.and_then(|u| u.prompt_tokens), Some(10));
        let e = parse(br#"{"output":{"choices":[{"message":{"content":"","role":"assistant"},"finish_reason":"stop"}]},"usage":{"input_tokens":10,"output_tokens":5}}"#).unwrap();
        assert_eq!(e.finish_reason.as_deref(), Some("stop"));
        let e = parse(br#"{"output":{"text":"abc","finish_reason":"length"},"usage":{"input_tokens":1,"output_tokens":3}}"#).unwrap();
        assert_eq!(
            (e.output_chars, e.finish_reason.as_deref()),
            (3, Some("length"))
        );
        let e = parse(
            br#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            e.error.as_deref(),
            Some("InvalidApiKey: Invalid API-key provided.")
        );
        assert!(parse(br#"{"foo":1}"#).is_err());
    }
}
