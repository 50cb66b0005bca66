//! The live page's feed: `GET /live/events`, server-sent events, one a second, each
//! the running benchmark's state: stage, progress and ETA, request rate, in flight,
//! TTFT/ITL/latency percentiles over the last second, failures by kind, the served
//! model's running and waiting requests (from its scrape) and the drift ratio.
//!
//! Everything is read from the run's own `/metrics` registry, encoded once a second
//! per open page: nothing is added to the request path or the fan-out, so a page
//! that is not open costs nothing, and one that is costs one encoding a second.
//! Percentiles over a second are estimated from the histograms' bucket deltas as
//! Prometheus' `histogram_quantile` does (linear within a bucket); each carries the
//! trace id of a request in its slowest changed bucket (the bucket's exemplar), so
//! that a slow point links to its row.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::respond::text;
use crate::recorder::prometheus::Metrics;

/// How often an event is sent.
pub const EVERY: Duration = Duration::from_secs(1);

/// What the feed reads: the run's registry, and what the page needs to place it.
#[derive(Clone)]
pub struct Feed {
    pub metrics: Arc<Metrics>,
    /// Requests planned over the invocation (the sum of --number; 0: unknown).
    pub planned: u64,
    /// The run's id in the history (`0/<timestamp>/<name|model>`), for links to rows.
    pub run_id: String,
    pub started: Instant,
    /// `--drift-threshold` when the run keeps windows (`--snapshot-interval`).
    pub drift_threshold: Option<f64>,
    /// `--duration` of each point times the points: a run bounded by time ends by
    /// then whatever its --number.
    pub planned_secs: Option<f64>,
}

/// The histograms shown, by the page's name for them.
const HISTS: &[(&str, &str)] = &[
    ("ttft", "perfscope_time_to_first_token_seconds"),
    ("itl", "perfscope_inter_token_latency_seconds"),
    ("tpot", "perfscope_time_per_output_token_seconds"),
    ("latency", "perfscope_request_latency_seconds"),
];

/// One reading of the registry, summed over stages and shards.
#[derive(Default)]
struct Reading {
    ok: f64,
    failures: BTreeMap<String, f64>,
    by_stage: BTreeMap<String, f64>,
    in_flight: f64,
    target_concurrency: Option<f64>,
    target_rate: Option<f64>,
    /// Per histogram: cumulative counts by upper bound.
    buckets: BTreeMap<&'static str, BTreeMap<u64, f64>>,
    /// Per histogram: the exemplar (trace id, value) of each bucket.
    exemplars: BTreeMap<&'static str, BTreeMap<u64, (String, f64)>>,
    server_running: Option<f64>,
    server_waiting: Option<f64>,
    drift: BTreeMap<String, f64>,
}

fn label<'a>(s: &'a crate::scrape::parse::Sample, k: &str) -> &'a str {
    s.labels
        .iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

/// A bucket bound as a sortable key (bounds are positive; +Inf is largest).
fn bound_key(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(f64::INFINITY.to_bits());
    }
    le.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(f64::to_bits)
}

fn read(text: &str) -> Reading {
    let mut r = Reading::default();
    for s in crate::scrape::parse::parse(text).samples {
        let stage = label(&s, "stage");
        match s.name.as_str() {
            "perfscope_requests_total" => {
                *r.by_stage.entry(stage.to_string()).or_default() += s.value;
                if label(&s, "outcome") == "success" {
                    r.ok += s.value;
                } else {
                    *r.failures
                        .entry(label(&s, "failure_kind").to_string())
                        .or_default() += s.value;
                }
            }
            "perfscope_in_flight_requests" => r.in_flight += s.value,
            "perfscope_target_concurrency" => r.target_concurrency = Some(s.value),
            "perfscope_target_rate_rps" => r.target_rate = Some(s.value),
            "perfscope_server_running_requests" => *r.server_running.get_or_insert(0.0) += s.value,
            "perfscope_server_waiting_requests" => *r.server_waiting.get_or_insert(0.0) += s.value,
            "perfscope_window_drift_ratio" => {
                r.drift.insert(label(&s, "metric").to_string(), s.value);
            }
            name => {
                for &(short, family) in HISTS {
                    if name.strip_suffix("_bucket") == Some(family) {
                        if let Some(k) = bound_key(label(&s, "le")) {
                            *r.buckets.entry(short).or_default().entry(k).or_default() += s.value;
                        }
                    }
                }
            }
        }
    }
    // Exemplars (the sample parser drops them): `…_bucket{…le="x"…} n # {trace_id="t"} v`.
    for line in text.lines() {
        let Some((sample, ex)) = line.split_once(" # {trace_id=\"") else {
            continue;
        };
        let Some(&(short, _)) = HISTS
            .iter()
            .find(|(_, f)| sample.starts_with(&format!("{f}_bucket{{")))
        else {
            continue;
        };
        let le = sample
            .split("le=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .and_then(bound_key);
        let (trace, rest) = ex.split_once("\"}").unwrap_or(("", ""));
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(le), Some(v)) = (le, value) {
            r.exemplars
                .entry(short)
                .or_default()
                .insert(le, (trace.to_string(), v));
        }
    }
    r
}

/// Quantiles of the observations between two readings of a histogram, and the
/// exemplar of the slowest bucket that gained any; None when none were added.
fn window(
    now: &BTreeMap<u64, f64>,
    before: Option<&BTreeMap<u64, f64>>,
    exemplars: Option<&BTreeMap<u64, (String, f64)>>,
) -> Option<Value> {
    let delta: Vec<(f64, f64)> = now
        .iter()
        .map(|(k, c)| {
            let prev = before.and_then(|b| b.get(k)).copied().unwrap_or(0.0);
            (f64::from_bits(*k), (c - prev).max(0.0))
        })
        .collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    if total <= 0.0 {
        return None;
    }
    let q = |q: f64| {
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, cum) in &delta {
            if cum >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let width = cum - lower.1;
                let frac = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return lower.0 + (le - lower.0) * frac;
            }
            lower = (le, cum);
        }
        lower.0
    };
    // The slowest bucket whose own count rose: its exemplar is one of this window's.
    let mut slowest = None;
    let mut prev_cum = 0.0;
    for &(le, cum) in &delta {
        if cum - prev_cum > 0.0 {
            slowest = Some(le);
        }
        prev_cum = cum;
    }
    let ex = slowest
        .and_then(|le| exemplars?.get(&le.to_bits()))
        .map(|(t, v)| json!({"trace_id": t, "value": v}));
    Some(json!({
        "count": total,
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "exemplar": ex,
    }))
}

impl Feed {
    /// One event from a reading and the one a second before.
    fn event(&self, now: &Reading, before: Option<&Reading>, dt: f64) -> Value {
        let done = now.ok + now.failures.values().sum::<f64>();
        let done_before = before.map_or(0.0, |b| b.ok + b.failures.values().sum::<f64>());
        // No rate before a second reading (the first event has nothing to compare).
        let rate = (before.is_some() && dt > 0.0).then(|| (done - done_before) / dt);
        // The stage: the one whose count rose last, else the last created.
        let stage = now
            .by_stage
            .iter()
            .filter(|(s, n)| {
                before
                    .and_then(|b| b.by_stage.get(*s))
                    .is_none_or(|p| *n > p)
            })
            .map(|(s, _)| s.clone())
            .next_back()
            .or_else(|| now.by_stage.keys().next_back().cloned());
        let mut hists = Map::new();
        for &(short, _) in HISTS {
            let w = now.buckets.get(short).and_then(|b| {
                window(
                    b,
                    before.and_then(|p| p.buckets.get(short)),
                    now.exemplars.get(short),
                )
            });
            hists.insert(short.into(), w.unwrap_or(Value::Null));
        }
        let planned = self.planned as f64;
        let by_count = rate
            .filter(|r| planned > 0.0 && *r > 0.0)
            .map(|r| (planned - done).max(0.0) / r);
        let by_time = self
            .planned_secs
            .map(|s| (s - self.started.elapsed().as_secs_f64()).max(0.0));
        let eta = match (by_count, by_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        json!({
            "t": self.started.elapsed().as_secs_f64(),
            "run_id": self.run_id,
            "stage": stage,
            "done": done,
            "ok": now.ok,
            "planned": self.planned,
            "rate": rate,
            "eta_s": eta,
            "in_flight": now.in_flight,
            "target_concurrency": now.target_concurrency,
            "target_rate": now.target_rate,
            "failures": now.failures.iter().filter(|(_, n)| **n > 0.0).collect::<BTreeMap<_, _>>(),
            "percentiles": hists,
            "server": {"running": now.server_running, "waiting": now.server_waiting},
            "drift": now.drift,
            "drift_threshold": self.drift_threshold,
        })
    }
}

/// A response body fed by a channel: each message one SSE frame.
struct Events(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|m| m.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `GET /live/events`: the stream, until the page closes (or the run's listener
/// stops; the browser reconnects by itself while it runs).
pub(super) async fn events(feed: Option<Feed>, _req: Request) -> Response {
    let Some(feed) = feed else {
        return text(
            StatusCode::NOT_FOUND,
            "no live run here: the live page is on a running benchmark's --metrics-addr\n",
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut before: Option<(Reading, Instant)> = None;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let at = Instant::now();
            let now = read(&feed.metrics.encode_openmetrics());
            let dt = before
                .as_ref()
                .map_or(0.0, |(_, t)| at.duration_since(*t).as_secs_f64());
            let ev = feed.event(&now, before.as_ref().map(|(r, _)| r), dt);
            let frame = format!("data: {ev}\n\n");
            if tx.send(Bytes::from(frame)).await.is_err() {
                break;
            }
            before = Some((now, at));
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::new(Events(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_bucket_deltas_and_the_slowest_exemplar() {
        let b = |pairs: &[(f64, f64)]| -> BTreeMap<u64, f64> {
            pairs.iter().map(|(l, c)| (l.to_bits(), *c)).collect()
        };
        let before = b(&[(0.1, 10.0), (0.2, 10.0), (0.4, 10.0), (f64::INFINITY, 10.0)]);
        // 100 new: 50 in (0, 0.1], 40 in (0.1, 0.2], 10 in (0.2, 0.4].
        let now = b(&[
            (0.1, 60.0),
            (0.2, 100.0),
            (0.4, 110.0),
            (f64::INFINITY, 110.0),
        ]);
        let ex: BTreeMap<u64, (String, f64)> = [
            (0.1f64.to_bits(), ("a".to_string(), 0.05)),
            (0.4f64.to_bits(), ("slow".to_string(), 0.33)),
        ]
        .into_iter()
        .collect();
        let w = window(&now, Some(&before), Some(&ex)).unwrap();
        assert_eq!(w["count"], 100.0);
        assert!((w["p50"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        // Rank 90 is the last of (0.1, 0.2]: 0.2.
        assert!((w["p90"].as_f64().unwrap() - 0.2).abs() < 1e-12);
        // Rank 99: 9 of the 10 in (0.2, 0.4] → 0.2 + 0.2 × 0.9.
        assert!((w["p99"].as_f64().unwrap() - 0.38).abs() < 1e-12);
        assert_eq!(w["exemplar"]["trace_id"], "slow");
        assert!(window(&before, Some(&before), None).is_none());
    }

    #[test]
    fn reads_counts_exemplars_and_server_state() {
        let text = "perfscope_requests_total{outcome=\"success\",failure_kind=\"\",stage=\"s1\"} 7\n\
            perfscope_requests_total{outcome=\"failure\",failure_kind=\"timeout\",stage=\"s1\"} 2\n\
            perfscope_server_running_requests{stage=\"s1\"} 3\n\
            perfscope_time_to_first_token_seconds_bucket{le=\"0.5\",stage=\"s1\"} 4 # {trace_id=\"abc\"} 0.41\n\
            perfscope_time_to_first_token_seconds_bucket{le=\"+Inf\",stage=\"s1\"} 7\n";
        let r = read(text);
        assert_eq!(r.ok, 7.0);
        assert_eq!(r.failures["timeout"], 2.0);
        assert_eq!(r.server_running, Some(3.0));
        assert_eq!(r.server_waiting, None);
        assert_eq!(r.buckets["ttft"][&0.5f64.to_bits()], 4.0);
        assert_eq!(
            r.exemplars["ttft"][&0.5f64.to_bits()],
            ("abc".to_string(), 0.41)
        );
    }
}
