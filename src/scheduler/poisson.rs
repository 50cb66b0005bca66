//! Poisson arrivals laid out in absolute time.

/// Absolute arrival offsets (seconds from the run start) for `n` requests at `rate`
/// req/s. `n / rate` is the last offset exactly.
pub fn poisson_schedule(n: usize, rate: f64, seed: u64) -> Vec<f64> {
    if n == 0 || rate <= 0.0 {
        return vec![0.0; n];
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut t = 0.0;
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            // Inverse-CDF exponential sample; 1 - u avoids ln(0).
            t += -(1.0 - rng.f64()).ln() / rate;
            t
        })
        .collect();
    let scale = (n as f64 / rate) / t;
    for v in &mut out {
        *v *= scale;
    }
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
}
