//! `perfscope compare BASE NEW`: two stored runs (perfscope's, merged, or
//! evalscope's output directories), sweep point by sweep point.
//!
//! Every graded metric of the catalogue (summary keys, and the p50/p90/p99 of the
//! main percentile columns) gets its relative change and a bootstrap confidence
//! interval: each run's request rows are resampled with replacement (seeded) and
//! the figures recomputed from each resample by the same code as the reports. A
//! change is *better* or *worse* (by the metric's direction) when the interval
//! excludes zero and the change is at least `--min-effect` percent; otherwise it is
//! within noise. Figures that are not per request (the server's own) have no
//! interval and are judged on the change alone.

mod model;
mod render;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

use crate::report::stored::{figures, goodput_of};
use crate::report::RunResult;
use crate::stats::{Col, Direction, Metric};
use crate::store::{RunRows, Stored};

pub use model::{
    parse_fail_on, Comparison, Crossing, PointComparison, Row, Threshold, Verdict, NO_CI_FACTOR,
};
pub use render::{console, markdown};

/// `compare`'s settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub resamples: u32,
    pub confidence: f64,
    pub seed: u64,
    /// Percent.
    pub min_effect: f64,
    pub fail_on: Vec<Threshold>,
}

/// A graded figure: a summary key, or a percentile of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Figure {
    Summary(Metric),
    Pct(Col, &'static str),
}

impl Figure {
    fn read(self, r: &RunResult) -> Option<f64> {
        let v = match self {
            Figure::Summary(m) => r.summary.get(m)?,
            Figure::Pct(c, p) => r.pct(c, p),
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    }
    fn name(self) -> String {
        match self {
            Figure::Summary(m) => m.key().to_string(),
            Figure::Pct(c, p) => format!("{} {p}", c.key()),
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Figure::Summary(m) => m.def().unit,
            Figure::Pct(c, _) => c.def().unit,
        }
    }
    fn direction(self) -> Direction {
        match self {
            Figure::Summary(m) => m.def().direction,
            Figure::Pct(c, _) => c.def().direction,
        }
    }
    /// Whether resampling request rows recomputes it (server figures are not rows).
    fn per_request(self) -> bool {
        match self {
            Figure::Summary(m) => m.def().section != Some(crate::stats::catalogue::Section::Server),
            Figure::Pct(..) => true,
        }
    }
}

/// The graded figures a run has, in the catalogue's order.
fn graded(r: &RunResult) -> Vec<Figure> {
    let mut out: Vec<Figure> = Metric::ALL
        .iter()
        .copied()
        .filter(|m| m.def().direction != Direction::Neutral)
        .map(Figure::Summary)
        .filter(|f| f.read(r).is_some())
        .collect();
    for c in Col::of_run(r.encoder) {
        if c.def().direction == Direction::Neutral || !c.def().tracked {
            continue;
        }
        for p in ["50%", "90%", "99%"] {
            let f = Figure::Pct(c, p);
            if f.read(r).is_some() {
                out.push(f);
            }
        }
    }
    out
}

/// The figures of `resamples` bootstrap resamples of a run's rows.
fn bootstrap(
    s: &Stored,
    figs: &[Figure],
    o: &Options,
    salt: u64,
) -> Result<BTreeMap<Figure, Vec<f64>>> {
    let rows = RunRows::open_step(&s.dir)?;
    let mut copy = rows.resampler()?;
    let n = copy.resample_len()?;
    let mut out: BTreeMap<Figure, Vec<f64>> = BTreeMap::new();
    if n == 0 {
        return Ok(out);
    }
    let mut rng = fastrand::Rng::with_seed(o.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let goodput = goodput_of(s);
    let mut picks = vec![0u64; n as usize];
    for _ in 0..o.resamples {
        for p in picks.iter_mut() {
            *p = rng.u64(0..n);
        }
        copy.resample(&picks)?;
        let r = figures(&copy, s.point.clone(), goodput)?;
        for f in figs.iter().filter(|f| f.per_request()) {
            if let Some(v) = f.read(&r) {
                out.entry(*f).or_default().push(v);
            }
        }
    }
    Ok(out)
}

/// The `q` quantile of sorted values (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn rel(base: f64, new: f64) -> Option<f64> {
    (base != 0.0).then(|| (new - base) / base * 100.0)
}

fn verdict(delta: Option<f64>, ci: Option<(f64, f64)>, lower_better: bool, min: f64) -> Verdict {
    let Some(d) = delta else {
        return Verdict::WithinNoise;
    };
    // Without an interval (the server's figures, not per request) only a change of
    // NO_CI_FACTOR × the minimum effect counts: one machine's run-to-run drift alone
    // moves such means by a few percent.
    let real = match ci {
        Some((lo, hi)) => (lo > 0.0 || hi < 0.0) && d.abs() >= min,
        None => d.abs() >= min * NO_CI_FACTOR,
    };
    match (real, d > 0.0, lower_better) {
        (false, _, _) => Verdict::WithinNoise,
        (true, up, lower) if up != lower => Verdict::Better,
        _ => Verdict::Worse,
    }
}

fn compare_point(
    name: &str,
    (bs, br): (&Stored, &RunResult),
    (ns, nr): (&Stored, &RunResult),
    o: &Options,
    salt: u64,
) -> Result<PointComparison> {
    let nf = graded(nr);
    let figs: Vec<Figure> = graded(br).into_iter().filter(|f| nf.contains(f)).collect();
    // The two runs resample on two threads.
    let (bb, nb) = std::thread::scope(|sc| {
        let b = sc.spawn(|| bootstrap(bs, &figs, o, salt * 2));
        let n = bootstrap(ns, &figs, o, salt * 2 + 1);
        let b = b
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the bootstrap thread failed")));
        (b, n)
    });
    let (bb, nb) = (bb?, nb?);
    let tail = (1.0 - o.confidence) / 2.0;
    let mut rows = Vec::new();
    for f in figs {
        let (Some(base), Some(new)) = (f.read(br), f.read(nr)) else {
            continue;
        };
        let delta = rel(base, new);
        let ci = match (bb.get(&f), nb.get(&f)) {
            (Some(b), Some(n)) if !b.is_empty() && b.len() == n.len() => {
                let mut d: Vec<f64> = b.iter().zip(n).filter_map(|(x, y)| rel(*x, *y)).collect();
                d.sort_by(f64::total_cmp);
                (!d.is_empty()).then(|| (quantile(&d, tail), quantile(&d, 1.0 - tail)))
            }
            _ => None,
        };
        let lower = f.direction() == Direction::LowerIsBetter;
        rows.push(Row {
            metric: f.name(),
            unit: f.unit().to_string(),
            lower_is_better: lower,
            base,
            new,
            delta_pct: delta,
            ci_low_pct: ci.map(|c| c.0),
            ci_high_pct: ci.map(|c| c.1),
            verdict: verdict(delta, ci, lower, o.min_effect),
        });
    }
    let count = |r: &RunResult| r.num(Metric::TotalRequests).max(0.0) as u64;
    let unknown = Metric::ALL
        .iter()
        .filter(|m| m.def().direction != Direction::Neutral)
        .filter(|m| br.summary.is_unknown(**m) || nr.summary.is_unknown(**m))
        .map(|m| {
            let side = match (br.summary.is_unknown(*m), nr.summary.is_unknown(*m)) {
                (true, true) => "both runs",
                (true, false) => "the base run",
                _ => "the new run",
            };
            format!(
                "{} is unknown in {side} (no token counts): not compared",
                m.key()
            )
        })
        .collect();
    let mut notes = Vec::new();
    let (bp, np) = (&br.point, &nr.point);
    if bp.parallel != np.parallel {
        notes.push(format!(
            "The runs had different concurrency (base {}, new {}): the figures compare different loads",
            bp.parallel, np.parallel
        ));
    }
    if bp.rate != np.rate {
        notes.push(format!(
            "The runs had different request rates (base {}, new {}): the figures compare different loads",
            bp.rate, np.rate
        ));
    }
    Ok(PointComparison {
        name: name.to_string(),
        base_requests: count(br),
        new_requests: count(nr),
        rows,
        unknown,
        notes,
    })
}

/// A step's name: its directory's (`parallel_8_number_800`).
fn step_name(s: &Stored) -> String {
    s.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load(dir: &Path) -> Result<Vec<(Stored, RunResult)>> {
    let steps = crate::store::steps(dir)?;
    steps
        .into_iter()
        .map(|s| {
            let r = crate::report::load_run(&s.dir, s.point.clone(), goodput_of(&s))
                .with_context(|| format!("{}: cannot read the run", s.dir.display()))?;
            Ok((s, r))
        })
        .collect()
}

/// Compares every sweep point the two runs share (matched by directory name, else,
/// for two single-point runs, the one point of each).
pub fn compare(base: &Path, new: &Path, o: &Options) -> Result<Comparison> {
    if !(o.confidence > 0.0 && o.confidence < 1.0) {
        bail!("--confidence: {} must be between 0 and 1", o.confidence);
    }
    if o.resamples < 10 {
        bail!(
            "--resamples: {} is too few for an interval; use at least 100",
            o.resamples
        );
    }
    let b = load(base)?;
    let n = load(new)?;
    let mut points = Vec::new();
    let mut only_in_base = Vec::new();
    let single = b.len() == 1 && n.len() == 1;
    for (i, (bs, br)) in b.iter().enumerate() {
        let name = step_name(bs);
        let Some((ns, nr)) = n
            .iter()
            .find(|(s, _)| step_name(s) == name)
            .or(single.then(|| &n[0]))
        else {
            only_in_base.push(name);
            continue;
        };
        points.push(compare_point(&name, (bs, br), (ns, nr), o, i as u64 + 1)?);
    }
    let only_in_new = n
        .iter()
        .map(|(s, _)| step_name(s))
        .filter(|x| !single && !b.iter().any(|(s, _)| step_name(s) == *x))
        .collect();
    if points.is_empty() {
        bail!(
            "{} and {} share no sweep point (compared by directory name, e.g. parallel_8_number_800)",
            base.display(),
            new.display()
        );
    }
    let crossed = crossings(&b, &n, &points, &o.fail_on, single);
    Ok(Comparison {
        base: base.display().to_string(),
        new: new.display().to_string(),
        resamples: o.resamples,
        confidence: o.confidence,
        seed: o.seed,
        min_effect_pct: o.min_effect,
        points,
        only_in_base,
        only_in_new,
        fail_on: o.fail_on.clone(),
        crossed,
    })
}

/// The thresholds crossed at each compared point.
fn crossings(
    b: &[(Stored, RunResult)],
    n: &[(Stored, RunResult)],
    points: &[PointComparison],
    fail_on: &[Threshold],
    single: bool,
) -> Vec<Crossing> {
    let mut out = Vec::new();
    for p in points {
        let find = |v: &[(Stored, RunResult)]| -> Option<RunResult> {
            v.iter()
                .find(|(s, _)| step_name(s) == p.name)
                .or(single.then(|| &v[0]))
                .map(|(_, r)| r.clone())
        };
        let (Some(br), Some(nr)) = (find(b), find(n)) else {
            continue;
        };
        for t in fail_on {
            let Some(m) = &t.named else { continue };
            if m.is_unknown(&br) || m.is_unknown(&nr) {
                out.push(Crossing {
                    point: p.name.clone(),
                    metric: t.metric.clone(),
                    limit_pct: t.limit,
                    delta_pct: None,
                });
                continue;
            }
            let (Some(x), Some(y)) = (m.read(&br), m.read(&nr)) else {
                continue;
            };
            let Some(d) = rel(x, y) else { continue };
            if (t.limit >= 0.0 && d > t.limit) || (t.limit < 0.0 && d < t.limit) {
                out.push(Crossing {
                    point: p.name.clone(),
                    metric: t.metric.clone(),
                    limit_pct: t.limit,
                    delta_pct: Some(d),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_parses_signed_percentages() {
        let t = parse_fail_on("p99_ttft:+10%, rps:-5%").unwrap();
        assert_eq!((t[0].metric.as_str(), t[0].limit), ("p99_ttft", 10.0));
        assert_eq!((t[1].metric.as_str(), t[1].limit), ("rps", -5.0));
        assert!(parse_fail_on("p99_ttft:10%").is_err());
        assert!(parse_fail_on("bogus:+1%").is_err());
        assert!(parse_fail_on("rps").is_err());
    }

    #[test]
    fn verdicts_need_an_interval_off_zero_and_a_real_effect() {
        let v = |d, ci, lower| verdict(Some(d), ci, lower, 2.0);
        assert_eq!(v(10.0, Some((5.0, 15.0)), true), Verdict::Worse);
        assert_eq!(v(10.0, Some((5.0, 15.0)), false), Verdict::Better);
        assert_eq!(v(-10.0, Some((-15.0, -5.0)), true), Verdict::Better);
        assert_eq!(v(10.0, Some((-1.0, 15.0)), true), Verdict::WithinNoise);
        assert_eq!(v(1.0, Some((0.5, 1.5)), true), Verdict::WithinNoise);
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }
}
