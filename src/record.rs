//! One record per request, failures included (DESIGN principle 3).
//!
//! All times are seconds on the run's monotonic clock (an `Instant` anchor taken
//! when the run starts), the same kind of value evalscope stores from
//! `time.perf_counter()`. The anchor's wall-clock time is kept alongside so unix
//! timestamps can be derived without reading the clock on the request path.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The run clock: a monotonic anchor plus its wall-clock equivalent.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    anchor: Instant,
    unix_anchor: f64,
}

impl Clock {
    pub fn start() -> Self {
        let unix_anchor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            anchor: Instant::now(),
            unix_anchor,
        }
    }
    /// Seconds since the anchor.
    #[inline]
    pub fn now(&self) -> f64 {
        self.anchor.elapsed().as_secs_f64()
    }
    #[inline]
    pub fn at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.anchor).as_secs_f64()
    }
    pub fn instant(&self, secs: f64) -> Instant {
        self.anchor + std::time::Duration::from_secs_f64(secs.max(0.0))
    }
    pub fn unix(&self, secs: f64) -> f64 {
        self.unix_anchor + secs
    }
}

/// Why a request failed. A small closed set so it can be a Prometheus label and a
/// SQLite column without cardinality surprises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// TCP/TLS connect failed or was refused.
    Connect,
    /// Connect, read or total timeout elapsed.
    Timeout,
    /// HTTP 429 Too Many Requests.
    Http429,
    /// Any other 4xx status.
    Http4xx,
    /// A 5xx status.
    Http5xx,
    /// An `{"error": ...}` or `{"object": "error"}` payload inside a 200 response
    /// (evalscope < 1.14 counted these as successes, #1115).
    InBandError,
    /// A data payload that is not valid JSON (other than `[DONE]`).
    MalformedChunk,
    /// The stream ended cleanly but without `[DONE]` or a finish reason.
    IncompleteStream,
    /// The connection broke while the body was being read.
    Transport,
    /// The run was interrupted (Ctrl-C / duration grace) before the request finished.
    Cancelled,
    /// An SSE line or a non-stream body over `--max-response-mib`, or more output
    /// chunks than one row may hold.
    ResponseTooLarge,
    /// A complete reply that does not answer the request (a decision whose
    /// options or probabilities do not match the question asked).
    InvalidResponse,
    /// Anything else (unexpected content type, request build error).
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 13] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::Http429,
        FailureKind::Http4xx,
        FailureKind::Http5xx,
        FailureKind::InBandError,
        FailureKind::MalformedChunk,
        FailureKind::IncompleteStream,
        FailureKind::Transport,
        FailureKind::Cancelled,
        FailureKind::ResponseTooLarge,
        FailureKind::InvalidResponse,
        FailureKind::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Http429 => "http_429",
            FailureKind::Http4xx => "http_4xx",
            FailureKind::Http5xx => "http_5xx",
            FailureKind::InBandError => "in_band_error",
            FailureKind::MalformedChunk => "malformed_chunk",
            FailureKind::IncompleteStream => "incomplete_stream",
            FailureKind::Transport => "transport",
            FailureKind::Cancelled => "cancelled",
            FailureKind::ResponseTooLarge => "response_too_large",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn from_status(status: u16) -> FailureKind {
        match status {
            429 => FailureKind::Http429,
            400..=499 => FailureKind::Http4xx,
            500..=599 => FailureKind::Http5xx,
            _ => FailureKind::Other,
        }
    }
}

/// Timestamps of one request (run-clock seconds). `None` = the event never happened.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// When the scheduler wanted the request to start (coordinated omission is the
    /// gap between this and `send`).
    pub intended_start: f64,
    /// Immediately before the HTTP call (evalscope's `start_time`).
    pub send: f64,
    /// Response headers received.
    pub headers: Option<f64>,
    /// First SSE data event of any kind (e.g. vLLM's role-only prelude).
    pub first_event: Option<f64>,
    /// First event carrying output text (content, reasoning or tool-call text):
    /// TTFT as evalscope 1.14 defines it.
    pub first_output: Option<f64>,
    /// Last data event (evalscope's `completed_time`) or, for failures, when the
    /// failure was observed.
    pub end: f64,
}

#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// 0-based dispatch sequence within the run (warmup excluded).
    pub seq: u64,
    /// The JSON body exactly as sent (UTF-8: built by serde_json).
    pub request: bytes::Bytes,
    pub timeline: Timeline,
    /// Gaps between consecutive output-carrying chunks, seconds.
    pub itl: Vec<f64>,
    pub success: bool,
    pub is_stream: bool,
    pub http_status: Option<u16>,
    pub failure: Option<FailureKind>,
    pub error: Option<String>,
    /// From the server's `usage`; `None` = unknown.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// Number of output-carrying chunks.
    pub output_chunks: u32,
    /// evalscope 1.14's `n_decode_chunks`: choices-bearing chunks from the first
    /// output chunk on, empty deltas included (the denominator of tokens/iteration).
    pub decode_chunks: u32,
    pub finish_reason: Option<String>,
    /// Generated text (content + reasoning), kept short: only its length is stored.
    pub output_chars: u64,
    /// Parsed chunk payloads, kept only with `--debug` (evalscope stores every chunk;
    /// we store them on demand because they dominate the database size).
    pub response_messages: Option<String>,
    /// The server's own id for the request (its `x-request-id` response header).
    pub request_id: Option<String>,
    /// The `traceparent` the server answered with, when it traces the request.
    pub server_traceparent: Option<String>,
    pub trace: Option<TraceContext>,
    /// Sent a second time, on a new connection, because the reused connection it was
    /// first written to closed before any response byte (timing starts at the resend).
    pub resent: bool,
    /// The generated text, kept only when a multi-turn session needs it for the
    /// next turn's history (never stored).
    pub output_text: Option<String>,
    /// The conversation and turn of a multi-turn request.
    pub session: Option<SessionTag>,
}

/// Where a multi-turn request sits in its conversation (evalscope's `trace_id`,
/// `input_num_turns`, `is_first_turn` and `is_last_turn`).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionTag {
    /// `bench-<claim>` (evalscope's trace_id; warmup conversations are not stored).
    pub id: String,
    /// 1-based turn index.
    pub turn: u32,
    pub is_last: bool,
    /// The conversation's span (parent of every turn's span, in the turns' trace).
    pub parent_span: u64,
    /// The span of the conversation that spawned this one (an AgentX subagent's
    /// parent session): the session span's own parent.
    pub parent_session: Option<u64>,
    /// When the conversation's first turn was sent (run-clock seconds).
    pub started: f64,
    /// evalscope's multi-turn estimate of the cached prompt tokens, set only
    /// when the server reported none: kept apart from `cached_tokens`, which holds
    /// only what the server said, so an estimate never reads as a measurement.
    pub cached_estimate: Option<u64>,
    /// AgentX: 0 for a root conversation, 1 for a subagent.
    pub agent_depth: Option<u32>,
    /// AgentX: the request's theoretical prefix-cache blocks (hit, total).
    pub prefix_blocks: Option<(u64, u64)>,
}

impl RequestRecord {
    /// Seconds from send to the last data event (evalscope's `query_latency`).
    pub fn latency(&self) -> Option<f64> {
        self.success
            .then_some(self.timeline.end - self.timeline.send)
    }
    /// evalscope 1.14: the first output-carrying chunk; a successful stream without
    /// one has TTFT 0.0 (and that 0.0 counts in averages and percentiles).
    pub fn ttft(&self) -> Option<f64> {
        match self.timeline.first_output {
            Some(t) => Some(t - self.timeline.send),
            None if self.success => Some(0.0),
            None => None,
        }
    }
    /// evalscope: (latency − ttft)/(completion_tokens − 1) when completion_tokens > 1,
    /// else 0 (that 0 still counts toward the averages, as evalscope).
    pub fn tpot(&self) -> Option<f64> {
        if !self.success {
            return None;
        }
        let n = self.completion_tokens?;
        let (lat, ttft) = (self.latency()?, self.ttft().unwrap_or(0.0));
        Some(if n > 1 {
            (lat - ttft) / (n - 1) as f64
        } else {
            0.0
        })
    }
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
