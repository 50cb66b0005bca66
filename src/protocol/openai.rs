//! OpenAI-compatible `/v1/chat/completions` and `/v1/completions`: request bodies in
//! evalscope's field order and defaults (§6.1), and chunk interpretation as evalscope
//! 1.14's `default_api.py`.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::config::GenParams;
use crate::dataset::Prompt;

/// Builds the JSON body. `rng` samples `--max-tokens MIN MAX` per request.
pub fn build_body(prompt: &Prompt, p: &GenParams, rng: &mut fastrand::Rng) -> Map<String, Value> {
    let (mut body, user_body) = match prompt {
        Prompt::Text(s) => {
            let mut m = Map::new();
            m.insert("prompt".into(), Value::String(s.clone()));
            (m, false)
        }
        Prompt::Messages(msgs) => {
            let mut m = Map::new();
            m.insert("messages".into(), msgs.clone());
            (m, false)
        }
        Prompt::Body(b) => (b.clone(), true),
    };
    // evalscope: user bodies (JSON-object lines) keep their own values: setdefault.
    let put = |body: &mut Map<String, Value>, k: &str, v: Value| {
        if user_body {
            body.entry(k.to_string()).or_insert(v);
        } else {
            body.insert(k.to_string(), v);
        }
    };
    put(&mut body, "model", Value::String(p.model.clone()));
    let max_tokens = match p.max_tokens {
        (lo, hi) if hi > lo => rng.u64(lo..=hi),
        (lo, _) => lo,
    };
    put(&mut body, "max_tokens", max_tokens.into());
    if let Some(v) = p.min_tokens {
        put(&mut body, "min_tokens", v.into());
    }
    if let Some(v) = p.frequency_penalty {
        put(&mut body, "frequency_penalty", v.into());
    }
    if let Some(v) = p.repetition_penalty {
        put(&mut body, "repetition_penalty", v.into());
    }
    if p.logprobs {
        put(&mut body, "logprobs", true.into());
    }
    if let Some(v) = p.n_choices {
        put(&mut body, "n", v.into());
    }
    if let Some(v) = p.seed {
        put(&mut body, "seed", v.into());
    }
    if !p.stop.is_empty() {
        put(&mut body, "stop", p.stop.clone().into());
    }
    put(&mut body, "stream", p.stream.into());
    if p.stream {
        body.entry("stream_options")
            .or_insert_with(|| serde_json::json!({"include_usage": true}));
    } else {
        body.shift_remove("stream_options");
    }
    if !p.stop_token_ids.is_empty() {
        // evalscope sends these as a list of strings, unconverted.
        put(&mut body, "stop_token_ids", p.stop_token_ids.clone().into());
    }
    put(&mut body, "temperature", p.temperature.into());
    if let Some(v) = p.top_p {
        put(&mut body, "top_p", v.into());
    }
    if let Some(v) = p.top_k {
        put(&mut body, "top_k", v.into());
    }
    for (k, v) in &p.extra_args {
        put(&mut body, k, v.clone());
    }
    body
}

/// The connection-test body: the same shape with `max_tokens` 1 so the test is cheap
/// (evalscope sends a full 2048-token request, §2.6).
pub fn connection_test_body(chat: bool, p: &GenParams) -> Map<String, Value> {
    let prompt = if chat {
        Prompt::Messages(serde_json::json!([{"role": "user", "content": "hello"}]))
    } else {
        Prompt::Text("hello".into())
    };
    let mut params = p.clone();
    params.max_tokens = (1, 1);
    params.min_tokens = None;
    let mut body = build_body(&prompt, &params, &mut fastrand::Rng::with_seed(0));
    body.shift_remove("min_tokens");
    body.shift_remove("ignore_eos");
    body.insert("max_tokens".into(), 1.into());
    body
}

#[derive(Deserialize, Default)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct FunctionCall<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct ToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionCall<'a>>,
}

#[derive(Deserialize, Default)]
struct ReasoningDetail<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    reasoning_details: Option<Vec<ReasoningDetail<'a>>>,
}

impl Delta<'_> {
    fn output_chars(&self) -> usize {
        let s = |o: &Option<Cow<str>>| o.as_deref().map_or(0, |x| x.chars().count());
        let mut n = s(&self.content) + s(&self.reasoning_content) + s(&self.reasoning);
        for tc in self.tool_calls.iter().flatten() {
            if let Some(f) = &tc.function {
                n += s(&f.name) + s(&f.arguments);
            }
        }
        for rd in self.reasoning_details.iter().flatten() {
            n += s(&rd.text);
        }
        n
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// What one payload (an SSE data event or a whole non-stream body) contributed.
#[derive(Default)]
pub struct ChunkInfo {
    pub has_choices: bool,
    /// Characters of output text (content, reasoning, tool-call name/arguments,
    /// reasoning_details text); > 0 means the chunk carries output (evalscope 1.14's
    /// TTFT/ITL rule).
    pub output_chars: usize,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// In-band error text: `{"error": ...}` or `{"object": "error"}`.
    pub error: Option<String>,
}

/// Parses one JSON payload. `Err` = not valid JSON (a malformed chunk).
pub fn parse_payload(data: &[u8]) -> Result<ChunkInfo, String> {
    let chunk: Chunk = serde_json::from_slice(data).map_err(|e| {
        let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
        format!("malformed chunk ({e}): {shown}")
    })?;
    let mut info = ChunkInfo::default();
    if chunk.error.as_ref().is_some_and(|e| !e.is_null())
        || chunk.object.as_deref() == Some("error")
    {
        let text = match &chunk.error {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
            Some(v) if !v.is_null() => v.to_string(),
            _ => chunk
                .message
                .as_deref()
                .unwrap_or("error object in stream")
                .to_string(),
        };
        info.error = Some(text);
        return Ok(info);
    }
    if let Some(choices) = &chunk.choices {
        if let Some(c) = choices.first() {
            info.has_choices = true;
            let text_completion = chunk.object.as_deref() == Some("text_completion");
            let mut n = c.text.as_deref().map_or(0, |t| t.chars().count());
            if !text_completion || n == 0 {
                n += c.delta.as_ref().map_or(0, Delta::output_chars);
                n += c.message.as_ref().map_or(0, Delta::output_chars);
            }
            info.output_chars = n;
        }
        for c in choices {
            if let Some(f) = &c.finish_reason {
                info.finish_reason = Some(f.to_string());
            }
        }
    }
    info.usage = chunk.usage;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenParams {
        GenParams {
            model: "m".into(),
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

    #[test]
    fn default_chat_body_matches_evalscope_order() {
        let p = Prompt::Messages(serde_json::json!([{"role":"user","content":"hi"}]));
        let b = build_body(&p, &params(), &mut fastrand::Rng::with_seed(1));
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"messages":[{"role":"user","content":"hi"}],"model":"m","max_tokens":2048,"stream":true,"stream_options":{"include_usage":true},"temperature":0.0}"#
        );
    }

    #[test]
    fn all_params_in_order_and_extra_args_override() {
        let mut p = params();
        p.min_tokens = Some(5);
        p.frequency_penalty = Some(0.5);
        p.repetition_penalty = Some(1.1);
        p.logprobs = true;
        p.n_choices = Some(2);
        p.seed = Some(42);
        p.stop = vec!["x".into()];
        p.stream = false;
        p.stop_token_ids = vec!["7".into()];
        p.top_p = Some(0.9);
        p.top_k = Some(50);
        p.extra_args.insert("temperature".into(), 0.7.into());
        p.extra_args.insert("ignore_eos".into(), true.into());
        let b = build_body(
            &Prompt::Text("q".into()),
            &p,
            &mut fastrand::Rng::with_seed(1),
        );
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"prompt":"q","model":"m","max_tokens":2048,"min_tokens":5,"frequency_penalty":0.5,"repetition_penalty":1.1,"logprobs":true,"n":2,"seed":42,"stop":["x"],"stream":false,"stop_token_ids":["7"],"temperature":0.7,"top_p":0.9,"top_k":50,"ignore_eos":true}"#
        );
    }

    #[test]
    fn user_body_keeps_its_values() {
        let mut m = Map::new();
        m.insert("messages".into(), serde_json::json!([]));
        m.insert("max_tokens".into(), 7.into());
        m.insert("temperature".into(), 1.0.into());
        let b = build_body(
            &Prompt::Body(m),
            &params(),
            &mut fastrand::Rng::with_seed(1),
        );
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["model"], "m");
    }

    #[test]
    fn max_tokens_range_is_sampled_inclusive() {
        let mut p = params();
        p.max_tokens = (10, 12);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let b = build_body(&Prompt::Text("q".into()), &p, &mut rng);
            seen.insert(b["max_tokens"].as_u64().unwrap_or(0));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![10, 11, 12]);
    }

    #[test]
    fn chunk_kinds() {
        let role =
            parse_payload(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert!(role.has_choices && role.output_chars == 0);
        let c = parse_payload(br#"{"choices":[{"delta":{"content":"ab"}}]}"#).unwrap();
        assert_eq!(c.output_chars, 2);
        let r = parse_payload(br#"{"choices":[{"delta":{"reasoning_content":"xyz"}}]}"#).unwrap();
        assert_eq!(r.output_chars, 3);
        let t = parse_payload(
            br#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(t.output_chars, 3);
        let tc = parse_payload(
            br#"{"object":"text_completion","choices":[{"text":"hey","finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(tc.output_chars, 3);
        assert_eq!(tc.finish_reason.as_deref(), Some("length"));
        let u = parse_payload(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}}"#).unwrap();
        assert!(!u.has_choices);
        let u = u.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(3), Some(4)));
        let e = parse_payload(br#"{"error":{"message":"overloaded","code":503}}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("overloaded"));
        let e = parse_payload(br#"{"object":"error","message":"bad"}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("bad"));
        assert!(parse_payload(b"{not json").is_err());
    }
}
