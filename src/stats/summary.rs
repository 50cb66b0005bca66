//! benchmark_summary.json from the stored rows.

use anyhow::Result;

use super::catalogue::Metric;
use super::inputs::RunInputs;
use super::values::Summary;
use crate::store::{Rows, RunRows};

use Rows::Requests;

/// The counts and sums most summary keys divide.
struct Totals {
    total: u64,
    succ: u64,
    streams: u64,
    /// evalscope 1.14's wall window (1.0 when no row has a valid interval).
    duration: f64,
    /// Its start (0 when none).
    start: f64,
    /// Successful rows with both token counts, and their sums.
    n_known: u64,
    sum_prompt: f64,
    sum_completion: f64,
}

/// Rows with both token counts (the token averages and throughputs use only these).
const KNOWN: &str = "success=1 AND prompt_tokens IS NOT NULL AND completion_tokens IS NOT NULL";

impl Totals {
    fn read(rows: &RunRows) -> Result<Totals> {
        // evalscope 1.14's wall window: rows with a valid interval, failures included.
        let valid = "start_time > 0 AND completed_time >= start_time";
        let start = rows.aggregate(Requests, "MIN(start_time)", valid)?;
        let end = rows.aggregate(Requests, "MAX(completed_time)", valid)?;
        let duration = match (start, end) {
            (Some(s), Some(e)) => (e - s).max(0.0),
            _ => 1.0,
        };
        let sum = |col: &str| -> Result<f64> {
            Ok(rows
                .aggregate(Requests, &format!("SUM({col})"), KNOWN)?
                .unwrap_or(0.0))
        };
        Ok(Totals {
            total: rows.count(Requests, "1")?,
            succ: rows.count(Requests, "success=1")?,
            streams: rows.count(Requests, "is_stream=1")?,
            duration,
            start: start.unwrap_or(0.0),
            n_known: rows.count(Requests, KNOWN)?,
            sum_prompt: sum("prompt_tokens")?,
            sum_completion: sum("completion_tokens")?,
        })
    }
    fn per_dur(&self, x: f64) -> f64 {
        if self.duration > 0.0 {
            x / self.duration
        } else {
            -1.0
        }
    }
    fn per_succ(&self, x: f64) -> f64 {
        if self.succ > 0 {
            x / self.succ as f64
        } else {
            -1.0
        }
    }
    fn per_known(&self, x: f64) -> f64 {
        if self.n_known > 0 {
            x / self.n_known as f64
        } else {
            -1.0
        }
    }
}

/// The filter selecting rows that count for TTFT/TPOT: successful streams, or all
/// successes when no stream succeeded.
pub(crate) fn ttft_filter(rows: &RunRows) -> Result<&'static str> {
    Ok(if rows.count(Requests, "success=1 AND is_stream=1")? > 0 {
        "success=1 AND is_stream=1"
    } else {
        "success=1"
    })
}

/// benchmark_summary.json: every metric of the catalogue this run has.
pub fn summary(rows: &RunRows, run: &RunInputs) -> Result<Summary> {
    let t = Totals::read(rows)?;
    let mut s = Summary::default();
    evalscope_keys(rows, run, &t, &mut s)?;
    if !run.encoder {
        pd_keys(rows, &mut s)?;
        multi_turn_keys(rows, &t, &mut s)?;
    }
    cache_and_decode_keys(rows, &mut s)?;
    perfscope_keys(rows, run, &t, &mut s)?;
    super::server::server_keys(rows, &mut s)?;
    Ok(s)
}

/// evalscope's own keys.
fn evalscope_keys(rows: &RunRows, run: &RunInputs, t: &Totals, s: &mut Summary) -> Result<()> {
    let sub = ttft_filter(rows)?;
    let avg = |expr: &str, w: &str| rows.aggregate(Requests, &format!("AVG({expr})"), w);
    // Σ over the TTFT rows / their count; with no success at all evalscope divides
    // by n = 0 and reports -1 (× 1000).
    let avg_ttft = avg("COALESCE(first_chunk_latency, 0)", sub)?.unwrap_or(-1.0) * 1000.0;
    let avg_tpot = if rows.count(Requests, "success=1 AND is_stream=1")? > 0 {
        // evalscope 1.13+: one-token streamed replies have no TPOT and are left out.
        avg(
            "time_per_output_token",
            "success=1 AND is_stream=1 AND completion_tokens > 1",
        )?
        .unwrap_or(0.0)
    } else {
        avg("COALESCE(time_per_output_token, 0)", "success=1")?.unwrap_or(-1.0)
    } * 1000.0;
    let avg_itl = rows
        .aggregate(Rows::ItlGaps, "AVG(j.value)", "success=1")?
        .map_or(0.0, |v| v * 1000.0);
    let sum_latency = rows
        .aggregate(Requests, "SUM(latency)", "success=1")?
        .unwrap_or(0.0);
    s.set(Metric::TestDuration, t.duration);
    s.set(Metric::Concurrency, run.parallel as f64);
    s.set(Metric::RequestRate, run.rate);
    s.set(Metric::TotalRequests, t.total as f64);
    s.set(Metric::SuccessRequests, t.succ as f64);
    s.set(Metric::FailedRequests, (t.total - t.succ) as f64);
    s.set(Metric::StreamRequests, t.streams as f64);
    s.set(Metric::NonStreamRequests, (t.total - t.streams) as f64);
    s.set(Metric::ReqThroughput, t.per_dur(t.succ as f64));
    s.set(Metric::AvgLatency, t.per_succ(sum_latency));
    s.set(Metric::AvgInputTokens, t.per_known(t.sum_prompt));
    // evalscope zeroes the generation keys of embedding, rerank and decision runs
    // (its summary model's defaults), and emits the embedding-only Input
    // Throughput as 0.0 for LLM runs.
    let gen = |v: f64| if run.encoder { 0.0 } else { v };
    s.set(Metric::OutputThroughput, gen(t.per_dur(t.sum_completion)));
    s.set(
        Metric::TotalThroughput,
        gen(t.per_dur(t.sum_prompt + t.sum_completion)),
    );
    s.set(Metric::AvgTtft, gen(avg_ttft));
    s.set(Metric::AvgTpot, gen(avg_tpot));
    s.set(Metric::AvgItl, gen(avg_itl));
    s.set(Metric::AvgOutputTokens, gen(t.per_known(t.sum_completion)));
    if t.succ > 0 && t.n_known == 0 && !run.encoder {
        // No successful request reported its token counts (no `usage`, and no
        // --tokenizer-path to count them): the token figures are unknown, not 0.
        for m in [
            Metric::AvgInputTokens,
            Metric::AvgOutputTokens,
            Metric::OutputThroughput,
            Metric::TotalThroughput,
        ] {
            s.set_unknown(m);
        }
    }
    let input_tput = if !run.encoder {
        0.0
    } else if run.decision {
        // evalscope 1.14.1: avg_prompt_tokens × qps = Σ prompt_tokens / duration.
        s.set_not_applicable(vec![
            Metric::AvgTtft.key(),
            Metric::AvgTpot.key(),
            Metric::AvgItl.key(),
        ]);
        t.per_dur(t.sum_prompt)
    } else {
        // Σ input tokens / Σ per-request latency (a per-request average, as
        // evalscope defines it; Total Throughput is the system rate).
        let lat = rows
            .aggregate(Requests, "SUM(latency)", KNOWN)?
            .unwrap_or(0.0);
        if lat > 0.0 {
            t.sum_prompt / lat
        } else {
            -1.0
        }
    };
    s.set(Metric::InputThroughput, input_tput);
    Ok(())
}

/// `--enable-pd-metrics`: the means of the PD values, each when it has values.
fn pd_keys(rows: &RunRows, s: &mut Summary) -> Result<()> {
    use super::pd::{mean, PdValues};
    let Some(pd) = PdValues::of_run(rows)? else {
        return Ok(());
    };
    for (m, v) in [
        (Metric::AvgSteadyItl, &pd.steady),
        (Metric::AvgPdHandoffLatency, &pd.handoff),
        (Metric::AvgPdHandoffOverhead, &pd.overhead),
    ] {
        if let Some(x) = mean(v) {
            s.set(m, x * 1000.0);
        }
    }
    Ok(())
}

/// evalscope's multi-turn keys, from the rows' turn index: the mean 1-based turn
/// index of successful turns over all successes, and the mean TTFT of first and of
/// later turns (each when it has turns).
fn multi_turn_keys(rows: &RunRows, t: &Totals, s: &mut Summary) -> Result<()> {
    if !rows.has_column("turn")? || rows.count(Requests, "turn IS NOT NULL")? == 0 {
        return Ok(());
    }
    let turns = rows
        .aggregate(Requests, "SUM(turn)", "success=1 AND turn IS NOT NULL")?
        .unwrap_or(0.0);
    if turns > 0.0 {
        s.set(Metric::AvgTurnsPerRequest, t.per_succ(turns));
    }
    for (m, w) in [
        (Metric::AvgFirstTurnTtft, "success=1 AND turn = 1"),
        (Metric::AvgSubsequentTurnTtft, "success=1 AND turn > 1"),
    ] {
        if let Some(v) = rows.aggregate(Requests, "AVG(COALESCE(first_chunk_latency, 0))", w)? {
            s.set(m, v * 1000.0);
        }
    }
    Ok(())
}

/// evalscope's conditional keys: the KV-cache hit rate (when a server reports cached
/// tokens) and decoded tokens per iteration (when some iteration decoded several).
fn cache_and_decode_keys(rows: &RunRows, s: &mut Summary) -> Result<()> {
    let rate = |cached: &str, w: &str| -> Result<Option<f64>> {
        if rows.count(Requests, w)? == 0 {
            return Ok(None);
        }
        let sum = |col: &str| -> Result<f64> {
            Ok(rows
                .aggregate(Requests, &format!("SUM({col})"), w)?
                .unwrap_or(0.0))
        };
        let (c, p) = (sum(cached)?, sum("prompt_tokens")?);
        Ok(Some(if p > 0.0 { 100.0 * c / p } else { 0.0 }))
    };
    let served = "success=1 AND prompt_tokens > 0";
    if let Some(r) = rate(
        "cached_tokens",
        &format!("{served} AND cached_tokens IS NOT NULL"),
    )? {
        s.set(Metric::KvCacheHitRate, r);
    }
    // evalscope 1.14.1 stores its multi-turn estimate as the turn's cached tokens
    // and reports the mix under the key above; perfscope keeps it apart and names it
    // an estimate, written only when some turn needed one.
    if rows.has_column("cached_tokens_estimate")?
        && rows.count(
            Requests,
            &format!("{served} AND cached_tokens_estimate IS NOT NULL"),
        )? > 0
    {
        let mixed = "COALESCE(cached_tokens, cached_tokens_estimate)";
        if let Some(r) = rate(mixed, &format!("{served} AND {mixed} IS NOT NULL"))? {
            s.set(Metric::EstKvCacheHitRate, r);
        }
    }
    // Decoded tokens per engine iteration L = (tokens − 1)/(chunks − 1), over requests
    // with L > 1 (speculative decoding or multi-token chunks). Chunks are evalscope
    // 1.14's n_decode_chunks (empty deltas after the first output included), else
    // len(ITL) + 1 for databases that do not store them (evalscope's own).
    let chunks = if rows.has_column("decode_chunks")? {
        "COALESCE(NULLIF(decode_chunks, 0), json_array_length(inter_token_latencies) + 1)"
    } else {
        "json_array_length(inter_token_latencies) + 1"
    };
    let n = format!("(CASE WHEN json_valid(inter_token_latencies) THEN {chunks} ELSE 0 END)");
    let l = format!("((completion_tokens - 1) * 1.0 / ({n} - 1))");
    let w = format!("success=1 AND completion_tokens > 1 AND {n} > 1 AND {l} > 1");
    if let Some(l) = rows.aggregate(Requests, &format!("AVG({l})"), &w)? {
        s.set(Metric::AvgDecodedTokPerIter, l);
        s.set(Metric::SpecAcceptRate, (1.0 - 1.0 / l).clamp(0.0, 1.0));
    }
    Ok(())
}

/// perfscope's additions (extra keys only, after evalscope's).
fn perfscope_keys(rows: &RunRows, run: &RunInputs, t: &Totals, s: &mut Summary) -> Result<()> {
    if let Some(g) = &run.goodput {
        let good = rows.count(Requests, &g.condition())?;
        s.set(Metric::GoodputRps, t.per_dur(good as f64));
        let share = if t.total > 0 {
            100.0 * good as f64 / t.total as f64
        } else {
            0.0
        };
        s.set(Metric::GoodputPct, share);
    }
    let first_send = t.start;
    let last_send = rows
        .aggregate(Requests, "MAX(start_time)", "1")?
        .unwrap_or(0.0);
    let measured_rate = if t.total > 1 && last_send > first_send {
        (t.total - 1) as f64 / (last_send - first_send)
    } else {
        -1.0
    };
    s.set(Metric::MeasuredRequestRate, measured_rate);
    let busy = rows
        .aggregate(Requests, "SUM(MAX(end_time - start_time, 0))", "1")?
        .unwrap_or(0.0);
    s.set(Metric::MeasuredConcurrencyAvg, t.per_dur(busy));
    s.set(
        Metric::MeasuredConcurrencyPeak,
        rows.peak_in_flight()? as f64,
    );
    // perfscope's own key: with nothing to average it is unknown (null, "n/a"), not
    // a sentinel in the wrong unit beside evalscope's -1000 ms TTFT.
    match rows.aggregate(Requests, "AVG(time_to_first_event)", ttft_filter(rows)?)? {
        Some(v) => s.set(Metric::AvgTimeToFirstEvent, v * 1000.0),
        None => s.set_unknown(Metric::AvgTimeToFirstEvent),
    }
    let lag = rows
        .aggregate(Requests, "AVG(MAX(start_time - intended_start, 0))", "1")?
        .unwrap_or(0.0);
    s.set(Metric::AvgScheduleLag, lag * 1000.0);
    s.set_failures_by_kind(rows.count_by("COALESCE(failure_kind, 'other')", "success=0")?);
    // Requests resent once because a reused keep-alive connection was closed by the
    // server before any response byte (not failures; timed from the resend).
    let resent = if rows.has_column("resent")? {
        rows.aggregate(Requests, "SUM(resent)", "1")?.unwrap_or(0.0)
    } else {
        0.0
    };
    s.set(Metric::ResentRequests, resent);
    s.set(Metric::NotSentRequests, rows.not_sent()? as f64);
    let (succ, unknown) = (t.succ, t.succ - t.n_known);
    s.set_token_counts(if succ == 0 {
        "none: no request succeeded".into()
    } else if unknown == 0 {
        "server usage".into()
    } else {
        format!(
            "unknown for {unknown} of {succ} successful requests (the server sent no usage; \
             token averages and throughputs cover the rest)"
        )
    });
    Ok(())
}
