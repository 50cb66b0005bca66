//! Periodic summaries of a long run (`--snapshot-interval`, `--duration` runs): the
//! fan-out gathers each window's requests into fixed-size log histograms (memory
//! stays flat however long the run), and at each window's end writes one line of
//! `timeseries.jsonl` in the run directory and hands the snapshot on (trackers'
//! history, the live drift gauges). A window holds the requests that ended in it.
//!
//! Drift: once three windows are closed, each window's TTFT and TPOT p50 are
//! compared with the steady state's, the median of the p50s of the windows after
//! the first 20 % of the run; more than `--drift-threshold` worse is flagged.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

use crate::record::RequestRecord;

/// The file in each run directory.
pub const FILE: &str = "timeseries.jsonl";
/// Windows before drift is judged.
pub const DRIFT_MIN_WINDOWS: usize = 3;
/// The share of the run's windows the steady state drops (as the workload windows).
pub const STEADY_DROP: f64 = 0.2;
/// A window closes this long after its end even if no later request ended, so a
/// request still queued for the fan-out lands in its own window.
const CLOSE_GRACE_S: f64 = 1.0;

/// A histogram with buckets 1 % apart from 1 µs up: a percentile from it is within
/// 0.5 % of the exact value, in a fixed 9 KB.
struct LogHist {
    counts: Vec<u32>,
    n: u64,
    sum: f64,
}

const LOG_BASE: f64 = 1.01;
const LOG_MIN: f64 = 1e-6;
const LOG_BUCKETS: usize = 2400;

impl LogHist {
    fn new() -> LogHist {
        LogHist {
            counts: vec![0; LOG_BUCKETS],
            n: 0,
            sum: 0.0,
        }
    }
    fn add(&mut self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        let i = if v <= LOG_MIN {
            0
        } else {
            ((v / LOG_MIN).ln() / LOG_BASE.ln()).ceil() as usize
        };
        self.counts[i.min(LOG_BUCKETS - 1)] += 1;
        self.n += 1;
        self.sum += v;
    }
    /// The bucket holding rank ⌈q·n⌉, as its geometric middle.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                let hi = LOG_MIN * LOG_BASE.powi(i as i32);
                return Some(if i == 0 { hi } else { hi / LOG_BASE.sqrt() });
            }
        }
        None
    }
    fn figures(&self, scale: f64) -> Option<Figures> {
        Some(Figures {
            mean: self.sum / self.n.max(1) as f64 * scale,
            p50: self.quantile(0.5)? * scale,
            p90: self.quantile(0.9)? * scale,
            p99: self.quantile(0.99)? * scale,
        })
    }
    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.n = 0;
        self.sum = 0.0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// The drift of one window against the steady state (None before
/// DRIFT_MIN_WINDOWS windows, or without the values).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub steady_ttft_p50_ms: Option<f64>,
    pub steady_tpot_p50_ms: Option<f64>,
    /// This window's p50 over the steady state's (1.0 = no change).
    pub ttft_p50_ratio: Option<f64>,
    pub tpot_p50_ratio: Option<f64>,
    /// `ttft` and/or `tpot` when worse than the steady state by more than the
    /// threshold.
    pub flagged: Vec<String>,
}

/// One line of `timeseries.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stage: String,
    pub window: u64,
    /// Seconds since the run's measured start: the window's start and end.
    pub start_s: f64,
    pub end_s: f64,
    pub end_unix: f64,
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error_rate: f64,
    /// Successful requests per second of the window.
    pub request_throughput: f64,
    pub output_token_throughput: f64,
    pub input_token_throughput: f64,
    pub ttft_ms: Option<Figures>,
    pub tpot_ms: Option<Figures>,
    pub latency_s: Option<Figures>,
    pub drift: Drift,
}

impl Snapshot {
    /// A sentence for the summary when this window drifted.
    pub fn drift_note(&self) -> Option<String> {
        let d = &self.drift;
        let parts: Vec<String> = d
            .flagged
            .iter()
            .filter_map(|k| {
                let (now, steady, ratio) = match k.as_str() {
                    "ttft" => (self.ttft_ms?.p50, d.steady_ttft_p50_ms?, d.ttft_p50_ratio?),
                    _ => (self.tpot_ms?.p50, d.steady_tpot_p50_ms?, d.tpot_p50_ratio?),
                };
                Some(format!(
                    "{} p50 {now:.1} ms in the window ending at {:.0} s is {:.0} % over the steady state's {steady:.1} ms",
                    k.to_uppercase(),
                    self.end_s,
                    (ratio - 1.0) * 100.0
                ))
            })
            .collect();
        (!parts.is_empty()).then(|| format!("drift: {}", parts.join("; ")))
    }
}

/// Reads a run directory's snapshots (none when the file is absent); a line that
/// does not parse (a run killed mid-write) is skipped.
pub fn read(dir: &std::path::Path) -> Vec<Snapshot> {
    std::fs::read_to_string(dir.join(FILE))
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A window's TTFT and TPOT p50 (ms).
type P50s = (Option<f64>, Option<f64>);

/// What one window gathers.
struct Acc {
    requests: u64,
    failed: u64,
    output_tokens: u64,
    input_tokens: u64,
    ttft: LogHist,
    tpot: LogHist,
    latency: LogHist,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            requests: 0,
            failed: 0,
            output_tokens: 0,
            input_tokens: 0,
            ttft: LogHist::new(),
            tpot: LogHist::new(),
            latency: LogHist::new(),
        }
    }
    /// Empties it for the next window, keeping the histograms' memory.
    fn clear(&mut self) {
        self.requests = 0;
        self.failed = 0;
        self.output_tokens = 0;
        self.input_tokens = 0;
        self.ttft.clear();
        self.tpot.clear();
        self.latency.clear();
    }
}

pub struct Snapshots {
    stage: String,
    interval: f64,
    threshold: f64,
    path: PathBuf,
    file: Option<std::fs::File>,
    /// The file could not be created (said once).
    unwritable: bool,
    /// The run's measured start (the first request's scheduled start) and the open
    /// window's start, in clock seconds; None before the first request.
    origin: Option<f64>,
    window_start: f64,
    index: u64,
    acc: Acc,
    /// Every closed window's (TTFT p50, TPOT p50): two numbers per window.
    p50s: Vec<P50s>,
    clock: crate::record::Clock,
    on_snapshot: Box<dyn Fn(&Snapshot) + Send>,
}

impl Snapshots {
    /// Windows of `interval` seconds from the first request's scheduled start,
    /// written to `dir/timeseries.jsonl`.
    pub fn new(
        stage: &str,
        dir: &std::path::Path,
        interval: f64,
        threshold: f64,
        clock: crate::record::Clock,
        on_snapshot: Box<dyn Fn(&Snapshot) + Send>,
    ) -> Snapshots {
        Snapshots {
            stage: stage.to_string(),
            interval,
            threshold,
            path: dir.join(FILE),
            file: None,
            unwritable: false,
            origin: None,
            window_start: 0.0,
            index: 0,
            acc: Acc::new(),
            p50s: Vec::new(),
            clock,
            on_snapshot,
        }
    }

    /// When the open window must be closed even if no request ends (clock seconds;
    /// None before the first request), and how long that is from now.
    pub fn due(&self) -> Option<(f64, std::time::Duration)> {
        self.origin?;
        let due = self.window_start + self.interval + CLOSE_GRACE_S;
        let wait = std::time::Duration::from_secs_f64((due - self.clock.now()).max(0.0));
        Some((due, wait))
    }

    pub fn observe(&mut self, r: &RequestRecord) {
        if self.origin.is_none() {
            let t = r.timeline.intended_start.min(r.timeline.send);
            self.origin = Some(t);
            self.window_start = t;
        }
        while r.timeline.end >= self.window_start + self.interval {
            self.close(self.window_start + self.interval);
        }
        let a = &mut self.acc;
        a.requests += 1;
        if !r.success {
            a.failed += 1;
            return;
        }
        a.output_tokens += r.completion_tokens.unwrap_or(0);
        a.input_tokens += r.prompt_tokens.unwrap_or(0);
        if let Some(v) = r.ttft() {
            a.ttft.add(v);
        }
        if let Some(v) = r.tpot().filter(|_| r.completion_tokens.unwrap_or(0) > 1) {
            a.tpot.add(v);
        }
        if let Some(v) = r.latency() {
            a.latency.add(v);
        }
    }

    /// Closes the windows that ended over CLOSE_GRACE_S ago (the timer's tick).
    pub fn tick(&mut self) {
        let now = self.clock.now();
        while self.origin.is_some() && now >= self.window_start + self.interval + CLOSE_GRACE_S {
            self.close(self.window_start + self.interval);
        }
    }

    /// Closes the last, partial window at the last request's end, when it holds a
    /// request and follows a full one (a run shorter than one window has its
    /// summary, not a time series).
    pub fn finish(mut self, last_end: f64) {
        if self.acc.requests > 0 && self.index > 0 {
            self.close(last_end.max(self.window_start));
        }
    }

    fn close(&mut self, end: f64) {
        let a = &mut self.acc;
        let secs = (end - self.window_start).max(1e-9);
        let ok = a.requests - a.failed;
        let origin = self.origin.unwrap_or(self.window_start);
        // Microseconds: window edges are sums of the interval (10.000000000000002).
        let us = |x: f64| (x * 1e6).round() / 1e6;
        let mut s = Snapshot {
            stage: self.stage.clone(),
            window: self.index,
            start_s: us(self.window_start - origin),
            end_s: us(end - origin),
            end_unix: self.clock.unix(end),
            requests: a.requests,
            succeeded: ok,
            failed: a.failed,
            error_rate: if a.requests > 0 {
                a.failed as f64 / a.requests as f64
            } else {
                0.0
            },
            request_throughput: ok as f64 / secs,
            output_token_throughput: a.output_tokens as f64 / secs,
            input_token_throughput: a.input_tokens as f64 / secs,
            ttft_ms: a.ttft.figures(1000.0),
            tpot_ms: a.tpot.figures(1000.0),
            latency_s: a.latency.figures(1.0),
            drift: Drift::default(),
        };
        self.p50s
            .push((s.ttft_ms.map(|f| f.p50), s.tpot_ms.map(|f| f.p50)));
        s.drift = self.drift();
        self.write(&s);
        (self.on_snapshot)(&s);
        self.acc.clear();
        self.window_start = end;
        self.index += 1;
    }

    /// The last closed window against the steady state.
    fn drift(&self) -> Drift {
        let n = self.p50s.len();
        let mut d = Drift::default();
        if n < DRIFT_MIN_WINDOWS {
            return d;
        }
        let steady = &self.p50s[(n as f64 * STEADY_DROP).floor() as usize..];
        let median = |pick: fn(&P50s) -> Option<f64>| {
            let mut v: Vec<f64> = steady.iter().filter_map(pick).collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        };
        d.steady_ttft_p50_ms = median(|p| p.0);
        d.steady_tpot_p50_ms = median(|p| p.1);
        let (ttft, tpot) = self.p50s[n - 1];
        let ratio = |now: Option<f64>, base: Option<f64>| match (now, base) {
            (Some(x), Some(b)) if b > 0.0 => Some(x / b),
            _ => None,
        };
        d.ttft_p50_ratio = ratio(ttft, d.steady_ttft_p50_ms);
        d.tpot_p50_ratio = ratio(tpot, d.steady_tpot_p50_ms);
        for (k, r) in [("ttft", d.ttft_p50_ratio), ("tpot", d.tpot_p50_ratio)] {
            if r.is_some_and(|r| r > 1.0 + self.threshold) {
                d.flagged.push(k.into());
            }
        }
        d
    }

    /// Appends the line; the file is created with the first window. A write error
    /// is logged once and the series goes on in memory (the rows are what matters).
    fn write(&mut self, s: &Snapshot) {
        if self.file.is_none() && !self.unwritable {
            match std::fs::File::create(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    crate::telemetry::log::warn(format!(
                        "cannot write {}: {e}; the time series is not saved",
                        self.path.display()
                    ));
                    self.unwritable = true;
                }
            }
        }
        if let (Some(f), Ok(line)) = (self.file.as_mut(), serde_json::to_string(s)) {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_histogram_percentiles_are_within_half_a_percent() {
        let mut h = LogHist::new();
        for i in 1..=1000 {
            h.add(i as f64 / 1000.0);
        }
        for (q, exact) in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99)] {
            let v = h.quantile(q).unwrap();
            assert!((v / exact - 1.0).abs() < 0.006, "{q}: {v}");
        }
        assert!((h.figures(1.0).unwrap().mean - 0.5005).abs() < 1e-9);
    }
}
