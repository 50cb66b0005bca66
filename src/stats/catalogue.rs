//! The metric catalogue: every summary key and percentile column declared once, with
//! its evalscope key, unit, rounding, direction and definition. Everything that
//! shows, pushes, judges or averages a metric reads it from here (the JSON files, the
//! console and HTML reports, the trackers, `--sla-params`, the repeats average, the
//! live log line); only the computation lives elsewhere (`summary.rs`, `columns.rs`).
//!
//! The declaration order is the order of evalscope 1.14.1's `benchmark_summary.json`
//! and `benchmark_percentile.json`, then perfscope's additions: the files are written
//! in this order.

/// Which way is better, for comparisons and SLA searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
    /// A setting or a count that describes the run rather than grades it.
    Neutral,
}

/// How a summary value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An integer.
    Int,
    /// A float rounded to this many decimals (Python's `round`).
    Dp(usize),
    /// A float as given (the sweep point's rate).
    Float,
    /// An object of counts (`Failures by Kind`).
    Counts,
    /// A sentence (`Token Counts`).
    Text,
    /// A list of metric names (`Not Applicable Metrics`).
    Names,
}

/// Which runs a metric belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Any,
    /// Generation runs only (evalscope writes 0 for embedding/rerank runs, or leaves
    /// the percentile column out).
    Generation,
    /// Embedding / rerank runs only (evalscope's input throughput).
    Encoder,
}

/// Who defines the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// evalscope 1.14.1 writes it always.
    Evalscope,
    /// evalscope 1.14.1 writes it when its source exists.
    EvalscopeWhen,
    /// perfscope's addition, after evalscope's keys.
    Perfscope,
}

/// Where the per-run console table shows a summary metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    General,
    Latency,
    Tokens,
    /// evalscope's `── Multi-turn ──` group (and the cache hit rate).
    MultiTurn,
    /// The served model's own figures (`server_metrics`).
    Server,
}

/// One summary metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// evalscope's key, the name everywhere (JSON, console, trackers).
    pub key: &'static str,
    pub unit: &'static str,
    pub format: Format,
    pub direction: Direction,
    pub scope: Scope,
    pub origin: Origin,
    /// A count that adds up over repeats (and shards): evalscope sums the request
    /// counts of repeated runs instead of averaging them.
    pub additive: bool,
    /// Pushed to the trackers at every step.
    pub tracked: bool,
    /// Shown in the per-run console table (None: the JSON file only).
    pub section: Option<Section>,
    /// Its definition, for the documentation.
    pub formula: &'static str,
}

/// One percentile column.
#[derive(Clone, Copy, Debug)]
pub struct ColumnDef {
    pub key: &'static str,
    pub unit: &'static str,
    pub direction: Direction,
    pub scope: Scope,
    pub origin: Origin,
    /// Its p50, p90 and p99 are pushed to the trackers.
    pub tracked: bool,
    pub formula: &'static str,
}

/// Declares the enum and its definitions in one table.
macro_rules! summary_metrics {
    ($($name:ident: $key:literal, $unit:literal, $format:expr, $dir:ident, $scope:ident,
       $origin:ident, additive $add:literal, tracked $tracked:literal, $section:expr,
       $formula:literal;)*) => {
        /// A summary metric (a key of `benchmark_summary.json`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric { $($name),* }

        impl Metric {
            /// Every metric, in the file's order.
            pub const ALL: &'static [Metric] = &[$(Metric::$name),*];

            pub const fn def(self) -> MetricDef {
                match self {
                    $(Metric::$name => MetricDef {
                        key: $key,
                        unit: $unit,
                        format: $format,
                        direction: Direction::$dir,
                        scope: Scope::$scope,
                        origin: Origin::$origin,
                        additive: $add,
                        tracked: $tracked,
                        section: $section,
                        formula: $formula,
                    }),*
                }
            }
        }
    };
}

macro_rules! percentile_columns {
    ($($name:ident: $key:literal, $unit:literal, $dir:ident, $scope:ident, $origin:ident,
       tracked $tracked:literal, $formula:literal;)*) => {
        /// A percentile column (a key of `benchmark_percentile.json`'s rows).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Col { $($name),* }

        impl Col {
            /// Every column, in the file's order.
            pub const ALL: &'static [Col] = &[$(Col::$name),*];

            pub const fn def(self) -> ColumnDef {
                match self {
                    $(Col::$name => ColumnDef {
                        key: $key,
                        unit: $unit,
                        direction: Direction::$dir,
                        scope: Scope::$scope,
                        origin: Origin::$origin,
                        tracked: $tracked,
                        formula: $formula,
                    }),*
                }
            }
        }
    };
}

use Format::{Counts, Dp, Float, Int, Names, Text};
const GENERAL: Option<Section> = Some(Section::General);
const LATENCY: Option<Section> = Some(Section::Latency);
const TOKENS: Option<Section> = Some(Section::Tokens);
const SERVER: Option<Section> = Some(Section::Server);
const MULTI_TURN: Option<Section> = Some(Section::MultiTurn);

summary_metrics! {
    TestDuration: "Test Duration (s)", "s", Dp(4), Neutral, Any, Evalscope,
        additive false, tracked true, GENERAL,
        "max(completed_time) − min(start_time) over the rows with a valid interval (start_time > 0 and completed_time ≥ start_time, failures included); 1.0 when none";
    Concurrency: "Concurrency", "requests", Int, Neutral, Any, Evalscope,
        additive false, tracked true, GENERAL,
        "--parallel of the sweep point";
    RequestRate: "Request Rate (req/s)", "req/s", Float, Neutral, Any, Evalscope,
        additive false, tracked true, GENERAL,
        "--rate of the sweep point (-1: unbounded)";
    TotalRequests: "Total Requests", "requests", Int, Neutral, Any, Evalscope,
        additive true, tracked true, None,
        "rows (requests sent), failures included";
    SuccessRequests: "Success Requests", "requests", Int, HigherIsBetter, Any, Evalscope,
        additive true, tracked true, None,
        "rows with success = 1";
    FailedRequests: "Failed Requests", "requests", Int, LowerIsBetter, Any, Evalscope,
        additive true, tracked true, None,
        "Total Requests − Success Requests";
    StreamRequests: "Stream Requests", "requests", Int, Neutral, Any, Evalscope,
        additive true, tracked false, None,
        "rows sent with stream = true";
    NonStreamRequests: "Non-Stream Requests", "requests", Int, Neutral, Any, Evalscope,
        additive true, tracked false, None,
        "Total Requests − Stream Requests";
    ReqThroughput: "Req Throughput (req/s)", "req/s", Dp(4), HigherIsBetter, Any, Evalscope,
        additive false, tracked true, GENERAL,
        "Success Requests / Test Duration";
    AvgLatency: "Avg Latency (s)", "s", Dp(4), LowerIsBetter, Any, Evalscope,
        additive false, tracked true, LATENCY,
        "Σ latency / Success Requests (send to last byte, successes)";
    AvgInputTokens: "Avg Input Tokens", "tokens", Dp(4), Neutral, Any, Evalscope,
        additive false, tracked true, TOKENS,
        "Σ prompt_tokens / successes with known token counts";
    NotApplicable: "Not Applicable Metrics", "", Names, Neutral, Encoder, EvalscopeWhen,
        additive false, tracked false, None,
        "decision runs (--api systemone / autotrust): the generation metrics without meaning for a decision, [Avg TTFT (ms), Avg TPOT (ms), Avg ITL (ms)]";
    OutputThroughput: "Output Throughput (tok/s)", "tok/s", Dp(4), HigherIsBetter, Generation, Evalscope,
        additive false, tracked true, TOKENS,
        "Σ completion_tokens / Test Duration";
    TotalThroughput: "Total Throughput (tok/s)", "tok/s", Dp(4), HigherIsBetter, Any, Evalscope,
        additive false, tracked true, TOKENS,
        "Σ (prompt_tokens + completion_tokens) / Test Duration";
    AvgTtft: "Avg TTFT (ms)", "ms", Dp(2), LowerIsBetter, Generation, Evalscope,
        additive false, tracked true, LATENCY,
        "mean first_chunk_latency of successful streams (all successes when none streamed); -1000 when none";
    AvgTpot: "Avg TPOT (ms)", "ms", Dp(2), LowerIsBetter, Generation, Evalscope,
        additive false, tracked true, LATENCY,
        "mean time_per_output_token of successful streams with more than one output token";
    AvgItl: "Avg ITL (ms)", "ms", Dp(2), LowerIsBetter, Generation, Evalscope,
        additive false, tracked true, LATENCY,
        "mean of every gap between output-carrying chunks of successful requests";
    AvgSteadyItl: "Avg Steady ITL (ms)", "ms", Dp(2), LowerIsBetter, Generation, EvalscopeWhen,
        additive false, tracked true, LATENCY,
        "--enable-pd-metrics: mean of every gap after a success's first one (rows with ≥ 2 gaps), pooled";
    AvgPdHandoffLatency: "Avg PD Handoff Latency (ms)", "ms", Dp(2), LowerIsBetter, Generation, EvalscopeWhen,
        additive false, tracked true, LATENCY,
        "--enable-pd-metrics: mean first gap (ITL[0]) of successes with ≥ 1 gap";
    AvgPdHandoffOverhead: "Avg PD Handoff Overhead (ms)", "ms", Dp(2), LowerIsBetter, Generation, EvalscopeWhen,
        additive false, tracked true, LATENCY,
        "--enable-pd-metrics: mean max(0, ITL[0] − median(ITL[1:])) of successes with ≥ 2 gaps";
    AvgOutputTokens: "Avg Output Tokens", "tokens", Dp(4), Neutral, Generation, Evalscope,
        additive false, tracked true, TOKENS,
        "Σ completion_tokens / successes with known token counts";
    InputThroughput: "Input Throughput (tok/s)", "tok/s", Dp(4), HigherIsBetter, Encoder, Evalscope,
        additive false, tracked true, TOKENS,
        "Σ prompt_tokens / Σ latency (evalscope writes 0.0 for generation runs); decision runs (--api systemone / autotrust): Σ prompt_tokens / test duration";
    AvgTurnsPerRequest: "Avg Turns/Request", "turns", Dp(4), Neutral, Generation, EvalscopeWhen,
        additive false, tracked true, MULTI_TURN,
        "multi-turn: mean 1-based turn index of successful turns (not turns per conversation)";
    KvCacheHitRate: "KV Cache Hit Rate (%)", "%", Dp(4), HigherIsBetter, Any, EvalscopeWhen,
        additive false, tracked true, MULTI_TURN,
        "100 · Σ cached_tokens / Σ prompt_tokens over successes whose server reported cached tokens (perfscope: the server's figures only; evalscope mixes in its multi-turn estimate, see the next key)";
    AvgFirstTurnTtft: "Avg First-Turn TTFT (ms)", "ms", Dp(2), LowerIsBetter, Generation, EvalscopeWhen,
        additive false, tracked true, MULTI_TURN,
        "multi-turn: mean TTFT of successful first turns";
    AvgSubsequentTurnTtft: "Avg Subsequent-Turn TTFT (ms)", "ms", Dp(2), LowerIsBetter, Generation, EvalscopeWhen,
        additive false, tracked true, MULTI_TURN,
        "multi-turn: mean TTFT of successful later turns";
    AvgDecodedTokPerIter: "Avg Decoded Tok/Iter", "tokens", Dp(4), HigherIsBetter, Generation, EvalscopeWhen,
        additive false, tracked false, None,
        "mean (completion_tokens − 1) / (decode chunks − 1) over requests where it exceeds 1";
    SpecAcceptRate: "Spec. Accept Rate", "ratio", Dp(4), HigherIsBetter, Generation, EvalscopeWhen,
        additive false, tracked false, None,
        "1 − 1 / Avg Decoded Tok/Iter, clamped to [0, 1]";
    EstKvCacheHitRate: "Estimated KV Cache Hit Rate (%)", "%", Dp(4), HigherIsBetter, Any, Perfscope,
        additive false, tracked true, MULTI_TURN,
        "multi-turn when the server reported no cached tokens for some turns: evalscope's KV Cache Hit Rate, an estimate (a turn's cached tokens taken as the previous turn's prompt + completion; the server's figure where it reported one)";
    GoodputRps: "Goodput (req/s)", "req/s", Dp(4), HigherIsBetter, Any, Perfscope,
        additive false, tracked true, GENERAL,
        "successes meeting every --goodput bound / Test Duration";
    GoodputPct: "Goodput (%)", "%", Dp(2), HigherIsBetter, Any, Perfscope,
        additive false, tracked true, GENERAL,
        "100 · successes meeting every --goodput bound / Total Requests";
    MeasuredRequestRate: "Measured Request Rate (req/s)", "req/s", Dp(4), Neutral, Any, Perfscope,
        additive false, tracked true, GENERAL,
        "(Total Requests − 1) / (last send − first send); -1 with fewer than two";
    MeasuredConcurrencyAvg: "Measured Concurrency (avg)", "requests", Dp(4), Neutral, Any, Perfscope,
        additive false, tracked true, GENERAL,
        "Σ (end − send) / Test Duration";
    MeasuredConcurrencyPeak: "Measured Concurrency (peak)", "requests", Int, Neutral, Any, Perfscope,
        additive false, tracked false, GENERAL,
        "most requests in flight at once (send to end)";
    AvgTimeToFirstEvent: "Avg Time to First Event (ms)", "ms", Dp(2), LowerIsBetter, Generation, Perfscope,
        additive false, tracked false, LATENCY,
        "mean time to the first SSE event of the TTFT rows (role-only events included)";
    AvgScheduleLag: "Avg Schedule Lag (ms)", "ms", Dp(2), LowerIsBetter, Any, Perfscope,
        additive false, tracked false, LATENCY,
        "mean max(send − intended send, 0): how late the client released requests";
    FailuresByKind: "Failures by Kind", "requests", Counts, LowerIsBetter, Any, Perfscope,
        additive false, tracked false, None,
        "failed rows by failure_kind";
    ResentRequests: "Resent Requests", "requests", Int, Neutral, Any, Perfscope,
        additive true, tracked false, None,
        "requests resent once because a reused connection closed before any response byte";
    NotSentRequests: "Not Sent Requests", "requests", Int, LowerIsBetter, Any, Perfscope,
        additive true, tracked false, None,
        "requests released but never sent because the run was stopped";
    TokenCounts: "Token Counts", "", Text, Neutral, Any, Perfscope,
        additive false, tracked false, None,
        "whether every success had server usage, or how many had none";
    ServerPromptTokens: "Server Prompt Tokens", "tokens", Int, Neutral, Any, Perfscope,
        additive true, tracked true, SERVER,
        "server counter delta over the run: vllm:prompt_tokens_total, sglang:prompt_tokens_total, llamacpp:prompt_tokens_total + llamacpp:prompt_tokens_cached_total, or tgi_request_input_length_sum";
    ServerOutputTokens: "Server Output Tokens", "tokens", Int, Neutral, Any, Perfscope,
        additive true, tracked true, SERVER,
        "server counter delta over the run: vllm:generation_tokens_total, sglang:generation_tokens_total, llamacpp:tokens_predicted_total or tgi_request_generated_tokens_sum";
    ServerAvgTtft: "Server Avg TTFT (ms)", "ms", Dp(2), LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "Δ_sum / Δ_count of vllm:time_to_first_token_seconds or sglang:time_to_first_token_seconds";
    ServerAvgQueueTime: "Server Avg Queue Time (ms)", "ms", Dp(2), LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "Δ_sum / Δ_count of vllm:request_queue_time_seconds, sglang:queue_time_seconds or tgi_request_queue_duration";
    ServerAvgPrefillTime: "Server Avg Prefill Time (ms)", "ms", Dp(2), LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "Δ_sum / Δ_count of vllm:request_prefill_time_seconds";
    ServerAvgDecodeTime: "Server Avg Decode Time (ms)", "ms", Dp(2), LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "Δ_sum / Δ_count of vllm:request_decode_time_seconds";
    ClientOverheadTtft: "Client Overhead TTFT (ms)", "ms", Dp(2), LowerIsBetter, Generation, Perfscope,
        additive false, tracked true, SERVER,
        "Avg TTFT − Server Avg TTFT: network, HTTP layers and the client";
    ServerPeakRunning: "Server Peak Running", "requests", Int, Neutral, Any, Perfscope,
        additive false, tracked true, SERVER,
        "most running requests in one scrape (Σ over engines): vllm:num_requests_running, sglang:num_running_reqs, llamacpp:requests_processing or tgi_batch_current_size";
    ServerPeakWaiting: "Server Peak Waiting", "requests", Int, LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "most waiting requests in one scrape: vllm:num_requests_waiting, sglang:num_queue_reqs, llamacpp:requests_deferred or tgi_queue_size";
    ServerPeakKvCacheUsage: "Server Peak KV Cache Usage (%)", "%", Dp(2), Neutral, Any, Perfscope,
        additive false, tracked true, SERVER,
        "100 · highest vllm:kv_cache_usage_perc (vllm:gpu_cache_usage_perc before vLLM 0.10), sglang:token_usage or llamacpp:kv_cache_usage_ratio";
    ServerPrefixCacheHitRate: "Server Prefix Cache Hit Rate (%)", "%", Dp(2), HigherIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "100 · Δ vllm:prefix_cache_hits_total / Δ vllm:prefix_cache_queries_total; llama.cpp: 100 · Δ prompt_tokens_cached_total / (Δ cached + Δ prompt_tokens_total); else 100 · mean sglang:cache_hit_rate";
    ServerCachedPromptTokens: "Server Cached Prompt Tokens", "tokens", Int, Neutral, Any, Perfscope,
        additive true, tracked true, SERVER,
        "server counter delta over the run: vllm:prompt_tokens_cached_total (local + external cache), sglang:cached_tokens_total or llamacpp:prompt_tokens_cached_total";
    ServerComputedPromptTokens: "Server Computed Prompt Tokens", "tokens", Int, Neutral, Any, Perfscope,
        additive true, tracked true, SERVER,
        "prompt tokens the server prefilled itself (neither cached nor transferred): Δ vllm:prompt_tokens_by_source_total{source=local_compute}";
    ServerAvgPrefillComputedTokens: "Server Avg Prefill Computed Tokens", "tokens", Dp(2), Neutral, Any, Perfscope,
        additive false, tracked true, SERVER,
        "new KV tokens computed per request's prefill (cached ones excluded): Δ_sum / Δ_count of vllm:request_prefill_kv_computed_tokens";
    ServerPeakWaitingDeferred: "Server Peak Waiting (deferred)", "requests", Int, LowerIsBetter, Any, Perfscope,
        additive false, tracked true, SERVER,
        "most requests waiting for other reasons than capacity (LoRA budget, KV transfer) in one scrape: vllm:num_requests_waiting_by_reason{reason=deferred}";
    ServerPreemptions: "Server Preemptions", "requests", Int, LowerIsBetter, Any, Perfscope,
        additive true, tracked true, SERVER,
        "Δ vllm:num_preemptions_total or sglang:num_retracted_requests_total";
    GpuAvgUtilization: "GPU Avg Utilization (%)", "%", Dp(2), Neutral, Any, Perfscope,
        additive false, tracked true, SERVER,
        "mean over the scrapes of the mean over GPUs of DCGM_FI_DEV_GPU_UTIL";
    GpuPeakMemory: "GPU Peak Memory (GiB)", "GiB", Dp(3), Neutral, Any, Perfscope,
        additive false, tracked true, SERVER,
        "highest Σ over GPUs of DCGM_FI_DEV_FB_USED (MiB) / 1024 in one scrape";
    Energy: "Energy (J)", "J", Dp(2), LowerIsBetter, Any, Perfscope,
        additive true, tracked true, SERVER,
        "Σ over GPUs of the DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION delta (mJ) / 1000";
    OutputTokensPerJoule: "Output Tokens per Joule", "tok/J", Dp(4), HigherIsBetter, Generation, Perfscope,
        additive false, tracked true, SERVER,
        "client Σ completion_tokens of successes / Energy";
}

percentile_columns! {
    Latency: "Latency (s)", "s", LowerIsBetter, Any, Evalscope, tracked true,
        "latency of successes";
    Ttft: "TTFT (ms)", "ms", LowerIsBetter, Generation, Evalscope, tracked true,
        "first_chunk_latency of the TTFT rows (successful streams, else all successes)";
    Itl: "ITL (ms)", "ms", LowerIsBetter, Generation, Evalscope, tracked true,
        "every gap between output-carrying chunks of successes, pooled";
    SteadyItl: "Steady ITL (ms)", "ms", LowerIsBetter, Generation, EvalscopeWhen, tracked false,
        "--enable-pd-metrics: every gap after the first of successes with ≥ 2 gaps, pooled";
    PdHandoffLatency: "PD Handoff Latency (ms)", "ms", LowerIsBetter, Generation, EvalscopeWhen, tracked false,
        "--enable-pd-metrics: ITL[0] of successes with ≥ 1 gap";
    PdHandoffOverhead: "PD Handoff Overhead (ms)", "ms", LowerIsBetter, Generation, EvalscopeWhen, tracked false,
        "--enable-pd-metrics: max(0, ITL[0] − median(ITL[1:])) of successes with ≥ 2 gaps";
    Tpot: "TPOT (ms)", "ms", LowerIsBetter, Generation, Evalscope, tracked true,
        "time_per_output_token of the TTFT rows; one-token streams left out";
    InputTokens: "Input tokens", "tokens", Neutral, Any, Evalscope, tracked false,
        "prompt_tokens of successes";
    OutputTokens: "Output tokens", "tokens", Neutral, Generation, Evalscope, tracked false,
        "completion_tokens of successes";
    OutputTps: "Output (tok/s)", "tok/s", HigherIsBetter, Generation, Evalscope, tracked false,
        "completion_tokens / latency per success";
    TotalTps: "Total (tok/s)", "tok/s", HigherIsBetter, Generation, Evalscope, tracked false,
        "(prompt_tokens + completion_tokens) / latency per success";
    DecodeTps: "Decode (tok/s)", "tok/s", HigherIsBetter, Generation, Evalscope, tracked false,
        "1 / time_per_output_token of the TTFT rows";
    InputTps: "Input (tok/s)", "tok/s", HigherIsBetter, Encoder, Evalscope, tracked true,
        "prompt_tokens / latency per success";
    Ttfe: "Time to First Event (ms)", "ms", LowerIsBetter, Generation, Perfscope, tracked false,
        "time_to_first_event of the TTFT rows";
    ScheduleLag: "Schedule Lag (ms)", "ms", LowerIsBetter, Any, Perfscope, tracked false,
        "max(send − intended send, 0) of every row";
}

impl Scope {
    /// Whether a metric of this scope belongs to a run (`encoder`: embedding/rerank).
    pub fn applies(self, encoder: bool) -> bool {
        match self {
            Scope::Any => true,
            Scope::Generation => !encoder,
            Scope::Encoder => encoder,
        }
    }
}

impl Metric {
    pub const fn key(self) -> &'static str {
        self.def().key
    }
    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.key() == key)
    }
}

impl Col {
    pub const fn key(self) -> &'static str {
        self.def().key
    }
    pub fn from_key(key: &str) -> Option<Col> {
        Col::ALL.iter().copied().find(|c| c.key() == key)
    }
    /// The columns of a run, in the file's order: evalscope's generation layout, or
    /// its embedding/rerank layout; perfscope's after.
    pub fn of_run(encoder: bool) -> impl Iterator<Item = Col> {
        Col::ALL
            .iter()
            .copied()
            .filter(move |c| c.def().scope.applies(encoder))
    }
}

/// The catalogue as Markdown tables (docs/outputs-and-metrics.md holds this text; a
/// test keeps the two the same).
pub fn markdown() -> String {
    let dir = |d: Direction| match d {
        Direction::LowerIsBetter => "lower",
        Direction::HigherIsBetter => "higher",
        Direction::Neutral => "",
    };
    let origin = |o: Origin| match o {
        Origin::Evalscope => "evalscope",
        Origin::EvalscopeWhen => "evalscope, when present",
        Origin::Perfscope => "perfscope",
    };
    let scope = |s: Scope| match s {
        Scope::Any => "",
        Scope::Generation => " (generation runs)",
        Scope::Encoder => " (embedding / rerank / decision runs)",
    };
    let mut out = String::from(
        "| Summary key | Written as | Better | From | Definition |\n|---|---|---|---|---|\n",
    );
    for m in Metric::ALL {
        let d = m.def();
        let format = match d.format {
            Format::Int => "integer".to_string(),
            Format::Dp(n) => format!("{n} dp"),
            Format::Float => "as set".to_string(),
            Format::Counts => "object".to_string(),
            Format::Text => "text".to_string(),
            Format::Names => "list".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {format} | {} | {} | {}{} |\n",
            d.key,
            dir(d.direction),
            origin(d.origin),
            d.formula,
            scope(d.scope)
        ));
    }
    out.push_str("\n| Percentile column | Better | From | Values |\n|---|---|---|---|\n");
    for c in Col::ALL {
        let d = c.def();
        out.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            d.key,
            dir(d.direction),
            origin(d.origin),
            d.formula,
            scope(d.scope)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_evalscope_first() {
        let mut seen = std::collections::HashSet::new();
        for m in Metric::ALL {
            assert!(seen.insert(m.key()), "{}", m.key());
            assert_eq!(Metric::from_key(m.key()), Some(*m));
        }
        // evalscope's keys come before perfscope's, in each file.
        let origins: Vec<bool> = Metric::ALL
            .iter()
            .map(|m| m.def().origin == Origin::Perfscope)
            .collect();
        assert!(origins.windows(2).all(|w| w[0] <= w[1]));
        let origins: Vec<bool> = Col::ALL
            .iter()
            .map(|c| c.def().origin == Origin::Perfscope)
            .collect();
        assert!(origins.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn run_layouts() {
        let keys = |e| Col::of_run(e).map(Col::key).collect::<Vec<_>>();
        assert_eq!(
            keys(true),
            [
                "Latency (s)",
                "Input tokens",
                "Input (tok/s)",
                "Schedule Lag (ms)"
            ]
        );
        // 11, plus the three PD columns (present only with --enable-pd-metrics).
        assert_eq!(keys(false).len(), 14);
        assert_eq!(keys(false)[1], "TTFT (ms)");
    }
}
