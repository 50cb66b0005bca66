//! benchmark_summary.json from the stored rows.

use anyhow::Result;

use super::catalogue::Metric;
use super::inputs::RunInputs;
use super::values::Summary;
use crate::store::{Agg, Build, Expr, Field::*, Filter, RunRows};

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

/// Successes with both token counts (the token averages and throughputs use only
/// these).
fn known() -> Filter {
    Filter::Success
        .and(PromptTokens.known())
        .and(CompletionTokens.known())
}

/// Successful streams.
fn streams() -> Filter {
    Filter::Success.and(Filter::Stream)
}

impl Totals {
    fn read(rows: &RunRows) -> Result<Totals> {
        // evalscope 1.14's wall window: rows with a valid interval, failures included.
        let valid = StartTime.above(0).and(CompletedTime.at_least(StartTime));
        let start = rows.aggregate(Agg::Min, StartTime, &valid)?;
        let end = rows.aggregate(Agg::Max, CompletedTime, &valid)?;
        let duration = match (start, end) {
            (Some(s), Some(e)) => (e - s).max(0.0),
            _ => 1.0,
        };
        let sum = |tokens| -> Result<f64> {
            Ok(rows.aggregate(Agg::Sum, tokens, &known())?.unwrap_or(0.0))
        };
        Ok(Totals {
            total: rows.count(&Filter::All)?,
            succ: rows.count(&Filter::Success)?,
            streams: rows.count(&Filter::Stream)?,
            duration,
            start: start.unwrap_or(0.0),
            n_known: rows.count(&known())?,
            sum_prompt: sum(PromptTokens)?,
            sum_completion: sum(CompletionTokens)?,
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

/// The rows that count for TTFT/TPOT: successful streams, or all successes when
/// no stream succeeded.
pub(crate) fn ttft_filter(rows: &RunRows) -> Result<Filter> {
    Ok(if rows.count(&streams())? > 0 {
        streams()
    } else {
        Filter::Success
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
    let avg = |expr: Expr, w: &Filter| rows.aggregate(Agg::Avg, expr, w);
    // Σ over the TTFT rows / their count; with no success at all evalscope divides
    // by n = 0 and reports -1 (× 1000).
    let avg_ttft = avg(FirstChunkLatency.or(0), &sub)?.unwrap_or(-1.0) * 1000.0;
    let avg_tpot = if rows.count(&streams())? > 0 {
        // evalscope 1.13+: one-token streamed replies have no TPOT and are left out.
        avg(
            TimePerOutputToken.into(),
            &streams().and(CompletionTokens.above(1)),
        )?
        .unwrap_or(0.0)
    } else {
        avg(TimePerOutputToken.or(0), &Filter::Success)?.unwrap_or(-1.0)
    } * 1000.0;
    let avg_itl = rows
        .aggregate(Agg::Avg, Gap, &Filter::Success)?
        .map_or(0.0, |v| v * 1000.0);
    let sum_latency = rows
        .aggregate(Agg::Sum, Latency, &Filter::Success)?
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
        let lat = rows.aggregate(Agg::Sum, Latency, &known())?.unwrap_or(0.0);
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
    // Unknown in every row of a single-turn run, and of databases without turns.
    if rows.count(&Turn.known())? == 0 {
        return Ok(());
    }
    let turns = rows
        .aggregate(Agg::Sum, Turn, &Filter::Success.and(Turn.known()))?
        .unwrap_or(0.0);
    if turns > 0.0 {
        s.set(Metric::AvgTurnsPerRequest, t.per_succ(turns));
    }
    for (m, w) in [
        (Metric::AvgFirstTurnTtft, Turn.equals(1)),
        (Metric::AvgSubsequentTurnTtft, Turn.above(1)),
    ] {
        let w = Filter::Success.and(w);
        if let Some(v) = rows.aggregate(Agg::Avg, FirstChunkLatency.or(0), &w)? {
            s.set(m, v * 1000.0);
        }
    }
    Ok(())
}

/// evalscope's conditional keys: the KV-cache hit rate (when a server reports cached
/// tokens) and decoded tokens per iteration (when some iteration decoded several).
fn cache_and_decode_keys(rows: &RunRows, s: &mut Summary) -> Result<()> {
    let rate = |cached: Expr| -> Result<Option<f64>> {
        let w = Filter::Success
            .and(PromptTokens.above(0))
            .and(cached.clone().known());
        if rows.count(&w)? == 0 {
            return Ok(None);
        }
        let sum = |e: Expr| -> Result<f64> { Ok(rows.aggregate(Agg::Sum, e, &w)?.unwrap_or(0.0)) };
        let (c, p) = (sum(cached)?, sum(PromptTokens.into())?);
        Ok(Some(if p > 0.0 { 100.0 * c / p } else { 0.0 }))
    };
    if let Some(r) = rate(CachedTokens.into())? {
        s.set(Metric::KvCacheHitRate, r);
    }
    // evalscope 1.14.1 stores its multi-turn estimate as the turn's cached tokens
    // and reports the mix under the key above; perfscope keeps it apart and names it
    // an estimate, written only when some turn needed one.
    let served = Filter::Success.and(PromptTokens.above(0));
    if rows.count(&served.and(CachedTokensEstimate.known()))? > 0 {
        if let Some(r) = rate(CachedTokens.or(CachedTokensEstimate))? {
            s.set(Metric::EstKvCacheHitRate, r);
        }
    }
    // Decoded tokens per engine iteration L = (tokens − 1)/(chunks − 1), over requests
    // with L > 1 (speculative decoding or multi-token chunks). Chunks are evalscope
    // 1.14's n_decode_chunks (empty deltas after the first output included), else
    // len(ITL) + 1 for databases that do not store them (evalscope's own).
    // (L > 1 holds only where tokens > chunks > 1.)
    let l = (CompletionTokens - 1).per(DecodeChunks - 1);
    let w = Filter::Success.and(l.clone().above(1));
    if let Some(l) = rows.aggregate(Agg::Avg, l, &w)? {
        s.set(Metric::AvgDecodedTokPerIter, l);
        s.set(Metric::SpecAcceptRate, (1.0 - 1.0 / l).clamp(0.0, 1.0));
    }
    Ok(())
}

/// perfscope's additions (extra keys only, after evalscope's).
fn perfscope_keys(rows: &RunRows, run: &RunInputs, t: &Totals, s: &mut Summary) -> Result<()> {
    if let Some(g) = &run.goodput {
        let good = rows.count(&g.filter())?;
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
        .aggregate(Agg::Max, StartTime, &Filter::All)?
        .unwrap_or(0.0);
    let measured_rate = if t.total > 1 && last_send > first_send {
        (t.total - 1) as f64 / (last_send - first_send)
    } else {
        -1.0
    };
    s.set(Metric::MeasuredRequestRate, measured_rate);
    let busy = rows
        .aggregate(Agg::Sum, (EndTime - StartTime).non_negative(), &Filter::All)?
        .unwrap_or(0.0);
    s.set(Metric::MeasuredConcurrencyAvg, t.per_dur(busy));
    s.set(
        Metric::MeasuredConcurrencyPeak,
        rows.peak_in_flight()? as f64,
    );
    // perfscope's own key: with nothing to average it is unknown (null, "n/a"), not
    // a sentinel in the wrong unit beside evalscope's -1000 ms TTFT.
    match rows.aggregate(Agg::Avg, TimeToFirstEvent, &ttft_filter(rows)?)? {
        Some(v) => s.set(Metric::AvgTimeToFirstEvent, v * 1000.0),
        None => s.set_unknown(Metric::AvgTimeToFirstEvent),
    }
    let lag = rows
        .aggregate(
            Agg::Avg,
            (StartTime - IntendedStart).non_negative(),
            &Filter::All,
        )?
        .unwrap_or(0.0);
    s.set(Metric::AvgScheduleLag, lag * 1000.0);
    s.set_failures_by_kind(failures_by_kind(rows)?);
    // Requests resent once because a reused keep-alive connection was closed by the
    // server before any response byte (not failures; timed from the resend).
    // (Unknown, so 0, in databases that predate it.)
    let resent = rows
        .aggregate(Agg::Sum, Resent, &Filter::All)?
        .unwrap_or(0.0);
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

/// The failed requests by kind, in the kinds' order; an unclassified failure is
/// `other`.
fn failures_by_kind(rows: &RunRows) -> Result<Vec<(String, u64)>> {
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for (kind, n) in rows.failure_kinds()? {
        *kinds
            .entry(kind.unwrap_or_else(|| "other".into()))
            .or_default() += n;
    }
    Ok(kinds.into_iter().collect())
}
