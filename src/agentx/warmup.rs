//! The replay's start: each lane's first tree at its t*, and the warmup that
//! primes the server's cache with the streams alive then (AIPerf 0.12.0's warmup
//! phase, `timing/strategies/agentic_replay.py` `_execute_warmup`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::credit::{marker, Credit, Outcome, Shared};
use super::tstar::{self, Snapshot};

/// A warmup request failed: AIPerf's `TrajectoryWarmupFailedError`.
#[derive(Debug)]
pub struct WarmupFailed(pub Vec<String>);

impl std::fmt::Display for WarmupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the cache warmup before t* failed for {}; the server did not answer \
             the primed prefixes (see the errors above)",
            self.0.join(", ")
        )
    }
}

impl std::error::Error for WarmupFailed {}

/// A lane's first tree: its play index, its snapshot at t* and its marker.
pub(super) struct First {
    pub(super) index: u64,
    pub(super) snapshot: Snapshot,
    pub(super) marker: Arc<str>,
}

/// Each lane's first trace in file order, skipping a trace with nothing to send
/// from its t* (AIPerf asks the sampler again, within one pass over the set).
pub(super) fn first_trees(s: &Shared) -> Vec<Option<First>> {
    let roots = s.plan.roots.len() as u64;
    let mut out = Vec::new();
    for lane in 0..s.opts.lanes.max(1) {
        let mut found = None;
        for _ in 0..roots.max(1) {
            let index = s.next_root.fetch_add(1, Ordering::SeqCst);
            if roots == 0 || (s.opts.deadline.is_none() && index >= roots) {
                break;
            }
            let trace = (index % roots) as usize;
            let id = &s.plan.conversations[s.plan.roots[trace]].id;
            let t = tstar::sample(&s.plan, trace, lane, &s.opts.start);
            if let Some(snapshot) = tstar::snapshot(&s.plan, trace, t) {
                s.stat(|st| st.t_star.push((trace, t)));
                found = Some(First {
                    index,
                    snapshot,
                    marker: marker(&s.opts.run_id, index / roots, index, id),
                });
                break;
            }
        }
        out.push(found);
    }
    out
}

/// Sends every warm request, each `max_lead − lead` after the start, and waits
/// for all of them.
pub(super) async fn warmup(s: &Shared, firsts: &[Option<First>]) -> Result<(), WarmupFailed> {
    let mut warm = Vec::new();
    for (lane, f) in firsts.iter().enumerate() {
        let Some(f) = f else { continue };
        let roots = s.plan.roots.len() as u64;
        for st in &f.snapshot.streams {
            if let Some((turn, lead_ms)) = st.warm {
                let credit = Credit {
                    lane,
                    play: f.index / roots,
                    trace: (f.index % roots) as usize,
                    conversation: st.conversation,
                    turn,
                    issued: Instant::now(),
                    marker: f.marker.clone(),
                    warmup: true,
                };
                warm.push((credit, lead_ms));
            }
        }
    }
    let t0 = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (mut c, at) in spread(warm, s.opts.idle_cap) {
        let (sender, plan, stopped) = (s.sender.clone(), s.plan.clone(), s.opts.stopped.clone());
        sends.spawn(async move {
            // In slices, so that a stop is seen while the spread waits.
            let at = t0 + at;
            while Instant::now() < at {
                if stopped() {
                    return None;
                }
                tokio::time::sleep_until(at.min(Instant::now() + Duration::from_millis(100))).await;
            }
            if stopped() {
                return None;
            }
            c.issued = Instant::now();
            let what = format!(
                "`{}` turn {}",
                plan.conversations[c.conversation].id, c.turn
            );
            Some((sender.send(c).await, what))
        });
    }
    let mut results = Vec::new();
    while let Some(r) = sends.join_next().await {
        if let Ok(Some(r)) = r {
            results.push(r);
        }
    }
    s.stat(|st| st.warmup_requests = results.len() as u64);
    let failed: Vec<String> = results
        .into_iter()
        .filter(|(o, _)| *o != Outcome::Ok)
        .map(|(_, what)| what)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(WarmupFailed(failed))
    }
}

/// When each warm request goes, from the warmup's start: a request sent `lead`
/// ms before its t* goes at `max_lead − lead`, so that every lane's t* lands at
/// the warmup's end (AIPerf's spread). A gap between consecutive sends longer
/// than the idle cap is cut to it, as AIPerf's global idle cap pulls its pending
/// timers forward when nothing is in flight (warm requests answer at once).
fn spread(mut warm: Vec<(Credit, f64)>, idle_cap: Duration) -> Vec<(Credit, Duration)> {
    let max_lead = warm.iter().map(|w| w.1).fold(0.0, f64::max);
    warm.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cap = idle_cap.as_secs_f64();
    let (mut prev, mut at) = (0.0f64, 0.0f64);
    warm.into_iter()
        .map(|(c, lead)| {
            let offset = ((max_lead - lead) / 1000.0).max(0.0);
            at += (offset - prev).min(cap);
            prev = offset;
            (c, Duration::from_secs_f64(at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(turn: usize) -> Credit {
        Credit {
            lane: 0,
            play: 0,
            trace: 0,
            conversation: 0,
            turn,
            issued: Instant::now(),
            marker: "".into(),
            warmup: true,
        }
    }

    /// Leads of 40 s, 35 s and 1 s before t*: sends at 0, 5 and 15 s (the 34 s gap
    /// cut to the 10 s idle cap), earliest lead first.
    #[test]
    fn the_spread_aligns_t_star_and_cuts_idle_gaps() {
        let warm = vec![
            (credit(1), 1000.0),
            (credit(2), 40_000.0),
            (credit(3), 35_000.0),
        ];
        let got: Vec<(usize, f64)> = spread(warm, Duration::from_secs(10))
            .into_iter()
            .map(|(c, at)| (c.turn, at.as_secs_f64()))
            .collect();
        assert_eq!(got, [(2, 0.0), (3, 5.0), (1, 15.0)]);
    }
}
