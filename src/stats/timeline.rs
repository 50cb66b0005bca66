//! A run on one time axis: at each scrape of the served model, the client's
//! requests in flight and recent TTFT beside the server's running and waiting
//! requests, its TTFT over the same interval and its KV-cache usage.

use anyhow::Result;

use super::catalogue::Metric;
use super::server::source_of;
use crate::store::{Field::*, Filter, RunRows};

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

impl Timeline {
    /// The series by name (the database's `server_timeline` table; gaps as null).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, v) in self.series() {
            let cells = v
                .iter()
                .map(|x| {
                    serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
                })
                .collect();
            m.insert(name.into(), serde_json::Value::Array(cells));
        }
        serde_json::Value::Object(m)
    }
    /// Read back from `to_json` (None when it is not one).
    pub fn from_json(v: &serde_json::Value) -> Option<Timeline> {
        let get = |name: &str| -> Option<Vec<f64>> {
            v.get(name)?
                .as_array()?
                .iter()
                .map(|x| Some(x.as_f64().unwrap_or(f64::NAN)))
                .collect()
        };
        let t = Timeline {
            secs: get("secs")?,
            client_in_flight: get("client_in_flight")?,
            client_ttft_ms: get("client_ttft_ms")?,
            server_running: get("server_running")?,
            server_waiting: get("server_waiting")?,
            server_ttft_ms: get("server_ttft_ms")?,
            server_kv_pct: get("server_kv_pct")?,
        };
        t.series()
            .iter()
            .all(|(_, s)| s.len() == t.secs.len())
            .then_some(t)
    }
    fn series(&self) -> [(&'static str, &Vec<f64>); 7] {
        [
            ("secs", &self.secs),
            ("client_in_flight", &self.client_in_flight),
            ("client_ttft_ms", &self.client_ttft_ms),
            ("server_running", &self.server_running),
            ("server_waiting", &self.server_waiting),
            ("server_ttft_ms", &self.server_ttft_ms),
            ("server_kv_pct", &self.server_kv_pct),
        ]
    }
}

/// The run's timeline; None without server samples.
pub fn timeline(rows: &RunRows) -> Result<Option<Timeline>> {
    let times = rows.scrape_times()?;
    if times.len() < 2 {
        return Ok(None);
    }
    // Every series is sampled at the same scrape times (one source's, in order).
    let index: std::collections::HashMap<u64, usize> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_bits(), i))
        .collect();
    let at = |series: &[(f64, f64)]| -> Vec<f64> {
        let mut out = vec![f64::NAN; times.len()];
        for (ts, v) in series {
            if let Some(&i) = index.get(&ts.to_bits()) {
                out[i] = *v;
            }
        }
        out
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
    t.client_in_flight = in_flight(rows, &times)?;
    t.client_ttft_ms = client_ttft(rows, &times)?;
    for i in 0..times.len() {
        if i == 0 {
            t.server_ttft_ms.push(f64::NAN);
            continue;
        }
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

/// How many values of an ascending stream are ≤ each of the (ascending) times.
fn counts_up_to(times: &[f64], values: &mut dyn Iterator<Item = f64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(times.len());
    let mut values = values.peekable();
    let mut n = 0u64;
    for &t in times {
        while values.next_if(|v| *v <= t).is_some() {
            n += 1;
        }
        out.push(n);
    }
    out
}

/// Requests in flight (sent, not ended) at each time: sends so far minus ends so
/// far, from two sorted scans (one pass over the rows, however many scrapes).
fn in_flight(rows: &RunRows, times: &[f64]) -> Result<Vec<f64>> {
    let sent = rows.sorted(StartUnix, &Filter::All, |_, v| counts_up_to(times, v))?;
    let ended = rows.sorted(EndUnix, &Filter::All, |_, v| counts_up_to(times, v))?;
    Ok(sent
        .iter()
        .zip(&ended)
        .map(|(s, e)| s.saturating_sub(*e) as f64)
        .collect())
}

/// The mean TTFT (ms) of the successful requests whose first token arrived in each
/// scrape interval (NaN for the first scrape and for intervals without one).
fn client_ttft(rows: &RunRows, times: &[f64]) -> Result<Vec<f64>> {
    let mut sums = vec![(0.0f64, 0u64); times.len()];
    let mut i = 0;
    rows.ordered_pairs(
        StartUnix + FirstChunkLatency,
        FirstChunkLatency * 1000.0,
        &Filter::Success,
        |at, ttft| {
            while i < times.len() && times[i] < at {
                i += 1;
            }
            // Interval (times[i-1], times[i]]; none before the first scrape.
            if i > 0 && i < times.len() {
                sums[i].0 += ttft;
                sums[i].1 += 1;
            }
        },
    )?;
    Ok(sums
        .iter()
        .map(|&(s, n)| if n > 0 { s / n as f64 } else { f64::NAN })
        .collect())
}
