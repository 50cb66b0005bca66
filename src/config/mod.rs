//! `RunConfig`: the validated, resolved configuration the engine consumes and the
//! results store (secrets masked). Parse (cli), then resolve (here).

mod args;
mod endpoint;
mod resolve;
mod scale;
pub mod scenario;
mod stages;
mod workload;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use crate::cli::PerfArgs;
use crate::client::ClientConfig;
use crate::dataset::{DatasetConfig, DatasetKind};
use crate::protocol::GenParams;
use crate::sim::SimConfig;
use resolve::{
    check_decision_dataset, resolve_api, resolve_headers, resolve_objectives, resolve_points,
    resolve_protocol, resolve_sla, resolve_snapshots, resolve_stop_rules, resolve_store_responses,
    resolve_url,
};
use stages::*;

pub use crate::protocol::is_encoder_run;
pub use crate::protocol::Api;
pub use crate::redact::{is_secret_header, redact_url, split_query, MASK};
pub use crate::scheduler::{py_float, SweepPoint, SHARD_LOCAL_KEYS};
pub use crate::sla::SlaConfig;
pub use endpoint::Endpoint;
pub use resolve::{complete_url, sanitize_name, url_path};
pub use scale::{
    hostname, parse_source_addrs, ClockRef, ScaleConfig, ShardInfo, ENV_RUN_ID, ENV_SHARD_COUNT,
    ENV_SHARD_INDEX, ENV_START_AT,
};
pub use workload::TraceReplay;

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
    /// The endpoint, parsed once; `shown()` wherever it is displayed or stored.
    pub url: Endpoint,
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
    /// `--scenario agentx`: Weka session trees replayed by lanes (one run per
    /// --parallel value, each --duration long).
    pub agentx: Option<scenario::Scenario>,
    pub dataset: DatasetConfig,
    /// `--multi-turn`: the turn bounds (None: single requests).
    pub turns: Option<crate::dataset::multi_turn::TurnBounds>,
    /// Trace replay (`mooncake_trace`, `workload_trace`).
    pub trace: Option<TraceReplay>,
    /// `--enable-pd-metrics`.
    pub pd_metrics: bool,
    /// `--alias`: a display label only.
    pub alias: Option<String>,
    /// `--tokenize-prompt`: bodies carry token ids.
    pub tokenize_prompt: bool,
    pub gen: GenParams,
    pub outputs_dir: String,
    pub no_timestamp: bool,
    /// `--run-dir-file`: where the run's directory is written once claimed.
    pub run_dir_file: Option<String>,
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
    /// The served model's /metrics to scrape (None = off).
    pub server_metrics: Option<crate::scrape::ScrapeConfig>,
    /// `--enable-progress-tracker`: progress.json and the /metrics progress gauges.
    pub progress_tracker: bool,
    /// `--sla-auto-tune` settings (None: the normal sweep).
    pub sla: Option<SlaConfig>,
    /// `--goodput` bounds (None: no goodput keys).
    pub goodput: Option<crate::stats::Goodput>,
    /// The objectives the run declares (exported live for the alert rules).
    pub objectives: crate::slo::Objectives,
    /// `--store-responses`: which rows keep their response text.
    pub store_responses: crate::store::StoreResponses,
    /// `--snapshot-interval` seconds (None: off) and `--drift-threshold` as a ratio;
    /// used by runs with a duration.
    pub snapshots: Option<(f64, f64)>,
    /// `--max-error-rate`, `--stop-on-saturation`.
    pub stop_rules: crate::slo::StopRules,
    /// Experiment tracker (`--visualizer`, or a deprecated key alone).
    pub tracker: Option<crate::trackers::TrackerSettings>,
    /// Shards, the start barrier, the clock reference, source addresses.
    pub scale: ScaleConfig,
    /// The flags as given, secrets masked: written to benchmark_args.json and the DB.
    pub args_json: Map<String, Value>,
}

impl RunConfig {
    /// Checks every flag and builds each stage's settings (`resolve_*`), in the
    /// order the flags are validated.
    pub fn resolve(a: &PerfArgs) -> Result<RunConfig> {
        let api = resolve_api(a)?;
        let kind = resolve_dataset_kind(a)?;
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
        let agentx = scenario::resolve(a)?;
        let points = match &agentx {
            Some(_) => scenario::points(a),
            None => resolve_points(a)?,
        };
        check_timing(a)?;
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
        check_decision_dataset(api, kind)?;
        let decision = matches!(protocol, crate::protocol::Protocol::Decision(_));
        let chat = resolve_chat(a, api, &protocol, &url);
        if a.tokenize_prompt {
            url = workload::tokenize_prompt_url(a, kind, &protocol, &url)?;
        }
        let headers = protocol_headers(a, &protocol, resolve_headers(a)?);
        let local_server = resolve_local_server(a, api, &model)?;
        let client = resolve_client(a, headers)?;
        let gen = resolve_gen(a, &model)?;
        let tokenizer = resolve_tokenizer(a, chat)?;
        let sim = resolve_sim(a, api)?;
        let work = workload::resolve_workload(a, kind, chat)?;
        let mut dataset = resolve_dataset(a, kind, &model, tokenizer.clone(), &gen.extra_args)?;
        dataset.args = work.args;
        dataset.hub = work.hub;
        dataset.num_workers = work.num_workers;
        let name = a.name.as_deref().map(sanitize_name);
        let (metrics_addr, otel) = resolve_observability(a)?;
        let (goodput, sla) = (crate::stats::Goodput::parse(&a.goodput)?, resolve_sla(a)?);
        let objectives = resolve_objectives(a, goodput, sla.as_ref())?;
        let scale = scale::resolve_scale(a, &points, &url, &|k| std::env::var(k).ok())?;
        let mut args_json = args::masked_args(a);
        if let Some(s) = &scale.shard {
            // The resolved values (the environment's defaults included).
            args_json.insert("shard_index".into(), s.shard.index.into());
            args_json.insert("shard_count".into(), s.shard.count.into());
            args_json.insert("run_id".into(), s.run_id.clone().into());
        }
        Ok(RunConfig {
            model_id: name.clone().unwrap_or(model_id),
            name,
            model,
            api,
            protocol,
            local_server,
            url: Endpoint::parse(&url)?,
            chat,
            tokenizer,
            client,
            // evalscope 1.14.1 sends no connection test for its input-only APIs;
            // a decision body cannot be made up from "hello" in any case.
            test_connection: !a.no_test_connection && !decision,
            points,
            sleep_interval: a.sleep_interval,
            warmup_num: a.warmup_num,
            open_loop: a.open_loop,
            duration: match &agentx {
                Some(s) => Some(s.duration(a.duration)),
                None => a.duration,
            },
            agentx,
            dataset,
            turns: work.turns,
            trace: work.trace,
            pd_metrics: a.enable_pd_metrics,
            alias: a.alias.clone(),
            tokenize_prompt: a.tokenize_prompt,
            gen,
            outputs_dir: a.outputs_dir.clone(),
            no_timestamp: a.no_timestamp,
            run_dir_file: a.run_dir_file.clone(),
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
            server_metrics: resolve_server_metrics(a, api)?,
            goodput,
            objectives,
            stop_rules: resolve_stop_rules(a)?,
            snapshots: resolve_snapshots(a)?,
            store_responses: resolve_store_responses(a)?,
            sla,
            progress_tracker: a.enable_progress_tracker,
            tracker: crate::trackers::TrackerSettings::resolve(&a.tracker.flags())?,
            scale,
            args_json,
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

    /// One request body: the protocol's, then with `--tokenize-prompt` its chat
    /// messages or text as token ids (evalscope: `apply_chat_template(tokenize=True)`
    /// for messages, `encode(add_special_tokens=False)` for strings). A whole body
    /// from the dataset is never tokenized.
    pub fn build_body(
        &self,
        prompt: &crate::dataset::Prompt,
        gen: &GenParams,
        rng: &mut fastrand::Rng,
    ) -> Result<Map<String, Value>> {
        let body = self.protocol.build_body(prompt, gen, rng)?;
        match (&self.tokenizer, self.tokenize_prompt, prompt) {
            (_, _, crate::dataset::Prompt::Body(_)) | (_, false, _) | (None, _, _) => Ok(body),
            (Some(t), true, _) => tokenize_body(body, t),
        }
    }

    /// Headers with secret values masked, for logs.
    pub fn masked_headers(&self) -> Vec<(String, String)> {
        self.client
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = is_secret_header(k);
                (k.clone(), if secret { MASK.to_string() } else { v.clone() })
            })
            .collect()
    }

    /// The run's target once it listens: `--api sim` picks a free port, and every
    /// output (benchmark_args.json's `url` and `port`, the reports' endpoint, the
    /// labels) names the one used rather than `--port`'s default.
    pub fn with_target(mut self, target: Endpoint) -> RunConfig {
        self.args_json
            .insert("url".into(), target.shown().to_string().into());
        if let Some(port) = target.port() {
            self.args_json.insert("port".into(), port.into());
        }
        self.url = target;
        self
    }

    /// benchmark_args.json for one run: the flags with this run's parallel, number
    /// and rate, and as evalscope 1.14.1 records them, the run's own directory as
    /// `outputs_dir` and the dataset offset advanced past the earlier runs; keys in
    /// evalscope's order.
    pub fn args_for_run(
        &self,
        point: &SweepPoint,
        dir: &std::path::Path,
        dataset_offset: u64,
    ) -> Map<String, Value> {
        let mut m = self.args_json.clone();
        m.insert("model_id".into(), self.model_id.clone().into());
        m.insert("url".into(), self.url.shown().to_string().into());
        m.insert("apply_chat_template".into(), self.chat.into());
        m.insert("parallel".into(), point.parallel.into());
        m.insert("number".into(), point.number.into());
        m.insert("rate".into(), point.rate.into());
        m.insert(
            "outputs_dir".into(),
            dir.to_string_lossy().into_owned().into(),
        );
        m.insert("dataset_offset".into(), dataset_offset.into());
        args::evalscope_order(m)
    }
}

/// `body` with `messages` (rendered by the chat template) or a string `prompt`
/// replaced by `prompt: [token ids]`, first, as evalscope builds it.
pub fn tokenize_body(
    body: Map<String, Value>,
    tok: &crate::tokenizer::Tokenizer,
) -> Result<Map<String, Value>> {
    let ids = match (body.get("messages"), body.get("prompt")) {
        (Some(m), _) => tok.encode(&tok.render_chat(m, true)?),
        (None, Some(Value::String(p))) => tok.encode(p),
        _ => return Ok(body),
    };
    let mut out = Map::new();
    out.insert("prompt".into(), Value::from(ids));
    for (k, v) in body {
        if k != "messages" && k != "prompt" {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// `--duration`, `--warmup-num` and `--sleep-interval`.
fn check_timing(a: &PerfArgs) -> Result<()> {
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
    Ok(())
}
