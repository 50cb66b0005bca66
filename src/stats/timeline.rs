//! A run on one time axis: at each scrape of the served model, the client's
//! requests in flight and recent TTFT beside the server's running and waiting
//! requests, its TTFT over the same interval and its KV-cache usage.

use anyhow::Result;

use super::catalogue::Metric;
use super::server::source_of;
use crate::store::RunRows;

/// Series aligned on the scrape times (NaN where a value is missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Seconds since the first scrape.
    pub secs: Vec<f64>,
    pub client_in_flight: Vec<f64>,
    /// Mean TTFT (ms) of the requests whose first token arrived since the last scrape.
    pub client_ttft_ms: Vec<f64>,
    pub server_running: Vec<f64>,
    pub server_waiting: Vec<f64>,
    /// The server's mean TTFT (ms) since the last scrape (its histogram's Δsum/Δcount).
    pub server_ttft_ms: Vec<f64>,
    pub server_kv_pct: Vec<f64>,
}

/// The run's timeline; None without server samples.
pub fn timeline(rows: &RunRows) -> Result<Option<Timeline>> {
    let times = rows.scrape_times()?;
    if times.len() < 2 {
        return Ok(None);
    }
    let at = |series: &[(f64, f64)]| -> Vec<f64> {
        times
            .iter()
            .map(|t| {
                series
                    .iter()
                    .find(|(ts, _)| ts == t)
                    .map_or(f64::NAN, |x| x.1)
            })
            .collect()
    };
    let gauge = |metric: Metric, scale: f64| -> Result<Vec<f64>> {
        Ok(match source_of(rows, metric)? {
            Some(name) => at(&rows.server_totals(name)?)
                .into_iter()
                .map(|v| v * scale)
                .collect(),
            None => vec![f64::NAN; times.len()],
        })
    };
    let mut t = Timeline {
        secs: times.iter().map(|x| x - times[0]).collect(),
        server_running: gauge(Metric::ServerPeakRunning, 1.0)?,
        server_waiting: gauge(Metric::ServerPeakWaiting, 1.0)?,
        server_kv_pct: gauge(Metric::ServerPeakKvCacheUsage, 100.0)?,
        ..Timeline::default()
    };
    let (sum, count) = match source_of(rows, Metric::ServerAvgTtft)? {
        Some(h) => (
            at(&rows.server_totals(&format!("{h}_sum"))?),
            at(&rows.server_totals(&format!("{h}_count"))?),
        ),
        None => (vec![f64::NAN; times.len()], vec![f64::NAN; times.len()]),
    };
    for (i, &ts) in times.iter().enumerate() {
        t.client_in_flight.push(rows.in_flight_at(ts)? as f64);
        if i == 0 {
            t.client_ttft_ms.push(f64::NAN);
            t.server_ttft_ms.push(f64::NAN);
            continue;
        }
        t.client_ttft_ms.push(
            rows.mean_ttft_ms_between(times[i - 1], ts)?
                .unwrap_or(f64::NAN),
        );
        // A histogram created mid-run started at 0.
        let (s0, c0) = (sum[i - 1], count[i - 1]);
        let (s0, c0) = if c0.is_nan() { (0.0, 0.0) } else { (s0, c0) };
        let dc = count[i] - c0;
        t.server_ttft_ms.push(if dc > 0.0 {
            1000.0 * (sum[i] - s0) / dc
        } else {
            f64::NAN
        });
    }
    Ok(Some(t))
}
