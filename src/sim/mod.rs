//! The built-in simulated LLM server (`perfscope sim`, and `perf --api sim`).
//!
//! Serves an OpenAI-compatible API over real HTTP: `/v1/chat/completions`,
//! `/v1/completions` (streaming with a final usage chunk, or one JSON body),
//! `/v1/embeddings`, `/v1/rerank`, `/v1/models` and `/health`. Timing comes from one of three models:
//! - continuous batching (default, [`engine`]);
//! - fixed delays (`ttft_ms` / `itl_ms`): every request gets exactly those, whatever
//!   the load, so client timing can be checked against the truth;
//! - zero delay: the whole answer in one write, to measure the client itself.
//!
//! Usage counts are exact: prompt tokens by the `tokenizer_path` tokenizer when one
//! is given (chat prompts rendered with its chat template), else
//! [`config::count_tokens`]; completion tokens = tokens sent.

pub mod config;
mod encoder;
pub mod engine;
pub mod metrics;
pub mod stream;
pub mod ticker;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use config::{count_tokens, SimConfig};
use engine::{EngineState, Seq};
use stream::{Ev, Fault, Formatter, SseBody};

pub struct Sim {
    cfg: SimConfig,
    counter: AtomicU64,
    engine: Option<mpsc::UnboundedSender<Seq>>,
    ticker: Option<std::sync::Mutex<std::sync::mpsc::Sender<ticker::Job>>>,
    pub state: Arc<EngineState>,
    created: u64,
    /// Tokens generated and prompt tokens received, for tests and logs.
    pub prompt_tokens_total: AtomicU64,
    pub generation_tokens_total: AtomicU64,
    pub requests_total: AtomicU64,
    /// Fixed-delay mode: actual first-token delay per request id.
    pub first_tokens: Arc<stream::FirstTokenLog>,
    /// The `vllm:*` metrics served on the simulator's own `/metrics`.
    pub server_metrics: Arc<metrics::ServerMetrics>,
    /// `tokenizer_path`: count prompts as a server with this tokenizer would.
    tokenizer: Option<Arc<crate::tokenizer::Tokenizer>>,
}

/// A running simulator.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(encoder::embeddings))
        .route("/v1/rerank", post(encoder::rerank))
        .route("/v1/reranks", post(encoder::rerank))
        .route("/rerank", post(encoder::rerank))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(server_metrics))
        .with_state(sim)
}

impl Sim {
    /// Must be called inside a tokio runtime (the batching engine is a task).
    pub fn new(cfg: SimConfig, tokenizer: Option<Arc<crate::tokenizer::Tokenizer>>) -> Arc<Sim> {
        let state = Arc::new(EngineState::default());
        let fixed = cfg.ttft_ms.is_some() || cfg.itl_ms.is_some();
        let engine = (!cfg.zero_delay && !fixed).then(|| engine::spawn(cfg.clone(), state.clone()));
        let ticker = (!cfg.zero_delay && fixed)
            .then(ticker::start)
            .and_then(Result::ok)
            .map(std::sync::Mutex::new);
        Arc::new(Sim {
            created: chrono::Utc::now().timestamp().max(0) as u64,
            cfg,
            counter: AtomicU64::new(0),
            engine,
            ticker,
            state,
            prompt_tokens_total: AtomicU64::new(0),
            generation_tokens_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            first_tokens: Arc::default(),
            server_metrics: Arc::default(),
            tokenizer,
        })
    }

    /// Prompt tokens of a text (a completions prompt or an embedding input).
    pub fn count_tokens(&self, text: &str) -> u64 {
        match &self.tokenizer {
            Some(t) => t.count_with_specials(text),
            None => count_tokens(text),
        }
    }

    /// Prompt tokens of a request: chat messages go through the tokenizer's chat
    /// template, as vLLM counts them.
    fn prompt_tokens(&self, req: &Value, chat: bool, flat: &str) -> u64 {
        match (&self.tokenizer, req.get("messages")) {
            (Some(t), Some(m)) if chat => t.count_chat(m).unwrap_or_else(|_| t.count(flat)),
            _ => self.count_tokens(flat),
        }
    }
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Sim>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY, a small token frame written right after the role prelude
    // waits for the client's delayed ACK (~40 ms): a fake TTFT.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds with a deep accept backlog: std's default of 128 drops SYNs when hundreds
/// of benchmark connections open at once, and the retransmit (~1 s) would show up as
/// a fake TTFT.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

/// Starts the simulator on its own thread and runtime (so its work does not share the
/// client's scheduler), bound to `addr` (port 0 = any free port).
pub fn spawn(addr: SocketAddr, cfg: SimConfig, threads: usize) -> anyhow::Result<SimHandle> {
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("simulator settings: {e}"))?;
    let tokenizer = cfg
        .tokenizer_path
        .as_deref()
        .map(crate::tokenizer::Tokenizer::load)
        .transpose()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (sim_tx, sim_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("perfscope-sim".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name("perfscope-sim")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = sim_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = sim_tx.send(Err(format!("cannot bind {addr}: {e}")));
                        return;
                    }
                };
                let local = match listener.local_addr() {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = sim_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let sim = Sim::new(cfg, tokenizer);
                let _ = sim_tx.send(Ok((sim.clone(), local)));
                let _ = serve(listener, sim, async {
                    let _ = rx.await;
                })
                .await;
            });
        })?;
    let (sim, local) = sim_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("simulator thread exited"))?
        .map_err(|e| anyhow::anyhow!("simulator: {e}"))?;
    Ok(SimHandle {
        addr: local,
        sim,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn models(State(sim): State<Arc<Sim>>) -> Response {
    let _ = &sim;
    json_response(
        StatusCode::OK,
        serde_json::json!({"object": "list", "data": [{"id": "sim-7b", "object": "model", "owned_by": "perfscope"}]})
            .to_string(),
    )
}

/// vLLM-compatible server metrics; OpenMetrics when asked for.
async fn server_metrics(State(sim): State<Arc<Sim>>, headers: axum::http::HeaderMap) -> Response {
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let labels = metrics::ServerLabels {
        model_name: "sim-7b".into(),
        engine: "0".into(),
    };
    let engine = sim.engine.as_ref().map(|_| &*sim.state);
    let text = sim
        .server_metrics
        .encode(&labels, engine, sim.cfg.kv_cache_tokens, om);
    let ct = if om {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Response::builder()
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(text))
        .unwrap_or_default()
}

async fn chat(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    handle(sim, body, true).await
}

async fn completions(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    handle(sim, body, false).await
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn error_response(status: StatusCode, msg: &str) -> Response {
    json_response(
        status,
        serde_json::json!({"object": "error", "message": msg, "type": "BadRequestError",
                           "code": status.as_u16()})
        .to_string(),
    )
}

fn prompt_text(req: &Value, chat: bool) -> Option<String> {
    if chat {
        let msgs = req.get("messages")?.as_array()?;
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

async fn handle(sim: Arc<Sim>, body: Bytes, chat: bool) -> Response {
    // Injected delays count from here, before any parsing.
    let arrived = Instant::now();
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let Some(prompt) = prompt_text(&req, chat) else {
        let want = if chat { "messages" } else { "prompt" };
        return error_response(StatusCode::BAD_REQUEST, &format!("missing `{want}`"));
    };
    let n = sim.counter.fetch_add(1, Ordering::Relaxed);
    sim.requests_total.fetch_add(1, Ordering::Relaxed);
    let cfg = &sim.cfg;
    let mut rng = fastrand::Rng::with_seed(cfg.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let max_tokens = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
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
    let include_usage = !cfg.no_usage
        && req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
    let prompt_tokens = sim.prompt_tokens(&req, chat, &prompt);
    let fault = {
        let x = rng.f64();
        let half = target / 2;
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
    };
    match fault {
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
    let fmt = Formatter {
        chat,
        model,
        id: n,
        created: sim.created,
        include_usage,
        prompt_tokens,
        target,
        finish,
    };
    // Server metrics carry the model name the client asked for, as vLLM's
    // `model_name` label does for its served model.
    let labels = metrics::ServerLabels {
        model_name: fmt.model.to_string(),
        engine: "0".into(),
    };
    sim.server_metrics
        .prompt_tokens
        .get_or_create(&labels)
        .inc_by(prompt_tokens);
    let outside_engine = sim.engine.is_none();
    let kv = (prompt_tokens + target) as i64;
    if outside_engine {
        sim.server_metrics.active.fetch_add(1, Ordering::Relaxed);
        sim.server_metrics
            .active_kv
            .fetch_add(kv, Ordering::Relaxed);
    }
    let mut observe = stream::Observe {
        metrics: sim.server_metrics.clone(),
        labels,
        arrived,
        last: None,
        kv: outside_engine.then_some(kv),
    };
    if cfg.zero_delay {
        sim.generation_tokens_total
            .fetch_add(target, Ordering::Relaxed);
        // The whole answer leaves at once.
        observe.tokens(target, true);
        if !stream {
            return json_response(
                StatusCode::OK,
                String::from_utf8_lossy(&fmt.full_json(!cfg.no_usage)).into_owned(),
            );
        }
        let body = match stream::whole_stream(&fmt, fault) {
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
        return sse_response(body);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(engine) = &sim.engine {
        let _ = engine.send(Seq {
            tx,
            prompt: prompt_tokens,
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
    if stream {
        let mut body = SseBody::new(rx, fmt, fault);
        if sim.ticker.is_some() {
            body.first_token_log = Some((sim.first_tokens.clone(), arrived));
        }
        body.observe = Some(observe);
        return sse_response(Body::new(body));
    }
    let mut got = 0;
    while got < target {
        match rx.recv().await {
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
