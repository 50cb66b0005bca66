//! `trace_summary.json` of a multi-turn run (evalscope 1.14.1): per conversation
//! ("trace") figures from its successful turns, then their distribution across
//! conversations with numpy's default (linear) percentiles. Values are unrounded.

use anyhow::Result;
use serde_json::{json, Value};

use crate::store::{RunRows, TurnRow};

const METRICS: [&str; 6] = [
    "Latency (s)",
    "First-Turn TTFT (s)",
    "TTFAT (s)",
    "Decode TPS",
    "Cache Hit Rate (%)",
    "Eligible Cache Hit Rate (%)",
];

/// The six figures of one conversation's successful turns (in turn order).
fn per_trace(turns: &[TurnRow]) -> [f64; 6] {
    let (first, last) = (&turns[0], &turns[turns.len() - 1]);
    let decode: Vec<f64> = turns
        .iter()
        .filter(|t| t.completion > 1 && t.latency > t.ttft)
        .map(|t| (t.completion - 1) as f64 / (t.latency - t.ttft))
        .collect();
    let ratio = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
    let cached: i64 = turns.iter().map(|t| t.cached).sum();
    let prompt: i64 = turns.iter().map(|t| t.prompt).sum();
    // Eligible: what the previous turn left in the cache (its prompt + completion).
    let (mut el_cached, mut eligible) = (0i64, 0i64);
    for w in turns.windows(2) {
        let e = w[0].prompt + w[0].completion;
        if e > 0 {
            el_cached += w[1].cached;
            eligible += e;
        }
    }
    [
        last.end - first.start,
        first.ttft,
        last.start + last.ttft - first.start,
        if decode.is_empty() {
            0.0
        } else {
            decode.iter().sum::<f64>() / decode.len() as f64
        },
        ratio(cached as f64, prompt as f64),
        ratio(el_cached as f64, eligible as f64),
    ]
}

/// numpy's default percentile: position (n − 1)·p/100, interpolated linearly.
fn linear(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (h - lo as f64)
}

/// The file's content, or None when no conversation had a successful turn.
pub fn trace_summary(rows: &RunRows) -> Result<Option<Value>> {
    let turns = rows.session_turns()?;
    let mut traces: Vec<[f64; 6]> = Vec::new();
    for group in turns.chunk_by(|a, b| a.session == b.session) {
        traces.push(per_trace(group));
    }
    if traces.is_empty() {
        return Ok(None);
    }
    // evalscope's cache rates mix in its multi-turn estimate where the server
    // reported no cached tokens; perfscope names such rows an estimate.
    let estimated = turns.iter().any(|t| t.estimated);
    let rows: Vec<Value> = METRICS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = if estimated && name.contains("Cache Hit") {
                format!("Estimated {name}")
            } else {
                name.to_string()
            };
            let mut v: Vec<f64> = traces.iter().map(|t| t[i]).collect();
            v.sort_by(f64::total_cmp);
            json!({
                "metric": name,
                "mean": v.iter().sum::<f64>() / v.len() as f64,
                "min": v[0],
                "p50": linear(&v, 50.0),
                "p90": linear(&v, 90.0),
                "p95": linear(&v, 95.0),
                "p99": linear(&v, 99.0),
                "max": v[v.len() - 1],
            })
        })
        .collect();
    Ok(Some(json!({"n_traces": traces.len(), "rows": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn: (start, ttft, latency) in seconds, (prompt, completion, cached) tokens.
    fn turn(t: (f64, f64, f64), tokens: (i64, i64, i64)) -> TurnRow {
        TurnRow {
            session: "a".into(),
            turn: 1,
            start: t.0,
            end: t.0 + t.2,
            ttft: t.1,
            latency: t.2,
            prompt: tokens.0,
            completion: tokens.1,
            cached: tokens.2,
            estimated: false,
        }
    }

    #[test]
    fn per_trace_figures() {
        let t = per_trace(&[
            turn((10.0, 0.5, 2.5), (100, 11, 0)),
            turn((13.0, 0.2, 1.2), (150, 6, 96)),
        ]);
        assert_eq!(t[0], 14.2 - 10.0);
        assert_eq!(t[1], 0.5);
        assert!((t[2] - 3.2).abs() < 1e-12);
        // (10/2.0 + 5/1.0)/2 = 5.
        assert!((t[3] - 5.0).abs() < 1e-12);
        assert!((t[4] - 100.0 * 96.0 / 250.0).abs() < 1e-12);
        assert!((t[5] - 100.0 * 96.0 / 111.0).abs() < 1e-12);
        assert_eq!(linear(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(linear(&[1.0, 2.0, 3.0, 4.0], 90.0), 1.0 + 2.7);
    }
}
