//! Request execution: HTTP, SSE decoding and timestamps.
//!
//! Timestamps are taken in the task that reads the socket, right after each read
//! returns and before anything is parsed or queued (DESIGN principle 2). Several SSE
//! events delivered in one read share that read's arrival time, which is when the
//! client could first have seen them.

pub mod sse;

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

use crate::config::RunConfig;
use crate::protocol::{ChunkInfo, Protocol};
use crate::record::{Clock, FailureKind, RequestRecord, Timeline};
use sse::SseDecoder;

/// A cancellation flag that tasks can await.
#[derive(Clone, Default)]
pub struct Cancel(Arc<(AtomicBool, Notify)>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Installs rustls' ring provider for the process (reqwest and ureq are built
/// without one, to keep aws-lc out of the build). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the HTTP client for a run: a pool sized to the concurrency, headers fixed
/// (user agent and content type as evalscope, then the user's).
pub fn build_http(cfg: &RunConfig, pool: usize) -> anyhow::Result<reqwest::Client> {
    install_tls_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::USER_AGENT,
        reqwest::header::HeaderValue::from_static("perfscope"),
    );
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &cfg.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| anyhow::anyhow!("--headers: `{k}` is not a valid header name"))?;
        let mut value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            anyhow::anyhow!("--headers: the value of `{k}` is not a valid header value")
        })?;
        if matches!(
            k.to_ascii_lowercase().as_str(),
            "authorization" | "proxy-authorization" | "x-api-key" | "x-auth-token"
        ) {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    let mut b = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(pool.max(1))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .tcp_nodelay(true);
    if let Some(t) = cfg.connect_timeout {
        b = b.connect_timeout(t);
    }
    if let Some(t) = cfg.read_timeout {
        b = b.read_timeout(t);
    }
    b.build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// Everything needed to send one request.
pub struct Ticket {
    pub seq: u64,
    pub intended_start: f64,
    /// The JSON body; `Bytes` so every request shares one buffer per distinct body.
    pub body: Bytes,
    pub stream_requested: bool,
    /// W3C trace context for this request: sent as `traceparent` so a traced server
    /// puts its spans in this trace, stored in SQLite and used as the exemplar.
    pub trace: Option<TraceContext>,
}

/// A W3C trace id, the id of the client's (parent) span and whether it is exported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// Fresh random ids (never all-zero, which W3C reserves as invalid).
    pub fn random(sampled: bool) -> TraceContext {
        TraceContext {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            sampled,
        }
    }
    /// `00-<trace-id>-<parent-id>-<flags>`: flags 01 when the request's span is
    /// exported (or no exporter is configured: the server's own sampling decides).
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{:032x}-{:016x}-{flags}", self.trace_id, self.span_id)
    }
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// Mutable per-request state while the response is read.
struct Reading {
    tl: Timeline,
    itl: Vec<f64>,
    last_output: Option<f64>,
    usage_prompt: Option<u64>,
    usage_completion: Option<u64>,
    cached: Option<u64>,
    finish: Option<String>,
    output_chars: u64,
    output_chunks: u32,
    done: bool,
    failure: Option<(FailureKind, String)>,
    messages: Option<Vec<String>>,
}

impl Reading {
    /// Applies one payload received at `t`.
    fn payload(&mut self, proto: &Protocol, data: &[u8], t: f64) {
        if self.failure.is_some() {
            return;
        }
        if self.tl.first_event.is_none() {
            self.tl.first_event = Some(t);
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if let Some(m) = self.messages.as_mut() {
            m.push(String::from_utf8_lossy(data).into_owned());
        }
        // evalscope's `completed_time`: the last data event, including the usage-only
        // chunk, but not `[DONE]`.
        self.tl.end = t;
        match proto.parse(data) {
            Err(e) => self.failure = Some((FailureKind::MalformedChunk, e)),
            Ok(info) => self.apply(info, t),
        }
    }

    fn apply(&mut self, info: ChunkInfo, t: f64) {
        if let Some(e) = info.error {
            self.failure = Some((FailureKind::InBandError, e));
            return;
        }
        if info.output_chars > 0 {
            if self.tl.first_output.is_none() {
                self.tl.first_output = Some(t);
            }
            if let Some(prev) = self.last_output {
                self.itl.push(t - prev);
            }
            self.last_output = Some(t);
            self.output_chunks += 1;
            self.output_chars += info.output_chars as u64;
        }
        if info.finish_reason.is_some() {
            self.finish = info.finish_reason;
        }
        if let Some(u) = info.usage {
            if u.prompt_tokens.is_some() {
                self.usage_prompt = u.prompt_tokens;
            }
            if u.completion_tokens.is_some() {
                self.usage_completion = u.completion_tokens;
            }
            if let Some(c) = u.cached_tokens {
                self.cached = Some(c);
            }
        }
    }
}

fn classify(e: &reqwest::Error) -> FailureKind {
    if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        FailureKind::Transport
    } else {
        FailureKind::Other
    }
}

/// Error text with the source chain (reqwest's top-level message alone says little).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// Sends one request and reads the whole response. Never fails: every outcome is a
/// record. `cancel` aborts the request (recorded as `cancelled`).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    http: &reqwest::Client,
    url: &reqwest::Url,
    proto: &Protocol,
    total_timeout: std::time::Duration,
    clock: &Clock,
    ticket: Ticket,
    keep_messages: bool,
    cancel: &Cancel,
) -> RequestRecord {
    let mut r = Reading {
        tl: Timeline {
            intended_start: ticket.intended_start,
            ..Default::default()
        },
        itl: Vec::new(),
        last_output: None,
        usage_prompt: None,
        usage_completion: None,
        cached: None,
        finish: None,
        output_chars: 0,
        output_chunks: 0,
        done: false,
        failure: None,
        messages: keep_messages.then(Vec::new),
    };
    let mut status = None;
    let mut is_stream = ticket.stream_requested;
    // The request is built (body shared, trace header formatted) before the clock
    // starts: like evalscope, `send` is taken immediately before the HTTP call.
    let mut req = http.post(url.clone()).body(ticket.body.clone());
    if let Some(t) = &ticket.trace {
        req = req.header("traceparent", t.traceparent());
    }
    r.tl.send = clock.now();
    let fut = read_response(req, url, proto, clock, &mut r, &mut status, &mut is_stream);
    tokio::select! {
        biased;
        _ = cancel.cancelled() => {
            r.tl.end = clock.now();
            r.failure = Some((FailureKind::Cancelled, "cancelled: the run was interrupted before the response completed".into()));
        }
        res = tokio::time::timeout(total_timeout, fut) => {
            if res.is_err() {
                r.tl.end = clock.now();
                r.failure = Some((FailureKind::Timeout, format!("total timeout of {:.0} s exceeded (--total-timeout)", total_timeout.as_secs_f64())));
            }
        }
    }
    let success = r.failure.is_none();
    if success && r.tl.first_output.is_none() {
        // A successful response with no output chunk (e.g. max_tokens 0, or an empty
        // answer): TTFT falls back to the first event, as evalscope's first chunk.
        r.tl.first_output = r.tl.first_event;
    }
    let (failure, error) = match r.failure {
        Some((k, e)) => (Some(k), Some(e)),
        None => (None, None),
    };
    RequestRecord {
        seq: ticket.seq,
        request: ticket.body,
        timeline: r.tl,
        itl: r.itl,
        success,
        is_stream,
        http_status: status,
        failure,
        error,
        prompt_tokens: r.usage_prompt,
        completion_tokens: r.usage_completion,
        cached_tokens: r.cached,
        output_chunks: r.output_chunks,
        finish_reason: r.finish,
        output_chars: r.output_chars,
        response_messages: r.messages.map(|m| format!("[{}]", m.join(","))),
        request_id: None,
        trace: ticket.trace,
    }
}

async fn read_response(
    req: reqwest::RequestBuilder,
    url: &reqwest::Url,
    proto: &Protocol,
    clock: &Clock,
    r: &mut Reading,
    status_out: &mut Option<u16>,
    is_stream: &mut bool,
) {
    let mut resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            r.tl.end = clock.now();
            r.failure = Some((classify(&e), format!("POST {url}: {}", error_text(&e))));
            return;
        }
    };
    let t_headers = clock.now();
    r.tl.headers = Some(t_headers);
    let status = resp.status().as_u16();
    *status_out = Some(status);
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(200..300).contains(&status) {
        let mut text = Vec::new();
        while let Ok(Some(c)) = resp.chunk().await {
            if text.len() < 4096 {
                text.extend_from_slice(&c);
            }
        }
        r.tl.end = clock.now();
        let body = String::from_utf8_lossy(&text[..text.len().min(2048)]).into_owned();
        r.failure = Some((
            FailureKind::from_status(status),
            format!("HTTP {status}: {}", body.trim()),
        ));
        return;
    }
    if ctype.contains("text/event-stream") {
        *is_stream = true;
        let mut dec = SseDecoder::new();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    let t = clock.now();
                    dec.feed(&bytes, |data| r.payload(proto, data, t));
                    if r.failure.is_some() {
                        // The stream is already a failure; stop reading it.
                        return;
                    }
                }
                Ok(None) => {
                    let t = clock.now();
                    dec.finish(|data| r.payload(proto, data, t));
                    if r.failure.is_none() && !r.done && r.finish.is_none() {
                        r.tl.end = t;
                        r.failure = Some((
                            FailureKind::IncompleteStream,
                            "stream ended without [DONE] or a finish_reason".into(),
                        ));
                    }
                    if r.tl.first_event.is_none() && r.failure.is_none() {
                        r.tl.end = t;
                        r.failure =
                            Some((FailureKind::IncompleteStream, "empty event stream".into()));
                    }
                    return;
                }
                Err(e) => {
                    r.tl.end = clock.now();
                    r.failure = Some((
                        classify(&e).max_transport(),
                        format!("reading the stream from {url}: {}", error_text(&e)),
                    ));
                    return;
                }
            }
        }
    }
    // Non-streaming JSON (or anything else): read it all, then parse.
    *is_stream = false;
    let mut full = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => full.extend_from_slice(&b),
            Ok(None) => break,
            Err(e) => {
                r.tl.end = clock.now();
                r.failure = Some((
                    classify(&e).max_transport(),
                    format!("reading the response from {url}: {}", error_text(&e)),
                ));
                return;
            }
        }
    }
    let t = clock.now();
    r.tl.end = t;
    if !ctype.contains("application/") {
        r.failure = Some((
            FailureKind::Other,
            format!("unexpected content type `{ctype}` from {url} (expected text/event-stream or application/json)"),
        ));
        return;
    }
    r.tl.first_event = Some(t);
    if let Some(m) = r.messages.as_mut() {
        m.push(String::from_utf8_lossy(&full).into_owned());
    }
    match proto.parse(&full) {
        Err(e) => r.failure = Some((FailureKind::MalformedChunk, e)),
        Ok(info) => {
            // evalscope: for non-stream responses first_chunk_latency = latency.
            r.apply(info, t);
            r.tl.first_output = Some(t);
            r.itl.clear();
        }
    }
}

trait MaxTransport {
    fn max_transport(self) -> FailureKind;
}
impl MaxTransport for FailureKind {
    /// A body read error that is not a timeout is a broken transport.
    fn max_transport(self) -> FailureKind {
        if self == FailureKind::Timeout {
            self
        } else {
            FailureKind::Transport
        }
    }
}
