//! The service-level objectives a run declares, as data: per-request bounds
//! (`--goodput ttft:/tpot:/e2el:`, tightened by `--sla-params` p99 criteria), the
//! error budget and the goodput target (`--slo`). The live `/metrics` exports them
//! as gauges with the run's labels, so the shipped alert rules compare every run
//! against its own objectives; the fan-out counts good requests against the bounds.

use anyhow::{bail, Result};

use crate::record::RequestRecord;

/// The share of good requests a run aims for when it gives `--goodput` bounds
/// and no `--slo goodput:` target (the SRE workbook's usual 99 %).
pub const DEFAULT_GOODPUT_TARGET: f64 = 0.99;

/// Per-request bounds in milliseconds (any subset).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bounds {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Bounds {
    pub fn is_empty(&self) -> bool {
        *self == Bounds::default()
    }

    /// Whether a request meets every bound: it succeeded, and its TTFT, TPOT and
    /// latency are within theirs. The same test as the stored goodput (vLLM's: a
    /// one-token output has TPOT 0 and meets any TPOT bound).
    pub fn meets(&self, r: &RequestRecord) -> bool {
        r.success && self.over(r).iter().all(Option::is_none)
    }

    /// The bounds a successful request is over: `ttft`, `tpot`, `e2el` (None where
    /// within its bound or no bound is given).
    pub fn over(&self, r: &RequestRecord) -> [Option<&'static str>; 3] {
        let over = |v: Option<f64>, b: Option<f64>, name| match (v, b) {
            (Some(v), Some(b)) if v * 1000.0 > b => Some(name),
            _ => None,
        };
        if !r.success {
            return [None; 3];
        }
        [
            over(r.ttft(), self.ttft_ms, "ttft"),
            over(Some(r.tpot().unwrap_or(0.0)), self.tpot_ms, "tpot"),
            over(r.latency(), self.e2el_ms, "e2el"),
        ]
    }

    /// Each bound the lower of the two (a missing bound takes the other's).
    pub fn tightest(self, o: Bounds) -> Bounds {
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Bounds {
            ttft_ms: min(self.ttft_ms, o.ttft_ms),
            tpot_ms: min(self.tpot_ms, o.tpot_ms),
            e2el_ms: min(self.e2el_ms, o.e2el_ms),
        }
    }
}

/// What a run declares. Every field None/empty: a run with no objectives (the
/// alert rules then use their literal defaults for it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Objectives {
    /// `--goodput`: what makes a request good (counted live as good requests).
    pub good: Option<Bounds>,
    /// The p99 each latency may reach: the goodput bounds, tightened by the
    /// `--sla-params` p99 criteria of an `--sla-auto-tune` run.
    pub p99: Bounds,
    /// `--slo error_rate:R`: the most failed requests a run may have (its error budget).
    pub error_ratio: Option<f64>,
    /// The share of requests that must be good: `--slo goodput:R`, else
    /// DEFAULT_GOODPUT_TARGET when `--goodput` bounds are given.
    pub goodput_ratio: Option<f64>,
}

/// The targets of `--slo`: (error ratio, goodput ratio).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SloFlags {
    pub error_ratio: Option<f64>,
    pub goodput_ratio: Option<f64>,
}

/// Parses `--slo error_rate:0.01 goodput:99%`: a ratio in (0, 1), or a percentage
/// with `%`.
pub fn parse_slo(items: &[String]) -> Result<SloFlags> {
    let mut s = SloFlags::default();
    for it in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some((k, v)) = it.split_once(':') else {
            bail!("--slo: `{it}` is not KEY:VALUE (e.g. --slo error_rate:0.01 goodput:0.99)");
        };
        let v = v.trim();
        let ratio = match v.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
            None => v.parse::<f64>().ok(),
        };
        let Some(r) = ratio.filter(|r| *r > 0.0 && *r < 1.0) else {
            bail!("--slo: `{it}`: the value must be a ratio between 0 and 1 (0.01) or a percentage (1%)");
        };
        match k.trim() {
            "error_rate" | "error_ratio" => s.error_ratio = Some(r),
            "goodput" => s.goodput_ratio = Some(r),
            other => bail!(
                "--slo: unknown objective `{other}`; use error_rate or goodput \
                 (latency bounds go in --goodput ttft:MS tpot:MS e2el:MS)"
            ),
        }
    }
    Ok(s)
}

/// Assembles a run's objectives. `sla_p99`: the p99 bounds of the SLA criteria.
pub fn objectives(good: Option<Bounds>, sla_p99: Bounds, flags: SloFlags) -> Result<Objectives> {
    let good = good.filter(|b| !b.is_empty());
    if flags.goodput_ratio.is_some() && good.is_none() {
        bail!(
            "--slo goodput: needs the bounds that make a request good, e.g. --goodput ttft:500 tpot:50"
        );
    }
    Ok(Objectives {
        good,
        p99: good.unwrap_or_default().tightest(sla_p99),
        error_ratio: flags.error_ratio,
        goodput_ratio: flags.goodput_ratio.or(good.map(|_| DEFAULT_GOODPUT_TARGET)),
    })
}

/// Fewest finished requests (in the window, when there is one) before
/// `--max-error-rate` may stop a run: one early failure is not a rate.
pub const MIN_REQUESTS_FOR_ERROR_RATE: u64 = 20;

/// `--max-error-rate RATIO[:WINDOW_S]`: stop when more than `ratio` of the finished
/// requests failed, over the whole run or the last `window_s` seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorRateRule {
    pub ratio: f64,
    pub window_s: Option<f64>,
}

/// The rules that stop a run early (`--max-error-rate`, `--stop-on-saturation`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StopRules {
    pub max_error_rate: Option<ErrorRateRule>,
    pub saturation: bool,
}

impl StopRules {
    pub fn is_empty(&self) -> bool {
        *self == StopRules::default()
    }
}

/// Parses `--max-error-rate 0.5` or `0.2:30` (a ratio or a percentage, then an
/// optional window in seconds).
pub fn parse_max_error_rate(s: &str) -> Result<ErrorRateRule> {
    let (r, w) = match s.split_once(':') {
        Some((r, w)) => (r.trim(), Some(w.trim())),
        None => (s.trim(), None),
    };
    let ratio = match r.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
        None => r.parse::<f64>().ok(),
    };
    let Some(ratio) = ratio.filter(|x| *x > 0.0 && *x < 1.0) else {
        bail!(
            "--max-error-rate: `{s}`: give a ratio between 0 and 1 (0.2) or a percentage (20%), \
             optionally with a window in seconds (0.2:30)"
        );
    };
    let window_s = match w {
        None => None,
        Some(w) => match w.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => Some(x),
            _ => bail!(
                "--max-error-rate: `{s}`: the window must be a positive number of seconds (0.2:30)"
            ),
        },
    };
    Ok(ErrorRateRule { ratio, window_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn slo_flags_parse_ratios_and_percentages() {
        let s = parse_slo(&v(&["error_rate:0.01", "goodput:95%"])).unwrap();
        assert_eq!(s.error_ratio, Some(0.01));
        assert!((s.goodput_ratio.unwrap() - 0.95).abs() < 1e-12);
        for bad in [
            "error_rate",
            "error_rate:2",
            "goodput:0",
            "ttft:100",
            "x:0.5",
        ] {
            let e = parse_slo(&v(&[bad])).unwrap_err().to_string();
            assert!(e.starts_with("--slo:"), "{bad}: {e}");
        }
    }

    #[test]
    fn max_error_rate_parses_a_ratio_and_a_window() {
        let r = parse_max_error_rate("0.2:30").unwrap();
        assert_eq!((r.ratio, r.window_s), (0.2, Some(30.0)));
        let r = parse_max_error_rate("50%").unwrap();
        assert_eq!((r.ratio, r.window_s), (0.5, None));
        for bad in ["0", "1.5", "x", "0.2:0", "0.2:x"] {
            assert!(parse_max_error_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objectives_take_the_tightest_bound_and_a_default_target() {
        let good = Bounds {
            ttft_ms: Some(100.0),
            ..Bounds::default()
        };
        let sla = Bounds {
            ttft_ms: Some(80.0),
            e2el_ms: Some(2000.0),
            ..Bounds::default()
        };
        let o = objectives(Some(good), sla, SloFlags::default()).unwrap();
        assert_eq!(o.p99.ttft_ms, Some(80.0));
        assert_eq!(o.p99.e2el_ms, Some(2000.0));
        assert_eq!(o.goodput_ratio, Some(DEFAULT_GOODPUT_TARGET));
        let none = objectives(None, Bounds::default(), SloFlags::default()).unwrap();
        assert_eq!(none, Objectives::default());
        let flags = SloFlags {
            goodput_ratio: Some(0.9),
            ..SloFlags::default()
        };
        assert!(objectives(None, Bounds::default(), flags).is_err());
    }
}
