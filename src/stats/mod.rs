//! Summary and percentile computation from the rows stored in SQLite (the canonical
//! store), with evalscope 1.14.1's definitions (its §2.2 and §3):
//!
//! - `Test Duration (s)` spans the rows with a valid interval (start_time > 0 and
//!   completed_time ≥ start_time, failures included): max(completed_time) −
//!   min(start_time); 1.0 when no row qualifies.
//! - Throughputs divide by that duration; averages divide by the success count; a zero
//!   denominator gives -1 (so an all-failed run reports `Avg TTFT (ms)` = -1000.0, as
//!   evalscope).
//! - TTFT averages and percentiles use successful *stream* requests, falling back to
//!   all successes when there are none. Avg TPOT over streams leaves out one-token
//!   replies (0.0 when none is left); the TPOT percentile drops stream rows with
//!   TPOT ≤ 0. ITL pools every gap between output-carrying chunks.
//! - Percentiles: nearest rank, index ⌈n·p/100⌉ − 1 of the ascending values, min and
//!   max at the ends, NaN removed first, rounded to 4 dp.
//!
//! Everything is a SQL aggregate or an ordered scan that SQLite sorts itself, so
//! reporting a run of 200,000 requests (12 million ITL values) needs no more memory
//! than one of 1,000.
//!
//! Requests whose token counts are unknown (server sent no usage and no tokenizer)
//! are left out of token averages and the summary says so.

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

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

/// Python's `round(x, dp)` for the values we produce (correctly rounded decimal).
pub fn round(x: f64, dp: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.dp$}").parse().unwrap_or(x)
}

/// Nearest-rank positions of the percentile points in `n` sorted values (evalscope
/// 1.12+): ⌈n·p/100⌉ − 1, computed in integers.
fn positions(n: usize) -> Vec<usize> {
    PERCENTILES
        .iter()
        .map(|&(p, _)| match p {
            0 => 0,
            100 => n - 1,
            _ => ((n * p as usize).div_ceil(100))
                .saturating_sub(1)
                .min(n - 1),
        })
        .collect()
}

/// Percentile decimals (evalscope 1.13+).
pub const PERCENTILE_DP: usize = 4;

/// evalscope's nearest-rank percentiles of values arriving in ascending order.
pub fn percentiles_of_sorted(n: usize, sorted: impl Iterator<Item = f64>) -> Vec<f64> {
    if n == 0 {
        return vec![f64::NAN; PERCENTILES.len()];
    }
    let want = positions(n);
    let mut out = vec![f64::NAN; want.len()];
    let mut k = 0;
    for (i, v) in sorted.enumerate() {
        while k < want.len() && want[k] == i {
            out[k] = v;
            k += 1;
        }
        if k == want.len() {
            break;
        }
    }
    out
}

/// Percentiles of an unsorted vector (NaN removed first).
pub fn percentile_values(mut data: Vec<f64>) -> Vec<f64> {
    data.retain(|v| v.is_finite());
    data.sort_by(|a, b| a.total_cmp(b));
    percentiles_of_sorted(data.len(), data.into_iter())
}

/// The WHERE clause selecting rows that count for TTFT/TPOT: successful streams,
/// or all successes when no stream succeeded.
fn ttft_filter(conn: &Connection) -> Result<&'static str> {
    let streams: i64 = conn.query_row(
        "SELECT COUNT(*) FROM result WHERE success=1 AND is_stream=1",
        [],
        |r| r.get(0),
    )?;
    Ok(if streams > 0 {
        "success=1 AND is_stream=1"
    } else {
        "success=1"
    })
}

/// Percentiles of one SQL expression (`SELECT <expr> AS v FROM ... WHERE ...`),
/// sorted by SQLite and streamed.
fn sql_percentiles(conn: &Connection, from_where: &str, expr: &str) -> Result<Vec<f64>> {
    let base = format!("SELECT {expr} AS v FROM {from_where}");
    let n: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM ({base}) WHERE v IS NOT NULL"),
        [],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare(&format!(
        "SELECT v FROM ({base}) WHERE v IS NOT NULL ORDER BY v"
    ))?;
    let rows = st.query_map([], |r| r.get::<_, f64>(0))?;
    Ok(percentiles_of_sorted(
        n.max(0) as usize,
        rows.filter_map(|r| r.ok()),
    ))
}

pub struct RunInputs {
    pub parallel: i64,
    pub rate: f64,
    pub goodput: Option<Goodput>,
    /// Embedding / rerank: no output tokens; evalscope's Input Throughput.
    pub encoder: bool,
}

/// vLLM's goodput: a request is good when it succeeded and meets every given bound
/// (milliseconds): TTFT (evalscope's first-chunk TTFT), TPOT and end-to-end latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Goodput {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Goodput {
    /// Parses `--goodput ttft:500 tpot:50 e2el:3000`; None when no bound is given.
    pub fn parse(items: &[String]) -> Result<Option<Goodput>> {
        let mut g = Goodput::default();
        for it in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let Some((k, v)) = it.split_once(':') else {
                anyhow::bail!("--goodput: `{it}` is not KEY:MS (e.g. ttft:500 tpot:50 e2el:3000)");
            };
            let ms: f64 = match v.trim().parse() {
                Ok(x) if x > 0.0 && f64::is_finite(x) => x,
                _ => anyhow::bail!(
                    "--goodput: `{it}`: the bound must be a positive number of milliseconds"
                ),
            };
            let slot = match k.trim() {
                "ttft" => &mut g.ttft_ms,
                "tpot" => &mut g.tpot_ms,
                "e2el" => &mut g.e2el_ms,
                other => {
                    anyhow::bail!("--goodput: unknown metric `{other}`; use ttft, tpot or e2el")
                }
            };
            *slot = Some(ms);
        }
        Ok((g != Goodput::default()).then_some(g))
    }

    /// The SQL condition for a good request.
    fn condition(&self) -> String {
        let mut w = vec!["success=1".to_string()];
        if let Some(t) = self.ttft_ms {
            w.push(format!("first_chunk_latency * 1000.0 <= {t}"));
        }
        if let Some(t) = self.tpot_ms {
            // One-token outputs have no TPOT; they meet any TPOT bound (vLLM counts 0).
            w.push(format!(
                "COALESCE(time_per_output_token, 0) * 1000.0 <= {t}"
            ));
        }
        if let Some(t) = self.e2el_ms {
            w.push(format!("latency * 1000.0 <= {t}"));
        }
        w.join(" AND ")
    }
}

/// Whether the `result` table has a column (databases of older versions, and
/// evalscope's own, lack our later additions).
pub fn has_column(conn: &Connection, name: &str) -> Result<bool> {
    table_has_column(conn, "result", name)
}

fn table_has_column(conn: &Connection, table: &str, name: &str) -> Result<bool> {
    let mut st = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    Ok(st.exists([table, name])?)
}

fn one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Result<Option<T>> {
    Ok(conn
        .query_row(sql, [], |r| r.get::<_, Option<T>>(0))
        .optional()?
        .flatten())
}

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

/// One percentile column: name and values at the PERCENTILES points.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: &'static str,
    pub values: Vec<f64>,
}

/// benchmark_percentile.json's columns, in evalscope's order, then our additions.
pub fn percentile_columns(conn: &Connection, encoder: bool) -> Result<Vec<Column>> {
    let sub = ttft_filter(conn)?;
    let ok = "result WHERE success=1";
    let subset = format!("result WHERE {sub}");
    let lag = (
        "Schedule Lag (ms)",
        "result",
        "MAX(start_time - intended_start, 0) * 1000",
    );
    // evalscope's embedding/rerank columns, then our schedule lag.
    let encoder_specs = [
        ("Latency (s)", ok, "latency"),
        ("Input tokens", ok, "prompt_tokens * 1.0"),
        (
            "Input (tok/s)",
            ok,
            "CASE WHEN latency > 0 THEN prompt_tokens * 1.0 / latency END",
        ),
        lag,
    ];
    let specs: [(&'static str, &str, &str); 11] = [
        ("Latency (s)", ok, "latency"),
        ("TTFT (ms)", &subset, "first_chunk_latency * 1000"),
        (
            "ITL (ms)",
            "result, json_each(result.inter_token_latencies) AS j WHERE success=1",
            "j.value * 1000",
        ),
        // evalscope 1.13+: a stream row with TPOT ≤ 0 (one token) is NaN and dropped;
        // a pure non-stream run keeps its zeros.
        (
            "TPOT (ms)",
            &subset,
            "CASE WHEN is_stream=1 AND time_per_output_token <= 0 THEN NULL ELSE time_per_output_token * 1000 END",
        ),
        ("Input tokens", ok, "prompt_tokens * 1.0"),
        ("Output tokens", ok, "completion_tokens * 1.0"),
        // NULL (excluded) when latency ≤ 0: evalscope's NaN.
        (
            "Output (tok/s)",
            ok,
            "CASE WHEN latency > 0 THEN completion_tokens * 1.0 / latency END",
        ),
        (
            "Total (tok/s)",
            ok,
            "CASE WHEN latency > 0 THEN (prompt_tokens + completion_tokens) * 1.0 / latency END",
        ),
        (
            "Decode (tok/s)",
            &subset,
            "CASE WHEN time_per_output_token > 0 THEN 1.0 / time_per_output_token END",
        ),
        (
            "Time to First Event (ms)",
            &subset,
            "time_to_first_event * 1000",
        ),
        lag,
    ];
    let specs: &[(&'static str, &str, &str)] = if encoder { &encoder_specs } else { &specs };
    specs
        .iter()
        .map(|&(name, from, expr)| {
            Ok(Column {
                name,
                values: sql_percentiles(conn, from, expr)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let data: Vec<f64> = (1..=100).map(|v| v as f64).collect();
        let p = percentile_values(data);
        // p1 = data[0] = 1, p50 = data[49] = 50, p99 = data[98] = 99.
        assert_eq!(
            p,
            vec![1.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0]
        );
        // evalscope 1.14's worked example, n = 10: p1..p10 → 0, p25 → 2, p50 → 4,
        // p75 → 7, p90 → 8, p95 and p99 → 9.
        assert_eq!(positions(10), vec![0, 0, 0, 0, 2, 4, 7, 8, 9, 9, 9]);
        assert_eq!(positions(1), vec![0; 11]);
        assert!(percentile_values(vec![]).iter().all(|v| v.is_nan()));
        assert_eq!(percentile_values(vec![f64::NAN, 3.0])[0], 3.0);
        assert_eq!(percentile_values(vec![7.0]), vec![7.0; 11]);
    }

    #[test]
    fn rounding_is_decimal() {
        assert_eq!(round(1.23456, 4), 1.2346);
        assert_eq!(round(2.675, 2), 2.67); // as Python: 2.675 is 2.67499999...
    }

    #[test]
    fn peak_and_sql_percentiles() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::recorder::sqlite::SCHEMA).unwrap();
        for (s, e, itl) in [
            (0.0, 2.0, "[0.1, 0.3]"),
            (1.0, 3.0, "[0.2]"),
            (2.0, 4.0, "[]"),
        ] {
            conn.execute(
                "INSERT INTO result(start_time,end_time,success,is_stream,inter_token_latencies,latency) VALUES (?1,?2,1,1,?3,?4)",
                rusqlite::params![s, e, itl, e - s],
            )
            .unwrap();
        }
        assert_eq!(peak_concurrency(&conn).unwrap(), 2);
        let cols = percentile_columns(&conn, false).unwrap();
        let itl = cols.iter().find(|c| c.name == "ITL (ms)").unwrap();
        assert_eq!(itl.values[0], 100.0);
        // n = 3: p50 → ⌈1.5⌉ − 1 = index 1.
        assert_eq!(itl.values[5], 200.0);
        assert_eq!(itl.values[10], 300.0);
        let ttft = cols.iter().find(|c| c.name == "TTFT (ms)").unwrap();
        assert!(ttft.values.iter().all(|v| v.is_nan()));
    }
}
