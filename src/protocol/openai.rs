//! OpenAI-compatible `/v1/chat/completions` and `/v1/completions`: request bodies in
//! evalscope's field order and defaults, and chunk interpretation as evalscope
//! 1.14's `default_api.py`.

use serde_json::{Map, Value};

use super::params::GenParams;
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
    let max_tokens = p.sample_max_tokens(rng);
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
/// (evalscope sends a full 2048-token request).
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

/// The connection test's body with the run's largest `max_tokens`, streamed: the
/// server validates it against the model's context before it answers (vLLM: 400),
/// and the stream is dropped when the response head arrives (see `engine::setup`).
pub fn limits_check_body(chat: bool, p: &GenParams) -> Option<Map<String, Value>> {
    if p.max_tokens.1 <= 1 {
        return None;
    }
    let mut body = connection_test_body(chat, p);
    body.insert("max_tokens".into(), p.max_tokens.1.into());
    body.insert("stream".into(), true.into());
    body.shift_remove("stream_options");
    Some(body)
}

pub use super::chunk::{parse_payload, ChunkInfo, Usage};

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenParams {
        GenParams {
            ..crate::protocol::test_params("m")
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
}
