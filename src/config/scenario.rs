//! `--scenario`: evalscope 1.14.1's AgentX scenario (`agentx`, or its JSON form),
//! which perfscope replays itself instead of starting AIPerf. The accepted keys,
//! defaults and refused flags are evalscope's (`perf/scenarios/agentx.py`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::PerfArgs;

/// The scenario as evalscope types it (unknown keys refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "agentx")]
    pub name: String,
    #[serde(default = "v256k")]
    pub variant: String,
    #[serde(default = "benchmark")]
    pub mode: String,
    #[serde(default)]
    pub max_context_length: Option<i64>,
    #[serde(default)]
    pub trace_limit: Option<i64>,
    #[serde(default)]
    pub num_gpus: Option<i64>,
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub engine_version: Option<String>,
    #[serde(default)]
    pub hardware: Option<String>,
    #[serde(default)]
    pub tokenizer_trust_remote_code: bool,
    #[serde(default)]
    pub tokenizer_revision: Option<String>,
    #[serde(default)]
    pub request_timeout_seconds: Option<f64>,
    #[serde(default)]
    pub benchmark_grace_period: Option<f64>,
    /// `--trajectory-start-{min,max}-ratio` (not scenario keys: evalscope's
    /// AIPerf run always uses the scenario's lock, 0 and 1).
    #[serde(skip, default = "full_span")]
    pub start_ratios: (f64, f64),
}

fn full_span() -> (f64, f64) {
    (0.0, 1.0)
}

fn agentx() -> String {
    "agentx".into()
}
fn v256k() -> String {
    "256k".into()
}
fn benchmark() -> String {
    "benchmark".into()
}

/// evalscope's defaults: 1800 s (benchmark), 60 s and 4 traces (smoke).
pub const BENCHMARK_DURATION: f64 = 1800.0;
pub const SMOKE_DURATION: f64 = 60.0;
pub const SMOKE_TRACE_LIMIT: u64 = 4;
/// evalscope's default `--random-seed` for AIPerf.
pub const DEFAULT_SEED: u64 = 20_260_707;

impl Scenario {
    pub fn smoke(&self) -> bool {
        self.mode == "smoke"
    }
    /// Traces replayed: the smoke limit, none in benchmark mode.
    pub fn trace_limit(&self) -> Option<u64> {
        self.smoke()
            .then(|| self.trace_limit.map_or(SMOKE_TRACE_LIMIT, |n| n as u64))
    }
    pub fn duration(&self, flag: Option<f64>) -> f64 {
        flag.unwrap_or(if self.smoke() {
            SMOKE_DURATION
        } else {
            BENCHMARK_DURATION
        })
    }
}

/// Parses `--scenario` (`agentx` or a JSON object) and checks it.
pub fn parse(value: &str) -> Result<Scenario> {
    let s: Scenario = if value == "agentx" {
        serde_json::from_str("{}")?
    } else {
        serde_json::from_str(value).with_context(|| {
            format!("--scenario: `{value}` is neither `agentx` nor a valid AgentX JSON object")
        })?
    };
    if s.name != "agentx" {
        bail!("--scenario: name must be `agentx`, got `{}`", s.name);
    }
    if !matches!(s.variant.as_str(), "256k" | "full") {
        bail!(
            "--scenario: variant must be `256k` or `full`, got `{}`",
            s.variant
        );
    }
    if !matches!(s.mode.as_str(), "benchmark" | "smoke") {
        bail!(
            "--scenario: mode must be `benchmark` or `smoke`, got `{}`",
            s.mode
        );
    }
    for (k, v) in [
        ("max_context_length", s.max_context_length),
        ("trace_limit", s.trace_limit),
        ("num_gpus", s.num_gpus),
    ] {
        if v.is_some_and(|n| n <= 0) {
            bail!("--scenario: {k} must be greater than zero");
        }
    }
    if s.request_timeout_seconds
        .is_some_and(|t| t.is_nan() || t <= 0.0)
    {
        bail!("--scenario: request_timeout_seconds must be greater than zero");
    }
    if s.benchmark_grace_period
        .is_some_and(|t| !(t >= 0.0 && t.is_finite()))
    {
        bail!("--scenario: benchmark_grace_period must be a finite number >= 0");
    }
    if !s.smoke() && s.trace_limit.is_some() {
        bail!("--scenario: trace_limit is only supported when mode is smoke");
    }
    Ok(s)
}

/// `--scenario`, parsed and checked against the other flags (None without it).
pub fn resolve(a: &PerfArgs) -> Result<Option<Scenario>> {
    let Some(v) = &a.scenario else {
        if a.trajectory_start_min_ratio.is_some() || a.trajectory_start_max_ratio.is_some() {
            bail!(
                "--trajectory-start-min-ratio / --trajectory-start-max-ratio apply only to \
                 --scenario agentx; drop them or add --scenario"
            );
        }
        return Ok(None);
    };
    let mut s = parse(v)?;
    check_flags(&s, a)?;
    let lo = a.trajectory_start_min_ratio.unwrap_or(0.0);
    let hi = a.trajectory_start_max_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        bail!(
            "--trajectory-start-min-ratio {lo} / --trajectory-start-max-ratio {hi}: both must \
             lie in [0, 1] with min <= max (0 0 starts every tree at its first turn)"
        );
    }
    s.start_ratios = (lo, hi);
    Ok(Some(s))
}

/// Duration-bound runs, one per --parallel value.
pub fn points(a: &PerfArgs) -> Vec<crate::scheduler::SweepPoint> {
    a.parallel
        .iter()
        .map(|&p| crate::scheduler::SweepPoint {
            parallel: p,
            number: 0,
            rate: -1.0,
        })
        .collect()
}

/// evalscope's `validate_agentx_arguments`, plus what a local replay needs.
pub fn check_flags(s: &Scenario, a: &PerfArgs) -> Result<()> {
    if !matches!(a.api.as_str(), "openai" | "sim") {
        bail!("--scenario agentx supports only --api openai (OpenAI Chat Completions) or sim");
    }
    if a.open_loop || a.multi_turn || a.sla_auto_tune {
        bail!("--scenario agentx does not support --open-loop, --multi-turn, or --sla-auto-tune");
    }
    if a.rate.iter().any(|r| *r != -1.0) {
        bail!(
            "--scenario agentx uses closed-loop session-tree concurrency; --rate is not supported"
        );
    }
    if a.warmup_num != 0.0 {
        bail!("--scenario agentx primes the cache itself; --warmup-num is not supported");
    }
    if a.dataset_args.is_some() {
        bail!("--scenario agentx does not support --dataset-args");
    }
    if a.dataset != "openqa" {
        bail!("--scenario agentx replays Weka traces from --dataset-path; do not pass --dataset");
    }
    if a.number != [1000] {
        bail!("--scenario agentx is duration-based; --number is not supported (use --duration)");
    }
    if !s.smoke() && a.duration.is_some_and(|d| d < 900.0) {
        bail!(
            "--scenario agentx benchmark mode requires --duration >= 900 seconds (or mode smoke)"
        );
    }
    if a.tokenizer_path.is_none() {
        bail!("--scenario agentx requires --tokenizer-path: prompts are built to the token");
    }
    if a.parallel.iter().any(|p| *p <= 0) {
        bail!("--parallel values must be greater than zero for --scenario agentx");
    }
    if a.dataset_path.is_none() {
        bail!(
            "--scenario agentx needs --dataset-path: a Weka traces.jsonl (ModelScope \
             evalscope/cc-traces-weka-062126-256k, Hugging Face \
             semianalysisai/cc-traces-weka-062126-256k) or a directory of per-trace .json files; \
             scripts/make_weka_trace.py makes a synthetic one"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalscope_s_forms_and_refusals() {
        let s = parse("agentx").unwrap();
        assert_eq!((s.variant.as_str(), s.mode.as_str()), ("256k", "benchmark"));
        assert_eq!(s.trace_limit(), None);
        assert_eq!(s.duration(None), 1800.0);
        let s = parse(r#"{"name":"agentx","mode":"smoke","trace_limit":12}"#).unwrap();
        assert_eq!((s.trace_limit(), s.duration(None)), (Some(12), 60.0));
        assert_eq!(parse(r#"{"mode":"smoke"}"#).unwrap().trace_limit(), Some(4));
        for (bad, says) in [
            (
                r#"{"mode":"benchmark","trace_limit":3}"#,
                "only supported when mode is smoke",
            ),
            (r#"{"colour":"red"}"#, "valid AgentX JSON"),
            (r#"{"num_gpus":0}"#, "num_gpus must be greater than zero"),
            (r#"{"variant":"1m"}"#, "variant must be"),
            ("agentx2", "neither `agentx`"),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
