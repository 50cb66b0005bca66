//! benchmark_percentile.json's columns from the stored rows: how each column of the
//! catalogue is computed.

use anyhow::Result;

use super::catalogue::Col;
use super::pd::PdValues;
use super::percentile::percentiles_of_sorted;
use super::summary::ttft_filter;
use super::values::Column;
use crate::store::{Build, Expr, Field::*, Filter, RunRows};

/// The value and the rows of a column; `ttft` selects the TTFT rows. None for the
/// PD columns, computed from each row's own gap list (`pd.rs`).
fn spec(col: Col, ttft: &Filter) -> Option<(Expr, Filter)> {
    let ok = Filter::Success;
    let ms = 1000.0;
    Some(match col {
        Col::Latency => (Latency.into(), ok),
        Col::Ttft => (FirstChunkLatency * ms, ttft.clone()),
        Col::Itl => (Gap * ms, ok),
        // evalscope 1.13+: a stream row with TPOT ≤ 0 (one token) is NaN and dropped;
        // a pure non-stream run keeps its zeros.
        Col::Tpot => (
            (TimePerOutputToken * ms)
                .only_where(!Filter::Stream.and(TimePerOutputToken.at_most(0))),
            ttft.clone(),
        ),
        Col::InputTokens => (PromptTokens.into(), ok),
        Col::OutputTokens => (CompletionTokens.into(), ok),
        // Unknown (excluded) when latency ≤ 0: evalscope's NaN.
        Col::OutputTps => (CompletionTokens.per(Latency), ok),
        Col::TotalTps => ((PromptTokens + CompletionTokens).per(Latency), ok),
        Col::DecodeTps => (Expr::Num(1.0).per(TimePerOutputToken), ttft.clone()),
        Col::InputTps => (PromptTokens.per(Latency), ok),
        Col::Ttfe => (TimeToFirstEvent * ms, ttft.clone()),
        Col::ScheduleLag => ((StartTime - IntendedStart).non_negative() * ms, Filter::All),
        Col::SteadyItl | Col::PdHandoffLatency | Col::PdHandoffOverhead => return None,
    })
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
                let Some((expr, filter)) = spec(col, &ttft) else {
                    continue;
                };
                rows.sorted(expr, &filter, |n, values| percentiles_of_sorted(n, values))?
            }
        };
        out.push(Column { col, values });
    }
    Ok(out)
}
