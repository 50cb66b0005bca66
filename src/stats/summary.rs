//! benchmark_summary.json from the stored rows.

use anyhow::Result;
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::inputs::RunInputs;
use super::percentile::round;
use super::sql::{has_column, one, table_has_column, ttft_filter};

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
    fn read(conn: &Connection) -> Result<Totals> {
        let count = |w: &str| count(conn, w);
        // evalscope 1.14's wall window: rows with a valid interval, failures included.
        let valid = "start_time > 0 AND completed_time >= start_time";
        let start = one::<f64>(
            conn,
            &format!("SELECT MIN(start_time) FROM result WHERE {valid}"),
        )?;
        let end = one::<f64>(
            conn,
            &format!("SELECT MAX(completed_time) FROM result WHERE {valid}"),
        )?;
        let duration = match (start, end) {
            (Some(s), Some(e)) => (e - s).max(0.0),
            _ => 1.0,
        };
        let sum = |col: &str| -> Result<f64> {
            Ok(one::<i64>(
                conn,
                &format!("SELECT SUM({col}) FROM result WHERE {KNOWN}"),
            )?
            .unwrap_or(0) as f64)
        };
        Ok(Totals {
            total: count("1")?,
            succ: count("success=1")?,
            streams: count("is_stream=1")?,
            duration,
            start: start.unwrap_or(0.0),
            n_known: count(KNOWN)?,
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

fn count(conn: &Connection, w: &str) -> Result<u64> {
    Ok(one::<i64>(conn, &format!("SELECT COUNT(*) FROM result WHERE {w}"))?.unwrap_or(0) as u64)
}

fn avg(conn: &Connection, expr: &str, w: &str) -> Result<Option<f64>> {
    one::<f64>(conn, &format!("SELECT AVG({expr}) FROM result WHERE {w}"))
}

fn num(x: f64, dp: usize) -> Value {
    Value::from(round(x, dp))
}

/// benchmark_summary.json, keys in evalscope's order, then our additions.
pub fn summary(conn: &Connection, run: &RunInputs) -> Result<Map<String, Value>> {
    let t = Totals::read(conn)?;
    let mut m = Map::new();
    evalscope_keys(conn, run, &t, &mut m)?;
    cache_and_decode_keys(conn, &mut m)?;
    perfscope_keys(conn, run, &t, &mut m)?;
    Ok(m)
}

/// evalscope's own keys, in its order.
fn evalscope_keys(
    conn: &Connection,
    run: &RunInputs,
    t: &Totals,
    m: &mut Map<String, Value>,
) -> Result<()> {
    let sub = ttft_filter(conn)?;
    // Σ over the TTFT rows / their count; with no success at all evalscope divides
    // by n = 0 and reports -1 (× 1000).
    let avg_ttft = avg(conn, "COALESCE(first_chunk_latency, 0)", sub)?.unwrap_or(-1.0) * 1000.0;
    let avg_tpot = if count(conn, "success=1 AND is_stream=1")? > 0 {
        // evalscope 1.13+: one-token streamed replies have no TPOT and are left out.
        avg(
            conn,
            "time_per_output_token",
            "success=1 AND is_stream=1 AND completion_tokens > 1",
        )?
        .unwrap_or(0.0)
    } else {
        avg(conn, "COALESCE(time_per_output_token, 0)", "success=1")?.unwrap_or(-1.0)
    } * 1000.0;
    let avg_itl = one::<f64>(
        conn,
        "SELECT AVG(j.value) FROM result, json_each(result.inter_token_latencies) AS j WHERE success=1",
    )?
    .map_or(0.0, |v| v * 1000.0);
    let sum_latency =
        one::<f64>(conn, "SELECT SUM(latency) FROM result WHERE success=1")?.unwrap_or(0.0);
    let f = num;
    m.insert("Test Duration (s)".into(), f(t.duration, 4));
    m.insert("Concurrency".into(), run.parallel.into());
    m.insert("Request Rate (req/s)".into(), run.rate.into());
    m.insert("Total Requests".into(), t.total.into());
    m.insert("Success Requests".into(), t.succ.into());
    m.insert("Failed Requests".into(), (t.total - t.succ).into());
    m.insert("Stream Requests".into(), t.streams.into());
    m.insert("Non-Stream Requests".into(), (t.total - t.streams).into());
    m.insert(
        "Req Throughput (req/s)".into(),
        f(t.per_dur(t.succ as f64), 4),
    );
    m.insert("Avg Latency (s)".into(), f(t.per_succ(sum_latency), 4));
    m.insert("Avg Input Tokens".into(), f(t.per_known(t.sum_prompt), 4));
    m.insert(
        "Output Throughput (tok/s)".into(),
        f(t.per_dur(t.sum_completion), 4),
    );
    m.insert(
        "Total Throughput (tok/s)".into(),
        f(t.per_dur(t.sum_prompt + t.sum_completion), 4),
    );
    // evalscope zeroes the generation keys of embedding runs, and emits the
    // embedding-only Input Throughput as 0.0 for LLM runs.
    let gen = |v: f64| if run.encoder { 0.0 } else { v };
    m.insert("Avg TTFT (ms)".into(), f(gen(avg_ttft), 2));
    m.insert("Avg TPOT (ms)".into(), f(gen(avg_tpot), 2));
    m.insert("Avg ITL (ms)".into(), f(gen(avg_itl), 2));
    m.insert(
        "Avg Output Tokens".into(),
        f(t.per_known(t.sum_completion), 4),
    );
    let input_tput = if !run.encoder {
        0.0
    } else {
        // Σ input tokens / Σ per-request latency (a per-request average, as
        // evalscope defines it; Total Throughput is the system rate).
        let lat = one::<f64>(
            conn,
            &format!("SELECT SUM(latency) FROM result WHERE {KNOWN}"),
        )?
        .unwrap_or(0.0);
        if lat > 0.0 {
            t.sum_prompt / lat
        } else {
            -1.0
        }
    };
    m.insert("Input Throughput (tok/s)".into(), f(input_tput, 4));
    Ok(())
}

/// evalscope's conditional keys: the KV-cache hit rate (when a server reports cached
/// tokens) and decoded tokens per iteration (when some iteration decoded several).
fn cache_and_decode_keys(conn: &Connection, m: &mut Map<String, Value>) -> Result<()> {
    let f = num;
    let cached_w = "success=1 AND cached_tokens IS NOT NULL AND prompt_tokens > 0";
    if count(conn, cached_w)? > 0 {
        let c = one::<i64>(
            conn,
            &format!("SELECT SUM(cached_tokens) FROM result WHERE {cached_w}"),
        )?
        .unwrap_or(0);
        let p = one::<i64>(
            conn,
            &format!("SELECT SUM(prompt_tokens) FROM result WHERE {cached_w}"),
        )?
        .unwrap_or(0);
        let rate = if p > 0 {
            100.0 * c as f64 / p as f64
        } else {
            0.0
        };
        m.insert("KV Cache Hit Rate (%)".into(), f(rate, 4));
    }
    // Decoded tokens per engine iteration L = (tokens − 1)/(chunks − 1), over requests
    // with L > 1 (speculative decoding or multi-token chunks). Chunks are evalscope
    // 1.14's n_decode_chunks (empty deltas after the first output included), else
    // len(ITL) + 1 for databases that do not store them (evalscope's own).
    let chunks = if has_column(conn, "decode_chunks")? {
        "COALESCE(NULLIF(decode_chunks, 0), json_array_length(inter_token_latencies) + 1)"
    } else {
        "json_array_length(inter_token_latencies) + 1"
    };
    if let Some(l) = one::<f64>(
        conn,
        &format!(
            "SELECT AVG(l) FROM (SELECT (completion_tokens - 1) * 1.0 / (n - 1) AS l FROM
             (SELECT completion_tokens, CASE WHEN json_valid(inter_token_latencies) THEN {chunks} ELSE 0 END AS n
              FROM result WHERE success=1) WHERE completion_tokens > 1 AND n > 1) WHERE l > 1"
        ),
    )? {
        m.insert("Avg Decoded Tok/Iter".into(), f(l, 4));
        m.insert("Spec. Accept Rate".into(), f((1.0 - 1.0 / l).clamp(0.0, 1.0), 4));
    }
    Ok(())
}

/// perfscope's additions (extra keys only, after evalscope's).
fn perfscope_keys(
    conn: &Connection,
    run: &RunInputs,
    t: &Totals,
    m: &mut Map<String, Value>,
) -> Result<()> {
    let f = num;
    if let Some(g) = &run.goodput {
        let good = count(conn, &g.condition())?;
        m.insert("Goodput (req/s)".into(), f(t.per_dur(good as f64), 4));
        let share = if t.total > 0 {
            100.0 * good as f64 / t.total as f64
        } else {
            0.0
        };
        m.insert("Goodput (%)".into(), f(share, 2));
    }
    let first_send = t.start;
    let last_send = one::<f64>(conn, "SELECT MAX(start_time) FROM result")?.unwrap_or(0.0);
    let measured_rate = if t.total > 1 && last_send > first_send {
        (t.total - 1) as f64 / (last_send - first_send)
    } else {
        -1.0
    };
    m.insert("Measured Request Rate (req/s)".into(), f(measured_rate, 4));
    let busy = one::<f64>(
        conn,
        "SELECT SUM(MAX(end_time - start_time, 0)) FROM result",
    )?
    .unwrap_or(0.0);
    m.insert("Measured Concurrency (avg)".into(), f(t.per_dur(busy), 4));
    m.insert(
        "Measured Concurrency (peak)".into(),
        peak_concurrency(conn)?.into(),
    );
    let ttfe = avg(conn, "time_to_first_event", ttft_filter(conn)?)?.map_or(-1.0, |v| v * 1000.0);
    m.insert("Avg Time to First Event (ms)".into(), f(ttfe, 2));
    let lag = avg(conn, "MAX(start_time - intended_start, 0)", "1")?.unwrap_or(0.0);
    m.insert("Avg Schedule Lag (ms)".into(), f(lag * 1000.0, 2));
    let mut kinds = Map::new();
    let mut st = conn.prepare(
        "SELECT COALESCE(failure_kind, 'other'), COUNT(*) FROM result WHERE success=0 GROUP BY 1 ORDER BY 1",
    )?;
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (k, n) = row?;
        kinds.insert(k, n.into());
    }
    m.insert("Failures by Kind".into(), Value::Object(kinds));
    // Requests resent once because a reused keep-alive connection was closed by the
    // server before any response byte (not failures; timed from the resend).
    let resent = if has_column(conn, "resent")? {
        one::<i64>(conn, "SELECT SUM(resent) FROM result")?.unwrap_or(0)
    } else {
        0
    };
    m.insert("Resent Requests".into(), resent.into());
    // Requests released but never sent because the run was stopped (not rows).
    let not_sent = if table_has_column(conn, "run", "not_sent")? {
        one::<i64>(conn, "SELECT MAX(not_sent) FROM run")?.unwrap_or(0)
    } else {
        0
    };
    m.insert("Not Sent Requests".into(), not_sent.into());
    let (succ, unknown) = (t.succ, t.succ - t.n_known);
    m.insert(
        "Token Counts".into(),
        if unknown == 0 {
            "server usage".into()
        } else {
            format!(
                "unknown for {unknown} of {succ} successful requests (the server sent no usage; \
                 token averages and throughputs cover the rest)"
            )
            .into()
        },
    );
    Ok(())
}

/// Most requests in flight at once (send to end), by a running sum over start (+1)
/// and end (−1) events in time order; ends sort before starts at the same instant.
pub fn peak_concurrency(conn: &Connection) -> Result<u64> {
    Ok(one::<i64>(
        conn,
        "SELECT MAX(c) FROM (SELECT SUM(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS c FROM (
            SELECT start_time AS t, 1 AS d FROM result
            UNION ALL SELECT MAX(end_time, start_time) AS t, -1 AS d FROM result))",
    )?
    .unwrap_or(0)
    .max(0) as u64)
}
