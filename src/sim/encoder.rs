//! The simulator's embedding (`/v1/embeddings`) and rerank (`/v1/rerank`, also
//! `/v1/reranks` and `/rerank`) endpoints, so `--api embedding` / `--api rerank` and
//! the embedding and rerank datasets are testable without a model.
//!
//! Timing: one forward pass over the input, `ttft_ms` when set (fixed-delay mode),
//! else `prefill_ms_per_token` per input token plus `decode_base_ms`; nothing in
//! zero-delay mode. Usage is exact with the simulator's token count. HTTP 500/429
//! faults apply as for generation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::server::{error_response, json_response, Sim};

/// Floats per embedding vector.
const DIM: usize = 32;

/// The texts of an `input`: a string, a list of strings, or token-id lists.
fn inputs(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Value::Array(a) if a.iter().all(Value::is_number) => {
            Some(vec![Value::Array(a.clone()).to_string()])
        }
        _ => None,
    }
}

fn doc_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other
            .get("text")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_string),
    }
}

/// Waits the simulated forward pass and applies HTTP faults (Some: the error reply).
pub(super) async fn forward(sim: &Sim, n: u64, tokens: u64) -> Option<Response> {
    let cfg = &sim.cfg;
    let mut rng = fastrand::Rng::with_seed(cfg.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let x = rng.f64();
    if x < cfg.error_rate {
        return Some(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated internal error",
        ));
    }
    if x < cfg.error_rate + cfg.rate_limit_rate {
        return Some(error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "simulated rate limit",
        ));
    }
    let ms = if cfg.zero_delay {
        0.0
    } else {
        cfg.ttft_ms
            .unwrap_or(cfg.decode_base_ms + cfg.prefill_ms_per_token * tokens as f64)
    };
    if ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
    sim.prompt_tokens_total.fetch_add(tokens, Ordering::Relaxed);
    None
}

pub async fn embeddings(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let Some(texts) = req.get("input").and_then(inputs) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "`input` must be a string or a list of strings",
        );
    };
    let n = sim.counter.fetch_add(1, Ordering::Relaxed);
    sim.requests_total.fetch_add(1, Ordering::Relaxed);
    let tokens: u64 = texts.iter().map(|t| sim.count_tokens(t)).sum();
    if let Some(r) = forward(&sim, n, tokens).await {
        return r;
    }
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut rng = fastrand::Rng::with_seed(t.len() as u64 ^ (i as u64) << 32);
            let v: Vec<f64> = (0..DIM).map(|_| (rng.f64() * 2.0 - 1.0) * 0.25).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let model = req.get("model").cloned().unwrap_or(json!("sim-embed"));
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        .to_string(),
    )
}

pub async fn rerank(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let (Some(query), Some(docs)) = (
        req.get("query").and_then(Value::as_str),
        req.get("documents").and_then(Value::as_array),
    ) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "`query` (string) and `documents` (list) are required",
        );
    };
    let n = sim.counter.fetch_add(1, Ordering::Relaxed);
    sim.requests_total.fetch_add(1, Ordering::Relaxed);
    // A cross-encoder reads the query with every document.
    let q = sim.count_tokens(query);
    let tokens: u64 = docs
        .iter()
        .map(|d| q + sim.count_tokens(&doc_text(d)))
        .sum();
    if let Some(r) = forward(&sim, n, tokens).await {
        return r;
    }
    let words: std::collections::HashSet<&str> = query.split_whitespace().collect();
    let mut results: Vec<(usize, f64, String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = doc_text(d);
            let hits = text
                .split_whitespace()
                .filter(|w| words.contains(w))
                .count();
            let score = hits as f64 / (1.0 + text.split_whitespace().count() as f64);
            (i, score, text)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = req.get("top_n").and_then(Value::as_u64) {
        results.truncate(k as usize);
    }
    let model = req.get("model").cloned().unwrap_or(json!("sim-rerank"));
    let results: Vec<Value> = results
        .into_iter()
        .map(|(i, s, t)| json!({"index": i, "document": {"text": t}, "relevance_score": s}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"id": format!("rerank-{n}"), "model": model, "usage": {"total_tokens": tokens},
               "results": results})
        .to_string(),
    )
}
