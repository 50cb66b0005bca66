//! Stop rules, checked on each finished record in the fan-out: `--max-error-rate`
//! (the whole run or a sliding window) and `--stop-on-saturation` (the achieved
//! rate falls behind the offered rate while the delay keeps rising). A tripped rule
//! returns the sentence that names it and the figures that tripped it; the engine
//! then stops dispatching and lets the requests in flight finish.

use std::collections::VecDeque;

use crate::record::RequestRecord;
use crate::slo::{StopRules, MIN_REQUESTS_FOR_ERROR_RATE};

/// Saturation is judged over consecutive windows of this many seconds.
pub const SATURATION_WINDOW_S: f64 = 5.0;
/// How many consecutive windows must show it.
pub const SATURATION_WINDOWS: usize = 3;
/// Each window's achieved rate is below this share of the offered rate.
pub const SATURATION_BEHIND: f64 = 0.9;
/// Each window's mean delay exceeds the previous window's by more than this share.
pub const SATURATION_RISE: f64 = 0.1;

/// One closed saturation window: requests finished per second, and the mean delay
/// from each request's intended start to its end (queueing for a slot included).
#[derive(Clone, Copy, Debug)]
struct Window {
    achieved: f64,
    delay: f64,
}

pub struct Guard {
    rules: StopRules,
    /// The rate this process offers (the point's `--rate`, its shard's share).
    offered: f64,
    total: u64,
    failed: u64,
    /// The sliding window's (end time, failed) pairs.
    recent: VecDeque<(f64, bool)>,
    recent_failed: u64,
    /// The saturation window being filled: its start, count and delay sum.
    open: Option<(f64, u64, f64)>,
    closed: VecDeque<Window>,
    tripped: bool,
}

impl Guard {
    /// None when no rule is set. `offered`: the offered rate in req/s (≤ 0: none).
    pub fn new(rules: StopRules, offered: f64) -> Option<Guard> {
        (!rules.is_empty()).then(|| Guard {
            rules,
            offered,
            total: 0,
            failed: 0,
            recent: VecDeque::new(),
            recent_failed: 0,
            open: None,
            closed: VecDeque::new(),
            tripped: false,
        })
    }

    /// Takes a finished record; returns why the run must stop, once.
    pub fn observe(&mut self, r: &RequestRecord) -> Option<String> {
        if self.tripped {
            return None;
        }
        let why = self
            .error_rate(r)
            .or_else(|| self.saturation(r).filter(|_| self.rules.saturation));
        self.tripped = why.is_some();
        why
    }

    fn error_rate(&mut self, r: &RequestRecord) -> Option<String> {
        let rule = self.rules.max_error_rate?;
        self.total += 1;
        self.failed += u64::from(!r.success);
        let pct = |f: u64, n: u64| 100.0 * f as f64 / n as f64;
        let Some(w) = rule.window_s else {
            let (f, n) = (self.failed, self.total);
            return (n >= MIN_REQUESTS_FOR_ERROR_RATE && f as f64 > rule.ratio * n as f64).then(
                || {
                    format!(
                        "--max-error-rate {}: {f} of {n} requests failed ({:.1} %)",
                        rule.ratio,
                        pct(f, n)
                    )
                },
            );
        };
        let end = r.timeline.end;
        self.recent.push_back((end, !r.success));
        self.recent_failed += u64::from(!r.success);
        while let Some(&(t, f)) = self.recent.front() {
            if t >= end - w {
                break;
            }
            self.recent.pop_front();
            self.recent_failed -= u64::from(f);
        }
        let (f, n) = (self.recent_failed, self.recent.len() as u64);
        (n >= MIN_REQUESTS_FOR_ERROR_RATE && f as f64 > rule.ratio * n as f64).then(|| {
            format!(
                "--max-error-rate {}:{w}: {f} of the {n} requests finished in the last {w} s failed ({:.1} %)",
                rule.ratio,
                pct(f, n)
            )
        })
    }

    fn saturation(&mut self, r: &RequestRecord) -> Option<String> {
        if !self.rules.saturation || self.offered <= 0.0 {
            return None;
        }
        let end = r.timeline.end;
        let (start, n, sum) = self.open.get_or_insert((end, 0, 0.0));
        if end >= *start + SATURATION_WINDOW_S {
            // Close the window, and any empty ones after it (which break a run of
            // rising delays: nothing finished, so nothing is known).
            let w = Window {
                achieved: *n as f64 / SATURATION_WINDOW_S,
                delay: if *n > 0 { *sum / *n as f64 } else { f64::NAN },
            };
            let skipped = ((end - *start) / SATURATION_WINDOW_S).floor() as u64 - 1;
            let next = *start + SATURATION_WINDOW_S * (skipped + 1) as f64;
            self.closed.push_back(w);
            if skipped > 0 {
                self.closed.clear();
            }
            while self.closed.len() > SATURATION_WINDOWS {
                self.closed.pop_front();
            }
            self.open = Some((next, 0, 0.0));
            if let Some(why) = self.saturated() {
                return Some(why);
            }
        }
        if let Some((_, n, sum)) = self.open.as_mut() {
            *n += 1;
            *sum += r.timeline.end - r.timeline.intended_start;
        }
        None
    }

    fn saturated(&self) -> Option<String> {
        if self.closed.len() < SATURATION_WINDOWS {
            return None;
        }
        let behind = self
            .closed
            .iter()
            .all(|w| w.achieved < SATURATION_BEHIND * self.offered);
        let rising = self
            .closed
            .iter()
            .zip(self.closed.iter().skip(1))
            .all(|(a, b)| b.delay > a.delay * (1.0 + SATURATION_RISE));
        if !(behind && rising) {
            return None;
        }
        let achieved: Vec<String> = self
            .closed
            .iter()
            .map(|w| format!("{:.1}", w.achieved))
            .collect();
        let delays: Vec<String> = self
            .closed
            .iter()
            .map(|w| format!("{:.2} s", w.delay))
            .collect();
        Some(format!(
            "--stop-on-saturation: {} req/s achieved of the {:.1} offered over the last {} s while the delay rose {}",
            achieved.join(", "),
            self.offered,
            SATURATION_WINDOW_S * SATURATION_WINDOWS as f64,
            delays.join(" → ")
        ))
    }
}
