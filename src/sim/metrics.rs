//! The simulator's own server-side metrics, under vLLM's names (`vllm:*`, labels
//! `model_name` and `engine`), computed from its real internal state, so dashboards
//! can overlay client and server views without a GPU.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::engine::EngineState;
use crate::telemetry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub model_name: String,
    pub engine: String,
}

/// vLLM's labels and the `source` of prompt tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub model_name: String,
    pub engine: String,
    pub source: String,
}

/// vLLM's labels and the `reason` a request waits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub model_name: String,
    pub engine: String,
    pub reason: String,
}

type H = Family<ServerLabels, Histogram, fn() -> Histogram>;

macro_rules! hist {
    ($b:expr) => {
        H::new_with_constructor({
            fn make() -> Histogram {
                Histogram::new($b.iter().copied())
            }
            make
        })
    };
}

pub struct ServerMetrics {
    registry: Registry,
    pub ttft: H,
    pub itl: H,
    pub e2e: H,
    /// vLLM's request phases: waiting (arrival to scheduled), prefill (scheduled to
    /// first token), decode (first to last token).
    pub queue: H,
    pub prefill: H,
    pub decode: H,
    pub prompt_tokens: Family<ServerLabels, Counter>,
    /// Prefix-cache lookups and hits in tokens (every prompt token looked up, the
    /// cached ones hits, as the responses' `cached_tokens` report them), and
    /// preemptions (none: a request waits for KV room instead).
    pub prefix_cache_queries: Family<ServerLabels, Counter>,
    pub prefix_cache_hits: Family<ServerLabels, Counter>,
    pub preemptions: Family<ServerLabels, Counter>,
    pub generation_tokens: Family<ServerLabels, Counter>,
    /// vLLM 0.11+: cached prompt tokens (local + external), prompt tokens by source
    /// (`local_compute`, `local_cache_hit`, `external_kv_transfer`) and each
    /// request's newly computed prefill tokens.
    pub prompt_tokens_cached: Family<ServerLabels, Counter>,
    prompt_tokens_by_source: Family<SourceLabels, Counter>,
    pub prefill_kv_computed: H,
    waiting_by_reason: Family<ReasonLabels, Gauge>,
    running: Family<ServerLabels, Gauge>,
    waiting: Family<ServerLabels, Gauge>,
    kv_usage: Family<ServerLabels, Gauge<f64, AtomicU64>>,
    /// Streams being answered outside the batching engine (fixed-delay and
    /// zero-delay modes), and their KV footprint in tokens.
    pub active: AtomicI64,
    pub active_kv: AtomicI64,
}

/// vLLM's e2e buckets (its TTFT buckets and our ITL buckets are shared with the
/// client so the two compare bucket by bucket).
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// The Prometheus text with a `<name>_created{labels} <unix>` sample after every
/// counter (`_total`) and histogram (`_count`) sample, as vLLM's Python client
/// writes them: a creation time per series, about 90 per vLLM scrape, that a
/// scraper must not store as a measurement.
pub fn with_created(text: &str, created: u64) -> String {
    let mut out = String::with_capacity(text.len() * 5 / 4);
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let base = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_count"));
        if let Some(base) = base {
            let labels = line[name_end..].split_once(' ').map_or("", |(l, _)| l);
            out.push_str(&format!("{base}_created{labels} {created}.0\n"));
        }
    }
    out
}

/// vLLM's request-token buckets (1, 2, 5 × powers of ten).
const REQUEST_TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0,
];

impl ServerMetrics {
    /// Counts one request's prompt: all of it, the part served from the prefix
    /// cache, and the part prefilled (vLLM's by-source split and histogram).
    pub fn count_prompt(&self, labels: &ServerLabels, prompt: u64, cached: u64) {
        self.prompt_tokens.get_or_create(labels).inc_by(prompt);
        self.prompt_tokens_cached
            .get_or_create(labels)
            .inc_by(cached);
        let computed = prompt.saturating_sub(cached);
        for (source, n) in [
            ("local_compute", computed),
            ("local_cache_hit", cached),
            ("external_kv_transfer", 0),
        ] {
            self.prompt_tokens_by_source
                .get_or_create(&SourceLabels {
                    model_name: labels.model_name.clone(),
                    engine: labels.engine.clone(),
                    source: source.into(),
                })
                .inc_by(n);
        }
        self.prefill_kv_computed
            .get_or_create(labels)
            .observe(computed as f64);
    }

    /// vLLM 0.11+'s series.
    fn register_newer(&self, r: &mut Registry) {
        r.register(
            "vllm:prompt_tokens_cached",
            "Number of cached prompt tokens (local + external).",
            self.prompt_tokens_cached.clone(),
        );
        r.register(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            self.prompt_tokens_by_source.clone(),
        );
        r.register(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            self.prefill_kv_computed.clone(),
        );
        r.register(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Sum of all reasons equals vllm:num_requests_waiting.",
            self.waiting_by_reason.clone(),
        );
    }

    pub fn new() -> ServerMetrics {
        let mut r = Registry::default();
        let m = ServerMetrics {
            ttft: hist!(telemetry::TTFT_BUCKETS),
            itl: hist!(telemetry::ITL_BUCKETS),
            e2e: hist!(E2E_BUCKETS),
            queue: hist!(E2E_BUCKETS),
            prefill: hist!(E2E_BUCKETS),
            decode: hist!(E2E_BUCKETS),
            prompt_tokens: Family::default(),
            prefix_cache_queries: Family::default(),
            prefix_cache_hits: Family::default(),
            preemptions: Family::default(),
            generation_tokens: Family::default(),
            prompt_tokens_cached: Family::default(),
            prompt_tokens_by_source: Family::default(),
            prefill_kv_computed: hist!(REQUEST_TOKEN_BUCKETS),
            waiting_by_reason: Family::default(),
            running: Family::default(),
            waiting: Family::default(),
            kv_usage: Family::default(),
            active: AtomicI64::new(0),
            active_kv: AtomicI64::new(0),
            registry: Registry::default(),
        };
        let s = Unit::Seconds;
        r.register_with_unit(
            "vllm:time_to_first_token",
            "Histogram of time to first token in seconds.",
            s.clone(),
            m.ttft.clone(),
        );
        r.register_with_unit(
            "vllm:inter_token_latency",
            "Histogram of inter-token latency in seconds.",
            s.clone(),
            m.itl.clone(),
        );
        r.register_with_unit(
            "vllm:e2e_request_latency",
            "Histogram of e2e request latency in seconds.",
            s.clone(),
            m.e2e.clone(),
        );
        r.register_with_unit(
            "vllm:request_queue_time",
            "Histogram of time spent in WAITING phase for request.",
            s.clone(),
            m.queue.clone(),
        );
        r.register_with_unit(
            "vllm:request_prefill_time",
            "Histogram of time spent in PREFILL phase for request.",
            s.clone(),
            m.prefill.clone(),
        );
        r.register_with_unit(
            "vllm:request_decode_time",
            "Histogram of time spent in DECODE phase for request.",
            s,
            m.decode.clone(),
        );
        r.register(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            m.prefix_cache_queries.clone(),
        );
        r.register(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            m.prefix_cache_hits.clone(),
        );
        r.register(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            m.preemptions.clone(),
        );
        r.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            m.prompt_tokens.clone(),
        );
        r.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            m.generation_tokens.clone(),
        );
        m.register_newer(&mut r);
        r.register(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            m.running.clone(),
        );
        r.register(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            m.waiting.clone(),
        );
        r.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            m.kv_usage.clone(),
        );
        ServerMetrics { registry: r, ..m }
    }

    /// Refreshes the gauges from the engine state and encodes (OpenMetrics or
    /// Prometheus text).
    pub fn encode(
        &self,
        labels: &ServerLabels,
        engine: Option<&EngineState>,
        kv_capacity: u64,
        openmetrics: bool,
    ) -> String {
        let (running, waiting, kv) = match engine {
            Some(e) => (
                e.running.load(Ordering::Relaxed) as i64,
                e.waiting.load(Ordering::Relaxed) as i64,
                e.kv_used.load(Ordering::Relaxed) as i64,
            ),
            None => (
                self.active.load(Ordering::Relaxed),
                0,
                self.active_kv.load(Ordering::Relaxed),
            ),
        };
        self.running.get_or_create(labels).set(running.max(0));
        self.waiting.get_or_create(labels).set(waiting.max(0));
        // Every waiting request waits for capacity: nothing here defers one.
        for (reason, n) in [("capacity", waiting.max(0)), ("deferred", 0)] {
            self.waiting_by_reason
                .get_or_create(&ReasonLabels {
                    model_name: labels.model_name.clone(),
                    engine: labels.engine.clone(),
                    reason: reason.into(),
                })
                .set(n);
        }
        self.kv_usage
            .get_or_create(labels)
            .set((kv.max(0) as f64 / kv_capacity.max(1) as f64).min(1.0));
        let mut out = String::new();
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        out
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
