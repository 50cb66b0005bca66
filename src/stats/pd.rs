//! evalscope 1.14.1's prefill/decode disaggregation values (`--enable-pd-metrics`): per successful request with gaps, the handoff latency ITL[0]; with two
//! gaps or more, the steady gaps ITL[1:] and the handoff overhead
//! max(0, ITL[0] − median(ITL[1:])), the median of an even count being the mean of
//! the two middle values. Summary keys and percentile columns exist only when their
//! list is non-empty.

use anyhow::Result;

use crate::store::{Filter, RunRows};

/// The PD values of a run, in seconds.
#[derive(Debug, Default, PartialEq)]
pub struct PdValues {
    pub steady: Vec<f64>,
    pub handoff: Vec<f64>,
    pub overhead: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl PdValues {
    pub fn of_lists(lists: Vec<Vec<f64>>) -> PdValues {
        let mut out = PdValues::default();
        for itl in lists {
            let Some(&first) = itl.first() else { continue };
            out.handoff.push(first);
            if itl.len() >= 2 {
                let mut rest = itl[1..].to_vec();
                out.steady.extend_from_slice(&rest);
                out.overhead.push((first - median(&mut rest)).max(0.0));
            }
        }
        out
    }

    /// The run's values when it was made with `--enable-pd-metrics` (else None).
    pub fn of_run(rows: &RunRows) -> Result<Option<PdValues>> {
        if !rows.pd_metrics {
            return Ok(None);
        }
        Ok(Some(PdValues::of_lists(rows.itl_lists(&Filter::Success)?)))
    }
}

pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_steady_and_overhead_as_evalscope_defines_them() {
        let pd = PdValues::of_lists(vec![
            vec![0.5, 0.1, 0.3, 0.2, 0.4],
            vec![0.05, 0.1],
            vec![0.2],
            vec![],
        ]);
        assert_eq!(pd.handoff, vec![0.5, 0.05, 0.2]);
        assert_eq!(pd.steady, vec![0.1, 0.3, 0.2, 0.4, 0.1]);
        // median(0.1, 0.3, 0.2, 0.4) = 0.25 → 0.25; median(0.1) → max(0, -0.05) = 0.
        assert_eq!(pd.overhead.len(), 2);
        assert!((pd.overhead[0] - 0.25).abs() < 1e-12);
        assert_eq!(pd.overhead[1], 0.0);
    }
}
