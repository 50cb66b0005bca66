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
mod decision;
mod encoder;
pub mod engine;
mod generate;
pub mod metrics;
mod prefix;
mod server;
pub mod shape;
pub mod stream;
pub mod ticker;
mod typed;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{count_tokens, SimConfig};
use server::json_response;
pub use server::Sim;
use shape::Shape;

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
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(messages))
        .route("/v1/embeddings", post(encoder::embeddings))
        .route("/v1/rerank", post(encoder::rerank))
        .route("/v1/reranks", post(encoder::rerank))
        .route("/rerank", post(encoder::rerank))
        .route("/v1/systemone", post(decision::systemone))
        .route("/systemone", post(decision::systemone))
        .route("/v1/decide", post(decision::decide))
        .route("/decide", post(decision::decide))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(server_metrics))
        // Bodies up to perfscope's own --max-request-mib default (axum's 2 MB
        // default refuses long-context prompts that vLLM takes).
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(sim)
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
/// `reuse_port`: several processes may listen on the port (SO_REUSEPORT).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if reuse_port {
        sock.set_reuseport(true)?;
    }
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
    let reuse_port = cfg.reuse_port;
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
                let listener = match bind(addr, reuse_port) {
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
    let text = metrics::with_created(
        &sim.server_metrics
            .encode(&labels, engine, sim.cfg.kv_cache_tokens, om),
        sim.created,
    );
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

async fn chat(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    generate::handle(sim, body, Shape::Chat, request_id(&headers)).await
}

async fn responses(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    generate::handle(sim, body, Shape::Responses, request_id(&headers)).await
}

async fn messages(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    generate::handle(sim, body, Shape::Messages, request_id(&headers)).await
}

async fn completions(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    generate::handle(sim, body, Shape::Completions, request_id(&headers)).await
}

/// The client's `X-Request-Id`, when it sent a usable one.
fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_string)
}
