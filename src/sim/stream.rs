//! Response formatting for the simulator: OpenAI-style SSE chunks (vLLM's shape:
//! role prelude, one token per chunk, finish reason on the last token, a usage-only
//! chunk, `[DONE]`) and the streaming body that applies injected faults.

use bytes::Bytes;
use http_body::{Body, Frame};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::time::Sleep;

pub use super::engine::Ev;
pub use super::shape::Shape;

const VOCAB: [&str; 16] = [
    " the", " model", " serves", " tokens", " fast", " and", " every", " request", " gets", " an",
    " answer", " from", " a", " batch", " of", " peers",
];

/// A fault decided for one request when it arrives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    Http500,
    Http429,
    /// Cut the connection after this many tokens.
    Drop(u64),
    /// Pause this long (ms) after this many tokens.
    Stall(u64, f64),
    /// Send invalid JSON after this many tokens, then end.
    Malformed(u64),
    /// Send an error payload after this many tokens, then end.
    InBandError(u64),
}

pub struct Formatter {
    pub shape: Shape,
    pub model: Arc<str>,
    pub id: u64,
    /// The id in the body (`chatcmpl-<id_text>`): the request's `X-Request-Id` when
    /// it sent one (as vLLM), else `id`.
    pub id_text: Arc<str>,
    pub created: u64,
    pub include_usage: bool,
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache (None: caching off).
    pub cached: Option<u64>,
    /// Whether the usage reports `cached` (vLLM's `--enable-prompt-tokens-details`).
    pub report_cached: bool,
    pub target: u64,
    pub finish: &'static str,
}

impl Formatter {
    fn typed(&self) -> bool {
        matches!(self.shape, Shape::Responses | Shape::Messages)
    }
    fn head(&self, out: &mut Vec<u8>) {
        let (prefix, object) = if self.shape == Shape::Chat {
            ("chatcmpl", "chat.completion.chunk")
        } else {
            ("cmpl", "text_completion")
        };
        let _ = write!(
            out,
            "data: {{\"id\":\"{prefix}-{}\",\"object\":\"{object}\",\"created\":{},\"model\":{},",
            self.id_text,
            self.created,
            serde_json::Value::String(self.model.to_string())
        );
    }
    pub fn prelude(&self, out: &mut Vec<u8>) {
        if self.typed() {
            return self.typed_prelude(out);
        }
        if self.shape == Shape::Chat {
            self.head(out);
            out.extend_from_slice(
                b"\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            );
        }
    }
    /// Token `i` (0-based).
    pub fn token(&self, i: u64, out: &mut Vec<u8>) {
        let word = VOCAB[(i % VOCAB.len() as u64) as usize];
        if self.typed() {
            return self.typed_token(i, word, out);
        }
        let last = i + 1 == self.target;
        self.head(out);
        let finish = if last {
            format!("\"{}\"", self.finish)
        } else {
            "null".to_string()
        };
        if self.shape == Shape::Chat {
            let _ = write!(
                out,
                "\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":{finish}}}]}}\n\n"
            );
        } else {
            let _ = write!(
                out,
                "\"choices\":[{{\"index\":0,\"text\":\"{word}\",\"finish_reason\":{finish}}}]}}\n\n"
            );
        }
    }
    pub fn tail(&self, out: &mut Vec<u8>) {
        if self.typed() {
            return self.typed_tail(out);
        }
        if self.include_usage {
            self.head(out);
            let _ = write!(
                out,
                "\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}{}}}}}\n\n",
                self.prompt_tokens,
                self.target,
                self.prompt_tokens + self.target,
                self.details()
            );
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
    /// vLLM's `prompt_tokens_details` (with `--enable-prompt-tokens-details`).
    fn details(&self) -> String {
        match self.reported_cached() {
            Some(c) => format!(",\"prompt_tokens_details\":{{\"cached_tokens\":{c}}}"),
            None => String::new(),
        }
    }
    pub(super) fn reported_cached(&self) -> Option<u64> {
        self.cached.filter(|_| self.report_cached)
    }
    pub fn text(&self) -> String {
        (0..self.target)
            .map(|i| VOCAB[(i % VOCAB.len() as u64) as usize])
            .collect()
    }
    /// The whole non-streaming JSON response.
    pub fn full_json(&self, usage: bool) -> Vec<u8> {
        if self.typed() {
            return self.typed_json(usage).to_string().into_bytes();
        }
        let text = self.text();
        let mut v = if self.shape == Shape::Chat {
            serde_json::json!({
                "id": format!("chatcmpl-{}", self.id_text), "object": "chat.completion",
                "created": self.created, "model": &*self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": self.finish}]
            })
        } else {
            serde_json::json!({
                "id": format!("cmpl-{}", self.id_text), "object": "text_completion",
                "created": self.created, "model": &*self.model,
                "choices": [{"index": 0, "text": text, "finish_reason": self.finish}]
            })
        };
        if usage {
            v["usage"] = serde_json::json!({
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.target,
                "total_tokens": self.prompt_tokens + self.target});
            if let Some(c) = self.reported_cached() {
                v["usage"]["prompt_tokens_details"] = serde_json::json!({"cached_tokens": c});
            }
        }
        v.to_string().into_bytes()
    }
}

/// The complete stream at once (zero-delay mode), faults applied.
pub fn whole_stream(f: &Formatter, fault: Fault) -> Result<Vec<u8>, Vec<u8>> {
    let mut out = Vec::with_capacity(200 * (f.target as usize + 3));
    f.prelude(&mut out);
    for i in 0..f.target {
        match fault {
            Fault::Drop(k) if k == i => return Err(out),
            Fault::Malformed(k) if k == i => {
                out.extend_from_slice(MALFORMED);
                return Ok(out);
            }
            Fault::InBandError(k) if k == i => {
                out.extend_from_slice(IN_BAND_ERROR);
                return Ok(out);
            }
            _ => {}
        }
        f.token(i, &mut out);
    }
    f.tail(&mut out);
    Ok(out)
}

pub const MALFORMED: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"\n\n";
pub const IN_BAND_ERROR: &[u8] =
    b"data: {\"error\":{\"message\":\"simulated engine error\",\"type\":\"InternalServerError\",\"code\":500}}\n\n";

/// A streaming body fed token by token by the engine (or a fixed-delay timer task).
pub struct SseBody {
    pub rx: mpsc::UnboundedReceiver<Ev>,
    pub fmt: Formatter,
    pub fault: Fault,
    pub sent: u64,
    pub started: bool,
    pub done: bool,
    pub stall: Option<Pin<Box<Sleep>>>,
    pub stalled: bool,
    /// Where to report when the first token actually left (fixed-delay mode).
    pub first_token_log: Option<(Arc<FirstTokenLog>, Instant)>,
    /// Server-side metrics: arrival time, last token frame time, labels.
    pub observe: Option<Observe>,
}

/// What a streaming body reports to the simulator's `vllm:*` metrics.
pub struct Observe {
    pub metrics: Arc<super::metrics::ServerMetrics>,
    pub labels: super::metrics::ServerLabels,
    pub arrived: Instant,
    /// When the batching engine admitted it (None: at once, outside the engine).
    pub scheduled: Option<Instant>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Counted in `active`/`active_kv` (streams outside the batching engine).
    pub kv: Option<i64>,
}

impl Observe {
    /// The engine admitted the request: its queue time is over (vLLM's
    /// `request_queue_time_seconds`, arrival to scheduled).
    pub fn scheduled(&mut self) {
        let now = Instant::now();
        self.scheduled = Some(now);
        self.metrics
            .queue
            .get_or_create(&self.labels)
            .observe((now - self.arrived).as_secs_f64());
    }

    /// `n` tokens left in one frame now.
    pub fn tokens(&mut self, n: u64, done: bool) {
        let now = Instant::now();
        let m = &self.metrics;
        match self.last {
            None => {
                // Outside the engine a request is scheduled on arrival (queue 0).
                let scheduled = match self.scheduled {
                    Some(t) => t,
                    None => {
                        m.queue.get_or_create(&self.labels).observe(0.0);
                        self.arrived
                    }
                };
                // vLLM: prefill is scheduled to first token, decode first to last.
                m.prefill
                    .get_or_create(&self.labels)
                    .observe((now - scheduled).as_secs_f64());
                self.first = Some(now);
                m.ttft
                    .get_or_create(&self.labels)
                    .observe((now - self.arrived).as_secs_f64())
            }
            Some(prev) => m
                .itl
                .get_or_create(&self.labels)
                .observe((now - prev).as_secs_f64()),
        }
        // Tokens that left in the same frame are 0 s apart, as the client sees them.
        let itl = m.itl.get_or_create(&self.labels);
        for _ in 1..n {
            itl.observe(0.0);
        }
        m.generation_tokens.get_or_create(&self.labels).inc_by(n);
        self.last = Some(now);
        if done {
            m.e2e
                .get_or_create(&self.labels)
                .observe((now - self.arrived).as_secs_f64());
            let first = self.first.unwrap_or(now);
            m.decode
                .get_or_create(&self.labels)
                .observe((now - first).as_secs_f64());
        }
    }
}

impl Drop for Observe {
    fn drop(&mut self) {
        if let Some(kv) = self.kv.take() {
            self.metrics
                .active
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.metrics
                .active_kv
                .fetch_sub(kv, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The delay each request's first token actually had inside the simulator, from
/// the handler's start to the frame being handed to the connection. A machine that
/// pauses the process shows up here, so tests can tell the server's own lateness
/// from the client's measurement error.
#[derive(Default)]
pub struct FirstTokenLog {
    pub entries: std::sync::Mutex<Vec<(u64, f64)>>,
}

impl SseBody {
    pub fn new(rx: mpsc::UnboundedReceiver<Ev>, fmt: Formatter, fault: Fault) -> Self {
        SseBody {
            rx,
            fmt,
            fault,
            sent: 0,
            started: false,
            done: false,
            stall: None,
            stalled: false,
            first_token_log: None,
            observe: None,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let mut out = Vec::new();
        if !this.started {
            this.started = true;
            this.fmt.prelude(&mut out);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
        if let Some(s) = this.stall.as_mut() {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.stall = None;
        }
        match this.fault {
            Fault::Drop(k) if k == this.sent => {
                this.done = true;
                return Poll::Ready(Some(Err(std::io::Error::other("simulated dropped stream"))));
            }
            Fault::Malformed(k) if k == this.sent => {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(MALFORMED)))));
            }
            Fault::InBandError(k) if k == this.sent => {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(IN_BAND_ERROR)))));
            }
            Fault::Stall(k, ms) if k == this.sent && !this.stalled => {
                this.stalled = true;
                let mut s = Box::pin(tokio::time::sleep(std::time::Duration::from_secs_f64(
                    ms / 1000.0,
                )));
                if s.as_mut().poll(cx).is_pending() {
                    this.stall = Some(s);
                    return Poll::Pending;
                }
            }
            _ => {}
        }
        // Coalesce every token already produced into one frame.
        let before = this.sent;
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Ev::Scheduled)) => {
                    if let Some(o) = this.observe.as_mut() {
                        o.scheduled();
                    }
                }
                Poll::Ready(Some(Ev::Token)) => {
                    if this.sent == 0 {
                        if let Some((log, arrived)) = this.first_token_log.take() {
                            if let Ok(mut e) = log.entries.lock() {
                                e.push((this.fmt.id, arrived.elapsed().as_secs_f64()));
                            }
                        }
                    }
                    this.fmt.token(this.sent, &mut out);
                    this.sent += 1;
                    if this.sent == this.fmt.target {
                        this.fmt.tail(&mut out);
                        this.done = true;
                        break;
                    }
                    if matches!(this.fault, Fault::Drop(k) | Fault::Malformed(k) | Fault::InBandError(k) | Fault::Stall(k, _) if k == this.sent)
                    {
                        break;
                    }
                }
                Poll::Ready(Some(Ev::Abort)) | Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other("simulator shut down"))));
                }
                Poll::Pending => break,
            }
        }
        if this.sent > before {
            let (n, done) = (this.sent - before, this.done);
            if let Some(o) = this.observe.as_mut() {
                o.tokens(n, done);
            }
        }
        if out.is_empty() {
            if this.done {
                return Poll::Ready(None);
            }
            // A fault at the current position may now be due.
            if matches!(this.fault, Fault::Drop(k) | Fault::Malformed(k) | Fault::InBandError(k) if k == this.sent)
                || matches!(this.fault, Fault::Stall(k, _) if k == this.sent && !this.stalled)
            {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }
}
