//! The flags every stage shares: the API, URL, protocol, headers, sweep points and
//! SLA settings.

use anyhow::{bail, Context, Result};

use crate::cli::PerfArgs;
use crate::protocol::is_encoder_run;
use crate::protocol::Api;
use crate::redact::split_query;
use crate::scheduler::SweepPoint;
use crate::sla::SlaConfig;

/// evalscope replaces `<>:"|?*\/` and NUL in --name with `_`.
pub fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| if "<>:\"|?*\\/\0".contains(c) { '_' } else { c })
        .collect()
}

/// evalscope: append the API path (`default`, e.g. `chat/completions`) when the
/// URL has none. The query string and fragment are kept after the path (evalscope
/// 1.14.1; `?api-version=…` on Azure-style endpoints).
pub fn complete_url(url: &str, default: &str) -> String {
    let (base, query) = split_query(url);
    format!("{}{query}", complete_path(base, default))
}

/// The path (and query) of a URL, `/v1/chat/completions` when it has none: what a
/// local server (or the simulator) is asked for when perfscope starts it.
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or("/v1/chat/completions", |i| &rest[i..])
}

fn complete_path(url: &str, default: &str) -> String {
    const SUFFIXES: [&str; 7] = [
        "/chat/completions",
        "/completions",
        "/responses",
        "/messages",
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

pub(crate) fn read_at_file(flag: &str, v: &str) -> Result<String> {
    match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: cannot read file `{path}`; check the path after @")),
        None => Ok(v.to_string()),
    }
}

/// The API, after failing fast on flags whose feature is not available yet.
pub(crate) fn resolve_api(a: &PerfArgs) -> Result<Api> {
    let Some(api) = Api::from_name(&a.api) else {
        bail!(
            "--api: unknown API `{}`; use one of {}",
            a.api,
            Api::names()
        );
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
pub(crate) fn resolve_url(api: Api, a: &PerfArgs) -> Result<String> {
    let url = a.url.clone();
    let is_default = url == crate::cli::DEFAULT_URL;
    Ok(match api {
        Api::OpenAi | Api::Sim => complete_url(&url, "chat/completions"),
        Api::Embedding => complete_url(&url, "embeddings"),
        Api::Rerank => complete_url(&url, "rerank"),
        // evalscope 1.14.1: a chat/completions path is redirected to responses.
        Api::Responses => complete_url(&swap_chat_path(&url, "responses"), "responses"),
        Api::Anthropic => complete_url(&swap_chat_path(&url, "messages"), "messages"),
        Api::DashScope if is_default => crate::protocol::dashscope::DEFAULT_URL.to_string(),
        Api::DashScope | Api::Custom => url,
        Api::SystemOne => decision_url(&url, "systemone"),
        Api::AutoTrust => decision_url(&url, "decide"),
        Api::Local | Api::LocalVllm => {
            // evalscope serves the local model on --port; the path of --url is kept.
            let full = complete_url(&url, "chat/completions");
            format!("http://127.0.0.1:{}{}", a.port, url_path(&full))
        }
    })
}

/// The decision APIs send complete bodies, which only two datasets yield; and
/// open_decisions yields System One bodies.
pub(crate) fn check_decision_dataset(api: Api, kind: crate::dataset::DatasetKind) -> Result<()> {
    use crate::dataset::DatasetKind;
    let decision = matches!(api, Api::SystemOne | Api::AutoTrust);
    if decision && !matches!(kind, DatasetKind::LineByLine | DatasetKind::OpenDecisions) {
        bail!(
            "--api {}: decisions are complete JSON request bodies: use --dataset open_decisions \
             or --dataset line_by_line with one JSON object per line",
            api.as_str()
        );
    }
    if kind == DatasetKind::OpenDecisions && api != Api::SystemOne {
        bail!(
            "--dataset open_decisions yields System One request bodies: use --api systemone \
             (not --api {})",
            api.as_str()
        );
    }
    Ok(())
}

/// evalscope 1.14.1's path completion for the decision APIs: the endpoint appended
/// to a URL whose path ends in none of the known ones (no `/v1` added).
fn decision_url(url: &str, endpoint: &str) -> String {
    const KNOWN: [&str; 8] = [
        "/chat/completions",
        "/completions",
        "/responses",
        "/embeddings",
        "/reranks",
        "/rerank",
        "/systemone",
        "/decide",
    ];
    let (base, query) = split_query(url);
    let trimmed = base.trim_end_matches('/');
    if KNOWN.iter().any(|k| trimmed.ends_with(k)) {
        return url.to_string();
    }
    format!("{trimmed}/{endpoint}{query}")
}

/// A URL whose path ends in `chat/completions` with that end replaced (said once).
fn swap_chat_path(url: &str, endpoint: &str) -> String {
    let (base, query) = split_query(url);
    match base.trim_end_matches('/').strip_suffix("chat/completions") {
        Some(stem) => {
            crate::telemetry::log::warn(format!(
                "--url: the API {endpoint} is served at /{endpoint}; using {stem}{endpoint}"
            ));
            format!("{stem}{endpoint}{query}")
        }
        None => url.to_string(),
    }
}

pub(crate) fn resolve_protocol(
    api: Api,
    a: &PerfArgs,
    url: &str,
) -> Result<crate::protocol::Protocol> {
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
        Api::SystemOne => Protocol::Decision(crate::protocol::decision::DecisionApi::SystemOne),
        Api::AutoTrust => Protocol::Decision(crate::protocol::decision::DecisionApi::AutoTrust),
        Api::DashScope => Protocol::DashScope,
        Api::Responses | Api::Anthropic => {
            if a.tokenize_prompt {
                bail!(
                    "--tokenize-prompt: not supported with --api {}; it sends token ids \
                     only to /v1/completions",
                    api.as_str()
                );
            }
            if a.n_choices.is_some_and(|n| n > 1) {
                // evalscope 1.14.1's Responses plugin: a warning, and n is not sent.
                crate::telemetry::log::warn(format!(
                    "--n-choices: --api {} has no n; ignoring --n-choices",
                    api.as_str()
                ));
            }
            if api == Api::Responses {
                Protocol::Responses
            } else {
                Protocol::Anthropic
            }
        }
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
/// The objectives the run declares: the --goodput bounds, the p99 criteria of an
/// --sla-auto-tune search, and --slo.
pub(crate) fn resolve_objectives(
    a: &PerfArgs,
    goodput: Option<crate::stats::Goodput>,
    sla: Option<&SlaConfig>,
) -> Result<crate::slo::Objectives> {
    use crate::slo::Bounds;
    use crate::stats::Col;
    let good = goodput.map(|g| Bounds {
        ttft_ms: g.ttft_ms,
        tpot_ms: g.tpot_ms,
        e2el_ms: g.e2el_ms,
    });
    let mut p99 = Bounds::default();
    for c in sla.iter().flat_map(|s| s.groups.iter().flatten()) {
        let Some((col, ms)) = c.p99_bound_ms() else {
            continue;
        };
        let b = match col {
            Col::Ttft => Bounds {
                ttft_ms: Some(ms),
                ..Bounds::default()
            },
            Col::Tpot => Bounds {
                tpot_ms: Some(ms),
                ..Bounds::default()
            },
            _ => Bounds {
                e2el_ms: Some(ms),
                ..Bounds::default()
            },
        };
        p99 = p99.tightest(b);
    }
    crate::slo::objectives(good, p99, crate::slo::parse_slo(&a.slo)?)
}

/// `--max-error-rate` and `--stop-on-saturation` (which needs an offered rate).
pub(crate) fn resolve_stop_rules(a: &PerfArgs) -> Result<crate::slo::StopRules> {
    let max_error_rate = a
        .max_error_rate
        .as_deref()
        .map(crate::slo::parse_max_error_rate)
        .transpose()?;
    if a.stop_on_saturation && !a.rate.iter().any(|r| *r > 0.0) {
        bail!(
            "--stop-on-saturation: needs an offered rate to fall behind; add --rate (e.g. --rate 20)"
        );
    }
    Ok(crate::slo::StopRules {
        max_error_rate,
        saturation: a.stop_on_saturation,
    })
}

/// `--snapshot-interval` and `--drift-threshold` (the engine keeps a time series
/// for runs with a duration only: a run of N requests has its summary).
pub(crate) fn resolve_snapshots(a: &PerfArgs) -> Result<Option<(f64, f64)>> {
    let every = a.snapshot_interval;
    if !(every >= 0.0 && every.is_finite()) {
        bail!("--snapshot-interval: {every} is not a number of seconds (0 turns it off)");
    }
    let t = a.drift_threshold.trim();
    let threshold = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
        None => t.parse::<f64>().ok(),
    };
    let Some(threshold) = threshold.filter(|x| *x > 0.0 && x.is_finite()) else {
        bail!("--drift-threshold: `{t}` is not a positive ratio (0.2) or percentage (20%)");
    };
    Ok((every > 0.0).then_some((every, threshold)))
}

/// `--store-responses`; `--debug` keeps every response whatever it says.
pub(crate) fn resolve_store_responses(a: &PerfArgs) -> Result<crate::store::StoreResponses> {
    match crate::store::StoreResponses::parse(&a.store_responses) {
        Some(_) if a.debug => Ok(crate::store::StoreResponses::All),
        Some(s) => Ok(s),
        None => bail!(
            "--store-responses: `{}` is not all, failures or none",
            a.store_responses
        ),
    }
}

pub(crate) fn resolve_sla(a: &PerfArgs) -> Result<Option<SlaConfig>> {
    if !a.sla_auto_tune {
        if let Some(p) = a.sla_params.as_deref() {
            // Validated even when unused, so a typo is not silently ignored.
            crate::sla::parse_params(p)?;
            crate::telemetry::log::warn(
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
pub(crate) fn resolve_points(a: &PerfArgs) -> Result<Vec<SweepPoint>> {
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
        // evalscope: rates may be -1 when the dataset brings its own arrival times.
        let scheduled = crate::dataset::DatasetKind::from_name(&a.dataset)
            .is_some_and(crate::dataset::DatasetKind::is_trace);
        if !scheduled && rates.iter().any(|r| *r <= 0.0) {
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
pub(crate) fn resolve_headers(a: &PerfArgs) -> Result<Vec<(String, String)>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::py_float;

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
