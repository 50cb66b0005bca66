//! The telemetry contract: metric names, units, labels and buckets. This is the only
//! place they are spelled; dashboards and alert rules use exactly these names.
//!
//! Names are registered without the `perfscope_` prefix and without the unit or
//! `_total` suffix: prometheus-client adds those (`ttft` + seconds →
//! `perfscope_time_to_first_token_seconds`).

pub mod log;

use prometheus_client::encoding::EncodeLabelSet;

pub const PREFIX: &str = "perfscope";

pub const TTFT: &str = "time_to_first_token";
pub const TTFC: &str = "time_to_first_chunk";
pub const ITL: &str = "inter_token_latency";
pub const TPOT: &str = "time_per_output_token";
pub const LATENCY: &str = "request_latency";
pub const SCHEDULE_LAG: &str = "schedule_lag";
/// Per-request token histograms. Named like vLLM's `vllm:request_prompt_tokens`:
/// a histogram called `perfscope_prompt_tokens` would share its OpenMetrics family
/// name with the `perfscope_prompt_tokens_total` counter, which parsers reject.
pub const REQUEST_PROMPT_TOKENS: &str = "request_prompt_tokens";
pub const REQUEST_OUTPUT_TOKENS: &str = "request_output_tokens";
/// Token counters (`_total` is added by the encoder).
pub const PROMPT_TOKENS: &str = "prompt_tokens";
pub const OUTPUT_TOKENS: &str = "output_tokens";
pub const REQUESTS: &str = "requests";
/// Requests resent once after a reused keep-alive connection closed unanswered.
pub const RESENT: &str = "resent_requests";
/// Multi-turn: TTFT by turn index (`turn` label, 1..=9 and `10+`).
pub const TURN_TTFT: &str = "turn_time_to_first_token";
/// Prompt tokens the server reported as served from its prefix cache.
pub const CACHED_TOKENS: &str = "cached_prompt_tokens";
pub const IN_FLIGHT: &str = "in_flight_requests";
pub const TARGET_CONCURRENCY: &str = "target_concurrency";
pub const TARGET_RATE: &str = "target_rate_rps";
pub const RUN: &str = "run";
/// `--scenario agentx`: session-tree lanes playing a tree, subagent conversations
/// running, and the theoretical prefix-cache blocks of successful requests.
pub const AGENTX_LANES: &str = "agentx_active_lanes";
pub const AGENTX_SUBAGENTS: &str = "agentx_subagents_in_flight";
pub const AGENTX_PREFIX_HIT_BLOCKS: &str = "agentx_theoretical_prefix_hit_blocks";
pub const AGENTX_PREFIX_BLOCKS: &str = "agentx_theoretical_prefix_blocks";
/// The run's declared objectives (`--goodput`, `--sla-params` p99 criteria, `--slo`),
/// the requests meeting the goodput bounds, and the latest request missing each.
pub const OBJECTIVE_TTFT: &str = "objective_ttft";
pub const OBJECTIVE_TPOT: &str = "objective_tpot";
pub const OBJECTIVE_LATENCY: &str = "objective_latency";
pub const OBJECTIVE_ERROR_RATIO: &str = "objective_error_ratio";
pub const OBJECTIVE_GOODPUT_RATIO: &str = "objective_goodput_ratio";
pub const GOOD_REQUESTS: &str = "good_requests";
pub const OBJECTIVE_BREACH: &str = "objective_breach_timestamp";
/// `--snapshot-interval`: the last window's p50 over the steady state's, by metric
/// (`ttft`, `tpot`); flagged as drift past `--drift-threshold`.
pub const DRIFT_RATIO: &str = "window_drift_ratio";
/// The served model's state at its latest scrape, for the live page and dashboards.
pub const SERVER_RUNNING: &str = "server_running_requests";
pub const SERVER_WAITING: &str = "server_waiting_requests";
/// The constant label naming the shard of a distributed run on every series.
pub const SHARD_LABEL: &str = "shard";
/// `--enable-progress-tracker`: the invocation's finished and planned requests.
pub const PROGRESS_PROCESSED: &str = "progress_processed_requests";
pub const PROGRESS_TOTAL: &str = "progress_total_requests";

/// vLLM's `vllm:time_to_first_token_seconds` buckets, so client and server compare
/// bucket by bucket.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// vLLM's `vllm:inter_token_latency_seconds` buckets with finer ones below 10 ms
/// (fast decoders and speculative decoding live there).
pub const ITL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];

/// vLLM's `vllm:e2e_request_latency_seconds` buckets, with three finer ones below.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
];

/// Delay between a request's intended and actual start.
pub const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Token counts: vLLM's 1-2-5 series.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0, 200000.0, 500000.0, 1000000.0,
];

/// Labels on every perfscope series: low cardinality, never a request id or prompt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The invocation's output directory name (`<timestamp>/<name|model>`).
    pub run: String,
    pub model: String,
    pub api: String,
    /// The sweep point, e.g. `parallel_8_number_800`.
    pub stage: String,
}

/// Request outcome labels: `outcome` is `success` or `failure`; `failure_kind` is one
/// of the bounded failure kinds, empty for successes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub run: String,
    pub model: String,
    pub api: String,
    pub stage: String,
    pub outcome: String,
    pub failure_kind: String,
}

/// A turn of a multi-turn conversation: the run's labels and the 1-based turn index
/// (`10+` from the tenth on, so the series stay few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    pub run: String,
    pub model: String,
    pub api: String,
    pub stage: String,
    pub turn: String,
}

/// A run's series for one metric (`ttft`, `tpot`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub run: String,
    pub model: String,
    pub api: String,
    pub stage: String,
    pub metric: String,
}

/// Exemplar label: the request's W3C trace id (32 lowercase hex characters), the same
/// value as the SQLite row's `trace_id`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    pub trace_id: String,
}

/// `perfscope_run_info` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunInfoLabels {
    /// The run: the invocation's `<timestamp>/<name|model>`, or a distributed run's
    /// id (`--run-id`), the same in every shard.
    pub run: String,
    pub model: String,
    pub api: String,
    pub url: String,
    pub dataset: String,
    pub version: String,
}
