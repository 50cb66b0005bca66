//! The simulator's decision endpoints, so `--api systemone` / `--api autotrust`
//! and `open_decisions` are testable without a decision service:
//! `/v1/systemone` (also `/systemone`) answers System One bodies, `/v1/decide`
//! (also `/decide`) AutoTrust's. Each reply is a valid distribution over the
//! asked options, seeded by the request: the first option gets the most mass.
//! Timing and faults are the embedding endpoint's (one forward pass).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::encoder::forward;
use super::server::{error_response, json_response, Sim};

/// A distribution over `n` options: weights n, n-1, …, 1 normalised, so option 0
/// is the unique argmax and the values sum to 1.
fn distribution(n: usize) -> Vec<f64> {
    let total = (n * (n + 1) / 2) as f64;
    (0..n).map(|i| (n - i) as f64 / total).collect()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn answer(sim: &Sim, text: &str) -> Result<u64, Response> {
    let n = sim.counter.fetch_add(1, Ordering::Relaxed);
    sim.requests_total.fetch_add(1, Ordering::Relaxed);
    let tokens = sim.count_tokens(text);
    match forward(sim, n, tokens).await {
        Some(r) => Err(r),
        None => Ok(tokens),
    }
}

fn bad(msg: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, msg)
}

pub async fn systemone(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad("invalid JSON");
    };
    let q = &req["questions"]["answer"];
    let (Some(kind), Some(instructions)) = (q["type"].as_str(), q["instructions"].as_str()) else {
        return bad("`questions.answer` needs `type` and `instructions`");
    };
    let text = format!(
        "{} {instructions} {}",
        text_of(&req["state"]),
        text_of(&q["criteria"])
    );
    let tokens = match answer(&sim, &text).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let answer = match (kind, &q["criteria"]) {
        ("choice", Value::Object(opts)) if opts.len() >= 2 => {
            let p = distribution(opts.len());
            let probs: serde_json::Map<String, Value> = opts
                .keys()
                .cloned()
                .zip(p.iter().map(|x| json!(x)))
                .collect();
            json!({"type": "choice", "probabilities": probs, "choice": opts.keys().next()})
        }
        ("noul", _) => {
            json!({"type": "noul", "probabilities": {"no": 0.25, "yes": 0.75}, "noul": 0.75})
        }
        ("score", Value::Array(levels)) if levels.len() >= 2 => {
            let p = distribution(levels.len());
            let score: f64 = p.iter().enumerate().map(|(i, x)| i as f64 * x).sum();
            let probs: serde_json::Map<String, Value> = (0..levels.len())
                .map(|i| (i.to_string(), json!(p[i])))
                .collect();
            let legend: serde_json::Map<String, Value> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect();
            json!({"type": "score", "probabilities": probs, "score": score, "legend": legend})
        }
        _ => return bad("unsupported question type or criteria"),
    };
    let model = req.get("model").cloned().unwrap_or(json!("sim-7b"));
    json_response(
        StatusCode::OK,
        json!({"model": model, "answers": {"answer": answer},
               "usage": {"input_tokens": tokens, "output_tokens": 1}})
        .to_string(),
    )
}

pub async fn decide(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad("invalid JSON");
    };
    let (Some(kind), Some(question)) = (req["kind"].as_str(), req["question"].as_str()) else {
        return bad("`kind` and `question` are required");
    };
    let options: Vec<Value> = match kind {
        "choice" => match req["options"].as_array() {
            Some(o) if o.len() >= 2 => o.clone(),
            _ => return bad("a choice needs at least two `options`"),
        },
        "noul" => vec![json!("false"), json!("true")],
        "score" => (0..6).map(|i| json!(i.to_string())).collect(),
        _ => return bad("`kind` must be choice, noul or score"),
    };
    let text = format!(
        "{} {question} {}",
        text_of(&req["state"]),
        text_of(&req["options"])
    );
    let tokens = match answer(&sim, &text).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let p = distribution(options.len());
    json_response(
        StatusCode::OK,
        json!({"model": "sim-7b", "kind": kind, "options": options, "probabilities": p,
               "choice_index": 0, "choice": options[0],
               "usage": {"prompt_tokens": tokens, "completion_tokens": 1}})
        .to_string(),
    )
}
