//! Summary and percentile computation, from the rows stored in SQLite (the canonical
//! store), with evalscope 1.14's definitions (§3.2, §3.3):
//!
//! - `Test Duration (s)` = max(completed_time over successes) − min(start_time over all
//!   requests); when nothing succeeded, the last failure's end time is used instead.
//! - Throughputs divide by that duration; averages divide by the success count; a zero
//!   denominator gives -1, as evalscope.
//! - TTFT and TPOT averages and percentiles use successful *stream* requests, falling
//!   back to all successes when there are none; ITL pools every inter-chunk gap.
//! - Percentiles: sort ascending, take `data[floor(n·p/100)]` (no interpolation), min
//!   and max at the ends, NaN values removed first (evalscope sorts them in
//!   unpredictably), rounded to 2 dp.
//!
//! Requests whose token counts are unknown (server sent no usage and no tokenizer)
//! are left out of token averages and the summary says so.

use anyhow::Result;
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const PERCENTILES: [(u32, &str); 11] = [
    (0, "min"),
    (1, "1%"),
    (5, "5%"),
    (10, "10%"),
    (25, "25%"),
    (50, "50%"),
    (75, "75%"),
    (90, "90%"),
    (95, "95%"),
    (99, "99%"),
    (100, "max"),
];

/// One stored request, as read back for reporting.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub success: bool,
    pub is_stream: bool,
    pub start_time: f64,
    pub completed_time: f64,
    pub end_time: f64,
    pub intended_start: f64,
    pub latency: Option<f64>,
    pub ttft: Option<f64>,
    pub ttfe: Option<f64>,
    pub tpot: Option<f64>,
    pub itl: Vec<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub output_chunks: u64,
    pub failure_kind: Option<String>,
}

pub fn load_rows(conn: &Connection) -> Result<Vec<Row>> {
    let mut st = conn.prepare(
        "SELECT success, is_stream, start_time, completed_time, end_time, intended_start, latency,
                first_chunk_latency, time_to_first_event, time_per_output_token,
                inter_token_latencies, prompt_tokens, completion_tokens, cached_tokens,
                output_chunks, failure_kind
         FROM result ORDER BY seq",
    )?;
    let rows = st.query_map([], |r| {
        let itl: Option<String> = r.get(10)?;
        Ok(Row {
            success: r.get::<_, i64>(0)? != 0,
            is_stream: r.get::<_, Option<i64>>(1)?.unwrap_or(0) != 0,
            start_time: r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
            completed_time: r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
            end_time: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            intended_start: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
            latency: r.get(6)?,
            ttft: r.get(7)?,
            ttfe: r.get(8)?,
            tpot: r.get(9)?,
            itl: itl
                .and_then(|s| serde_json::from_str::<Vec<f64>>(&s).ok())
                .unwrap_or_default(),
            prompt_tokens: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
            completion_tokens: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
            cached_tokens: r.get::<_, Option<i64>>(13)?.map(|v| v.max(0) as u64),
            output_chunks: r.get::<_, Option<i64>>(14)?.unwrap_or(0).max(0) as u64,
            failure_kind: r.get(15)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Python's `round(x, dp)` for the values we produce (correctly rounded decimal).
pub fn round(x: f64, dp: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.dp$}").parse().unwrap_or(x)
}

/// evalscope's floor-index percentile over NaN-free data (sorted here).
pub fn percentile_values(mut data: Vec<f64>) -> Vec<f64> {
    data.retain(|v| v.is_finite());
    data.sort_by(|a, b| a.total_cmp(b));
    let n = data.len();
    PERCENTILES
        .iter()
        .map(|&(p, _)| {
            if n == 0 {
                f64::NAN
            } else if p == 0 {
                data[0]
            } else if p == 100 {
                data[n - 1]
            } else {
                data[((n as f64 * p as f64 / 100.0) as usize).min(n - 1)]
            }
        })
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// Rows whose TTFT/TPOT statistics count: successful streams, else all successes.
fn ttft_subset(rows: &[Row]) -> Vec<&Row> {
    let ok: Vec<&Row> = rows.iter().filter(|r| r.success).collect();
    let streams: Vec<&Row> = ok.iter().copied().filter(|r| r.is_stream).collect();
    if streams.is_empty() {
        ok
    } else {
        streams
    }
}

pub struct RunInputs {
    pub parallel: i64,
    pub rate: f64,
}

/// benchmark_summary.json, keys in evalscope's order, then our additions.
pub fn summary(rows: &[Row], run: &RunInputs) -> Map<String, Value> {
    let ok: Vec<&Row> = rows.iter().filter(|r| r.success).collect();
    let total = rows.len() as u64;
    let succ = ok.len() as u64;
    let start = rows
        .iter()
        .map(|r| r.start_time)
        .fold(f64::INFINITY, f64::min);
    let end = if ok.is_empty() {
        rows.iter()
            .map(|r| r.end_time)
            .fold(f64::NEG_INFINITY, f64::max)
    } else {
        ok.iter()
            .map(|r| r.completed_time)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let duration = if rows.is_empty() {
        0.0
    } else {
        (end - start).max(0.0)
    };
    let per_dur = |x: f64| if duration > 0.0 { x / duration } else { -1.0 };
    let per_succ = |x: f64| if succ > 0 { x / succ as f64 } else { -1.0 };

    let known: Vec<&Row> = ok
        .iter()
        .copied()
        .filter(|r| r.prompt_tokens.is_some() && r.completion_tokens.is_some())
        .collect();
    let sum_prompt: u64 = known.iter().filter_map(|r| r.prompt_tokens).sum();
    let sum_completion: u64 = known.iter().filter_map(|r| r.completion_tokens).sum();
    let per_known = |x: f64| {
        if known.is_empty() {
            -1.0
        } else {
            x / known.len() as f64
        }
    };
    let sub = ttft_subset(rows);
    let avg_ttft = mean(sub.iter().filter_map(|r| r.ttft)).map_or(-1.0, |v| v * 1000.0);
    let avg_tpot = mean(sub.iter().filter_map(|r| r.tpot)).map_or(-1.0, |v| v * 1000.0);
    let itls = ok.iter().flat_map(|r| r.itl.iter().copied());
    let avg_itl = mean(itls).map_or(0.0, |v| v * 1000.0);

    let mut m = Map::new();
    let f = |x: f64, dp: usize| Value::from(round(x, dp));
    m.insert("Test Duration (s)".into(), f(duration, 4));
    m.insert("Concurrency".into(), run.parallel.into());
    m.insert("Request Rate (req/s)".into(), run.rate.into());
    m.insert("Total Requests".into(), total.into());
    m.insert("Success Requests".into(), succ.into());
    m.insert("Failed Requests".into(), (total - succ).into());
    let streams = rows.iter().filter(|r| r.is_stream).count() as u64;
    m.insert("Stream Requests".into(), streams.into());
    m.insert("Non-Stream Requests".into(), (total - streams).into());
    m.insert("Req Throughput (req/s)".into(), f(per_dur(succ as f64), 4));
    m.insert(
        "Avg Latency (s)".into(),
        f(per_succ(ok.iter().filter_map(|r| r.latency).sum()), 4),
    );
    m.insert(
        "Avg Input Tokens".into(),
        f(per_known(sum_prompt as f64), 4),
    );
    m.insert(
        "Output Throughput (tok/s)".into(),
        f(per_dur(sum_completion as f64), 4),
    );
    m.insert(
        "Total Throughput (tok/s)".into(),
        f(per_dur((sum_prompt + sum_completion) as f64), 4),
    );
    m.insert("Avg TTFT (ms)".into(), f(avg_ttft, 2));
    m.insert("Avg TPOT (ms)".into(), f(avg_tpot, 2));
    m.insert("Avg ITL (ms)".into(), f(avg_itl, 2));
    m.insert(
        "Avg Output Tokens".into(),
        f(per_known(sum_completion as f64), 4),
    );
    // evalscope emits the embedding-only key as 0.0 for LLM runs.
    m.insert("Input Throughput (tok/s)".into(), Value::from(0.0));
    let cached: Vec<&Row> = ok
        .iter()
        .copied()
        .filter(|r| r.cached_tokens.is_some())
        .collect();
    if !cached.is_empty() {
        let c: u64 = cached.iter().filter_map(|r| r.cached_tokens).sum();
        let p: u64 = cached.iter().filter_map(|r| r.prompt_tokens).sum();
        let rate = if p > 0 {
            100.0 * c as f64 / p as f64
        } else {
            0.0
        };
        m.insert("KV Cache Hit Rate (%)".into(), f(rate, 4));
    }
    let ls: Vec<f64> = ok
        .iter()
        .filter_map(|r| {
            let n = r.completion_tokens?;
            (n > 1 && r.output_chunks > 1).then(|| (n - 1) as f64 / (r.output_chunks - 1) as f64)
        })
        .filter(|l| *l > 1.0)
        .collect();
    if let Some(l) = mean(ls.iter().copied()) {
        m.insert("Avg Decoded Tok/Iter".into(), f(l, 4));
        m.insert(
            "Spec. Accept Rate".into(),
            f((1.0 - 1.0 / l).clamp(0.0, 1.0), 4),
        );
    }

    // ---- perfscope additions (extra keys only)
    let sends: Vec<f64> = rows.iter().map(|r| r.start_time).collect();
    let first_send = sends.iter().copied().fold(f64::INFINITY, f64::min);
    let last_send = sends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let measured_rate = if rows.len() > 1 && last_send > first_send {
        (rows.len() - 1) as f64 / (last_send - first_send)
    } else {
        -1.0
    };
    m.insert("Measured Request Rate (req/s)".into(), f(measured_rate, 4));
    let busy: f64 = rows
        .iter()
        .map(|r| (r.end_time - r.start_time).max(0.0))
        .sum();
    m.insert("Measured Concurrency (avg)".into(), f(per_dur(busy), 4));
    m.insert(
        "Measured Concurrency (peak)".into(),
        peak_concurrency(rows).into(),
    );
    let ttfe = mean(sub.iter().filter_map(|r| r.ttfe)).map_or(-1.0, |v| v * 1000.0);
    m.insert("Avg Time to First Event (ms)".into(), f(ttfe, 2));
    let lag = mean(
        rows.iter()
            .map(|r| (r.start_time - r.intended_start).max(0.0)),
    )
    .unwrap_or(0.0);
    m.insert("Avg Schedule Lag (ms)".into(), f(lag * 1000.0, 2));
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.success) {
        *kinds
            .entry(r.failure_kind.clone().unwrap_or_else(|| "other".into()))
            .or_default() += 1;
    }
    m.insert(
        "Failures by Kind".into(),
        Value::Object(kinds.into_iter().map(|(k, v)| (k, v.into())).collect()),
    );
    let unknown = ok.len() - known.len();
    m.insert(
        "Token Counts".into(),
        if unknown == 0 {
            "server usage".into()
        } else {
            format!(
                "unknown for {unknown} of {} successful requests (the server sent no usage; \
                 token averages and throughputs cover the rest)",
                ok.len()
            )
            .into()
        },
    );
    m
}

/// Most requests in flight at once (send to end), from the stored times.
pub fn peak_concurrency(rows: &[Row]) -> u64 {
    let mut ev: Vec<(f64, i64)> = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        ev.push((r.start_time, 1));
        ev.push((r.end_time.max(r.start_time), -1));
    }
    // Ends sort before starts at the same instant.
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut peak) = (0i64, 0i64);
    for (_, d) in ev {
        cur += d;
        peak = peak.max(cur);
    }
    peak as u64
}

/// One percentile column: name and values (seconds already scaled).
pub struct Column {
    pub name: &'static str,
    pub values: Vec<f64>,
}

/// benchmark_percentile.json's columns, in evalscope's order, then our additions.
pub fn percentile_columns(rows: &[Row]) -> Vec<Column> {
    let ok: Vec<&Row> = rows.iter().filter(|r| r.success).collect();
    let sub = ttft_subset(rows);
    let col = |name, data: Vec<f64>| Column {
        name,
        values: percentile_values(data),
    };
    let per_lat = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<f64> {
        ok.iter()
            .filter_map(|r| {
                let lat = r.latency?;
                let v = f(r)?;
                Some(if lat > 0.0 { v / lat } else { f64::NAN })
            })
            .collect()
    };
    vec![
        col("Latency (s)", ok.iter().filter_map(|r| r.latency).collect()),
        col(
            "TTFT (ms)",
            sub.iter()
                .filter_map(|r| r.ttft.map(|v| v * 1000.0))
                .collect(),
        ),
        col(
            "ITL (ms)",
            ok.iter()
                .flat_map(|r| r.itl.iter().map(|v| v * 1000.0))
                .collect(),
        ),
        col(
            "TPOT (ms)",
            sub.iter()
                .filter_map(|r| r.tpot.map(|v| v * 1000.0))
                .collect(),
        ),
        col(
            "Input tokens",
            ok.iter()
                .filter_map(|r| r.prompt_tokens.map(|v| v as f64))
                .collect(),
        ),
        col(
            "Output tokens",
            ok.iter()
                .filter_map(|r| r.completion_tokens.map(|v| v as f64))
                .collect(),
        ),
        col(
            "Output (tok/s)",
            per_lat(&|r| r.completion_tokens.map(|v| v as f64)),
        ),
        col(
            "Total (tok/s)",
            per_lat(&|r| Some((r.prompt_tokens? + r.completion_tokens?) as f64)),
        ),
        col(
            "Decode (tok/s)",
            sub.iter()
                .filter_map(|r| r.tpot.map(|t| if t > 0.0 { 1.0 / t } else { f64::NAN }))
                .collect(),
        ),
        col(
            "Time to First Event (ms)",
            sub.iter()
                .filter_map(|r| r.ttfe.map(|v| v * 1000.0))
                .collect(),
        ),
        col(
            "Schedule Lag (ms)",
            rows.iter()
                .map(|r| (r.start_time - r.intended_start).max(0.0) * 1000.0)
                .collect(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_index_percentiles() {
        let data: Vec<f64> = (1..=100).map(|v| v as f64).collect();
        let p = percentile_values(data);
        // p1 = data[1] = 2, p50 = data[50] = 51, p99 = data[99] = 100 (the max).
        assert_eq!(
            p,
            vec![1.0, 2.0, 6.0, 11.0, 26.0, 51.0, 76.0, 91.0, 96.0, 100.0, 100.0]
        );
        assert!(percentile_values(vec![]).iter().all(|v| v.is_nan()));
        assert_eq!(percentile_values(vec![f64::NAN, 3.0])[0], 3.0);
    }

    #[test]
    fn rounding_is_decimal() {
        assert_eq!(round(1.23456, 4), 1.2346);
        assert_eq!(round(2.675, 2), 2.67); // as Python: 2.675 is 2.67499999...
    }

    #[test]
    fn peak() {
        let r = |s, e| Row {
            start_time: s,
            end_time: e,
            ..Default::default()
        };
        assert_eq!(
            peak_concurrency(&[r(0.0, 2.0), r(1.0, 3.0), r(2.0, 4.0)]),
            2
        );
    }
}
