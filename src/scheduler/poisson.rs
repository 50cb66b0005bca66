//! Poisson arrivals laid out in absolute time.

/// Absolute arrival offsets (seconds from the run start) for `n` requests at `rate`
/// req/s. `n / rate` is the last offset exactly.
pub fn poisson_schedule(n: usize, rate: f64, seed: u64) -> Vec<f64> {
    poisson_schedule_until(n, rate, seed, None)
}

/// The offsets of [`poisson_schedule`] that fall before `until` (all of them with
/// `None`), the same values to the bit. A soak's `--number 100000000 --duration 60`
/// keeps the minute's arrivals, not 800 MB of offsets it will never reach: the scale
/// that puts the last arrival at `n / rate` is taken from a first pass that stores
/// nothing, then the same draws are made again.
pub fn poisson_schedule_until(n: usize, rate: f64, seed: u64, until: Option<f64>) -> Vec<f64> {
    if n == 0 || rate <= 0.0 {
        return vec![0.0; n];
    }
    let draws = |f: &mut dyn FnMut(f64) -> bool| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut t = 0.0;
        for _ in 0..n {
            // Inverse-CDF exponential sample; 1 - u avoids ln(0).
            t += -(1.0 - rng.f64()).ln() / rate;
            if !f(t) {
                break;
            }
        }
        t
    };
    let total = match until {
        // One pass: store every draw, rescale in place.
        None => {
            let mut out = Vec::with_capacity(n);
            let t = draws(&mut |t| {
                out.push(t);
                true
            });
            let scale = (n as f64 / rate) / t;
            for v in &mut out {
                *v *= scale;
            }
            return out;
        }
        Some(_) => draws(&mut |_| true),
    };
    let scale = (n as f64 / rate) / total;
    let limit = until.unwrap_or(f64::INFINITY);
    let mut out = Vec::new();
    draws(&mut |t| {
        let at = t * scale;
        if at < limit {
            out.push(at);
        }
        at < limit
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescaled_to_n_over_rate_and_monotonic() {
        let s = poisson_schedule(2000, 400.0, 1);
        assert!((s[1999] - 5.0).abs() < 1e-9);
        assert!(s.windows(2).all(|w| w[1] >= w[0]));
        // Exponential gaps: coefficient of variation close to 1.
        let gaps: Vec<f64> = std::iter::once(s[0])
            .chain(s.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((0.9..1.1).contains(&cv), "cv {cv}");
        assert_eq!(poisson_schedule(3, 10.0, 5), poisson_schedule(3, 10.0, 5));
    }

    #[test]
    fn cut_at_a_deadline_keeps_the_same_offsets() {
        let whole = poisson_schedule(5000, 100.0, 7);
        let cut = poisson_schedule_until(5000, 100.0, 7, Some(12.5));
        let before: Vec<f64> = whole.iter().copied().filter(|&t| t < 12.5).collect();
        assert_eq!(cut, before);
        assert!(cut.len() > 1000 && cut.len() < 1500, "{}", cut.len());
        assert_eq!(poisson_schedule_until(5000, 100.0, 7, Some(1e9)), whole);
    }
}
