//! Chat and completions: the length and fault of each answer, and its delivery.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::config::SimConfig;
use super::engine::{Ev, Seq};
use super::server::{error_response, json_response, Sim};
use super::stream::{Fault, Formatter, Shape, SseBody};
use super::{metrics, stream, ticker};

fn prompt_text(req: &Value, shape: Shape) -> Option<String> {
    if let Some(s) = shape.input_string(req) {
        return Some(s);
    }
    if shape.chat() {
        let msgs = shape.messages(req)?;
        let msgs = msgs.as_array()?;
        let mut s = String::new();
        for m in msgs {
            match m.get("content") {
                Some(Value::String(t)) => {
                    s.push_str(t);
                    s.push(' ');
                }
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            s.push_str(t);
                            s.push(' ');
                        }
                    }
                }
                _ => {}
            }
        }
        Some(s)
    } else {
        match req.get("prompt")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => Some(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        }
    }
}

/// What the simulator decided for one request before generating it: the answer's
/// length and finish reason, streaming, and the fault (if any) it injects.
struct Decision {
    /// The request's max_tokens (u64::MAX when it sets none).
    requested: u64,
    target: u64,
    finish: &'static str,
    stream: bool,
    include_usage: bool,
    fault: Fault,
}

/// Draws request `n`'s length and fault from the seeded stream (same seed, same
/// run): the natural length first, then the fault.
fn decide(cfg: &SimConfig, req: &Value, n: u64, shape: Shape) -> Decision {
    let mut rng = fastrand::Rng::with_seed(cfg.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let max_tokens = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .or_else(|| req.get("max_output_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
        .max(1);
    let min_tokens = req.get("min_tokens").and_then(Value::as_u64).unwrap_or(0);
    let ignore_eos = req.get("ignore_eos").and_then(Value::as_bool) == Some(true);
    let natural = rng.u64(cfg.min_output_len..=cfg.max_output_len);
    let target = if ignore_eos {
        max_tokens
    } else {
        natural.max(min_tokens)
    }
    .min(max_tokens)
    .max(1);
    let finish = if target == max_tokens && (ignore_eos || natural >= max_tokens) {
        "length"
    } else {
        "stop"
    };
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    // The typed-event APIs always report usage; chat and completions streams when
    // asked to (`stream_options.include_usage`).
    let include_usage = !cfg.no_usage
        && (matches!(shape, Shape::Responses | Shape::Messages)
            || req
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true));
    Decision {
        requested: max_tokens,
        target,
        finish,
        stream,
        include_usage,
        fault: pick_fault(cfg, rng.f64(), target / 2),
    }
}

/// The fault for a draw `x` in [0, 1): each configured rate takes its share in turn.
fn pick_fault(cfg: &SimConfig, x: f64, half: u64) -> Fault {
    let mut acc = 0.0;
    let mut pick = |p: f64| {
        acc += p;
        x < acc
    };
    if pick(cfg.error_rate) {
        Fault::Http500
    } else if pick(cfg.rate_limit_rate) {
        Fault::Http429
    } else if pick(cfg.drop_rate) {
        Fault::Drop(half)
    } else if pick(cfg.stall_rate) {
        Fault::Stall(half, cfg.stall_ms)
    } else if pick(cfg.malformed_rate) {
        Fault::Malformed(half)
    } else if pick(cfg.in_band_error_rate) {
        Fault::InBandError(half)
    } else {
        Fault::None
    }
}

/// A chat or completions request: parse, decide, then answer at once (zero-delay)
/// or through the batching engine / fixed-delay ticker.
/// One generation request; the answer carries an `x-request-id` header, as vLLM's
/// does with `--enable-request-id-headers`.
///
/// As vLLM: a request that sends `X-Request-Id: X` gets `X` back in the header and
/// `chatcmpl-X` (`cmpl-X`) as its body id, the id of vLLM's log and spans; without
/// one, the header carries an id that appears nowhere else.
pub(crate) async fn handle(
    sim: Arc<Sim>,
    body: Bytes,
    shape: Shape,
    request_id: Option<String>,
) -> Response {
    let id = sim.request_ids.fetch_add(1, Ordering::Relaxed);
    let header = request_id
        .clone()
        .unwrap_or_else(|| format!("cmpl-sim-{id}"));
    let mut resp = generate(sim, body, shape, request_id).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&header) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn generate(
    sim: Arc<Sim>,
    body: Bytes,
    shape: Shape,
    request_id: Option<String>,
) -> Response {
    // Injected delays count from here, before any parsing.
    let arrived = Instant::now();
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let Some(prompt) = prompt_text(&req, shape) else {
        let want = match shape {
            Shape::Completions => "prompt",
            Shape::Responses => "input",
            _ => "messages",
        };
        return error_response(StatusCode::BAD_REQUEST, &format!("missing `{want}`"));
    };
    let n = sim.counter.fetch_add(1, Ordering::Relaxed);
    sim.requests_total.fetch_add(1, Ordering::Relaxed);
    let cfg = &sim.cfg;
    let d = decide(cfg, &req, n, shape);
    let messages = shape.messages(&req);
    let prompt_tokens = sim.prompt_tokens(&req, messages.as_ref(), &prompt);
    if let Some(len) = cfg.max_model_len {
        if d.requested != u64::MAX && prompt_tokens.saturating_add(d.requested) > len {
            // vLLM's refusal, before anything is scheduled.
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "This model's maximum context length is {len} tokens. However, you \
                     requested {} output tokens and your prompt contains {prompt_tokens} \
                     input tokens, for a total of {} tokens. Please reduce the length of \
                     the input prompt or the number of requested output tokens. \
                     (parameter=max_tokens, value={})",
                    d.requested,
                    prompt_tokens + d.requested,
                    d.requested
                ),
            );
        }
    }
    match d.fault {
        Fault::Http500 => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "simulated internal error",
            )
        }
        Fault::Http429 => {
            return error_response(StatusCode::TOO_MANY_REQUESTS, "simulated rate limit")
        }
        _ => {}
    }
    sim.prompt_tokens_total
        .fetch_add(prompt_tokens, Ordering::Relaxed);
    let model: Arc<str> = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("sim-7b")
        .into();
    // vLLM names a Responses reply `resp_<random>` whatever X-Request-Id says.
    let request_id = request_id.filter(|_| shape != Shape::Responses);
    let mut fmt = Formatter {
        shape,
        model,
        id: n,
        id_text: request_id.map_or_else(|| n.to_string().into(), Into::into),
        created: sim.created,
        include_usage: d.include_usage,
        prompt_tokens,
        cached: None,
        report_cached: !cfg.no_prompt_tokens_details,
        target: d.target,
        finish: d.finish,
    };
    fmt.cached = sim.cache_lookup(&req, messages.as_ref(), &prompt, &fmt.text());
    let observe = observe(&sim, &fmt, arrived);
    if cfg.zero_delay {
        return zero_delay_reply(&sim, &fmt, d.fault, d.stream, observe);
    }
    generated_reply(&sim, fmt, d, arrived, observe).await
}

/// Counts the request in the `vllm:*` metrics and returns what its body reports.
fn observe(sim: &Sim, fmt: &Formatter, arrived: Instant) -> stream::Observe {
    // Server metrics carry the model name the client asked for, as vLLM's
    // `model_name` label does for its served model.
    let labels = metrics::ServerLabels {
        model_name: fmt.model.to_string(),
        engine: "0".into(),
    };
    let m = &sim.server_metrics;
    m.count_prompt(&labels, fmt.prompt_tokens, fmt.cached.unwrap_or(0));
    // vLLM counts the prompt tokens it looked up and those it found.
    let hits = m.prefix_cache_hits.get_or_create(&labels);
    if let Some(c) = fmt.cached {
        m.prefix_cache_queries
            .get_or_create(&labels)
            .inc_by(fmt.prompt_tokens);
        hits.inc_by(c);
    }
    let _ = m.preemptions.get_or_create(&labels);
    let outside_engine = sim.engine.is_none();
    let kv = (fmt.prompt_tokens + fmt.target) as i64;
    if outside_engine {
        sim.server_metrics.active.fetch_add(1, Ordering::Relaxed);
        sim.server_metrics
            .active_kv
            .fetch_add(kv, Ordering::Relaxed);
    }
    stream::Observe {
        metrics: sim.server_metrics.clone(),
        labels,
        arrived,
        scheduled: None,
        first: None,
        last: None,
        kv: outside_engine.then_some(kv),
    }
}

/// Zero-delay mode: the whole answer leaves at once.
fn zero_delay_reply(
    sim: &Sim,
    fmt: &Formatter,
    fault: Fault,
    stream: bool,
    mut observe: stream::Observe,
) -> Response {
    let cfg = &sim.cfg;
    sim.generation_tokens_total
        .fetch_add(fmt.target, Ordering::Relaxed);
    observe.tokens(fmt.target, true);
    if !stream {
        return json_response(
            StatusCode::OK,
            String::from_utf8_lossy(&fmt.full_json(!cfg.no_usage)).into_owned(),
        );
    }
    let body = match stream::whole_stream(fmt, fault) {
        Ok(b) => Body::from(b),
        Err(partial) => {
            let (tx, rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
            let _ = tx.send(Ok(Bytes::from(partial)));
            // The cut comes a moment later: the server flushes what it wrote when
            // the body is pending, so the client sees headers and a partial
            // stream, then the break (an error in the same poll would close the
            // connection before any byte left).
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                let _ = tx.send(Err(std::io::Error::other("simulated dropped stream")));
            });
            Body::new(ChannelBody(rx))
        }
    };
    sse_response(body)
}

/// Queues the sequence on the batching engine (or the fixed-delay ticker) and
/// answers as its tokens come: streamed, or as one JSON body at the end.
async fn generated_reply(
    sim: &Sim,
    fmt: Formatter,
    d: Decision,
    arrived: Instant,
    mut observe: stream::Observe,
) -> Response {
    let cfg = &sim.cfg;
    let target = d.target;
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(engine) = &sim.engine {
        let _ = engine.send(Seq {
            tx,
            cached: fmt.cached.unwrap_or(0),
            prompt: fmt.prompt_tokens,
            target,
            generated: 0,
        });
    } else if let Some(t) = &sim.ticker {
        let ms = |v: Option<f64>| Duration::from_secs_f64(v.unwrap_or(0.0) / 1000.0);
        let job = ticker::Job {
            first: arrived + ms(cfg.ttft_ms),
            gap: ms(cfg.itl_ms),
            tokens: target,
            tx,
        };
        if let Ok(t) = t.lock() {
            let _ = t.send(job);
        }
    }
    sim.generation_tokens_total
        .fetch_add(target, Ordering::Relaxed);
    if d.stream {
        let mut body = SseBody::new(rx, fmt, d.fault);
        if sim.ticker.is_some() {
            body.first_token_log = Some((sim.first_tokens.clone(), arrived));
        }
        body.observe = Some(observe);
        return sse_response(Body::new(body));
    }
    let mut got = 0;
    while got < target {
        match rx.recv().await {
            Some(Ev::Scheduled) => observe.scheduled(),
            Some(Ev::Token) => {
                got += 1;
                observe.tokens(1, got == target);
            }
            _ => return error_response(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down"),
        }
    }
    json_response(
        StatusCode::OK,
        String::from_utf8_lossy(&fmt.full_json(!cfg.no_usage)).into_owned(),
    )
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_default()
}

struct ChannelBody(mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}
