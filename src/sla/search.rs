//! evalscope's searches over an integer variable, and the averaging of repeats.

use anyhow::Result;

use crate::report::RunResult;
use crate::stats::catalogue::Format;
use crate::stats::{Column, PERCENTILES};

/// evalscope's constraint search over integers in [lb, ub] from `start`; returns the
/// largest passing value (None if even `lb` fails) and the note.
pub fn constraint_search(
    start: i64,
    lb: i64,
    ub: i64,
    mut pass: impl FnMut(i64) -> Result<bool>,
) -> Result<(Option<i64>, String)> {
    let start = start.clamp(lb, ub);
    let (mut lower, mut upper);
    if pass(start)? {
        lower = start;
        upper = (2 * start).min(ub);
        loop {
            if upper == lower {
                return Ok((Some(lower), "Satisfied".into()));
            }
            if !pass(upper)? {
                break;
            }
            lower = upper;
            if upper == ub {
                return Ok((Some(ub), "Satisfied (upper bound)".into()));
            }
            upper = (2 * upper).min(ub);
        }
    } else {
        upper = start;
        loop {
            if upper <= lb {
                return Ok((None, format!("Failed at lower bound ({lb})")));
            }
            let next = (upper / 2).max(lb);
            if pass(next)? {
                lower = next;
                break;
            }
            upper = next;
        }
    }
    // lower passes, upper fails: binary search strictly between.
    let mut best = lower;
    let (mut l, mut r) = (lower + 1, upper - 1);
    while l <= r {
        let mid = (l + r) / 2;
        if pass(mid)? {
            best = mid;
            l = mid + 1;
        } else {
            r = mid - 1;
        }
    }
    Ok((Some(best), "Satisfied".into()))
}

/// evalscope's optimisation: double while the metric strictly improves, then
/// binary-search between the last improving and the first non-improving value.
/// `measure` returns None for a point that failed (counts as no improvement).
pub fn optimise(
    start: i64,
    lb: i64,
    ub: i64,
    maximise: bool,
    mut measure: impl FnMut(i64) -> Result<Option<f64>>,
) -> Result<(Option<i64>, Option<f64>)> {
    let better = |a: f64, b: f64| if maximise { a > b } else { a < b };
    let start = start.clamp(lb, ub);
    let Some(mut best_v) = measure(start)? else {
        return Ok((None, None));
    };
    let mut best = start;
    let mut cur = start;
    let mut worse = None;
    while cur < ub {
        let next = (cur * 2).min(ub);
        match measure(next)? {
            Some(v) if better(v, best_v) => {
                best = next;
                best_v = v;
                cur = next;
            }
            _ => {
                worse = Some(next);
                break;
            }
        }
    }
    if let Some(w) = worse {
        let (mut l, mut r) = (best, w);
        while l < r - 1 {
            let mid = (l + r) / 2;
            match measure(mid)? {
                Some(v) if better(v, best_v) => {
                    best = mid;
                    best_v = v;
                    l = mid;
                }
                _ => r = mid,
            }
        }
    }
    Ok((Some(best), Some(best_v)))
}

/// evalscope 1.14.1's `average_results`: the mean of every numeric summary key over
/// the repeats, except the request counts (the catalogue's additive metrics), summed
/// (earlier releases rounded their means); the percentiles averaged cell by cell
/// (not recomputed from pooled rows).
pub fn average(runs: &[RunResult]) -> Option<RunResult> {
    let first = runs.first()?;
    let n = runs.len() as f64;
    let mut summary = first.summary.clone();
    for (m, _) in first.summary.numbers() {
        let mean = runs.iter().map(|r| r.summary.num(m)).sum::<f64>() / n;
        let d = m.def();
        summary.set_as_is(
            m,
            if d.additive {
                (mean * n).round()
            } else if d.format == Format::Int {
                mean.round()
            } else {
                // evalscope rounds every averaged float to 4 dp.
                crate::stats::round(mean, 4)
            },
        );
    }
    let columns = first
        .columns
        .iter()
        .map(|c| Column {
            col: c.col,
            values: (0..PERCENTILES.len())
                .map(|i| {
                    runs.iter()
                        .map(|r| {
                            r.columns
                                .iter()
                                .find(|x| x.col == c.col)
                                .and_then(|x| x.values.get(i).copied())
                                .unwrap_or(f64::NAN)
                        })
                        .sum::<f64>()
                        / n
                })
                .collect(),
        })
        .collect();
    Some(RunResult {
        point: first.point.clone(),
        summary,
        columns,
        dir: first.dir.clone(),
        encoder: first.encoder,
        timeline: first.timeline.clone(),
        traces: None,
        workload: None,
        cut_short: runs.iter().find_map(|r| r.cut_short.clone()),
        agentx: Vec::new(),
        timeseries: Vec::new(),
    })
}
