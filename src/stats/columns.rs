//! benchmark_percentile.json's columns from the stored rows: how each column of the
//! catalogue is computed.

use anyhow::Result;

use super::catalogue::Col;
use super::pd::PdValues;
use super::percentile::percentiles_of_sorted;
use super::summary::ttft_filter;
use super::values::Column;
use crate::store::{Rows, RunRows};

/// The rows, the value expression and the filter of a column; `ttft` is the filter
/// of the TTFT rows.
fn spec(col: Col, ttft: &'static str) -> (Rows, &'static str, &'static str) {
    let ok = "success=1";
    match col {
        Col::Latency => (Rows::Requests, "latency", ok),
        Col::Ttft => (Rows::Requests, "first_chunk_latency * 1000", ttft),
        Col::Itl => (Rows::ItlGaps, "j.value * 1000", ok),
        // evalscope 1.13+: a stream row with TPOT ≤ 0 (one token) is NaN and dropped;
        // a pure non-stream run keeps its zeros.
        Col::Tpot => (
            Rows::Requests,
            "CASE WHEN is_stream=1 AND time_per_output_token <= 0 THEN NULL ELSE time_per_output_token * 1000 END",
            ttft,
        ),
        Col::InputTokens => (Rows::Requests, "prompt_tokens * 1.0", ok),
        Col::OutputTokens => (Rows::Requests, "completion_tokens * 1.0", ok),
        // NULL (excluded) when latency ≤ 0: evalscope's NaN.
        Col::OutputTps => (
            Rows::Requests,
            "CASE WHEN latency > 0 THEN completion_tokens * 1.0 / latency END",
            ok,
        ),
        Col::TotalTps => (
            Rows::Requests,
            "CASE WHEN latency > 0 THEN (prompt_tokens + completion_tokens) * 1.0 / latency END",
            ok,
        ),
        Col::DecodeTps => (
            Rows::Requests,
            "CASE WHEN time_per_output_token > 0 THEN 1.0 / time_per_output_token END",
            ttft,
        ),
        Col::InputTps => (
            Rows::Requests,
            "CASE WHEN latency > 0 THEN prompt_tokens * 1.0 / latency END",
            ok,
        ),
        Col::Ttfe => (Rows::Requests, "time_to_first_event * 1000", ttft),
        // Computed from each row's own gap list (`pd.rs`), not by SQL.
        Col::SteadyItl | Col::PdHandoffLatency | Col::PdHandoffOverhead => {
            (Rows::Requests, "NULL", "0")
        }
        Col::ScheduleLag => (
            Rows::Requests,
            "MAX(start_time - intended_start, 0) * 1000",
            "1",
        ),
    }
}

/// benchmark_percentile.json's columns of a run, in the catalogue's order.
pub fn percentile_columns(rows: &RunRows, encoder: bool) -> Result<Vec<Column>> {
    let ttft = ttft_filter(rows)?;
    let pd = PdValues::of_run(rows)?;
    let mut out = Vec::new();
    for col in Col::of_run(encoder) {
        let pd_list = match col {
            Col::SteadyItl => Some(pd.as_ref().map(|p| &p.steady)),
            Col::PdHandoffLatency => Some(pd.as_ref().map(|p| &p.handoff)),
            Col::PdHandoffOverhead => Some(pd.as_ref().map(|p| &p.overhead)),
            _ => None,
        };
        let values = match pd_list {
            // evalscope: each PD column appears only when its list is non-empty.
            Some(None) => continue,
            Some(Some(v)) if v.is_empty() => continue,
            Some(Some(v)) => {
                let mut ms: Vec<f64> = v.iter().map(|x| x * 1000.0).collect();
                ms.sort_by(f64::total_cmp);
                percentiles_of_sorted(ms.len(), ms.into_iter())
            }
            None => {
                let (from, expr, filter) = spec(col, ttft);
                rows.sorted(from, expr, filter, |n, values| {
                    percentiles_of_sorted(n, values)
                })?
            }
        };
        out.push(Column { col, values });
    }
    Ok(out)
}
