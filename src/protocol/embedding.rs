//! OpenAI-compatible `/v1/embeddings` and `/v1/rerank` (the vLLM, Jina and Cohere
//! shape). Bodies follow evalscope's `openai_embedding` / `openai_rerank` plugins:
//! `{"input", "model", ...extra}` and `{"query", "documents", "model", ...extra}`.
//! `batch_size`, `num_documents` and `document_length_ratio` in `--extra-args` shape
//! the dataset and are not sent.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::{json_error, malformed, messages_text, prompt_text, put};
use super::chunk::{ChunkInfo, Usage};
use super::params::GenParams;
use crate::dataset::Prompt;

/// `--extra-args` keys that configure perfscope rather than the server.
const LOCAL_KEYS: [&str; 3] = ["batch_size", "num_documents", "document_length_ratio"];

fn finish(mut body: Map<String, Value>, user: bool, p: &GenParams) -> Map<String, Value> {
    put(&mut body, user, "model", Value::String(p.model.clone()));
    for (k, v) in &p.extra_args {
        if !LOCAL_KEYS.contains(&k.as_str()) {
            put(&mut body, user, k, v.clone());
        }
    }
    body
}

pub fn embedding_body(prompt: &Prompt, p: &GenParams) -> Map<String, Value> {
    match prompt {
        // A dataset batch (`{"input": [...]}`) or a user body.
        Prompt::Body(b) => finish(b.clone(), true, p),
        other => {
            let mut m = Map::new();
            m.insert("input".into(), Value::String(prompt_text(other)));
            finish(m, false, p)
        }
    }
}

pub fn rerank_body(prompt: &Prompt, p: &GenParams) -> Map<String, Value> {
    let mut m = Map::new();
    match prompt {
        Prompt::Body(b) => return finish(b.clone(), true, p),
        // evalscope: the first message is the query, the others the documents.
        Prompt::Messages(Value::Array(msgs)) if msgs.len() > 1 => {
            let text = |v: &Value| messages_text(&Value::Array(vec![v.clone()]));
            m.insert("query".into(), text(&msgs[0]).into());
            m.insert(
                "documents".into(),
                msgs[1..].iter().map(text).collect::<Vec<_>>().into(),
            );
        }
        // A single text is scored against itself: one document, so the request is
        // valid for every server.
        other => {
            let t = prompt_text(other);
            m.insert("query".into(), t.clone().into());
            m.insert("documents".into(), vec![t].into());
        }
    }
    finish(m, false, p)
}

#[derive(Deserialize)]
struct Reply {
    data: Option<serde::de::IgnoredAny>,
    results: Option<serde::de::IgnoredAny>,
    usage: Option<ReplyUsage>,
    error: Option<Value>,
    object: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ReplyUsage {
    prompt_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// Reads an embedding or rerank reply. The vectors themselves are skipped without
/// being stored; input tokens come from `usage.prompt_tokens`, else
/// `usage.total_tokens` (vLLM's and Jina's rerank report only that).
pub fn parse(data: &[u8]) -> Result<ChunkInfo, String> {
    let r: Reply = serde_json::from_slice(data).map_err(|e| malformed(data, &e.to_string()))?;
    if r.error.as_ref().is_some_and(|e| !e.is_null()) || r.object.as_deref() == Some("error") {
        let v: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
        return Ok(ChunkInfo {
            error: json_error(&v).or(r.message).or(Some("error".into())),
            ..Default::default()
        });
    }
    if r.data.is_none() && r.results.is_none() {
        return Err(malformed(data, "no `data` or `results`"));
    }
    let prompt = r
        .usage
        .as_ref()
        .and_then(|u| u.prompt_tokens.or(u.total_tokens));
    Ok(ChunkInfo {
        has_choices: true,
        usage: prompt.map(|n| Usage {
            prompt_tokens: Some(n),
            completion_tokens: Some(0),
            cached_tokens: None,
        }),
        finish_reason: Some("stop".into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> GenParams {
        GenParams {
            extra_args: json!({"batch_size": 4, "dimensions": 256, "num_documents": 3,
                               "document_length_ratio": 2})
            .as_object()
            .cloned()
            .unwrap_or_default(),
            ..crate::protocol::test_params("bge")
        }
    }

    #[test]
    fn bodies() {
        let b = embedding_body(&Prompt::Text("hi".into()), &params());
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"input":"hi","model":"bge","dimensions":256}"#
        );
        let batch = json!({"input": ["a", "b"]}).as_object().cloned().unwrap();
        let b = embedding_body(&Prompt::Body(batch), &params());
        assert_eq!(b["input"], json!(["a", "b"]));
        let msgs = json!([{"role": "user", "content": "q"}, {"role": "user", "content": "d1"}, {"role": "user", "content": "d2"}]);
        let b = rerank_body(&Prompt::Messages(msgs), &params());
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"query":"q","documents":["d1","d2"],"model":"bge","dimensions":256}"#
        );
        let b = rerank_body(&Prompt::Text("only".into()), &params());
        assert_eq!(b["documents"], json!(["only"]));
    }

    #[test]
    fn replies() {
        let ok = parse(br#"{"object":"list","data":[{"embedding":[0.1,0.2],"index":0}],"usage":{"prompt_tokens":7,"total_tokens":7}}"#).unwrap();
        assert_eq!(ok.usage.and_then(|u| u.prompt_tokens), Some(7));
        let rr = parse(br#"{"id":"x","results":[{"index":0,"relevance_score":0.5}],"usage":{"total_tokens":11}}"#).unwrap();
        assert_eq!(rr.usage.and_then(|u| u.prompt_tokens), Some(11));
        let e = parse(br#"{"object":"error","message":"too long","code":400}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("too long"));
        assert!(parse(br#"{"usage":{}}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
