//! Live Prometheus metrics (`/metrics`, OpenMetrics with content negotiation).
//!
//! Records are observed by the fan-out task, never on the request path; the only
//! per-request work in request tasks is the in-flight gauge (one atomic add).

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::record::RequestRecord;
use crate::telemetry::{
    self as t, MetricLabels, OutcomeLabels, RunInfoLabels, RunLabels, TraceLabel, TurnLabels,
};

type Hist = Family<RunLabels, Histogram, fn() -> Histogram>;
/// Request-level histograms: each bucket keeps the trace id of a request in it.
type XHist = Family<
    RunLabels,
    HistogramWithExemplars<TraceLabel>,
    fn() -> HistogramWithExemplars<TraceLabel>,
>;

macro_rules! exemplar_family {
    ($b:expr) => {
        XHist::new_with_constructor({
            fn make() -> HistogramWithExemplars<TraceLabel> {
                HistogramWithExemplars::new($b.iter().copied())
            }
            make
        })
    };
}

macro_rules! family {
    ($b:expr) => {
        Family::<RunLabels, Histogram, fn() -> Histogram>::new_with_constructor({
            fn make() -> Histogram {
                Histogram::new($b.iter().copied())
            }
            make
        })
    };
}

pub struct Metrics {
    registry: Registry,
    ttft: XHist,
    ttfc: Hist,
    itl: Hist,
    tpot: XHist,
    latency: XHist,
    lag: Hist,
    prompt_tokens: Hist,
    output_tokens: Hist,
    requests: Family<OutcomeLabels, Counter>,
    resent: Family<RunLabels, Counter>,
    prompt_total: Family<RunLabels, Counter>,
    output_total: Family<RunLabels, Counter>,
    cached_total: Family<RunLabels, Counter>,
    turn_ttft: Family<TurnLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Family<RunLabels, Gauge>,
    pub target_concurrency: Family<RunLabels, Gauge>,
    pub target_rate: Family<RunLabels, Gauge<f64, AtomicU64>>,
    pub progress_processed: Gauge,
    pub progress_total: Gauge,
    pub agentx_lanes: Family<RunLabels, Gauge>,
    pub agentx_subagents: Family<RunLabels, Gauge>,
    prefix_hit_blocks: Family<RunLabels, Counter>,
    prefix_blocks: Family<RunLabels, Counter>,
    slo: super::slo::SloMetrics,
    drift: Family<MetricLabels, Gauge<f64, AtomicU64>>,
    server_running: Family<RunLabels, Gauge<f64, AtomicU64>>,
    server_waiting: Family<RunLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// `shard` is a constant label on every series.
    /// `progress`: also register the `--enable-progress-tracker` gauges.
    /// `objectives`: the run's, exported for the alert rules.
    pub fn new(
        info: RunInfoLabels,
        shard: u64,
        progress: bool,
        objectives: crate::slo::Objectives,
    ) -> Metrics {
        // Every series carries the shard, so N shards scraped into one Prometheus
        // stay apart and aggregate with `sum by` (shard "0" when not sharded).
        let shard = (
            std::borrow::Cow::Borrowed(t::SHARD_LABEL),
            std::borrow::Cow::Owned(shard.to_string()),
        );
        let mut r = Registry::with_prefix_and_labels(t::PREFIX, std::iter::once(shard));
        let slo = super::slo::SloMetrics::new(objectives, &mut r);
        let m = Metrics {
            ttft: exemplar_family!(t::TTFT_BUCKETS),
            ttfc: family!(t::TTFT_BUCKETS),
            itl: family!(t::ITL_BUCKETS),
            tpot: exemplar_family!(t::ITL_BUCKETS),
            latency: exemplar_family!(t::LATENCY_BUCKETS),
            lag: family!(t::LAG_BUCKETS),
            prompt_tokens: family!(t::TOKEN_BUCKETS),
            output_tokens: family!(t::TOKEN_BUCKETS),
            requests: Family::default(),
            resent: Family::default(),
            prompt_total: Family::default(),
            output_total: Family::default(),
            cached_total: Family::default(),
            turn_ttft: Family::<TurnLabels, Histogram, fn() -> Histogram>::new_with_constructor({
                fn make() -> Histogram {
                    Histogram::new(t::TTFT_BUCKETS.iter().copied())
                }
                make
            }),
            in_flight: Family::default(),
            target_concurrency: Family::default(),
            target_rate: Family::default(),
            progress_processed: Gauge::default(),
            progress_total: Gauge::default(),
            agentx_lanes: Family::default(),
            agentx_subagents: Family::default(),
            prefix_hit_blocks: Family::default(),
            prefix_blocks: Family::default(),
            slo,
            drift: Family::default(),
            server_running: Family::default(),
            server_waiting: Family::default(),
            registry: Registry::default(),
        };
        let s = Unit::Seconds;
        r.register_with_unit(
            t::TTFT,
            "Time to first output token (content, reasoning or tool-call text)",
            s.clone(),
            m.ttft.clone(),
        );
        r.register_with_unit(
            t::TTFC,
            "Time to the first SSE event of any kind",
            s.clone(),
            m.ttfc.clone(),
        );
        r.register_with_unit(
            t::ITL,
            "Gap between consecutive output chunks",
            s.clone(),
            m.itl.clone(),
        );
        r.register_with_unit(
            t::TPOT,
            "Per-request (latency - TTFT) / (output tokens - 1)",
            s.clone(),
            m.tpot.clone(),
        );
        r.register_with_unit(
            t::LATENCY,
            "Request latency, send to last event",
            s.clone(),
            m.latency.clone(),
        );
        r.register_with_unit(
            t::SCHEDULE_LAG,
            "Actual minus intended start",
            s,
            m.lag.clone(),
        );
        register_counters(&mut r, &m, progress);
        r.register(t::RUN, "The running benchmark", Info::new(info));
        Metrics { registry: r, ..m }
    }

    /// Creates a stage's counters at 0: the success counter, one failure counter per
    /// kind, and the resend counter. Prometheus' instrumentation guidelines: a series
    /// that appears only on the first failure makes error-ratio panels show "No data"
    /// for a clean run and `rate()` miss the first failure.
    pub fn start_stage(&self, l: &RunLabels) {
        let outcome = |o: &str, k: &str| OutcomeLabels {
            run: l.run.clone(),
            model: l.model.clone(),
            api: l.api.clone(),
            stage: l.stage.clone(),
            outcome: o.into(),
            failure_kind: k.into(),
        };
        let _ = self.requests.get_or_create(&outcome("success", ""));
        for k in crate::record::FailureKind::ALL {
            let _ = self.requests.get_or_create(&outcome("failure", k.as_str()));
        }
        let _ = self.resent.get_or_create(l);
        self.slo.start_stage(l);
    }

    /// Creates an AgentX stage's block counters at 0 (so `rate()` sees the first).
    pub fn agentx_started(&self, l: &RunLabels) {
        let _ = self.prefix_hit_blocks.get_or_create(l);
        let _ = self.prefix_blocks.get_or_create(l);
    }

    /// A closed `--snapshot-interval` window's drift: its TTFT and TPOT p50 over
    /// the steady state's.
    pub fn drift(&self, l: &RunLabels, ttft: Option<f64>, tpot: Option<f64>) {
        for (metric, v) in [("ttft", ttft), ("tpot", tpot)] {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let k = MetricLabels {
                    run: l.run.clone(),
                    model: l.model.clone(),
                    api: l.api.clone(),
                    stage: l.stage.clone(),
                    metric: metric.into(),
                };
                self.drift.get_or_create(&k).set(v);
            }
        }
    }

    /// The served model's running and waiting requests at its latest scrape (the
    /// first candidate series it has, summed over its label sets, as the summary's
    /// Server Peak Running/Waiting read them).
    pub fn server_state(&self, l: &RunLabels, samples: &[crate::scrape::parse::Sample]) {
        use crate::stats::Metric;
        for (metric, family) in [
            (Metric::ServerPeakRunning, &self.server_running),
            (Metric::ServerPeakWaiting, &self.server_waiting),
        ] {
            let found = crate::stats::server::candidates(metric)
                .iter()
                .find_map(|name| {
                    let mut it = samples.iter().filter(|s| s.name == *name).peekable();
                    it.peek()?;
                    Some(it.map(|s| s.value).sum::<f64>())
                });
            if let Some(v) = found {
                family.get_or_create(l).set(v);
            }
        }
    }

    /// Records one finished request.
    pub fn observe(&self, r: &RequestRecord, l: &RunLabels) {
        let outcome = OutcomeLabels {
            run: l.run.clone(),
            model: l.model.clone(),
            api: l.api.clone(),
            stage: l.stage.clone(),
            outcome: if r.success { "success" } else { "failure" }.into(),
            failure_kind: r.failure.map_or("", |k| k.as_str()).into(),
        };
        self.requests.get_or_create(&outcome).inc();
        if r.resent {
            self.resent.get_or_create(l).inc();
        }
        let tl = &r.timeline;
        self.lag
            .get_or_create(l)
            .observe((tl.send - tl.intended_start).max(0.0));
        self.slo.observe(r, l);
        if !r.success {
            return;
        }
        // Per-token ITL observations carry no exemplar (too many); request-level
        // histograms link a bucket to a trace and to the SQLite row.
        // One hex string per record, cloned into each exemplar.
        let trace = r.trace.map(|c| TraceLabel {
            trace_id: c.trace_id_hex(),
        });
        let ex = || trace.clone();
        if let Some(v) = r.latency() {
            self.latency.get_or_create(l).observe(v, ex(), None);
        }
        if let Some(v) = r.ttft() {
            self.ttft.get_or_create(l).observe(v, ex(), None);
            if let Some(s) = &r.session {
                let turn = TurnLabels {
                    run: l.run.clone(),
                    model: l.model.clone(),
                    api: l.api.clone(),
                    stage: l.stage.clone(),
                    turn: if s.turn >= 10 {
                        "10+".into()
                    } else {
                        s.turn.to_string()
                    },
                };
                self.turn_ttft.get_or_create(&turn).observe(v);
            }
        }
        if let Some(c) = r.cached_tokens {
            self.cached_total.get_or_create(l).inc_by(c);
        }
        if let Some((hit, total)) = r.session.as_ref().and_then(|s| s.prefix_blocks) {
            self.prefix_hit_blocks
                .get_or_create(l)
                .inc_by(hit.min(total));
            self.prefix_blocks.get_or_create(l).inc_by(total);
        }
        if let Some(t) = tl.first_event {
            self.ttfc.get_or_create(l).observe(t - tl.send);
        }
        if let Some(v) = r.tpot() {
            self.tpot.get_or_create(l).observe(v, ex(), None);
        }
        let itl = self.itl.get_or_create(l);
        for g in &r.itl {
            itl.observe(*g);
        }
        if let Some(p) = r.prompt_tokens {
            self.prompt_tokens.get_or_create(l).observe(p as f64);
            self.prompt_total.get_or_create(l).inc_by(p);
        }
        if let Some(c) = r.completion_tokens {
            self.output_tokens.get_or_create(l).observe(c as f64);
            self.output_total.get_or_create(l).inc_by(c);
        }
    }

    /// OpenMetrics text (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut s = String::new();
        let _ = text::encode(&mut s, &self.registry);
        s
    }

    /// Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics.
    pub fn encode_prometheus(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry);
        s
    }
}

/// The counters, gauges and per-turn histogram of `Metrics::new`.
fn register_counters(r: &mut Registry, m: &Metrics, progress: bool) {
    r.register(
        t::REQUEST_PROMPT_TOKENS,
        "Prompt tokens per successful request (server usage)",
        m.prompt_tokens.clone(),
    );
    r.register(
        t::REQUEST_OUTPUT_TOKENS,
        "Output tokens per successful request (server usage)",
        m.output_tokens.clone(),
    );
    r.register(
        t::REQUESTS,
        "Finished requests by outcome and failure kind",
        m.requests.clone(),
    );
    r.register(
        t::PROMPT_TOKENS,
        "Prompt tokens of successful requests",
        m.prompt_total.clone(),
    );
    r.register(
        t::OUTPUT_TOKENS,
        "Output tokens of successful requests",
        m.output_total.clone(),
    );
    r.register(
        t::CACHED_TOKENS,
        "Prompt tokens of successful requests the server served from its prefix cache (usage.prompt_tokens_details.cached_tokens)",
        m.cached_total.clone(),
    );
    r.register_with_unit(
        t::TURN_TTFT,
        "Multi-turn: time to first output token by turn index",
        Unit::Seconds,
        m.turn_ttft.clone(),
    );
    r.register(
        t::RESENT,
        "Requests resent once on a new connection because the reused keep-alive connection closed before any response byte",
        m.resent.clone(),
    );
    r.register(
        t::IN_FLIGHT,
        "Requests sent and not yet finished",
        m.in_flight.clone(),
    );
    r.register(
        t::TARGET_CONCURRENCY,
        "Configured --parallel of the current stage (-1 = open loop)",
        m.target_concurrency.clone(),
    );
    r.register(
        t::TARGET_RATE,
        "Configured --rate of the current stage (-1 = none)",
        m.target_rate.clone(),
    );
    r.register(
        t::AGENTX_LANES,
        "--scenario agentx: session-tree lanes playing a tree (of --parallel)",
        m.agentx_lanes.clone(),
    );
    r.register(
        t::AGENTX_SUBAGENTS,
        "--scenario agentx: subagent conversations spawned and not yet finished",
        m.agentx_subagents.clone(),
    );
    r.register(
        t::AGENTX_PREFIX_HIT_BLOCKS,
        "--scenario agentx: theoretical prefix-cache hit blocks of successful requests (AIPerf's theoretical_prefix_cache_hit numerator)",
        m.prefix_hit_blocks.clone(),
    );
    r.register(
        t::AGENTX_PREFIX_BLOCKS,
        "--scenario agentx: hash blocks of successful requests (the theoretical hit's denominator)",
        m.prefix_blocks.clone(),
    );
    r.register(
        t::DRIFT_RATIO,
        "--snapshot-interval: the last window's p50 over the steady state's (median window p50 after the first 20 % of the run), by metric",
        m.drift.clone(),
    );
    r.register(
        t::SERVER_RUNNING,
        "The served model's running requests at its latest scrape (--server-metrics)",
        m.server_running.clone(),
    );
    r.register(
        t::SERVER_WAITING,
        "The served model's waiting (queued) requests at its latest scrape (--server-metrics)",
        m.server_waiting.clone(),
    );
    if progress {
        r.register(
            t::PROGRESS_PROCESSED,
            "Requests finished so far in this invocation (--enable-progress-tracker)",
            m.progress_processed.clone(),
        );
        r.register(
            t::PROGRESS_TOTAL,
            "Requests planned for this invocation (--enable-progress-tracker)",
            m.progress_total.clone(),
        );
    }
}

/// Serves `/metrics` (and the routes of `beside`) on an already bound listener
/// until `shutdown` resolves. OpenMetrics when the scraper asks for it (Prometheus
/// does by default), else the Prometheus 0.0.4 text format.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    beside: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{header, HeaderMap};
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let m = metrics.clone();
            async move {
                let om = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("application/openmetrics-text"));
                if om {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode_openmetrics(),
                    )
                } else {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.encode_prometheus(),
                    )
                }
            }
        }),
    );
    serve_bounded(listener, app.merge(beside), shutdown).await
}

/// Most connections `/metrics` keeps at once: a scraper needs one; the load's
/// descriptors must not go to idle or hostile clients.
const MAX_METRICS_CONNECTIONS: usize = 64;
/// A request head must arrive within this (slowloris clients are dropped).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A connection lasts at most this long (a keep-alive scraper reconnects).
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// Serves `app` with bounded connections: at most MAX_METRICS_CONNECTIONS (more are
/// closed at once), each given HEADER_READ_TIMEOUT to send a request head and
/// CONNECTION_LIFETIME in all.
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                // Out of descriptors or an aborted handshake: try again shortly.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = b.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}
