//! OpenTelemetry: one CLIENT span per request, exported over OTLP http/protobuf.
//!
//! Spans are built after the request finished, in the fan-out task, with explicit
//! start/end times taken from the record, so building them never touches the request
//! path. Each request is its own trace; its trace id and span id are the ones sent in
//! the request's `traceparent`, so a traced server's span is a child of ours, and the
//! trace id is the SQLite row's `trace_id` and the Prometheus exemplar.
//!
//! The SDK's batch processor runs on its own thread with a queue sized for load-test
//! rates; it is flushed before the command exits (Ctrl-C included).

use anyhow::{Context as _, Result};
use opentelemetry::trace::{Span, SpanId, SpanKind, Status, TraceId, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{Clock, RequestRecord};

thread_local! {
    /// Ids for the next span built on this thread (set just before `build`; the SDK
    /// asks for the span id and the trace id separately, in either order).
    static NEXT_TRACE: Cell<Option<u128>> = const { Cell::new(None) };
    static NEXT_SPAN: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Hands the SDK the ids we already sent in `traceparent`.
#[derive(Debug)]
struct PresetIds;

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from(
            NEXT_TRACE
                .with(Cell::take)
                .unwrap_or_else(|| fastrand::u128(1..)),
        )
    }
    fn new_span_id(&self) -> SpanId {
        SpanId::from(
            NEXT_SPAN
                .with(Cell::take)
                .unwrap_or_else(|| fastrand::u64(1..)),
        )
    }
}

/// Where spans go and which share of requests is traced.
#[derive(Clone, Debug)]
pub struct OtelConfig {
    /// Full traces URL (`.../v1/traces`), or None to let the standard
    /// `OTEL_EXPORTER_OTLP_*` variables decide.
    pub endpoint: Option<String>,
    pub sample_ratio: f64,
}

impl OtelConfig {
    /// Tracing is on when `--otlp-endpoint` is given or an OTLP endpoint variable is set.
    pub fn from_flags(endpoint: Option<&str>, sample_ratio: f64) -> Option<OtelConfig> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = endpoint.map(|e| {
            let e = e.trim_end_matches('/');
            if e.ends_with("/v1/traces") {
                e.to_string()
            } else {
                format!("{e}/v1/traces")
            }
        });
        let from_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
        (endpoint.is_some() || from_env).then_some(OtelConfig {
            endpoint,
            sample_ratio,
        })
    }
}

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
    /// The span name and the attributes every span of the stage carries, built once
    /// with shared (reference-counted) strings so each span only bumps counters.
    pub fn prepare(&self) -> PreparedCommon {
        let shared = |v: &str| {
            opentelemetry::Value::String(opentelemetry::StringValue::from(
                std::sync::Arc::<str>::from(v),
            ))
        };
        PreparedCommon {
            name: format!("{} {}", self.operation, self.model),
            attrs: vec![
                KeyValue::new("gen_ai.operation.name", self.operation),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", shared(&self.model)),
                KeyValue::new("gen_ai.request.max_tokens", self.max_tokens),
                KeyValue::new("server.address", shared(&self.server_address)),
                KeyValue::new("server.port", self.server_port),
                KeyValue::new("perfscope.run", shared(&self.run)),
                KeyValue::new("perfscope.stage", shared(&self.stage)),
                KeyValue::new("perfscope.parallel", self.parallel),
                KeyValue::new("perfscope.rate", self.rate),
            ],
        }
    }
}

/// A stage's span name and shared attributes (see [`SpanCommon::prepare`]).
pub struct PreparedCommon {
    name: String,
    attrs: Vec<KeyValue>,
}

pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    pub sample_ratio: f64,
}

fn at(clock: &Clock, t: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(clock.unix(t).max(0.0))
}

impl Tracing {
    /// Builds the exporter and provider. Blocking (the exporter's HTTP client has its
    /// own runtime): call it outside async code or in `spawn_blocking`.
    pub fn start(cfg: &OtelConfig) -> Result<Tracing> {
        let mut b = SpanExporter::builder().with_http();
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e.clone());
        }
        let exporter = b.build().with_context(|| {
            format!(
                "--otlp-endpoint: cannot set up the OTLP exporter ({:?})",
                cfg.endpoint
            )
        })?;
        // Sized for load tests: the SDK default (2048 spans, 5 s) drops spans at a
        // few thousand requests per second.
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(65_536)
            .with_max_export_batch_size(4_096)
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .with_id_generator(PresetIds)
            .with_resource(Resource::builder().with_service_name("perfscope").build())
            .build();
        let tracer = provider.tracer("perfscope");
        Ok(Tracing {
            provider,
            tracer,
            sample_ratio: cfg.sample_ratio,
        })
    }

    /// Builds and ends the span of one sampled request.
    pub fn record(&self, r: &RequestRecord, clock: &Clock, c: &PreparedCommon) {
        let Some(trace) = r.trace.filter(|t| t.sampled) else {
            return;
        };
        let tl = &r.timeline;
        let mut attrs = Vec::with_capacity(c.attrs.len() + 12);
        attrs.extend(c.attrs.iter().cloned());
        attrs.push(KeyValue::new("gen_ai.request.stream", r.is_stream));
        attrs.push(KeyValue::new("perfscope.seq", r.seq as i64));
        attrs.push(KeyValue::new(
            "perfscope.schedule_lag_s",
            (tl.send - tl.intended_start).max(0.0),
        ));
        if let Some(s) = r.http_status {
            attrs.push(KeyValue::new("http.response.status_code", s as i64));
        }
        if let Some(v) = r.prompt_tokens {
            attrs.push(KeyValue::new("gen_ai.usage.input_tokens", v as i64));
        }
        if let Some(v) = r.completion_tokens {
            attrs.push(KeyValue::new("gen_ai.usage.output_tokens", v as i64));
        }
        if let Some(f) = &r.finish_reason {
            attrs.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(
                    vec![opentelemetry::StringValue::from(f.clone())].into(),
                ),
            ));
        }
        if let Some(t) = tl.first_event {
            attrs.push(KeyValue::new(
                "gen_ai.response.time_to_first_chunk",
                t - tl.send,
            ));
        }
        if let Some(v) = r.ttft() {
            attrs.push(KeyValue::new("perfscope.ttft_s", v));
        }
        if let Some(k) = r.failure {
            attrs.push(KeyValue::new("error.type", k.as_str()));
        }
        NEXT_TRACE.with(|n| n.set(Some(trace.trace_id)));
        NEXT_SPAN.with(|n| n.set(Some(trace.span_id)));
        let mut span = self
            .tracer
            .span_builder(c.name.clone())
            .with_kind(SpanKind::Client)
            .with_start_time(at(clock, tl.send))
            .with_attributes(attrs)
            .start(&self.tracer);
        NEXT_TRACE.with(|n| n.set(None));
        NEXT_SPAN.with(|n| n.set(None));
        if let Some(t) = tl.first_output.filter(|_| r.success) {
            span.add_event_with_timestamp("gen_ai.first_token", at(clock, t), vec![]);
        }
        if let Some(e) = &r.error {
            span.set_status(Status::error(e.chars().take(300).collect::<String>()));
        }
        span.end_with_timestamp(at(clock, tl.end));
    }

    /// Exports everything queued and stops. Blocking.
    pub fn shutdown(&self) -> Result<()> {
        self.provider
            .shutdown()
            .map_err(|e| anyhow::anyhow!("OTLP export: {e}"))
    }
}
