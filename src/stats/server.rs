//! The served model's own figures, from the samples scraped into `server_metrics`
//! (vLLM, SGLang, llama.cpp, TGI, DCGM names; the first family present is used).
//! Each key appears only when its source was scraped.

use anyhow::Result;

use super::catalogue::Metric;
use super::values::Summary;
use crate::store::{Agg, Build, Field, Field::*, Filter, RunRows};

/// How a figure is read from its samples.
#[derive(Clone, Copy)]
enum Read {
    /// A counter's change over the run.
    Delta,
    /// A histogram's mean over the run in ms: Δ`_sum` / Δ`_count` × 1000.
    HistogramMeanMs,
    /// A histogram's mean over the run in its own unit: Δ`_sum` / Δ`_count`.
    HistogramMean,
    /// The highest total in one scrape.
    PeakSum,
    /// The highest sample, as a percentage of a 0–1 fraction.
    PeakFractionPct,
    /// The mean over scrapes of the mean over series.
    Mean,
}

/// Each figure, its candidate names (the first present wins; `a+b` adds two
/// series, e.g. llama.cpp's prompt tokens processed and reused from its cache) and
/// how it is read.
const SOURCES: &[(Metric, &[&str], Read)] = &[
    (
        Metric::ServerPromptTokens,
        &[
            "vllm:prompt_tokens_total",
            "sglang:prompt_tokens_total",
            "llamacpp:prompt_tokens_total+llamacpp:prompt_tokens_cached_total",
            "tgi_request_input_length_sum",
        ],
        Read::Delta,
    ),
    (
        Metric::ServerOutputTokens,
        &[
            "vllm:generation_tokens_total",
            "sglang:generation_tokens_total",
            "llamacpp:tokens_predicted_total",
            "tgi_request_generated_tokens_sum",
        ],
        Read::Delta,
    ),
    (
        Metric::ServerAvgTtft,
        &[
            "vllm:time_to_first_token_seconds",
            "sglang:time_to_first_token_seconds",
        ],
        Read::HistogramMeanMs,
    ),
    (
        Metric::ServerAvgQueueTime,
        &[
            "vllm:request_queue_time_seconds",
            "sglang:queue_time_seconds",
            "tgi_request_queue_duration",
        ],
        Read::HistogramMeanMs,
    ),
    (
        Metric::ServerAvgPrefillTime,
        &["vllm:request_prefill_time_seconds"],
        Read::HistogramMeanMs,
    ),
    (
        Metric::ServerAvgDecodeTime,
        &["vllm:request_decode_time_seconds"],
        Read::HistogramMeanMs,
    ),
    (
        Metric::ServerPeakRunning,
        &[
            "vllm:num_requests_running",
            "sglang:num_running_reqs",
            "llamacpp:requests_processing",
            "tgi_batch_current_size",
        ],
        Read::PeakSum,
    ),
    (
        Metric::ServerPeakWaiting,
        &[
            "vllm:num_requests_waiting",
            "sglang:num_queue_reqs",
            "llamacpp:requests_deferred",
            "tgi_queue_size",
        ],
        Read::PeakSum,
    ),
    (
        Metric::ServerPeakKvCacheUsage,
        &[
            "vllm:kv_cache_usage_perc",
            "vllm:gpu_cache_usage_perc",
            "sglang:token_usage",
            "llamacpp:kv_cache_usage_ratio",
        ],
        Read::PeakFractionPct,
    ),
    (
        Metric::ServerCachedPromptTokens,
        &[
            "vllm:prompt_tokens_cached_total",
            "sglang:cached_tokens_total",
            "llamacpp:prompt_tokens_cached_total",
        ],
        Read::Delta,
    ),
    (
        Metric::ServerComputedPromptTokens,
        &["vllm:prompt_tokens_by_source_total{source=local_compute}"],
        Read::Delta,
    ),
    (
        Metric::ServerAvgPrefillComputedTokens,
        &["vllm:request_prefill_kv_computed_tokens"],
        Read::HistogramMean,
    ),
    (
        Metric::ServerPeakWaitingDeferred,
        &["vllm:num_requests_waiting_by_reason{reason=deferred}"],
        Read::PeakSum,
    ),
    (
        Metric::ServerPreemptions,
        &[
            "vllm:num_preemptions_total",
            "sglang:num_retracted_requests_total",
        ],
        Read::Delta,
    ),
    (
        Metric::GpuAvgUtilization,
        &["DCGM_FI_DEV_GPU_UTIL"],
        Read::Mean,
    ),
];

/// The sample name a figure reads first (histograms by their `_count`).
fn probe_name(name: &str, read: Read) -> String {
    let name = name.split('+').next().unwrap_or(name);
    match read {
        Read::HistogramMeanMs | Read::HistogramMean => format!("{name}_count"),
        _ => name.to_string(),
    }
}

/// A figure's candidate series names (the first a server has is the one read).
pub(crate) fn candidates(metric: Metric) -> &'static [&'static str] {
    SOURCES
        .iter()
        .find(|(m, _, _)| *m == metric)
        .map_or(&[], |(_, names, _)| names)
}

/// The first of a figure's candidate series the run has (None: no such source).
pub(crate) fn source_of(rows: &RunRows, metric: Metric) -> Result<Option<&'static str>> {
    for &(m, names, how) in SOURCES {
        if m == metric {
            for name in names {
                if rows.server_has(&probe_name(name, how))? {
                    return Ok(Some(name));
                }
            }
        }
    }
    Ok(None)
}

fn read(rows: &RunRows, name: &str, how: Read) -> Result<Option<f64>> {
    Ok(match how {
        Read::Delta => {
            let mut total = None;
            for part in name.split('+') {
                if let Some(d) = rows.server_delta(part)? {
                    total = Some(total.unwrap_or(0.0) + d.max(0.0));
                }
            }
            total
        }
        Read::HistogramMeanMs | Read::HistogramMean => {
            let sum = rows.server_delta(&format!("{name}_sum"))?;
            let count = rows.server_delta(&format!("{name}_count"))?;
            let unit = if matches!(how, Read::HistogramMeanMs) {
                1000.0
            } else {
                1.0
            };
            match (sum, count) {
                (Some(s), Some(c)) if c > 0.0 => Some(unit * s / c),
                _ => None,
            }
        }
        Read::PeakSum => rows.server_peak_sum(name)?,
        Read::PeakFractionPct => rows.server_max(name)?.map(|v| 100.0 * v),
        Read::Mean => rows.server_mean(name)?,
    })
}

/// The server keys of a run's summary, and the warning when the server counted
/// other token totals than the client.
pub(crate) fn server_keys(rows: &RunRows, s: &mut Summary) -> Result<()> {
    for &(metric, names, how) in SOURCES {
        for name in names {
            if rows.server_has(&probe_name(name, how))? {
                if let Some(v) = read(rows, name, how)? {
                    s.set(metric, v);
                }
                break;
            }
        }
    }
    prefix_cache(rows, s)?;
    dcgm(rows, s)?;
    let client_sum = |tokens: Field| -> Result<f64> {
        Ok(rows
            .aggregate(Agg::Sum, tokens, &Filter::Success)?
            .unwrap_or(0.0))
    };
    // A client TTFT of 0 (embedding) or -1000 (nothing succeeded) has no overhead;
    // nor has a run without streamed replies, whose client TTFT is the whole
    // latency (evalscope: first_chunk_latency = latency) and would set decode time
    // against the server's TTFT.
    let streamed = rows.count(&Filter::Success.and(Filter::Stream))? > 0;
    if let (Some(client), Some(server), true) = (
        s.get(Metric::AvgTtft),
        s.get(Metric::ServerAvgTtft),
        streamed,
    ) {
        if client > 0.0 {
            s.set(Metric::ClientOverheadTtft, client - server);
        }
    }
    for (metric, col, what) in [
        (Metric::ServerPromptTokens, PromptTokens, "prompt"),
        (Metric::ServerOutputTokens, CompletionTokens, "output"),
    ] {
        if let Some(server) = s.get(metric) {
            let client = client_sum(col)?;
            // The before-scrape follows the connection test and the warmup, so only
            // a few tokens (a request the client gave up on, a late counter) may
            // differ. With --n-choices N vLLM counts the prompt once per choice,
            // while the response's usage counts it once: either count agrees.
            let near = |c: f64| (server - c).abs() <= (0.005 * c).max(16.0);
            let per_choice = what == "prompt" && near(client * rows.n_choices as f64);
            if !near(client) && !per_choice {
                s.warn(format!(
                    "the server counted {server} {what} tokens in this run, the client {client} \
                     (successful requests' usage); other traffic on the server, failed \
                     requests or a different tokenizer explain a gap"
                ));
            }
        }
    }
    cached_check(rows, s)?;
    if let Some(j) = s.get(Metric::Energy).filter(|j| *j > 0.0) {
        s.set(
            Metric::OutputTokensPerJoule,
            client_sum(CompletionTokens)? / j,
        );
    }
    Ok(())
}

/// vLLM's count of cached prompt tokens against the responses': a gap warns, and a
/// vLLM that cached tokens but reported none per request is told how to report them.
fn cached_check(rows: &RunRows, s: &mut Summary) -> Result<()> {
    let vllm =
        source_of(rows, Metric::ServerCachedPromptTokens)?.is_some_and(|n| n.starts_with("vllm:"));
    let Some(server) = s.get(Metric::ServerCachedPromptTokens).filter(|_| vllm) else {
        return Ok(());
    };
    let w = Filter::Success.and(CachedTokens.known());
    if rows.count(&w)? == 0 {
        if server > 0.0 {
            s.warn(format!(
                "the server served {server} prompt tokens from its prefix cache, but its \
                 responses reported no cached tokens, so KV Cache Hit Rate (%) is absent: \
                 start vLLM with --enable-prompt-tokens-details to have them reported"
            ));
        }
        return Ok(());
    }
    let client = rows.aggregate(Agg::Sum, CachedTokens, &w)?.unwrap_or(0.0);
    let near = |c: f64| (server - c).abs() <= (0.005 * c).max(16.0);
    if !near(client) && !near(client * rows.n_choices as f64) {
        s.warn(format!(
            "the server counted {server} cached prompt tokens in this run, the responses \
             {client}; other traffic on the server or failed requests explain a gap"
        ));
    }
    Ok(())
}

/// vLLM's prefix-cache counters (queries and hits, in tokens), llama.cpp's prompt
/// tokens reused from its cache against those processed, else SGLang's hit-rate
/// gauge.
fn prefix_cache(rows: &RunRows, s: &mut Summary) -> Result<()> {
    let (q, h) = (
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    );
    let (processed, cached) = (
        "llamacpp:prompt_tokens_total",
        "llamacpp:prompt_tokens_cached_total",
    );
    if rows.server_has(q)? && rows.server_has(h)? {
        let queries = rows.server_delta(q)?.unwrap_or(0.0);
        if queries > 0.0 {
            let hits = rows.server_delta(h)?.unwrap_or(0.0);
            s.set(Metric::ServerPrefixCacheHitRate, 100.0 * hits / queries);
        }
    } else if rows.server_has(cached)? {
        let hits = rows.server_delta(cached)?.unwrap_or(0.0).max(0.0);
        let all = hits + rows.server_delta(processed)?.unwrap_or(0.0).max(0.0);
        if all > 0.0 {
            s.set(Metric::ServerPrefixCacheHitRate, 100.0 * hits / all);
        }
    } else if let Some(rate) = rows.server_mean("sglang:cache_hit_rate")? {
        s.set(Metric::ServerPrefixCacheHitRate, 100.0 * rate);
    }
    Ok(())
}

/// The DCGM exporter's memory (MiB) and energy (mJ since boot) per GPU.
fn dcgm(rows: &RunRows, s: &mut Summary) -> Result<()> {
    if let Some(mib) = rows.server_peak_sum("DCGM_FI_DEV_FB_USED")? {
        s.set(Metric::GpuPeakMemory, mib / 1024.0);
    }
    if rows.server_has("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")? {
        if let Some(mj) = rows.server_delta("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")? {
            s.set(Metric::Energy, mj.max(0.0) / 1000.0);
        }
    }
    Ok(())
}
