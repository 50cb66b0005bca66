//! `RunConfig`: the validated, resolved configuration the engine consumes and the
//! results store (secrets masked). Parse (cli), then resolve (here).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::time::Duration;

use crate::cli::PerfArgs;
use crate::client::ClientConfig;
use crate::dataset::{DatasetConfig, DatasetKind, ImageSpec};
pub use crate::protocol::is_encoder_run;
use crate::protocol::GenParams;
pub use crate::scheduler::{py_float, SweepPoint};
use crate::sim::SimConfig;
pub use crate::sla::SlaConfig;

pub use crate::redact::{redact_url, split_query, MASK};
/// Header names whose values are masked when shown or stored (evalscope's list).
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Api {
    OpenAi,
    Sim,
    /// A user-configured OpenAI-compatible server started as a child process.
    Local,
    /// vLLM's OpenAI server started as a child process.
    LocalVllm,
    DashScope,
    Embedding,
    Rerank,
    Custom,
}

impl Api {
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Sim => "sim",
            Api::Local => "local",
            Api::LocalVllm => "local_vllm",
            Api::DashScope => "dashscope",
            Api::Embedding => "embedding",
            Api::Rerank => "rerank",
            Api::Custom => "custom",
        }
    }
    pub fn is_local(&self) -> bool {
        matches!(self, Api::Local | Api::LocalVllm)
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub model: String,
    /// basename(model), or --name: the output sub-directory.
    pub model_id: String,
    pub name: Option<String>,
    pub api: Api,
    /// The wire format (for the simulator: chosen by the URL path).
    pub protocol: crate::protocol::Protocol,
    /// `--api local` / `local_vllm`: the child server to start.
    pub local_server: Option<crate::local_server::LocalServerConfig>,
    pub url: String,
    /// Datasets yield chat messages (true) or plain prompts (false).
    pub chat: bool,
    /// `--tokenizer-path`: token counts when the server sends no usage.
    pub tokenizer: Option<std::sync::Arc<crate::tokenizer::Tokenizer>>,
    /// Headers, timeouts and the response cap of the load client.
    pub client: ClientConfig,
    pub test_connection: bool,
    pub points: Vec<SweepPoint>,
    pub sleep_interval: f64,
    pub warmup_num: f64,
    pub open_loop: bool,
    pub duration: Option<f64>,
    pub dataset: DatasetConfig,
    pub gen: GenParams,
    pub outputs_dir: String,
    pub no_timestamp: bool,
    pub debug: bool,
    pub log_every_n_query: u64,
    pub db_commit_interval: usize,
    pub queue_size_multiplier: usize,
    pub in_flight_task_multiplier: usize,
    pub sim: Option<SimConfig>,
    /// Where to serve /metrics (None = off) and whether the address was given
    /// explicitly (then failing to bind it is an error, not a warning).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub metrics_addr_explicit: bool,
    pub metrics_linger: f64,
    /// OpenTelemetry export (None = off).
    pub otel: Option<crate::recorder::otel::OtelConfig>,
    /// `--enable-progress-tracker`: progress.json and the /metrics progress gauges.
    pub progress_tracker: bool,
    /// `--sla-auto-tune` settings (None: the normal sweep).
    pub sla: Option<SlaConfig>,
    /// `--goodput` bounds (None: no goodput keys).
    pub goodput: Option<crate::stats::Goodput>,
    /// Experiment tracker (`--visualizer`, or a deprecated key alone).
    pub sink: Option<crate::sinks::SinkSettings>,
    /// The flags as given, secrets masked: written to benchmark_args.json and the DB.
    pub args_json: Map<String, Value>,
}

/// evalscope replaces `<>:"|?*\/` and NUL in --name with `_`.
pub fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| if "<>:\"|?*\\/\0".contains(c) { '_' } else { c })
        .collect()
}

/// evalscope §1.10: append the API path (`default`, e.g. `chat/completions`) when the
/// URL has none. The query string and fragment are kept after the path (evalscope
/// 1.14.1; `?api-version=…` on Azure-style endpoints).
pub fn complete_url(url: &str, default: &str) -> String {
    let (base, query) = split_query(url);
    format!("{}{query}", complete_path(base, default))
}

fn complete_path(url: &str, default: &str) -> String {
    const SUFFIXES: [&str; 6] = [
        "/chat/completions",
        "/completions",
        "/responses",
        "/embeddings",
        "/reranks",
        "/rerank",
    ];
    let trimmed = url.trim_end_matches('/');
    if SUFFIXES.iter().any(|s| trimmed.ends_with(s)) {
        return url.to_string();
    }
    if trimmed.ends_with("/v1") {
        format!("{trimmed}/{default}")
    } else {
        format!("{trimmed}/v1/{default}")
    }
}

fn read_at_file(flag: &str, v: &str) -> Result<String> {
    match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: cannot read file `{path}`; check the path after @")),
        None => Ok(v.to_string()),
    }
}

impl RunConfig {
    pub fn resolve(a: &PerfArgs) -> Result<RunConfig> {
        let api = resolve_api(a)?;
        let kind = match a.dataset.as_str() {
            "openqa" => DatasetKind::OpenQa,
            "line_by_line" => DatasetKind::LineByLine,
            "random" => DatasetKind::Random,
            "longalpaca" => DatasetKind::LongAlpaca,
            "custom" => DatasetKind::Custom,
            "speed_benchmark" => DatasetKind::SpeedBenchmark { long: false },
            "speed_benchmark_long" => DatasetKind::SpeedBenchmark { long: true },
            "random_vl" => DatasetKind::RandomVl,
            // evalscope's plugin names are accepted too.
            "embedding_dataset" | "embedding" | "embed" | "embedding_batch" => {
                DatasetKind::Embedding
            }
            "rerank_dataset" | "rerank" => DatasetKind::Rerank,
            // evalscope's random_embedding_batch is random_embedding with batching,
            // which `batch_size` in --extra-args turns on for either name here.
            "random_embedding" | "random_embedding_batch" => DatasetKind::RandomEmbedding,
            "random_rerank" => DatasetKind::RandomRerank,
            "flickr8k" => DatasetKind::Flickr8k,
            other => bail!(
                "--dataset: unknown dataset `{other}`; use openqa, line_by_line, random, \
                 longalpaca, speed_benchmark, random_vl, flickr8k, embedding_dataset, \
                 rerank_dataset, random_embedding, random_rerank or custom"
            ),
        };
        if matches!(kind, DatasetKind::LineByLine | DatasetKind::Custom)
            && a.dataset_path.is_none()
            && a.prompt.is_none()
        {
            bail!(
                "--dataset {} needs --dataset-path FILE (one prompt per line)",
                a.dataset
            );
        }
        if a.min_prompt_length > a.max_prompt_length {
            bail!(
                "--min-prompt-length ({}) is greater than --max-prompt-length ({})",
                a.min_prompt_length,
                a.max_prompt_length
            );
        }
        let model = match (&a.model, &api) {
            (Some(m), _) if !m.trim().is_empty() => m.clone(),
            (_, Api::Sim) => "sim-7b".to_string(),
            _ => bail!(
                "--model is required (the model name the server expects, e.g. --model qwen2.5-7b)"
            ),
        };
        let model_id = model
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(&model)
            .to_string();

        let points = resolve_points(a)?;
        if let Some(d) = a.duration {
            if !(d > 0.0 && d.is_finite()) {
                bail!("--duration: {d} is not a positive number of seconds");
            }
        }
        if !(a.warmup_num >= 0.0 && a.warmup_num.is_finite()) {
            bail!("--warmup-num: {} must be >= 0", a.warmup_num);
        }
        if !(a.sleep_interval >= 0.0 && a.sleep_interval.is_finite()) {
            bail!("--sleep-interval: {} must be >= 0", a.sleep_interval);
        }

        let mut url = resolve_url(api, a)?;
        // evalscope's speed_benchmark plugin rewrites a chat URL to /v1/completions,
        // but only after the HTTP client captured the URL, so users must pass
        // /completions themselves. Here the rewrite happens before anything uses it.
        if matches!(kind, DatasetKind::SpeedBenchmark { .. }) {
            let (path, query) = split_query(&url);
            if let Some(base) = path.trim_end_matches('/').strip_suffix("/chat/completions") {
                url = format!("{base}/completions{query}");
            }
        }
        let protocol = resolve_protocol(api, a, &url)?;
        let chat = if protocol.is_encoder() {
            // Embedding and rerank inputs are plain text.
            false
        } else if a.apply_chat_template {
            true
        } else if a.no_apply_chat_template {
            false
        } else {
            // DashScope takes `input.messages` unless told otherwise.
            api == Api::DashScope
                || split_query(&url)
                    .0
                    .trim_end_matches('/')
                    .ends_with("chat/completions")
        };

        let mut headers = resolve_headers(a)?;
        match &protocol {
            crate::protocol::Protocol::DashScope
                if !a.no_stream
                    && !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("x-dashscope-sse")) =>
            {
                headers.push(("X-DashScope-SSE".into(), "enable".into()));
            }
            crate::protocol::Protocol::Custom(c) => headers.extend(c.headers.iter().cloned()),
            _ => {}
        }
        let local_server = if api.is_local() {
            Some(crate::local_server::LocalServerConfig::resolve(
                &crate::local_server::LocalServerFlags {
                    vllm: api == Api::LocalVllm,
                    cmd: a.local_server_cmd.as_deref(),
                    attn: a.attn_implementation.as_deref(),
                    port: a.port,
                    timeout: a.local_server_timeout,
                },
                &model,
            )?)
        } else {
            if a.local_server_cmd.is_some() {
                bail!("--local-server-cmd only applies with --api local or local_vllm");
            }
            if a.attn_implementation.is_some() {
                bail!("--attn-implementation only applies with --api local or local_vllm (the server perfscope starts)");
            }
            None
        };
        let secs = |flag: &str, v: Option<f64>| -> Result<Option<Duration>> {
            match v {
                None => Ok(None),
                Some(s) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s))),
                Some(s) => bail!("{flag}: {s} is not a positive number of seconds"),
            }
        };
        let total_timeout =
            secs("--total-timeout", Some(a.total_timeout))?.unwrap_or(Duration::from_secs(21600));

        if a.max_tokens.contains(&0) {
            bail!("--max-tokens: must be at least 1 (a request for 0 tokens measures nothing)");
        }
        let max_tokens = match a.max_tokens.as_slice() {
            [v] => (*v, *v),
            [lo, hi] if lo <= hi => (*lo, *hi),
            [lo, hi] => bail!("--max-tokens: MIN {lo} is greater than MAX {hi}"),
            _ => bail!("--max-tokens: give one value or MIN MAX"),
        };
        let extra_args = match serde_json::from_str::<Value>(&a.extra_args) {
            Ok(Value::Object(m)) => m,
            _ => bail!("--extra-args: expected a JSON object"),
        };
        let tokenizer = match a.tokenizer_path.as_deref() {
            Some(p) => {
                let t = crate::tokenizer::Tokenizer::load(p)?;
                // The template only matters where prompts are sent as chat messages.
                let template = if chat {
                    format!(" (chat template: {})", t.template_source)
                } else {
                    String::new()
                };
                crate::report::log::info(format!(
                    "Tokenizer {}{template}: prompt lengths are in tokens",
                    t.path
                ));
                Some(t)
            }
            None => None,
        };
        let mut sim = match (&api, &a.sim_args) {
            (Api::Sim, Some(s)) => {
                let cfg: SimConfig = serde_json::from_str(s).map_err(|e| {
                    anyhow::anyhow!(
                        "--sim-args: {e} (keys are the `perfscope sim` flags in snake_case)"
                    )
                })?;
                cfg.validate()
                    .map_err(|e| anyhow::anyhow!("--sim-args: {e}"))?;
                Some(cfg)
            }
            (Api::Sim, None) => Some(SimConfig::default()),
            (_, Some(_)) => bail!("--sim-args only applies with --api sim"),
            _ => None,
        };
        // The simulator counts with the benchmark's tokenizer unless told otherwise.
        if let (Some(s), Some(p)) = (sim.as_mut(), a.tokenizer_path.as_ref()) {
            s.tokenizer_path.get_or_insert_with(|| p.clone());
        }
        let prompt = a
            .prompt
            .as_deref()
            .map(|p| read_at_file("--prompt", p))
            .transpose()?;
        let dataset = DatasetConfig {
            kind,
            name: a.dataset.clone(),
            path: a.dataset_path.clone(),
            prompt,
            min_prompt_length: a.min_prompt_length,
            max_prompt_length: a.max_prompt_length,
            prefix_length: a.prefix_length,
            seed: a.seed.unwrap_or(0),
            image: {
                let spec = ImageSpec {
                    width: a.image_width,
                    height: a.image_height,
                    format: a.image_format.clone(),
                    num: a.image_num,
                    patch_size: a.image_patch_size,
                };
                if matches!(kind, DatasetKind::RandomVl) {
                    crate::dataset::random_vl::check(&spec)?;
                }
                spec
            },
            query_template: match a.query_template.as_deref() {
                Some(t) => {
                    let t = read_at_file("--query-template", t)?;
                    crate::dataset::template::check(&t)?;
                    Some(t)
                }
                None => None,
            },
            model: model.clone(),
            tokenizer: tokenizer.clone(),
            batch_size: match extra_args.get("batch_size") {
                None => 1,
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => n as usize,
                    _ => bail!("--extra-args: batch_size must be a positive integer, got {v}"),
                },
            },
            // evalscope's random_rerank defaults: 10 documents, 5x the query length.
            num_documents: match extra_args.get("num_documents") {
                None => 10,
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => n as usize,
                    _ => bail!("--extra-args: num_documents must be a positive integer, got {v}"),
                },
            },
            document_length_ratio: match extra_args.get("document_length_ratio") {
                None => 5.0,
                Some(v) => match v.as_f64() {
                    Some(r) if r > 0.0 && r.is_finite() => r,
                    _ => bail!(
                        "--extra-args: document_length_ratio must be a positive number, got {v}"
                    ),
                },
            },
        };
        let gen = GenParams {
            model: model.clone(),
            max_tokens,
            min_tokens: a.min_tokens,
            temperature: a.temperature,
            top_p: a.top_p,
            top_k: a.top_k,
            frequency_penalty: a.frequency_penalty,
            repetition_penalty: a.repetition_penalty,
            n_choices: a.n_choices,
            seed: a.seed,
            stop: a.stop.clone(),
            stop_token_ids: a.stop_token_ids.clone(),
            logprobs: a.logprobs,
            stream: !a.no_stream,
            extra_args,
        };
        let name = a.name.as_deref().map(sanitize_name);
        let metrics_addr = match a.metrics_addr.as_str() {
            "off" | "none" | "" => None,
            v => Some(v.parse::<std::net::SocketAddr>().map_err(|_| {
                anyhow::anyhow!(
                    "--metrics-addr: `{v}` is not HOST:PORT (e.g. 127.0.0.1:9464) or `off`"
                )
            })?),
        };
        if !(0.0..=1.0).contains(&a.otlp_sample_ratio) {
            bail!(
                "--otlp-sample-ratio: {} must be between 0 and 1",
                a.otlp_sample_ratio
            );
        }
        let otel = crate::recorder::otel::OtelConfig::resolve(
            a.otlp_endpoint.as_deref(),
            a.otlp_protocol.as_deref(),
            a.otlp_sample_ratio,
        )?;
        if !(a.metrics_linger >= 0.0 && a.metrics_linger.is_finite()) {
            bail!(
                "--metrics-linger: {} must be a number of seconds >= 0",
                a.metrics_linger
            );
        }
        Ok(RunConfig {
            model_id: name.clone().unwrap_or(model_id),
            name,
            model,
            api,
            protocol,
            local_server,
            url,
            chat,
            tokenizer,
            client: ClientConfig {
                headers,
                connect_timeout: secs("--connect-timeout", a.connect_timeout)?,
                read_timeout: secs("--read-timeout", a.read_timeout)?,
                total_timeout,
                max_response_bytes: {
                    let m = a.max_response_mib;
                    if !(m > 0.0 && m.is_finite() && m <= 4096.0) {
                        bail!("--max-response-mib: {m} must be a number of MiB in (0, 4096]");
                    }
                    (m * 1024.0 * 1024.0) as usize
                },
            },
            test_connection: !a.no_test_connection,
            points,
            sleep_interval: a.sleep_interval,
            warmup_num: a.warmup_num,
            open_loop: a.open_loop,
            duration: a.duration,
            dataset,
            gen,
            outputs_dir: a.outputs_dir.clone(),
            no_timestamp: a.no_timestamp,
            debug: a.debug,
            log_every_n_query: a.log_every_n_query.max(1),
            // evalscope coerces values <= 0 to 1.
            db_commit_interval: a.db_commit_interval.max(1) as usize,
            queue_size_multiplier: a.queue_size_multiplier.max(1) as usize,
            in_flight_task_multiplier: a.in_flight_task_multiplier.max(1) as usize,
            sim,
            metrics_addr,
            metrics_addr_explicit: a.metrics_addr != crate::cli::DEFAULT_METRICS_ADDR,
            metrics_linger: a.metrics_linger,
            otel,
            goodput: crate::stats::Goodput::parse(&a.goodput)?,
            sla: resolve_sla(a)?,
            progress_tracker: a.enable_progress_tracker,
            sink: crate::sinks::SinkSettings::resolve(&a.tracker.flags())?,
            args_json: masked_args(a),
        })
    }

    /// Warmup requests for a run of `number` (evalscope: >=1 absolute, (0,1) a ratio
    /// with at least one).
    pub fn warmup_for(&self, number: u64) -> u64 {
        let w = self.warmup_num;
        if w <= 0.0 {
            0
        } else if w < 1.0 {
            ((w * number as f64) as u64).max(1)
        } else {
            w as u64
        }
    }

    /// Headers with secret values masked, for logs.
    pub fn masked_headers(&self) -> Vec<(String, String)> {
        self.client
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str());
                (k.clone(), if secret { MASK.to_string() } else { v.clone() })
            })
            .collect()
    }

    /// benchmark_args.json for one run: the flags with this run's parallel/number/rate.
    pub fn args_for_run(&self, point: &SweepPoint) -> Map<String, Value> {
        let mut m = self.args_json.clone();
        m.insert("model_id".into(), self.model_id.clone().into());
        m.insert("url".into(), redact_url(&self.url).into());
        m.insert("apply_chat_template".into(), self.chat.into());
        m.insert("parallel".into(), point.parallel.into());
        m.insert("number".into(), point.number.into());
        m.insert("rate".into(), point.rate.into());
        m
    }
}

/// The API, after failing fast on flags whose feature is not available yet.
fn resolve_api(a: &PerfArgs) -> Result<Api> {
    // Features that belong to later releases fail fast, naming the flag.
    let api = match a.api.as_str() {
        "openai" => Api::OpenAi,
        "sim" => Api::Sim,
        "local" => Api::Local,
        "local_vllm" => Api::LocalVllm,
        "dashscope" => Api::DashScope,
        // evalscope's plugin names are accepted too.
        "embedding" | "openai_embedding" => Api::Embedding,
        "rerank" | "openai_rerank" => Api::Rerank,
        "custom" => Api::Custom,
        other => bail!(
            "--api: unknown API `{other}`; use one of openai, sim, local, local_vllm, \
             dashscope, embedding, rerank, custom"
        ),
    };
    if !["parallel", "rate"].contains(&a.sla_variable.as_str()) {
        bail!(
            "--sla-variable: expected `parallel` or `rate`, got `{}`",
            a.sla_variable
        );
    }
    Ok(api)
}

/// The endpoint URL for the API: evalscope's path completion for OpenAI-style APIs,
/// DashScope's public endpoint when --url is left at its default, and the local
/// server's port for `local` / `local_vllm`.
fn resolve_url(api: Api, a: &PerfArgs) -> Result<String> {
    let url = a.url.clone();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url: `{url}` must start with http:// or https://");
    }
    let is_default = url == crate::cli::DEFAULT_URL;
    Ok(match api {
        Api::OpenAi | Api::Sim => complete_url(&url, "chat/completions"),
        Api::Embedding => complete_url(&url, "embeddings"),
        Api::Rerank => complete_url(&url, "rerank"),
        Api::DashScope if is_default => crate::protocol::dashscope::DEFAULT_URL.to_string(),
        Api::DashScope | Api::Custom => url,
        Api::Local | Api::LocalVllm => {
            // evalscope serves the local model on --port; the path of --url is kept.
            let full = complete_url(&url, "chat/completions");
            let rest = full.split_once("://").map_or(full.as_str(), |(_, r)| r);
            let path = rest
                .find('/')
                .map_or("/v1/chat/completions", |i| &rest[i..]);
            format!("http://127.0.0.1:{}{path}", a.port)
        }
    })
}

fn resolve_protocol(api: Api, a: &PerfArgs, url: &str) -> Result<crate::protocol::Protocol> {
    use crate::protocol::Protocol;
    if a.api_config.is_some() && api != Api::Custom {
        bail!("--api-config only applies with --api custom");
    }
    Ok(match api {
        Api::OpenAi | Api::Local | Api::LocalVllm => Protocol::OpenAi,
        Api::Sim if is_encoder_run("sim", url) => {
            if url.trim_end_matches('/').ends_with("/embeddings") {
                Protocol::Embedding
            } else {
                Protocol::Rerank
            }
        }
        Api::Sim => Protocol::OpenAi,
        Api::Embedding => Protocol::Embedding,
        Api::Rerank => Protocol::Rerank,
        Api::DashScope => Protocol::DashScope,
        Api::Custom => {
            let Some(path) = a.api_config.as_deref() else {
                bail!("--api custom needs --api-config FILE: the request body template and the response pointers (see README, \"Custom API\")");
            };
            Protocol::Custom(std::sync::Arc::new(
                crate::protocol::custom::CustomApi::load(path)?,
            ))
        }
    })
}

/// `--sla-auto-tune`: what to vary, the constraint groups and the search bounds.
fn resolve_sla(a: &PerfArgs) -> Result<Option<SlaConfig>> {
    if !a.sla_auto_tune {
        if let Some(p) = a.sla_params.as_deref() {
            // Validated even when unused, so a typo is not silently ignored.
            crate::sla::parse_params(p)?;
            crate::report::log::warn(
                "--sla-params has no effect without --sla-auto-tune; add --sla-auto-tune to search",
            );
        }
        return Ok(None);
    }
    let Some(params) = a.sla_params.as_deref() else {
        bail!("--sla-auto-tune: give the constraints with --sla-params, e.g. '[{{\"p99_ttft\": \"<=500\"}}]'");
    };
    let groups = crate::sla::parse_params(params)?;
    if a.sla_num_runs == 0 {
        bail!("--sla-num-runs: must be at least 1");
    }
    let (lower, upper) = (a.sla_lower_bound.max(1) as i64, a.sla_upper_bound as i64);
    if upper < lower {
        bail!("--sla-upper-bound: {upper} is below --sla-lower-bound {lower}");
    }
    let number_multiplier = a.sla_number_multiplier.unwrap_or(2.0);
    if !(number_multiplier > 0.0 && number_multiplier.is_finite()) {
        bail!("--sla-number-multiplier: {number_multiplier} must be a positive number");
    }
    // evalscope: the start is int(parallel[0] or rate[0]), clamped to the bounds.
    let start = if a.sla_variable == "rate" {
        a.rate.first().copied().filter(|r| *r > 0.0).unwrap_or(1.0) as i64
    } else {
        a.parallel.first().copied().unwrap_or(1)
    };
    Ok(Some(SlaConfig {
        variable: a.sla_variable.clone(),
        groups,
        num_runs: a.sla_num_runs,
        lower,
        upper,
        number_multiplier,
        fixed_parallel: a.sla_fixed_parallel.map_or(upper, |p| p as i64),
        start: start.clamp(lower, upper),
    }))
}

/// The sweep points: evalscope pairs --number with --parallel (closed loop) or with
/// --rate (open loop, parallel forced to -1).
fn resolve_points(a: &PerfArgs) -> Result<Vec<SweepPoint>> {
    // Sweep pairing (evalscope: closed loop needs len(number) == len(parallel);
    // open loop pairs number with rate and forces parallel to -1).
    let rates = &a.rate;
    for r in rates {
        if !(r.is_finite() && (*r > 0.0 || *r == -1.0)) {
            bail!("--rate: {r} is not a rate; give a positive req/s or -1 for no pacing");
        }
    }
    let mut points = Vec::new();
    if a.open_loop {
        if a.number.len() != rates.len() {
            bail!(
                "--open-loop pairs --number with --rate: got {} numbers and {} rates",
                a.number.len(),
                rates.len()
            );
        }
        if rates.iter().any(|r| *r <= 0.0) {
            bail!("--open-loop needs a positive --rate for every run (requests are fired on that schedule)");
        }
        for (n, r) in a.number.iter().zip(rates) {
            points.push(SweepPoint {
                parallel: -1,
                number: *n,
                rate: *r,
            });
        }
    } else {
        if a.number.len() != a.parallel.len() {
            bail!(
                "--parallel and --number are paired positionally: got {} parallel values ({:?}) and {} number values ({:?})",
                a.parallel.len(), a.parallel, a.number.len(), a.number
            );
        }
        if rates.len() != 1 && rates.len() != a.parallel.len() {
            bail!(
                "--rate: give one value or one per run ({} runs), got {}",
                a.parallel.len(),
                rates.len()
            );
        }
        for (i, (p, n)) in a.parallel.iter().zip(&a.number).enumerate() {
            if *p <= 0 {
                bail!("--parallel: {p} is not a concurrency; give a value >= 1");
            }
            let rate = if rates.len() == 1 { rates[0] } else { rates[i] };
            points.push(SweepPoint {
                parallel: *p,
                number: *n,
                rate,
            });
        }
    }
    if points.iter().any(|p| p.number == 0) {
        bail!("--number: every run needs at least one request");
    }
    Ok(points)
}

/// --headers plus Authorization from --api-key, validated.
fn resolve_headers(a: &PerfArgs) -> Result<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for h in &a.headers {
        if let Some((k, v)) = h.split_once('=') {
            headers.push((k.trim().to_string(), v.to_string()));
        }
    }
    if let Some(key) = &a.api_key {
        if key.chars().any(|c| c.is_control()) {
            // The key itself is never echoed.
            bail!("--api-key: the key contains a line break or another control character; pass it on one line");
        }
        // --api-key overrides any Authorization given in --headers (evalscope).
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        headers.push(("Authorization".into(), format!("Bearer {key}")));
    }
    for (k, v) in &headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v).is_err()
        {
            bail!("--headers: `{k}` is not a valid HTTP header name/value");
        }
    }

    Ok(headers)
}

fn masked_args(a: &PerfArgs) -> Map<String, Value> {
    let mut m = match serde_json::to_value(a) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for k in ["api_key", "wandb_api_key", "swanlab_api_key"] {
        if m.get(k).is_some_and(|v| !v.is_null()) {
            m.insert(k.into(), MASK.into());
        }
    }
    m.insert("url".into(), redact_url(&a.url).into());
    let headers: Map<String, Value> = a
        .headers
        .iter()
        .filter_map(|h| h.split_once('='))
        .map(|(k, v)| {
            let secret = SECRET_HEADERS.contains(&k.trim().to_ascii_lowercase().as_str());
            (
                k.trim().to_string(),
                Value::String(if secret { MASK.into() } else { v.into() }),
            )
        })
        .collect();
    m.insert("headers".into(), Value::Object(headers));
    if let Some(c) = &a.local_server_cmd {
        m.insert(
            "local_server_cmd".into(),
            crate::local_server::mask_command(c).into(),
        );
    }
    m.insert("stream".into(), (!a.no_stream).into());
    m.shift_remove("no_stream");
    m.shift_remove("no_apply_chat_template");
    // None = decided from the URL (evalscope); the per-run args hold the outcome.
    let chat = match (a.apply_chat_template, a.no_apply_chat_template) {
        (true, _) => Value::Bool(true),
        (_, true) => Value::Bool(false),
        _ => Value::Null,
    };
    m.insert("apply_chat_template".into(), chat);
    if let [single] = a.max_tokens.as_slice() {
        m.insert("max_tokens".into(), (*single).into());
    }
    for k in ["stop", "stop_token_ids"] {
        if m.get(k)
            .and_then(Value::as_array)
            .is_some_and(|v| v.is_empty())
        {
            m.insert(k.into(), Value::Null);
        }
    }
    if let Ok(Value::Object(x)) = serde_json::from_str::<Value>(&a.extra_args) {
        m.insert("extra_args".into(), Value::Object(x));
    }
    if let Some(Ok(v)) = a.sim_args.as_deref().map(serde_json::from_str::<Value>) {
        m.insert("sim_args".into(), v);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_completion() {
        let chat = |u: &str| complete_url(u, "chat/completions");
        assert_eq!(chat("http://h:1"), "http://h:1/v1/chat/completions");
        assert_eq!(chat("http://h:1/v1"), "http://h:1/v1/chat/completions");
        assert_eq!(
            chat("http://h:1/v1/completions"),
            "http://h:1/v1/completions"
        );
        assert_eq!(
            chat("http://h:1/v1/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            complete_url("http://h:1/", "embeddings"),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            complete_url("http://h:1/v1", "rerank"),
            "http://h:1/v1/rerank"
        );
        assert_eq!(
            complete_url("http://h:1/v1/reranks", "rerank"),
            "http://h:1/v1/reranks"
        );
        // evalscope 1.14.1: the query string stays after the completed path.
        assert_eq!(
            chat("https://x.openai.azure.com/openai/deployments/d?api-version=2024-02-01"),
            "https://x.openai.azure.com/openai/deployments/d/v1/chat/completions?api-version=2024-02-01"
        );
        assert_eq!(
            chat("http://h:1/v1?x=1#f"),
            "http://h:1/v1/chat/completions?x=1#f"
        );
        assert_eq!(
            chat("http://h:1/v1/chat/completions?key=a/b"),
            "http://h:1/v1/chat/completions?key=a/b"
        );
        assert_eq!(split_query("http://h/p?q"), ("http://h/p", "?q"));
    }

    #[test]
    fn names_and_floats() {
        assert_eq!(sanitize_name("a/b:c"), "a_b_c");
        assert_eq!(py_float(5.0), "5.0");
        assert_eq!(py_float(2.5), "2.5");
    }
}
