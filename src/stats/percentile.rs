//! Nearest-rank percentiles (evalscope 1.14.1) and rounding.

pub const PERCENTILES: [(u32, &str); 11] = [
    (0, "min"),
    (1, "1%"),
    (5, "5%"),
    (10, "10%"),
    (25, "25%"),
    (50, "50%"),
    (75, "75%"),
    (90, "90%"),
    (95, "95%"),
    (99, "99%"),
    (100, "max"),
];

/// Python's `round(x, dp)` for the values we produce (correctly rounded decimal).
pub fn round(x: f64, dp: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.dp$}").parse().unwrap_or(x)
}

/// Nearest-rank positions of the percentile points in `n` sorted values (evalscope
/// 1.12+): ⌈n·p/100⌉ − 1, computed in integers.
pub(crate) fn positions(n: usize) -> Vec<usize> {
    PERCENTILES
        .iter()
        .map(|&(p, _)| match p {
            0 => 0,
            100 => n - 1,
            _ => ((n * p as usize).div_ceil(100))
                .saturating_sub(1)
                .min(n - 1),
        })
        .collect()
}

/// Percentile decimals (evalscope 1.13+).
pub const PERCENTILE_DP: usize = 4;

/// evalscope's nearest-rank percentiles of values arriving in ascending order.
pub fn percentiles_of_sorted(n: usize, sorted: impl Iterator<Item = f64>) -> Vec<f64> {
    if n == 0 {
        return vec![f64::NAN; PERCENTILES.len()];
    }
    let want = positions(n);
    let mut out = vec![f64::NAN; want.len()];
    let mut k = 0;
    for (i, v) in sorted.enumerate() {
        while k < want.len() && want[k] == i {
            out[k] = v;
            k += 1;
        }
        if k == want.len() {
            break;
        }
    }
    out
}

/// Percentiles of an unsorted vector (NaN removed first).
pub fn percentile_values(mut data: Vec<f64>) -> Vec<f64> {
    data.retain(|v| v.is_finite());
    data.sort_by(|a, b| a.total_cmp(b));
    percentiles_of_sorted(data.len(), data.into_iter())
}
