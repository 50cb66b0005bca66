//! What a computation needs besides the rows: the sweep point and goodput bounds.

use anyhow::Result;

use crate::store::{Build, Field, Field::*, Filter};

pub struct RunInputs {
    pub parallel: i64,
    pub rate: f64,
    pub goodput: Option<Goodput>,
    /// Embedding / rerank / decision: no output tokens; evalscope's Input Throughput.
    pub encoder: bool,
    /// Decision APIs (`systemone`, `autotrust`): their own Input Throughput and the
    /// list of metrics that do not apply.
    pub decision: bool,
}

/// vLLM's goodput: a request is good when it succeeded and meets every given bound
/// (milliseconds): TTFT (evalscope's first-chunk TTFT), TPOT and end-to-end latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Goodput {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Goodput {
    /// Parses `--goodput ttft:500 tpot:50 e2el:3000`; None when no bound is given.
    pub fn parse(items: &[String]) -> Result<Option<Goodput>> {
        let mut g = Goodput::default();
        for it in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let Some((k, v)) = it.split_once(':') else {
                anyhow::bail!("--goodput: `{it}` is not KEY:MS (e.g. ttft:500 tpot:50 e2el:3000)");
            };
            let ms: f64 = match v.trim().parse() {
                Ok(x) if x > 0.0 && f64::is_finite(x) => x,
                _ => anyhow::bail!(
                    "--goodput: `{it}`: the bound must be a positive number of milliseconds"
                ),
            };
            let slot = match k.trim() {
                "ttft" => &mut g.ttft_ms,
                "tpot" => &mut g.tpot_ms,
                "e2el" => &mut g.e2el_ms,
                other => {
                    anyhow::bail!("--goodput: unknown metric `{other}`; use ttft, tpot or e2el")
                }
            };
            *slot = Some(ms);
        }
        Ok((g != Goodput::default()).then_some(g))
    }

    /// The rows of the good requests.
    pub(crate) fn filter(&self) -> Filter {
        let ms = |f: Field| f * 1000.0;
        let mut w = Filter::Success;
        if let Some(t) = self.ttft_ms {
            w = w.and(ms(FirstChunkLatency).at_most(t));
        }
        if let Some(t) = self.tpot_ms {
            // One-token outputs have no TPOT; they meet any TPOT bound (vLLM counts 0).
            w = w.and((TimePerOutputToken.or(0) * 1000.0).at_most(t));
        }
        if let Some(t) = self.e2el_ms {
            w = w.and(ms(Latency).at_most(t));
        }
        w
    }
}
