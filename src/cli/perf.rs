//! `perfscope perf`'s flags (and the tracker flags `push` shares), under the
//! headings `--help` groups them by.

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::Args;
use serde::Serialize;

/// `--api`'s values, from the table the configuration selects the API by.
fn api_names() -> PossibleValuesParser {
    PossibleValuesParser::new(crate::protocol::Api::ALL.iter().map(|(n, _)| *n))
}

/// `--dataset`'s values, from the table the configuration selects the dataset by;
/// evalscope's other plugin names are accepted but not listed.
fn dataset_names() -> PossibleValuesParser {
    use crate::dataset::DatasetKind;
    let listed = DatasetKind::ALL.iter().map(|(n, _)| PossibleValue::new(*n));
    let aliases = DatasetKind::ALIASES
        .iter()
        .map(|(n, _)| PossibleValue::new(*n).hide(true));
    PossibleValuesParser::new(listed.chain(aliases))
}

/// `--metrics-addr` default: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// The experiment-tracker flags, shared by `perf` and `push`.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct TrackerArgs {
    /// Tracker: wandb, swanlab or clearml.
    #[arg(help_heading = "Trackers", long)]
    pub visualizer: Option<String>,
    /// W&B API key (default: WANDB_API_KEY).
    #[arg(help_heading = "Trackers", long)]
    pub wandb_api_key: Option<String>,
    /// SwanLab API key (default: SWANLAB_API_KEY).
    #[arg(help_heading = "Trackers", long)]
    pub swanlab_api_key: Option<String>,
    /// Self-hosted SwanLab URL (default: SWANLAB_HOST).
    #[arg(help_heading = "Trackers", long)]
    pub swanlab_host: Option<String>,
}

impl TrackerArgs {
    pub fn flags(&self) -> crate::trackers::TrackerFlags<'_> {
        crate::trackers::TrackerFlags {
            visualizer: self.visualizer.as_deref(),
            wandb_api_key: self.wandb_api_key.as_deref(),
            swanlab_api_key: self.swanlab_api_key.as_deref(),
            swanlab_host: self.swanlab_host.as_deref(),
        }
    }
}

fn parse_header(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() => Ok(s.to_string()),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

fn parse_json_object(s: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(s.to_string()),
        Ok(_) => Err("expected a JSON object such as '{\"ignore_eos\": true}'".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// evalscope's default `--url`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8877/v1/chat/completions";

#[derive(Args, Debug, Clone, Serialize)]
pub struct PerfArgs {
    // ---- Model and API
    /// Model name or path (sent as the body's `model`).
    #[arg(help_heading = "Connection", long)]
    pub model: Option<String>,
    /// API protocol: sim is the built-in simulator; local and local_vllm start a
    /// server; embedding, rerank, systemone and autotrust are evalscope's non-chat
    /// APIs; custom takes --api-config.
    #[arg(help_heading = "Connection", long, default_value = "openai", value_parser = api_names())]
    pub api: String,
    /// API endpoint URL (completed with /v1/chat/completions when it has no API path).
    #[arg(help_heading = "Connection", long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Port for a local inference server (--api local / local_vllm).
    #[arg(help_heading = "Connection", long, default_value_t = 8877)]
    pub port: u16,
    /// API key, sent as `Authorization: Bearer <key>`.
    #[arg(help_heading = "Connection", long)]
    pub api_key: Option<String>,
    /// Tokenizer for token-unit prompt lengths and token counting.
    #[arg(help_heading = "Connection", long)]
    pub tokenizer_path: Option<String>,
    /// Attention implementation for the local server (--api local / local_vllm).
    #[arg(help_heading = "Connection", long)]
    pub attn_implementation: Option<String>,
    /// `--api custom`: JSON file with the body template and response pointers.
    #[arg(help_heading = "Connection", long)]
    pub api_config: Option<String>,
    /// `--api local` / `local_vllm`: the server command, with {model}, {port} and
    /// {attn_implementation} placeholders (defaults: llama-server / vllm serve).
    #[arg(help_heading = "Connection", long)]
    pub local_server_cmd: Option<String>,
    /// `--api local` / `local_vllm`: seconds to wait for the server to answer.
    #[arg(help_heading = "Connection", long, default_value_t = 600.0)]
    pub local_server_timeout: f64,

    // ---- Connection
    /// Extra HTTP headers: --headers key1=val1 key2=val2.
    #[arg(help_heading = "Connection", long, num_args = 1.., value_parser = parse_header)]
    pub headers: Vec<String>,
    /// Connection timeout, seconds.
    #[arg(help_heading = "Connection", long)]
    pub connect_timeout: Option<f64>,
    /// Socket read timeout (longest silence while reading), seconds.
    #[arg(help_heading = "Connection", long)]
    pub read_timeout: Option<f64>,
    /// Total timeout per request, seconds.
    #[arg(help_heading = "Connection", long, default_value_t = 21600.0)]
    pub total_timeout: f64,
    /// Skip the connection test before the benchmark.
    #[arg(help_heading = "Connection", long)]
    pub no_test_connection: bool,
    /// Largest SSE line or non-stream response body accepted, MiB; a larger one fails
    /// the request as `response_too_large` (memory stays bounded on endless bodies).
    #[arg(help_heading = "Connection", long, default_value_t = 16.0)]
    pub max_response_mib: f64,
    /// Largest request body, MiB: a dataset line or prompt over it stops the run
    /// before any request, naming the file and line (memory stays bounded on a
    /// runaway line).
    #[arg(help_heading = "Connection", long, default_value_t = 64.0)]
    pub max_request_mib: f64,
    /// PEM file of certificates to trust for https:// besides the system's store (a
    /// private CA, or the server's own self-signed certificate). `SSL_CERT_FILE`
    /// replaces the system's store instead.
    #[arg(help_heading = "Connection", long, value_name = "FILE")]
    pub ca_cert: Option<String>,
    /// Do not verify the server's TLS certificate (logged as a warning); for test
    /// servers only.
    #[arg(help_heading = "Connection", long)]
    pub insecure: bool,

    // ---- Load
    /// Concurrency per run; several values make a sweep paired with --number.
    #[arg(help_heading = "Load shape", long, num_args = 1.., value_delimiter = ',', default_values_t = [1i64], allow_negative_numbers = true)]
    pub parallel: Vec<i64>,
    /// Requests per run, paired positionally with --parallel.
    #[arg(help_heading = "Load shape", short = 'n', long, num_args = 1.., value_delimiter = ',', default_values_t = [1000u64], allow_negative_numbers = true)]
    pub number: Vec<u64>,
    /// Request arrival rate, req/s (-1 = no pacing); one value or one per run.
    #[arg(help_heading = "Load shape", long, num_args = 1.., value_delimiter = ',', default_values_t = [-1.0f64], allow_negative_numbers = true)]
    pub rate: Vec<f64>,
    /// Seconds to sleep between consecutive runs.
    #[arg(help_heading = "Load shape", long, default_value_t = 5.0)]
    pub sleep_interval: f64,
    /// Warmup requests before each run (>=1 a count, (0,1) a share of --number);
    /// excluded from metrics and the database.
    #[arg(help_heading = "Load shape", long, default_value_t = 0.0)]
    pub warmup_num: f64,
    /// Fire requests on the --rate schedule without a concurrency cap.
    #[arg(help_heading = "Load shape", long)]
    pub open_loop: bool,
    /// Wall-clock cap per run, seconds: stop dispatching, let in-flight requests finish.
    #[arg(help_heading = "Load shape", long)]
    pub duration: Option<f64>,

    // ---- SLA auto-tune
    /// Search for the largest --sla-variable value that meets every --sla-params objective (binary search between the bounds, evalscope 1.14.1).
    #[arg(help_heading = "SLA auto-tune", long)]
    pub sla_auto_tune: bool,
    /// What --sla-auto-tune varies: `parallel` (concurrency) or `rate` (req/s).
    #[arg(help_heading = "SLA auto-tune", long, default_value = "parallel")]
    pub sla_variable: String,
    /// The objectives of --sla-auto-tune, a JSON array of groups, e.g. `[{"p99_ttft": "<=2s", "avg_latency": "<=5"}]`; metrics avg/p50/p90/p99 of latency, ttft, tpot, and rps, tps; `max`/`min` alone to maximise or minimise one metric.
    #[arg(help_heading = "SLA auto-tune", long)]
    pub sla_params: Option<String>,
    /// --sla-auto-tune: runs per probed value; their figures are averaged.
    #[arg(help_heading = "SLA auto-tune", long, default_value_t = 3)]
    pub sla_num_runs: u32,
    /// --sla-auto-tune: the largest value the search probes.
    #[arg(help_heading = "SLA auto-tune", long, default_value_t = 65536)]
    pub sla_upper_bound: u64,
    /// --sla-auto-tune: the smallest value the search probes.
    #[arg(help_heading = "SLA auto-tune", long, default_value_t = 1)]
    pub sla_lower_bound: u64,
    /// --sla-auto-tune: requests per probe run = value × this (default 2), at least 1.
    #[arg(help_heading = "SLA auto-tune", long)]
    pub sla_number_multiplier: Option<f64>,
    /// --sla-auto-tune with --sla-variable rate: the concurrency cap of each probe (default: --sla-upper-bound).
    #[arg(help_heading = "SLA auto-tune", long)]
    pub sla_fixed_parallel: Option<u64>,

    // ---- Dataset / prompt
    /// Dataset: the `*_multi_turn`, swe_smith and trie_* ones with --multi-turn;
    /// mooncake_trace and workload_trace replay a trace; open_decisions is for --api
    /// systemone.
    #[arg(help_heading = "Dataset", long, default_value = "openqa", value_parser = dataset_names())]
    pub dataset: String,
    /// The dataset file or directory (a local path; `line_by_line`, `custom`, `share_gpt_*`, trace and hub-style datasets read it).
    #[arg(help_heading = "Dataset", long)]
    pub dataset_path: Option<String>,
    /// A fixed prompt for every request, or @file (takes priority over --dataset).
    #[arg(help_heading = "Dataset", long)]
    pub prompt: Option<String>,
    /// A Jinja template rendered per prompt into the request body (sees `prompt`, `messages`, `model`; evalscope's `%p` / `%m` too); flags fill only the keys it lacks.
    #[arg(help_heading = "Dataset", long)]
    pub query_template: Option<String>,
    /// Send chat messages (default: when the URL ends with chat/completions).
    #[arg(
        help_heading = "Dataset",
        long,
        overrides_with = "no_apply_chat_template"
    )]
    pub apply_chat_template: bool,
    /// Send a plain `prompt` instead of chat messages.
    #[arg(help_heading = "Dataset", long, overrides_with = "apply_chat_template")]
    pub no_apply_chat_template: bool,
    /// Shortest prompt: tokens with --tokenizer-path, else characters; shorter dataset prompts are skipped, `random` draws lengths from [min, max].
    #[arg(help_heading = "Dataset", long, default_value_t = 0)]
    pub min_prompt_length: u64,
    /// evalscope 1.14.1's default: 131072 (older evalscope: no cap).
    #[arg(help_heading = "Dataset", long, default_value_t = 131_072)]
    pub max_prompt_length: u64,
    /// `random` datasets: a shared prefix of this many tokens (characters without a tokenizer) before every prompt.
    #[arg(help_heading = "Dataset", long, default_value_t = 0)]
    pub prefix_length: u64,
    /// `random`: this many distinct shared prefixes of --prefix-length, handed out
    /// round-robin (request i gets prefix i mod N).
    #[arg(
        help_heading = "Dataset",
        long,
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub prefix_count: i64,
    /// Moves the random datasets' texts (evalscope's vocabulary offset); advanced by
    /// --number after each sweep run.
    #[arg(help_heading = "Dataset", long, default_value_t = 0)]
    pub dataset_offset: u64,
    /// Dataset options as JSON, checked against the dataset's own keys (e.g.
    /// '{"target_input_len": 1024}' for openqa/longalpaca/line_by_line/share_gpt_*,
    /// '{"speed": 2.0}' for workload_trace).
    #[arg(help_heading = "Dataset", long, value_parser = parse_json_object)]
    pub dataset_args: Option<String>,
    /// Where evalscope would download a built-in dataset from: modelscope (default),
    /// huggingface or local. perfscope never downloads; the hub decides which id its
    /// error names when --dataset-path is missing.
    #[arg(help_heading = "Dataset", long)]
    pub data_source: Option<String>,
    /// Threads that build the random datasets' texts (0 = automatic, 1 = serial).
    #[arg(help_heading = "Dataset", long, allow_negative_numbers = true)]
    pub num_workers: Option<i64>,
    /// Multi-turn sessions: --number counts conversations, --parallel concurrent
    /// conversations; each turn carries the whole history.
    #[arg(help_heading = "Workloads", long)]
    pub multi_turn: bool,
    /// random_multi_turn: fewest turns per conversation.
    #[arg(help_heading = "Workloads", long, default_value_t = 1)]
    pub min_turns: u64,
    /// random_multi_turn: most turns per conversation; for every multi-turn dataset a
    /// cap on the turns sent.
    #[arg(help_heading = "Workloads", long)]
    pub max_turns: Option<u64>,
    /// Deprecated by evalscope: JSON folded into --dataset-args.
    #[arg(help_heading = "Workloads", long, value_parser = parse_json_object)]
    pub multi_turn_args: Option<String>,
    /// Trace replay (mooncake_trace): tokens per `hash_ids` block.
    #[arg(help_heading = "Workloads", long, default_value_t = 512)]
    pub trace_block_size: u64,
    /// Trace replay: replay the timestamps this many times faster (2.0 = twice as fast).
    #[arg(help_heading = "Workloads", long, default_value_t = 1.0)]
    pub trace_speedup: f64,
    /// Send token ids (`prompt: [ids]`) to /v1/completions: chat messages through the
    /// tokenizer's chat template, texts as they are (needs --tokenizer-path; a chat URL
    /// becomes /completions).
    #[arg(help_heading = "Workloads", long)]
    pub tokenize_prompt: bool,
    /// `agentx` or its JSON object (evalscope 1.14.1): replay Weka coding-agent traces
    /// from --dataset-path as session-tree lanes (one run per --parallel value).
    #[arg(help_heading = "Workloads", long)]
    pub scenario: Option<String>,
    /// `--scenario agentx`: each lane's first tree starts at t*, drawn uniformly
    /// between these fractions of the tree's recorded span (AIPerf's flags; the
    /// scenario's 0 and 1 by default). `0 0` starts every tree at its first turn.
    #[arg(help_heading = "Workloads", long, value_name = "RATIO")]
    pub trajectory_start_min_ratio: Option<f64>,
    /// `--scenario agentx`: the latest start point, as a fraction of a tree's recorded span (see --trajectory-start-min-ratio).
    #[arg(help_heading = "Workloads", long, value_name = "RATIO")]
    pub trajectory_start_max_ratio: Option<f64>,

    // ---- Vision
    /// `random_vl`: width of each generated image, pixels.
    #[arg(help_heading = "Dataset", long, default_value_t = 224)]
    pub image_width: u32,
    /// `random_vl`: height of each generated image, pixels.
    #[arg(help_heading = "Dataset", long, default_value_t = 224)]
    pub image_height: u32,
    /// `random_vl`: the images' colour mode (`RGB`, `L`, …).
    #[arg(help_heading = "Dataset", long, default_value = "RGB")]
    pub image_format: String,
    /// `random_vl`: images per request.
    #[arg(help_heading = "Dataset", long, default_value_t = 1)]
    pub image_num: u32,
    /// `random_vl`: the model's vision patch size, for the local image-token estimate.
    #[arg(help_heading = "Dataset", long, default_value_t = 28)]
    pub image_patch_size: u32,

    // ---- Response
    /// Maximum output tokens, or two values MIN MAX sampled per request.
    #[arg(help_heading = "Generation", long, num_args = 1.., default_values_t = [2048u64])]
    pub max_tokens: Vec<u64>,
    /// Minimum output tokens (`min_tokens` in the body: the server generates at least this many).
    #[arg(help_heading = "Generation", long)]
    pub min_tokens: Option<u64>,
    /// Sampling temperature (0 = greedy).
    #[arg(help_heading = "Generation", long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Top-p (nucleus) sampling.
    #[arg(help_heading = "Generation", long)]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[arg(help_heading = "Generation", long, allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Stream responses (default).
    #[arg(help_heading = "Generation", long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Non-streaming requests (one response body; no TTFT or ITL).
    #[arg(help_heading = "Generation", long, overrides_with = "stream")]
    pub no_stream: bool,
    /// Frequency penalty.
    #[arg(help_heading = "Generation", long, allow_negative_numbers = true)]
    pub frequency_penalty: Option<f64>,
    /// Repetition penalty.
    #[arg(help_heading = "Generation", long)]
    pub repetition_penalty: Option<f64>,
    /// Choices per request (`n` in the body).
    #[arg(help_heading = "Generation", long)]
    pub n_choices: Option<u64>,
    /// Sampling seed sent in the body (`seed`).
    #[arg(help_heading = "Generation", long)]
    pub seed: Option<u64>,
    /// Stop sequences sent in the body.
    #[arg(help_heading = "Generation", long, num_args = 0..)]
    pub stop: Vec<String>,
    /// Stop token ids sent in the body.
    #[arg(help_heading = "Generation", long, num_args = 0..)]
    pub stop_token_ids: Vec<String>,
    /// Ask for the log probabilities of the output tokens.
    #[arg(help_heading = "Generation", long)]
    pub logprobs: bool,
    /// Add evalscope's prefill/decode disaggregation metrics: Steady ITL (gaps after
    /// the first), PD Handoff Latency (the first gap) and PD Handoff Overhead.
    #[arg(help_heading = "Generation", long)]
    pub enable_pd_metrics: bool,
    /// JSON object merged last into every request body.
    #[arg(help_heading = "Generation", long, default_value = "{}", value_parser = parse_json_object)]
    pub extra_args: String,

    // ---- Output
    /// Where runs are written: `<outputs-dir>/<timestamp>/<name|model>/<step>/`.
    #[arg(help_heading = "Outputs", long, default_value = "outputs")]
    pub outputs_dir: String,
    /// Leave out the `<timestamp>` directory level.
    #[arg(help_heading = "Outputs", long)]
    pub no_timestamp: bool,
    /// The run's name: its directory (instead of the model) and its name in trackers.
    #[arg(help_heading = "Outputs", long)]
    pub name: Option<String>,
    /// A display label for reports and trackers (not used in paths or metrics).
    #[arg(help_heading = "Outputs", long)]
    pub alias: Option<String>,
    /// Debug logging: each failed request's error and the masked headers in the log, and every row keeps its response (--store-responses all).
    #[arg(help_heading = "Outputs", long)]
    pub debug: bool,
    /// evalscope 1.14.1's default: 100.
    #[arg(help_heading = "Outputs", long, default_value_t = 100)]
    pub log_every_n_query: u64,
    /// Write `progress.json` in the output directory (evalscope's progress file), updated every second.
    #[arg(help_heading = "Outputs", long)]
    pub enable_progress_tracker: bool,
    /// Once the run's directory exists, write its path to FILE: scripts and the Python
    /// API find the run there (to compare, push or read it).
    #[arg(help_heading = "Outputs", long, value_name = "FILE")]
    #[serde(skip)]
    pub run_dir_file: Option<String>,
    /// Take every argument from a JSON object keyed by evalscope's argument names,
    /// as its `run_perf_benchmark` takes them (`{"parallel": [1, 2], "stream": false}`);
    /// no other flag may be given with it.
    #[arg(help_heading = "Outputs", long, value_name = "FILE", exclusive = true)]
    #[serde(skip)]
    pub args_file: Option<String>,
    /// Goodput service-level objectives, vLLM-style: `ttft:MS tpot:MS e2el:MS` (any
    /// subset). Adds the rate and share of requests meeting every bound to the summary.
    #[arg(help_heading = "Objectives and long runs", long, num_args = 1.., value_delimiter = ',')]
    pub goodput: Vec<String>,
    /// Objectives the live alert rules hold this run to besides the --goodput bounds:
    /// `error_rate:R` (the share of requests allowed to fail: the error budget) and
    /// `goodput:R` (the share that must meet every --goodput bound; 0.99 when only
    /// --goodput is given). Ratios (0.01) or percentages (1%). Exported on /metrics as
    /// perfscope_objective_* gauges.
    #[arg(help_heading = "Objectives and long runs", long, num_args = 1.., value_delimiter = ',')]
    pub slo: Vec<String>,
    /// Stop the run when more than RATIO of the finished requests failed: over the
    /// whole run, or over the last WINDOW_S seconds (`0.2:30`); judged once 20
    /// requests have finished (in the window). Dispatching stops, requests in flight
    /// finish (up to 10 s, then are cancelled), everything is written, and perfscope
    /// exits with code 4.
    #[arg(
        help_heading = "Objectives and long runs",
        long,
        value_name = "RATIO[:WINDOW_S]"
    )]
    pub max_error_rate: Option<String>,
    /// Stop the run when the server is saturated: over three consecutive 5 s
    /// windows the achieved rate stays under 90 % of --rate while the delay from
    /// each request's scheduled start to its end rises by more than 10 % a window.
    /// Exits with code 4, as --max-error-rate.
    #[arg(help_heading = "Objectives and long runs", long)]
    pub stop_on_saturation: bool,
    /// Which rows of `benchmark_data.db` keep their response text
    /// (`response_messages`): `all` (as evalscope), `failures`, or `none`. Timings,
    /// token counts, the error text and the request are always stored.
    #[arg(help_heading = "Objectives and long runs", long, default_value = "all", value_parser = ["all", "failures", "none"])]
    pub store_responses: String,
    /// `--duration` runs: every this many seconds, the window's figures (throughput,
    /// errors, TTFT/TPOT/latency percentiles, drift) go to `timeseries.jsonl` in the
    /// run directory, to the tracker as a history point, and to the HTML report.
    /// 0 turns it off.
    #[arg(
        help_heading = "Objectives and long runs",
        long,
        default_value_t = 60.0
    )]
    pub snapshot_interval: f64,
    /// Flag drift when a window's TTFT or TPOT p50 is worse than the steady state's
    /// (the median window p50 after the first 20 % of the run) by more than this
    /// share: 0.2 or 20%.
    #[arg(help_heading = "Objectives and long runs", long, default_value = "0.2")]
    pub drift_threshold: String,

    // ---- Visualizers (the keys stay at the top level of benchmark_args.json)
    #[command(flatten)]
    #[serde(flatten)]
    pub tracker: TrackerArgs,

    // ---- Tuning knobs
    /// Most rows per SQLite transaction.
    #[arg(help_heading = "Client tuning", long, default_value_t = 1000)]
    pub db_commit_interval: i64,
    /// Finished-record queue = parallel × this.
    #[arg(help_heading = "Client tuning", long, default_value_t = 5)]
    pub queue_size_multiplier: i64,
    /// At most parallel × this requests dispatched (in flight or waiting for a slot).
    #[arg(help_heading = "Client tuning", long, default_value_t = 2)]
    pub in_flight_task_multiplier: i64,

    // ---- perfscope's own
    /// Serve live Prometheus metrics on this address during the whole command
    /// (`off` disables). Loopback by default: bind a public interface only on purpose.
    #[arg(help_heading = "Observability", long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// Keep serving /metrics this many seconds after the last run, so the final
    /// scrape is not lost.
    #[arg(help_heading = "Observability", long, default_value_t = 0.0)]
    pub metrics_linger: f64,
    /// Export one OpenTelemetry span per request over OTLP to this base URL (e.g.
    /// http://127.0.0.1:4318; `/v1/traces` is appended for http/protobuf). The
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    /// variables also enable it.
    #[arg(help_heading = "Observability", long)]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: http/protobuf (default) or grpc (needs the `otlp-grpc` cargo
    /// feature). Defaults to OTEL_EXPORTER_OTLP_TRACES_PROTOCOL /
    /// OTEL_EXPORTER_OTLP_PROTOCOL.
    #[arg(help_heading = "Observability", long)]
    pub otlp_protocol: Option<String>,
    /// Share of requests whose span is exported (0..1).
    #[arg(help_heading = "Observability", long, default_value_t = 1.0)]
    pub otlp_sample_ratio: f64,
    /// The served model's Prometheus endpoints to scrape before, during and after
    /// each run into the `server_metrics` table: `auto` (<scheme>://<host:port>/metrics
    /// of --url), one or more URLs (e.g. a separate metrics port or a DCGM
    /// exporter), or `off`.
    #[arg(help_heading = "Observability", long, num_args = 1.., default_values_t = ["auto".to_string()])]
    pub server_metrics: Vec<String>,
    /// Seconds between scrapes of --server-metrics.
    #[arg(help_heading = "Observability", long, default_value_t = 1.0)]
    pub server_metrics_interval: f64,
    // ---- Scale-out (one shard of a distributed run; see docs/scale-out.md)
    /// This load generator's shard, 0..--shard-count (default: JOB_COMPLETION_INDEX,
    /// which a Kubernetes Indexed Job sets in each pod).
    #[arg(help_heading = "Scale-out", long)]
    pub shard_index: Option<u64>,
    /// How many shards share the load (default: PERFSCOPE_SHARD_COUNT, else 1).
    #[arg(help_heading = "Scale-out", long)]
    pub shard_count: Option<u64>,
    /// The distributed run's id, the same in every shard (default: PERFSCOPE_RUN_ID,
    /// else a digest of the flags every shard shares).
    #[arg(help_heading = "Scale-out", long)]
    pub run_id: Option<String>,
    /// Start the measured load at this unix time (seconds), so that every shard starts
    /// together (default: PERFSCOPE_START_AT when set and not empty).
    #[arg(help_heading = "Scale-out", long, conflicts_with = "start_in")]
    pub start_at: Option<f64>,
    /// Start the measured load this many seconds after the invocation starts.
    #[arg(help_heading = "Scale-out", long)]
    pub start_in: Option<f64>,
    /// Clock reference for the offset each shard stores: `auto` (the target server's
    /// `Date` header, when sharded or with a start time), an http(s) URL whose `Date`
    /// header is used, `ntp://HOST[:PORT]` (SNTP), or `off`.
    #[arg(help_heading = "Scale-out", long, default_value = "auto")]
    pub clock_ref: String,
    /// Local addresses the load connections are bound to, round-robin: a list
    /// (`127.0.0.2,127.0.0.3`) or an IPv4 range (`127.0.0.2-127.0.0.9`). Past about
    /// 28k connections to one server, one source address runs out of ports.
    #[arg(help_heading = "Scale-out", long)]
    pub source_addrs: Option<String>,
    /// Simulator settings for --api sim, as JSON with the `perfscope sim` flag names in
    /// snake_case, e.g. '{"ttft_ms": 100, "itl_ms": 10}'.
    #[arg(help_heading = "Connection", long, value_parser = parse_json_object)]
    pub sim_args: Option<String>,
}
