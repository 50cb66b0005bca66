//! `workload_throughput.json` and `workload_timeline.json` (evalscope 1.14.1's
//! `WorkloadTimeline`): cumulative prompt and completion tokens over wall-clock time,
//! and their rates in three windows that one average would smear together:
//! Overall, the last 30 s, and the steady state (the first 20 % of the run dropped).
//!
//! As evalscope: successful rows in the order they were recorded; the clock starts at
//! the first such row's start; each row is a point at its completion time carrying the
//! running sums of completion tokens, new prompt tokens (prompt − cached, at least 0)
//! and cached prompt tokens. Cached tokens are the server's (`cached_tokens`, 0 when
//! it reported none); evalscope also counts its multi-turn estimate here, perfscope
//! never does (see `summary.rs`).

use anyhow::Result;
use serde_json::{json, Value};

use crate::store::RunRows;

/// The tail window, seconds, and the share of the run the steady state drops.
pub const LAST_WINDOW_S: f64 = 30.0;
pub const WARMUP_FRAC: f64 = 0.2;

/// The four rates' names, in evalscope's order.
pub const RATES: [&str; 4] = [
    "Total Prompt tok/s",
    "New Prompt tok/s",
    "Cached Prompt tok/s",
    "Completion tok/s",
];

/// The column names of the three windows, as evalscope's table heads them.
pub const WINDOWS: [&str; 3] = ["Overall", "Last 30s", "Steady (drop 20%)"];

#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    t: f64,
    completion: i64,
    new_prompt: i64,
    cached: i64,
}

const ORIGIN: Point = Point {
    t: 0.0,
    completion: 0,
    new_prompt: 0,
    cached: 0,
};

/// A run's workload figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `rates[i][w]`: rate `RATES[i]` in window `WINDOWS[w]`, tokens per second.
    pub rates: [[f64; 3]; 4],
    pub n_samples: usize,
    pub wall_time_s: f64,
    wall_start: f64,
    points: Vec<Point>,
}

fn rates_from(points: &[Point], anchor: &Point) -> [f64; 4] {
    let Some(last) = points.last() else {
        return [0.0; 4];
    };
    let dt = last.t - anchor.t;
    if dt <= 0.0 {
        return [0.0; 4];
    }
    let new = (last.new_prompt - anchor.new_prompt) as f64;
    let cached = (last.cached - anchor.cached) as f64;
    let completion = (last.completion - anchor.completion) as f64;
    [(new + cached) / dt, new / dt, cached / dt, completion / dt]
}

/// The latest point with `t <= target` (else the first), scanning in recorded order
/// and stopping at the first point past it, as evalscope's `_find_anchor`.
fn anchor(points: &[Point], target: f64) -> usize {
    if target <= points[0].t {
        return 0;
    }
    let mut chosen = 0;
    for (i, p) in points.iter().enumerate() {
        if p.t <= target {
            chosen = i;
        } else {
            break;
        }
    }
    chosen
}

fn windows(points: &[Point]) -> [[f64; 3]; 4] {
    let wall = points.last().map_or(0.0, |p| p.t.max(0.0));
    let overall = rates_from(points, &ORIGIN);
    let last = if wall <= LAST_WINDOW_S {
        overall
    } else {
        rates_from(points, &points[anchor(points, wall - LAST_WINDOW_S)])
    };
    let steady = if wall <= 0.0 {
        overall
    } else {
        let a = anchor(points, wall * WARMUP_FRAC);
        if a + 1 == points.len() {
            overall
        } else {
            rates_from(points, &points[a])
        }
    };
    let mut out = [[0.0; 3]; 4];
    for (i, row) in out.iter_mut().enumerate() {
        *row = [overall[i], last[i], steady[i]];
    }
    out
}

/// The run's workload figures; None when no request succeeded (evalscope then
/// writes neither file).
pub fn workload(rows: &RunRows) -> Result<Option<Workload>> {
    let mut points = Vec::new();
    let mut wall_start: Option<f64> = None;
    let mut sums = ORIGIN;
    rows.completions_in_order(|start, end, prompt, completion, cached| {
        if end <= 0.0 || end < start {
            return;
        }
        let t0 = *wall_start.get_or_insert(start);
        sums.completion += completion;
        sums.new_prompt += (prompt - cached).max(0);
        sums.cached += cached;
        points.push(Point {
            t: end - t0,
            ..sums
        });
    })?;
    let Some(wall_start) = wall_start else {
        return Ok(None);
    };
    Ok(Some(Workload {
        rates: windows(&points),
        n_samples: points.len(),
        wall_time_s: points.last().map_or(0.0, |p| p.t.max(0.0)),
        wall_start,
        points,
    }))
}

/// Python's `round(x, n)` for the values evalscope rounds.
fn round(x: f64, n: usize) -> f64 {
    super::percentile::round(x, n)
}

impl Workload {
    /// workload_throughput.json.
    pub fn throughput_json(&self) -> Value {
        let rows: Vec<Value> = RATES
            .iter()
            .zip(self.rates.iter())
            .map(|(name, r)| {
                json!({"metric": name, "overall": r[0], "last_window": r[1], "steady_state": r[2]})
            })
            .collect();
        json!({
            "n_samples": self.n_samples,
            "wall_time_s": round(self.wall_time_s, 4),
            "last_window_s": LAST_WINDOW_S,
            "warmup_frac": WARMUP_FRAC,
            "rows": rows,
        })
    }

    /// workload_timeline.json.
    pub fn timeline_json(&self) -> Value {
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|p| {
                json!({"t": round(p.t, 6), "cum_completion": p.completion,
                       "cum_new_prompt": p.new_prompt, "cum_cached_prompt": p.cached})
            })
            .collect();
        json!({"wall_start": self.wall_start, "points": points})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64, completion: i64, new_prompt: i64, cached: i64) -> Point {
        Point {
            t,
            completion,
            new_prompt,
            cached,
        }
    }

    #[test]
    fn windows_as_evalscope() {
        // 100 s of points, 10 completion tokens per second, 5 new and 5 cached
        // prompt tokens per second, then a faster last 30 s (20 completion/s).
        let mut pts = Vec::new();
        for s in 1..=100 {
            let t = s as f64;
            let c = if s <= 70 { 10 * s } else { 700 + 20 * (s - 70) };
            pts.push(p(t, c, 5 * s, 5 * s));
        }
        let w = windows(&pts);
        assert!((w[3][0] - 1300.0 / 100.0).abs() < 1e-9, "overall");
        assert!((w[3][1] - 20.0).abs() < 1e-9, "last 30 s: {}", w[3][1]);
        // Steady: from the point at t = 20 to the end.
        assert!((w[3][2] - (1300.0 - 200.0) / 80.0).abs() < 1e-9);
        assert!((w[0][0] - 10.0).abs() < 1e-9 && (w[1][0] - 5.0).abs() < 1e-9);
        // A run shorter than the window: the last window is the overall rate.
        let short = windows(&pts[..10]);
        assert_eq!(short[3][1], short[3][0]);
        // One point: the steady anchor is the last point, so overall.
        let one = windows(&pts[..1]);
        assert_eq!(one[3][2], one[3][0]);
    }
}
