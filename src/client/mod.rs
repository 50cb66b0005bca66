//! Request execution: HTTP, SSE decoding and timestamps.
//!
//! Timestamps are taken in the task that reads the socket, right after each read
//! returns and before anything is parsed or queued (DESIGN principle 2). Several SSE
//! events delivered in one read share that read's arrival time, which is when the
//! client could first have seen them.

pub mod http1;
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

/// Builds the load client's endpoint for a run: idle connections kept up to the
/// concurrency, headers fixed (user agent and content type as evalscope, then the
/// user's).
pub fn build_endpoint(
    cfg: &RunConfig,
    url: &reqwest::Url,
    pool: usize,
) -> anyhow::Result<http1::Endpoint> {
    http1::Endpoint::new(
        url,
        &cfg.headers,
        http1::Settings {
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            max_idle: pool.max(1),
            max_response: cfg.max_response_bytes,
        },
    )
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
    /// Bytes held in `messages` (bounded by `max_response`).
    message_bytes: usize,
    max_response: usize,
    /// evalscope 1.14's `n_decode_chunks`: choices-bearing chunks at or after the
    /// first output chunk, empty deltas (the final `finish_reason` chunk) included.
    decode_chunks: u32,
}

impl Reading {
    fn too_large(&mut self, t: f64, why: String) {
        self.tl.end = t;
        self.failure = Some((FailureKind::ResponseTooLarge, why));
    }

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
            // --debug keeps the payloads; an endless stream must not keep all of them.
            if self.message_bytes + data.len() <= self.max_response {
                self.message_bytes += data.len();
                m.push(String::from_utf8_lossy(data).into_owned());
            }
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
            if self.output_chunks >= MAX_OUTPUT_CHUNKS {
                self.too_large(
                    t,
                    format!("more than {MAX_OUTPUT_CHUNKS} output chunks in one response"),
                );
                return;
            }
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
        if info.has_choices && self.tl.first_output.is_some() {
            self.decode_chunks += 1;
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

/// Most output chunks one request may record: a row holds one ITL value per chunk,
/// so an endless stream of valid chunks must stop somewhere. Four times the largest
/// context any served model offers today.
pub const MAX_OUTPUT_CHUNKS: u32 = 1 << 19;

/// Most bytes of an error response kept (and read) for the error text.
const ERROR_BODY: usize = 4096;

fn classify(e: &http1::Error) -> FailureKind {
    match e {
        http1::Error::Connect(_) => FailureKind::Connect,
        http1::Error::Timeout(_) => FailureKind::Timeout,
        http1::Error::Io(_) | http1::Error::Protocol(_) => FailureKind::Transport,
    }
}

/// Sends one request and reads the whole response. Never fails: every outcome is a
/// record. `cancel` aborts the request (recorded as `cancelled`).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    endpoint: &http1::Endpoint,
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
        message_bytes: 0,
        max_response: endpoint.max_response(),
        decode_chunks: 0,
    };
    let mut status = None;
    let mut is_stream = ticket.stream_requested;
    let mut resent = false;
    // The trace header is formatted before the clock starts; the start time itself
    // is taken by the endpoint right before the request's first byte is written
    // (after a connect, so TCP and TLS setup are not part of TTFT), and again at a
    // resend.
    let extra = match &ticket.trace {
        Some(t) => format!("traceparent: {}\r\n", t.traceparent()),
        None => String::new(),
    };
    r.tl.send = clock.now();
    r.tl.end = r.tl.send;
    let fut = read_response(
        endpoint,
        &extra,
        &ticket.body,
        proto,
        clock,
        &mut r,
        &mut status,
        &mut is_stream,
        &mut resent,
    );
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
    // Never a negative duration, whatever the server sent.
    r.tl.end = r.tl.end.max(r.tl.send);
    let success = r.failure.is_none();
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
        decode_chunks: r.decode_chunks,
        finish_reason: r.finish,
        output_chars: r.output_chars,
        response_messages: r.messages.map(|m| format!("[{}]", m.join(","))),
        request_id: None,
        trace: ticket.trace,
        resent,
    }
}

/// Reads an error response's first bytes for the error text, then stops: an endless
/// error body must cost neither memory nor the rest of the total timeout.
async fn error_text_of(resp: &mut http1::Response<'_>) -> String {
    let mut text = Vec::new();
    while text.len() < ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => text.extend_from_slice(&c[..c.len().min(ERROR_BODY - text.len())]),
            _ => break,
        }
    }
    let cut = text.len().min(2048);
    String::from_utf8_lossy(&text[..cut]).trim().to_string()
}

#[allow(clippy::too_many_arguments)]
async fn read_response(
    endpoint: &http1::Endpoint,
    extra_headers: &str,
    body: &[u8],
    proto: &Protocol,
    clock: &Clock,
    r: &mut Reading,
    status_out: &mut Option<u16>,
    is_stream: &mut bool,
    resent: &mut bool,
) {
    let url = endpoint.display();
    let send = &mut r.tl.send;
    let mut resp = match endpoint
        .send(extra_headers, body, || *send = clock.now())
        .await
    {
        Ok(resp) => resp,
        Err((e, was_resent)) => {
            *resent = was_resent;
            r.tl.end = clock.now();
            r.failure = Some((classify(&e), format!("POST {url}: {e}")));
            return;
        }
    };
    *resent = resp.resent;
    let t_headers = clock.now();
    r.tl.headers = Some(t_headers);
    let status = resp.status;
    *status_out = Some(status);
    // The failure kind is decided from the status and content type before the body
    // is read: an endless error page is an HTTP failure, not a timeout.
    if !(200..300).contains(&status) {
        let text = error_text_of(&mut resp).await;
        r.tl.end = clock.now();
        r.failure = Some((
            FailureKind::from_status(status),
            format!("HTTP {status}: {text}"),
        ));
        return;
    }
    let ctype = resp.content_type.clone();
    if ctype.contains("text/event-stream") {
        *is_stream = true;
        let mut dec = SseDecoder::with_limit(r.max_response);
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    let t = clock.now();
                    dec.feed(bytes, |data| r.payload(proto, data, t));
                    if dec.overflowed() {
                        r.too_large(
                            t,
                            format!("an SSE line from {url} exceeds --max-response-mib"),
                        );
                    }
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
                    let kind = match classify(&e) {
                        FailureKind::Timeout => FailureKind::Timeout,
                        _ => FailureKind::Transport,
                    };
                    r.failure = Some((kind, format!("reading the stream from {url}: {e}")));
                    return;
                }
            }
        }
    }
    *is_stream = false;
    if !ctype.contains("application/") {
        // evalscope reads anything else as text and counts it a success; a page of
        // HTML from a proxy is not an answer.
        let text = error_text_of(&mut resp).await;
        r.tl.end = clock.now();
        r.failure = Some((
            FailureKind::Other,
            format!(
                "unexpected content type `{ctype}` from {url} (expected text/event-stream or application/json): {}",
                text.chars().take(200).collect::<String>()
            ),
        ));
        return;
    }
    // Non-streaming JSON: read it all (up to the cap), then parse.
    let mut full = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => {
                if full.len() + b.len() > r.max_response {
                    let t = clock.now();
                    r.too_large(
                        t,
                        format!("the response body from {url} exceeds --max-response-mib"),
                    );
                    return;
                }
                full.extend_from_slice(b);
            }
            Ok(None) => break,
            Err(e) => {
                r.tl.end = clock.now();
                let kind = match classify(&e) {
                    FailureKind::Timeout => FailureKind::Timeout,
                    _ => FailureKind::Transport,
                };
                r.failure = Some((kind, format!("reading the response from {url}: {e}")));
                return;
            }
        }
    }
    let t = clock.now();
    r.tl.end = t;
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
