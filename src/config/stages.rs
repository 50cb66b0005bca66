//! One `resolve_*` per stage: each builds the stage's own settings from the flags.

use anyhow::{bail, Result};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

use super::resolve::read_at_file;
use crate::cli::PerfArgs;
use crate::client::ClientConfig;
use crate::dataset::{DatasetConfig, DatasetKind, ImageSpec};
use crate::local_server::{LocalServerConfig, LocalServerFlags};
use crate::protocol::Api;
use crate::protocol::{GenParams, Protocol};
use crate::recorder::otel::OtelConfig;
use crate::redact::split_query;
use crate::sim::SimConfig;
use crate::telemetry::log;
use crate::tokenizer::Tokenizer;

/// `--dataset` and the length bounds that do not depend on anything else.
pub(crate) fn resolve_dataset_kind(a: &PerfArgs) -> Result<DatasetKind> {
    let Some(kind) = DatasetKind::from_name(&a.dataset) else {
        bail!(
            "--dataset: unknown dataset `{}`; use {}",
            a.dataset,
            DatasetKind::names()
        );
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
    Ok(kind)
}

/// Whether prompts are sent as chat messages.
pub(crate) fn resolve_chat(a: &PerfArgs, api: Api, protocol: &Protocol, url: &str) -> bool {
    if protocol.is_encoder() {
        // Embedding and rerank inputs are plain text.
        false
    } else if a.apply_chat_template {
        true
    } else if a.no_apply_chat_template {
        false
    } else {
        // DashScope and the Messages API take messages unless told otherwise. The
        // Responses API takes a text `input` (evalscope 1.14.1 resolves
        // apply_chat_template from the redirected /responses URL: false), except
        // where evalscope's datasets always yield messages: conversations and images.
        matches!(api, Api::DashScope | Api::Anthropic)
            || (api == Api::Responses
                && (a.multi_turn
                    || matches!(
                        crate::dataset::DatasetKind::from_name(&a.dataset),
                        Some(
                            crate::dataset::DatasetKind::Flickr8k
                                | crate::dataset::DatasetKind::KontextBench
                                | crate::dataset::DatasetKind::MmmuMultiImage
                                | crate::dataset::DatasetKind::RandomVl
                        )
                    )))
            || split_query(url)
                .0
                .trim_end_matches('/')
                .ends_with("chat/completions")
    }
}

/// The headers every request carries: the user's, then what the protocol needs.
pub(crate) fn protocol_headers(
    a: &PerfArgs,
    protocol: &Protocol,
    mut headers: Vec<(String, String)>,
) -> Vec<(String, String)> {
    match protocol {
        Protocol::DashScope
            if !a.no_stream
                && !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("x-dashscope-sse")) =>
        {
            headers.push(("X-DashScope-SSE".into(), "enable".into()));
        }
        Protocol::Custom(c) => headers.extend(c.headers.iter().cloned()),
        Protocol::Anthropic => {
            let has = |h: &[(String, String)], name: &str| {
                h.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
            };
            if !has(&headers, "anthropic-version") {
                headers.push((
                    "anthropic-version".into(),
                    crate::protocol::anthropic::VERSION.into(),
                ));
            }
            // The Messages API's own key header (vLLM and llama.cpp accept either).
            if let Some(key) = a.api_key.as_ref().filter(|_| !has(&headers, "x-api-key")) {
                headers.push(("x-api-key".into(), key.clone()));
            }
        }
        _ => {}
    }
    headers
}

/// `--api local` / `local_vllm`: the server to start; its flags are errors elsewhere.
pub(crate) fn resolve_local_server(
    a: &PerfArgs,
    api: Api,
    model: &str,
) -> Result<Option<LocalServerConfig>> {
    if api.is_local() {
        return Ok(Some(LocalServerConfig::resolve(
            &LocalServerFlags {
                vllm: api == Api::LocalVllm,
                cmd: a.local_server_cmd.as_deref(),
                attn: a.attn_implementation.as_deref(),
                port: a.port,
                timeout: a.local_server_timeout,
            },
            model,
        )?));
    }
    if a.local_server_cmd.is_some() {
        bail!("--local-server-cmd only applies with --api local or local_vllm");
    }
    if a.attn_implementation.is_some() {
        bail!("--attn-implementation only applies with --api local or local_vllm (the server perfscope starts)");
    }
    Ok(None)
}

/// A timeout flag: a positive number of seconds, or absent.
fn secs(flag: &str, v: Option<f64>) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("{flag}: {s} is not a positive number of seconds"),
    }
}

/// The load client: headers, timeouts, the response cap.
pub(crate) fn resolve_client(a: &PerfArgs, headers: Vec<(String, String)>) -> Result<ClientConfig> {
    let total_timeout =
        secs("--total-timeout", Some(a.total_timeout))?.unwrap_or(Duration::from_secs(21600));
    let m = a.max_response_mib;
    if !(m > 0.0 && m.is_finite() && m <= 4096.0) {
        bail!("--max-response-mib: {m} must be a number of MiB in (0, 4096]");
    }
    let q = a.max_request_mib;
    if !(q > 0.0 && q.is_finite() && q <= 4096.0) {
        bail!("--max-request-mib: {q} must be a number of MiB in (0, 4096]");
    }
    crate::dataset::set_max_request_bytes((q * 1024.0 * 1024.0) as usize);
    Ok(ClientConfig {
        headers,
        connect_timeout: secs("--connect-timeout", a.connect_timeout)?,
        read_timeout: secs("--read-timeout", a.read_timeout)?,
        total_timeout,
        max_response_bytes: (m * 1024.0 * 1024.0) as usize,
        source_addrs: match &a.source_addrs {
            Some(s) => super::scale::parse_source_addrs(s)?,
            None => Vec::new(),
        },
        tls: crate::client::TlsTrust {
            ca_certs: match &a.ca_cert {
                Some(p) => crate::client::read_pem_certs(p).map_err(anyhow::Error::msg)?,
                None => Vec::new(),
            },
            insecure: a.insecure,
        },
    })
}

/// What each request body asks of the model.
pub(crate) fn resolve_gen(a: &PerfArgs, model: &str) -> Result<GenParams> {
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
    Ok(GenParams {
        model: model.to_string(),
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
    })
}

/// `--tokenizer-path`: prompt lengths in tokens, and token counts a server omits.
pub(crate) fn resolve_tokenizer(a: &PerfArgs, chat: bool) -> Result<Option<Arc<Tokenizer>>> {
    let Some(p) = a.tokenizer_path.as_deref() else {
        return Ok(None);
    };
    let t = Tokenizer::load(p)?;
    // The template only matters where prompts are sent as chat messages.
    let template = if chat {
        format!(" (chat template: {})", t.template_source)
    } else {
        String::new()
    };
    log::info(format!(
        "Tokenizer {}{template}: prompt lengths are in tokens",
        t.path
    ));
    Ok(Some(t))
}

/// `--api sim`: the simulator's settings (`--sim-args`).
pub(crate) fn resolve_sim(a: &PerfArgs, api: Api) -> Result<Option<SimConfig>> {
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
    Ok(sim)
}

/// A positive integer from `--extra-args`, or `default` when absent.
fn extra_count(extra: &Map<String, Value>, key: &str, default: usize) -> Result<usize> {
    match extra.get(key) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(n as usize),
            _ => bail!("--extra-args: {key} must be a positive integer, got {v}"),
        },
    }
}

/// Where prompts come from and how long they are.
pub(crate) fn resolve_dataset(
    a: &PerfArgs,
    kind: DatasetKind,
    model: &str,
    tokenizer: Option<Arc<Tokenizer>>,
    extra: &Map<String, Value>,
) -> Result<DatasetConfig> {
    let prompt = a
        .prompt
        .as_deref()
        .map(|p| read_at_file("--prompt", p))
        .transpose()?;
    let image = ImageSpec {
        width: a.image_width,
        height: a.image_height,
        format: a.image_format.clone(),
        num: a.image_num,
        patch_size: a.image_patch_size,
    };
    if matches!(kind, DatasetKind::RandomVl) {
        crate::dataset::random_vl::check(&image)?;
    }
    let query_template = match a.query_template.as_deref() {
        Some(t) => {
            let t = read_at_file("--query-template", t)?;
            crate::dataset::template::check(&t)?;
            Some(t)
        }
        None => None,
    };
    Ok(DatasetConfig {
        kind,
        name: a.dataset.clone(),
        path: a.dataset_path.clone(),
        prompt,
        min_prompt_length: a.min_prompt_length,
        max_prompt_length: a.max_prompt_length,
        prefix_length: a.prefix_length,
        prefix_count: a.prefix_count.max(1) as u64,
        dataset_offset: a.dataset_offset,
        seed: a.seed.unwrap_or(0),
        image,
        query_template,
        model: model.to_string(),
        tokenizer,
        batch_size: extra_count(extra, "batch_size", 1)?,
        // evalscope's random_rerank defaults: 10 documents, 5x the query length.
        num_documents: extra_count(extra, "num_documents", 10)?,
        document_length_ratio: match extra.get("document_length_ratio") {
            None => 5.0,
            Some(v) => match v.as_f64() {
                Some(r) if r > 0.0 && r.is_finite() => r,
                _ => {
                    bail!("--extra-args: document_length_ratio must be a positive number, got {v}")
                }
            },
        },
        tokenize: a.tokenize_prompt,
        args: Default::default(),
        num_workers: 0,
        hub: Default::default(),
    })
}

/// `/metrics` and OTLP export.
pub(crate) fn resolve_observability(
    a: &PerfArgs,
) -> Result<(Option<std::net::SocketAddr>, Option<OtelConfig>)> {
    let metrics_addr = match a.metrics_addr.as_str() {
        "off" | "none" | "" => None,
        v => Some(v.parse::<std::net::SocketAddr>().map_err(|_| {
            anyhow::anyhow!("--metrics-addr: `{v}` is not HOST:PORT (e.g. 127.0.0.1:9464) or `off`")
        })?),
    };
    if !(0.0..=1.0).contains(&a.otlp_sample_ratio) {
        bail!(
            "--otlp-sample-ratio: {} must be between 0 and 1",
            a.otlp_sample_ratio
        );
    }
    let otel = OtelConfig::resolve(
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
    Ok((metrics_addr, otel))
}

/// `--server-metrics` and its interval: `auto` scrapes `/metrics` at the --url's
/// origin (not for DashScope's public endpoint), `off` nothing, else the URLs given.
pub(crate) fn resolve_server_metrics(
    a: &PerfArgs,
    api: Api,
) -> Result<Option<crate::scrape::ScrapeConfig>> {
    let secs = a.server_metrics_interval;
    if !(secs.is_finite() && (0.05..=3600.0).contains(&secs)) {
        bail!("--server-metrics-interval: {secs} must be a number of seconds from 0.05 to 3600");
    }
    let (mut endpoints, mut auto) = (Vec::new(), false);
    for v in &a.server_metrics {
        match v.trim() {
            "off" | "none" | "false" => return Ok(None),
            "auto" => auto = api != Api::DashScope,
            other => {
                let u = reqwest::Url::parse(other).map_err(|e| {
                    anyhow::anyhow!(
                        "--server-metrics: `{}` is not a URL ({e}); give e.g. http://127.0.0.1:8000/metrics, `auto` or `off`",
                        crate::redact::redact_url(other)
                    )
                })?;
                if !matches!(u.scheme(), "http" | "https") {
                    bail!(
                        "--server-metrics: `{}` must be an http:// or https:// URL",
                        crate::redact::redact_url(other)
                    );
                }
                endpoints.push(other.to_string());
            }
        }
    }
    endpoints.dedup();
    Ok(
        (auto || !endpoints.is_empty()).then(|| crate::scrape::ScrapeConfig {
            auto,
            endpoints,
            interval: std::time::Duration::from_secs_f64(secs),
        }),
    )
}
