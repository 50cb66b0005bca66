//! OpenTelemetry: one CLIENT span per request, exported over OTLP (http/protobuf, or
//! gRPC with the `otlp-grpc` feature).
//!
//! Spans are built after the request finished, in the fan-out task, with explicit
//! start/end times taken from the record, so building them never touches the request
//! path. Each request is its own trace; its trace id and span id are the ones sent in
//! the request's `traceparent`, so a traced server's span is a child of ours, and the
//! trace id is the SQLite row's `trace_id` and the Prometheus exemplar.
//!
//! Spans are encoded straight into OTLP protobuf (see [`proto`]) and batched; a
//! background task posts each batch, one at a time, with retries. The per-stage
//! attributes are encoded once and copied into every span. This costs about a tenth
//! of building spans through the OpenTelemetry SDK and its OTLP exporter, which
//! allocate every attribute key and value twice per span and dominated the client's
//! CPU at ten thousand requests per second. A full queue drops whole batches and
//! counts them; everything queued is flushed before the command exits (Ctrl-C
//! included).

pub mod config;
mod export;
pub mod proto;

pub use config::{OtelConfig, Protocol};

use bytes::Bytes;
use proto::{field as f, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::record::{Clock, RequestRecord};
use crate::telemetry::log;
use tracing::instrument::WithSubscriber;

/// A batch is sent when it holds this many spans or bytes, or is this old.
const BATCH_SPANS: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
const BATCH_AGE: Duration = Duration::from_millis(500);
/// Batches waiting for the exporter; beyond this, new batches are dropped (32 × 512
/// spans = 1.6 s at 10k req/s).
const QUEUE_BATCHES: usize = 32;

/// What every span of a stage shares.
pub struct SpanCommon {
    pub operation: &'static str,
    pub model: String,
    pub server_address: String,
    pub server_port: i64,
    pub run: String,
    pub stage: String,
    pub parallel: i64,
    pub rate: f64,
    pub max_tokens: i64,
}

impl SpanCommon {
    /// The span name and the attributes every span of the stage carries, encoded once.
    pub fn prepare(&self) -> PreparedCommon {
        let mut attrs = Vec::with_capacity(512);
        let a = f::SPAN_ATTRIBUTES;
        proto::key_value(
            &mut attrs,
            a,
            "gen_ai.operation.name",
            Value::Str(self.operation),
        );
        proto::key_value(&mut attrs, a, "gen_ai.provider.name", Value::Str("openai"));
        proto::key_value(
            &mut attrs,
            a,
            "gen_ai.request.model",
            Value::Str(&self.model),
        );
        proto::key_value(
            &mut attrs,
            a,
            "gen_ai.request.max_tokens",
            Value::Int(self.max_tokens),
        );
        proto::key_value(
            &mut attrs,
            a,
            "server.address",
            Value::Str(&self.server_address),
        );
        proto::key_value(&mut attrs, a, "server.port", Value::Int(self.server_port));
        proto::key_value(&mut attrs, a, "perfscope.run", Value::Str(&self.run));
        proto::key_value(&mut attrs, a, "perfscope.stage", Value::Str(&self.stage));
        proto::key_value(
            &mut attrs,
            a,
            "perfscope.parallel",
            Value::Int(self.parallel),
        );
        proto::key_value(&mut attrs, a, "perfscope.rate", Value::Double(self.rate));
        let mut name = Vec::new();
        proto::bytes_field(
            &mut name,
            f::SPAN_NAME,
            format!("{} {}", self.operation, self.model).as_bytes(),
        );
        PreparedCommon {
            name,
            attrs,
            model: self.model.clone(),
            run: self.run.clone(),
            stage: self.stage.clone(),
        }
    }
}

/// A stage's encoded span name and shared attributes (see [`SpanCommon::prepare`]).
pub struct PreparedCommon {
    name: Vec<u8>,
    attrs: Vec<u8>,
    /// For the conversation spans of multi-turn runs.
    model: String,
    run: String,
    stage: String,
}

/// Counts for the closing log line.
#[derive(Default)]
struct Totals {
    exported: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    warned_drop: AtomicBool,
}

struct Batch {
    /// Encoded `ScopeSpans.spans` fields.
    spans: Vec<u8>,
    count: usize,
    started: Option<tokio::time::Instant>,
    tx: Option<mpsc::Sender<(Bytes, usize)>>,
}

pub struct Tracing {
    pub sample_ratio: f64,
    cfg: Arc<OtelConfig>,
    /// `ExportTraceServiceRequest` up to the spans: resource and scope, encoded once.
    resource: Vec<u8>,
    scope: Vec<u8>,
    batch: Mutex<Batch>,
    totals: Arc<Totals>,
    exporter: Mutex<Option<tokio::task::JoinHandle<()>>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn nanos(clock: &Clock, t: f64) -> u64 {
    (clock.unix(t).max(0.0) * 1e9) as u64
}

impl Tracing {
    /// Starts the exporter task and the batch timer. Call inside the tokio runtime.
    pub fn start(cfg: &OtelConfig) -> anyhow::Result<Arc<Tracing>> {
        let http = export::client(cfg)?;
        let cfg = Arc::new(cfg.clone());
        let (tx, mut rx) = mpsc::channel::<(Bytes, usize)>(QUEUE_BATCHES);
        let totals = Arc::new(Totals::default());
        let exporter = {
            let (cfg, totals) = (cfg.clone(), totals.clone());
            tokio::spawn(
                async move {
                    let mut warned = false;
                    while let Some((body, n)) = rx.recv().await {
                        match export::send(&http, &cfg, body).await {
                            export::Sent::Ok { rejected, message } => {
                                let rejected = rejected.clamp(0, n as i64) as u64;
                                totals
                                    .exported
                                    .fetch_add(n as u64 - rejected, Ordering::Relaxed);
                                totals.rejected.fetch_add(rejected, Ordering::Relaxed);
                                if rejected > 0 && !warned {
                                    warned = true;
                                    log::warn(format!(
                                        "OTLP: {} rejected {rejected} spans: {message}",
                                        cfg.display_url()
                                    ));
                                }
                            }
                            export::Sent::Failed(why) => {
                                totals.failed.fetch_add(n as u64, Ordering::Relaxed);
                                if !warned {
                                    warned = true;
                                    log::warn(format!(
                                        "OTLP export to {} failed: {why}; spans are dropped, \
                                     results are unaffected",
                                        cfg.display_url()
                                    ));
                                }
                            }
                        }
                    }
                }
                .with_current_subscriber(),
            )
        };
        let mut resource = Vec::new();
        for (k, v) in &cfg.resource {
            proto::key_value(&mut resource, f::RESOURCE_ATTRIBUTES, k, Value::Str(v));
        }
        let mut scope = Vec::new();
        proto::bytes_field(&mut scope, f::SCOPE_NAME, b"perfscope");
        proto::bytes_field(
            &mut scope,
            f::SCOPE_VERSION,
            env!("CARGO_PKG_VERSION").as_bytes(),
        );
        let t = Arc::new(Tracing {
            sample_ratio: cfg.sample_ratio,
            cfg,
            resource,
            scope,
            batch: Mutex::new(Batch {
                spans: Vec::with_capacity(BATCH_BYTES / 2),
                count: 0,
                started: None,
                tx: Some(tx),
            }),
            totals,
            exporter: Mutex::new(Some(exporter)),
            ticker: Mutex::new(None),
        });
        // Sends batches that are not full but old enough (low request rates).
        let weak = Arc::downgrade(&t);
        let ticker = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(BATCH_AGE / 2);
                loop {
                    tick.tick().await;
                    let Some(t) = weak.upgrade() else { break };
                    t.flush_if(|b| b.started.is_some_and(|s| s.elapsed() >= BATCH_AGE));
                }
            }
            .with_current_subscriber(),
        );
        if let Ok(mut slot) = t.ticker.lock() {
            *slot = Some(ticker);
        }
        Ok(t)
    }

    pub fn config(&self) -> &OtelConfig {
        &self.cfg
    }

    /// Encodes the span of one sampled request into the current batch.
    pub fn record(&self, r: &RequestRecord, clock: &Clock, c: &PreparedCommon) {
        let Some(trace) = r.trace.filter(|t| t.sampled) else {
            return;
        };
        let Ok(mut b) = self.batch.lock() else {
            return;
        };
        let tl = &r.timeline;
        let buf = &mut b.spans;
        let span = proto::begin_nested(buf, f::SCOPE_SPANS_SPANS);
        proto::bytes_field(buf, f::SPAN_TRACE_ID, &trace.trace_id.to_be_bytes());
        proto::bytes_field(buf, f::SPAN_SPAN_ID, &trace.span_id.to_be_bytes());
        if let Some(s) = &r.session {
            // A turn of a conversation: a child of the conversation's span.
            proto::bytes_field(buf, f::SPAN_PARENT_SPAN_ID, &s.parent_span.to_be_bytes());
        }
        buf.extend_from_slice(&c.name);
        proto::varint_field(buf, f::SPAN_KIND, f::SPAN_KIND_CLIENT);
        proto::fixed64_field(buf, f::SPAN_START, nanos(clock, tl.send));
        proto::fixed64_field(buf, f::SPAN_END, nanos(clock, tl.end));
        buf.extend_from_slice(&c.attrs);
        let a = f::SPAN_ATTRIBUTES;
        if let Some(s) = &r.session {
            proto::key_value(buf, a, "session.id", Value::Str(&s.id));
            proto::key_value(buf, a, "perfscope.turn", Value::Int(s.turn as i64));
        }
        proto::key_value(buf, a, "gen_ai.request.stream", Value::Bool(r.is_stream));
        proto::key_value(buf, a, "perfscope.seq", Value::Int(r.seq as i64));
        let lag = (tl.send - tl.intended_start).max(0.0);
        proto::key_value(buf, a, "perfscope.schedule_lag_s", Value::Double(lag));
        if let Some(s) = r.http_status {
            proto::key_value(buf, a, "http.response.status_code", Value::Int(s as i64));
        }
        if let Some(v) = r.prompt_tokens {
            proto::key_value(buf, a, "gen_ai.usage.input_tokens", Value::Int(v as i64));
        }
        if let Some(v) = r.completion_tokens {
            proto::key_value(buf, a, "gen_ai.usage.output_tokens", Value::Int(v as i64));
        }
        if let Some(fr) = &r.finish_reason {
            let v = Value::StrArray1(fr);
            proto::key_value(buf, a, "gen_ai.response.finish_reasons", v);
        }
        if let Some(t) = tl.first_event {
            let v = Value::Double(t - tl.send);
            proto::key_value(buf, a, "gen_ai.response.time_to_first_chunk", v);
        }
        if let Some(v) = r.ttft() {
            proto::key_value(buf, a, "perfscope.ttft_s", Value::Double(v));
        }
        if let Some(k) = r.failure {
            proto::key_value(buf, a, "error.type", Value::Str(k.as_str()));
        }
        // The server's side of this request, to find its own logs and spans.
        if let Some(id) = &r.request_id {
            proto::key_value(buf, a, "perfscope.server.request_id", Value::Str(id));
        }
        if let Some(tp) = &r.server_traceparent {
            proto::key_value(buf, a, "perfscope.server.traceparent", Value::Str(tp));
        }
        if r.resent {
            // The request was written to a reused connection that closed unanswered,
            // and resent on a new one at the span's start.
            let ev = proto::begin_nested(buf, f::SPAN_EVENTS);
            proto::fixed64_field(buf, f::EVENT_TIME, nanos(clock, tl.send));
            proto::bytes_field(buf, f::EVENT_NAME, b"perfscope.resend");
            proto::end_nested(buf, ev);
        }
        if let Some(t) = tl.first_output.filter(|_| r.success) {
            let ev = proto::begin_nested(buf, f::SPAN_EVENTS);
            proto::fixed64_field(buf, f::EVENT_TIME, nanos(clock, t));
            proto::bytes_field(buf, f::EVENT_NAME, b"gen_ai.first_token");
            proto::end_nested(buf, ev);
        }
        if let Some(e) = &r.error {
            let st = proto::begin_nested(buf, f::SPAN_STATUS);
            let msg = match e.char_indices().nth(300) {
                Some((i, _)) => &e[..i],
                None => e,
            };
            proto::bytes_field(buf, f::STATUS_MESSAGE, msg.as_bytes());
            proto::varint_field(buf, f::STATUS_CODE, f::STATUS_CODE_ERROR);
            proto::end_nested(buf, st);
        }
        // W3C trace flags (sampled) plus "parent is not remote".
        proto::fixed32_field(buf, f::SPAN_FLAGS, 0x101);
        proto::end_nested(buf, span);
        let mut spans = 1;
        if let Some(s) = r.session.as_ref().filter(|s| s.is_last) {
            // The conversation's own span, from its first send to its last turn's end.
            let span = proto::begin_nested(buf, f::SCOPE_SPANS_SPANS);
            proto::bytes_field(buf, f::SPAN_TRACE_ID, &trace.trace_id.to_be_bytes());
            proto::bytes_field(buf, f::SPAN_SPAN_ID, &s.parent_span.to_be_bytes());
            if let Some(p) = s.parent_session {
                proto::bytes_field(buf, f::SPAN_PARENT_SPAN_ID, &p.to_be_bytes());
            }
            proto::bytes_field(buf, f::SPAN_NAME, format!("session {}", c.model).as_bytes());
            proto::varint_field(buf, f::SPAN_KIND, f::SPAN_KIND_INTERNAL);
            proto::fixed64_field(buf, f::SPAN_START, nanos(clock, s.started));
            proto::fixed64_field(buf, f::SPAN_END, nanos(clock, tl.end));
            proto::key_value(buf, a, "session.id", Value::Str(&s.id));
            proto::key_value(buf, a, "perfscope.turns", Value::Int(s.turn as i64));
            proto::key_value(buf, a, "perfscope.run", Value::Str(&c.run));
            proto::key_value(buf, a, "perfscope.stage", Value::Str(&c.stage));
            proto::fixed32_field(buf, f::SPAN_FLAGS, 0x101);
            proto::end_nested(buf, span);
            spans += 1;
        }
        b.count += spans;
        if b.started.is_none() {
            b.started = Some(tokio::time::Instant::now());
        }
        if b.count >= BATCH_SPANS || b.spans.len() >= BATCH_BYTES {
            self.send_locked(&mut b);
        }
    }

    fn flush_if(&self, pred: impl Fn(&Batch) -> bool) {
        if let Ok(mut b) = self.batch.lock() {
            if b.count > 0 && pred(&b) {
                self.send_locked(&mut b);
            }
        }
    }

    /// Wraps the batch's spans into an `ExportTraceServiceRequest` and queues it.
    fn send_locked(&self, b: &mut Batch) {
        let n = std::mem::take(&mut b.count);
        b.started = None;
        let mut msg = Vec::with_capacity(b.spans.len() + self.resource.len() + 64);
        let rs = proto::begin_nested(&mut msg, f::REQUEST_RESOURCE_SPANS);
        proto::bytes_field(&mut msg, f::RESOURCE_SPANS_RESOURCE, &self.resource);
        let ss = proto::begin_nested(&mut msg, f::RESOURCE_SPANS_SCOPE_SPANS);
        proto::bytes_field(&mut msg, f::SCOPE_SPANS_SCOPE, &self.scope);
        msg.extend_from_slice(&b.spans);
        proto::end_nested(&mut msg, ss);
        proto::end_nested(&mut msg, rs);
        b.spans.clear();
        let queued = match &b.tx {
            Some(tx) => tx.try_send((Bytes::from(msg), n)).is_ok(),
            None => false,
        };
        if !queued {
            self.totals.dropped.fetch_add(n as u64, Ordering::Relaxed);
            if !self.totals.warned_drop.swap(true, Ordering::Relaxed) {
                log::warn(format!(
                    "OTLP: {} is not keeping up; dropping spans (the total is logged at exit)",
                    self.cfg.display_url()
                ));
            }
        }
    }

    /// Sends what is batched, waits for every queued export (bounded by the export
    /// timeout and retries), and logs what was exported and lost.
    /// Flushes what is queued, within twice the export timeout (2 s when `hurry`:
    /// a signal stopped the run, and the process must end within the grace
    /// `docker stop` gives it), then reports the totals.
    pub async fn shutdown(&self, hurry: bool) {
        if let Some(h) = self.ticker.lock().ok().and_then(|mut h| h.take()) {
            h.abort();
        }
        if let Ok(mut b) = self.batch.lock() {
            if b.count > 0 {
                self.send_locked(&mut b);
            }
            b.tx = None;
        }
        let handle = self.exporter.lock().ok().and_then(|mut h| h.take());
        if let Some(mut h) = handle {
            let bound = if hurry {
                (self.cfg.timeout * 2).min(Duration::from_secs(2))
            } else {
                self.cfg.timeout * 2
            };
            if tokio::time::timeout(bound, &mut h).await.is_err() {
                h.abort();
                log::warn(format!(
                    "OTLP: export to {} did not finish within {:.0} s; the rest is dropped",
                    self.cfg.display_url(),
                    bound.as_secs_f64()
                ));
            }
        }
        let t = &self.totals;
        let (ok, rejected, dropped, failed) = (
            t.exported.load(Ordering::Relaxed),
            t.rejected.load(Ordering::Relaxed),
            t.dropped.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
        );
        let line = format!(
            "OpenTelemetry: {ok} spans exported to {} over {}",
            self.cfg.display_url(),
            self.cfg.protocol.as_str()
        );
        if rejected + dropped + failed == 0 {
            log::info(line);
        } else {
            log::warn(format!(
                "{line}; {dropped} dropped (queue full), {failed} failed, {rejected} rejected by the server"
            ));
        }
    }
}
