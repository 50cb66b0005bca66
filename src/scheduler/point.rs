//! A point of a sweep: the load one run puts on the server.

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// -1 in open loop (no cap), shown as INF.
    pub parallel: i64,
    pub number: u64,
    /// -1 = no pacing.
    pub rate: f64,
}

impl SweepPoint {
    /// evalscope's run directory name.
    pub fn dir_name(&self, open_loop: bool) -> String {
        if open_loop {
            format!("rate_{}_number_{}", py_float(self.rate), self.number)
        } else {
            format!("parallel_{}_number_{}", self.parallel, self.number)
        }
    }
}

/// Formats a float as Python's `str(float)` does for ordinary values (`5.0`, `2.5`).
pub fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}
