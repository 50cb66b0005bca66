//! benchmark_percentile.json's columns from the stored rows.

use anyhow::Result;
use rusqlite::Connection;

use super::sql::{sql_percentiles, ttft_filter};

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
