//! Summary and percentile computation from the rows stored in SQLite (the canonical
//! store), with evalscope 1.14.1's definitions:
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
//! The metrics themselves are declared once, in `catalogue.rs`; the rows come from
//! the store (`store::RunRows`: aggregates and sorted scans, so reporting a run of
//! 200,000 requests needs no more memory than one of 1,000).
//!
//! Requests whose token counts are unknown (server sent no usage and no tokenizer)
//! are left out of token averages and the summary says so.

pub mod catalogue;
mod columns;
mod inputs;
mod pd;
mod percentile;
pub(crate) mod server;
mod summary;
mod timeline;
mod traces;
mod values;
pub mod workload;

pub use catalogue::{Col, Direction, Metric};
pub use columns::percentile_columns;
pub use inputs::{Goodput, RunInputs};
pub use percentile::{percentile_values, percentiles_of_sorted, round, PERCENTILES, PERCENTILE_DP};
pub use summary::summary;
pub use timeline::{timeline, Timeline};
pub use traces::trace_summary;
pub use values::{percentile_of, Column, PercentileRow, Summary};
pub use workload::{workload, Workload};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunRows;
    use percentile::positions;
    use rusqlite::Connection;

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
        conn.execute_batch(crate::store::SCHEMA).unwrap();
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
        let rows = RunRows::from_connection(conn);
        assert_eq!(rows.peak_in_flight().unwrap(), 2);
        let cols = percentile_columns(&rows, false).unwrap();
        let itl = cols.iter().find(|c| c.col == Col::Itl).unwrap();
        assert_eq!(itl.values[0], 100.0);
        // n = 3: p50 → ⌈1.5⌉ − 1 = index 1.
        assert_eq!(itl.values[5], 200.0);
        assert_eq!(itl.values[10], 300.0);
        let ttft = cols.iter().find(|c| c.col == Col::Ttft).unwrap();
        assert!(ttft.values.iter().all(|v| v.is_nan()));
    }
}
