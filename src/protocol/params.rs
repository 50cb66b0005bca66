//! What the user asked of the model, mapped into every request body by each
//! protocol.

use serde_json::{Map, Value};

/// Generation parameters mapped into each request body.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub model: String,
    /// (min, max); equal for a fixed value.
    pub max_tokens: (u64, u64),
    pub min_tokens: Option<u64>,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub n_choices: Option<u64>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<String>,
    pub logprobs: bool,
    pub stream: bool,
    pub extra_args: Map<String, Value>,
}

impl GenParams {
    /// One request's `max_tokens`: the fixed value, or uniform in [min, max] for
    /// `--max-tokens MIN MAX` (evalscope's `_sample_int_or_range`).
    pub fn sample_max_tokens(&self, rng: &mut fastrand::Rng) -> u64 {
        match self.max_tokens {
            (lo, hi) if hi > lo => rng.u64(lo..=hi),
            (lo, _) => lo,
        }
    }
}
