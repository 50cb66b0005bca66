//! Simulator settings: the `perfscope sim` flags and, with the same names, the JSON
//! object given to `perfscope perf --api sim --sim-args '{...}'`.

use serde::{Deserialize, Serialize};

#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed for output lengths and fault decisions (same seed, same run).
    #[arg(long = "sim-seed", default_value_t = 0)]
    pub seed: u64,
    /// Answer instantly with the whole stream in one write: measures the client itself.
    #[arg(long)]
    pub zero_delay: bool,
    /// Fixed-delay mode: every request gets its first token after exactly this many
    /// milliseconds, independent of load (for checking client timing).
    #[arg(long)]
    pub ttft_ms: Option<f64>,
    /// Fixed-delay mode: gap between consecutive tokens, milliseconds.
    #[arg(long)]
    pub itl_ms: Option<f64>,
    /// Continuous batching: sequences decoded together (vLLM's max_num_seqs).
    #[arg(long, default_value_t = 128)]
    pub max_num_seqs: usize,
    /// Continuous batching: KV capacity in tokens (prompt + output of running sequences).
    #[arg(long, default_value_t = 262_144)]
    pub kv_cache_tokens: u64,
    /// Prefix cache block size, tokens (vLLM's default block size is 16).
    #[arg(long, default_value_t = 16)]
    pub block_size: u64,
    /// Turn the prefix cache off (no `cached_tokens`, no hits).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Keep the prefix cache but leave `prompt_tokens_details.cached_tokens` out of
    /// the usage, as vLLM does without `--enable-prompt-tokens-details`.
    #[arg(long)]
    pub no_prompt_tokens_details: bool,
    /// The model's context in tokens (vLLM's --max-model-len): a request whose
    /// prompt + max_tokens exceeds it is refused with HTTP 400, as vLLM refuses it.
    #[arg(long)]
    pub max_model_len: Option<u64>,
    /// Prefill cost per prompt token admitted in a step, milliseconds.
    #[arg(long, default_value_t = 0.02)]
    pub prefill_ms_per_token: f64,
    /// Decode step time with a batch of one, milliseconds.
    #[arg(long, default_value_t = 5.0)]
    pub decode_base_ms: f64,
    /// Extra decode step time per running sequence, milliseconds.
    #[arg(long, default_value_t = 0.05)]
    pub decode_ms_per_seq: f64,
    /// Shortest natural answer (tokens) before `max_tokens` caps it.
    #[arg(long, default_value_t = 16)]
    pub min_output_len: u64,
    /// Longest natural answer (tokens).
    #[arg(long, default_value_t = 128)]
    pub max_output_len: u64,
    /// Fraction of requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of requests answered with HTTP 429.
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Fraction of streams whose connection is cut halfway.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Fraction of streams that pause for `stall_ms` halfway.
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    /// Length of a stall, milliseconds.
    #[arg(long, default_value_t = 2000.0)]
    pub stall_ms: f64,
    /// Fraction of streams that send a chunk that is not valid JSON halfway.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Fraction of streams that send an `{"error": ...}` payload halfway (status 200).
    #[arg(long, default_value_t = 0.0)]
    pub in_band_error_rate: f64,
    /// Never send `usage` (to exercise clients without token counts).
    #[arg(long)]
    pub no_usage: bool,
    /// Count prompt tokens with this Hugging Face tokenizer (a tokenizer.json or a
    /// model directory; chat prompts through its chat template).
    #[arg(long = "tokenizer-path")]
    pub tokenizer_path: Option<String>,
    /// Share the port with other `perfscope sim` processes (SO_REUSEPORT): the kernel
    /// spreads new connections over them, past one process's open-file limit.
    #[arg(long)]
    #[serde(skip)]
    pub reuse_port: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            zero_delay: false,
            ttft_ms: None,
            itl_ms: None,
            max_num_seqs: 128,
            kv_cache_tokens: 262_144,
            block_size: 16,
            no_prefix_cache: false,
            no_prompt_tokens_details: false,
            max_model_len: None,
            prefill_ms_per_token: 0.02,
            decode_base_ms: 5.0,
            decode_ms_per_seq: 0.05,
            min_output_len: 16,
            max_output_len: 128,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            drop_rate: 0.0,
            stall_rate: 0.0,
            stall_ms: 2000.0,
            malformed_rate: 0.0,
            in_band_error_rate: 0.0,
            no_usage: false,
            tokenizer_path: None,
            reuse_port: false,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("drop_rate", self.drop_rate),
            ("stall_rate", self.stall_rate),
            ("malformed_rate", self.malformed_rate),
            ("in_band_error_rate", self.in_band_error_rate),
        ];
        for (n, v) in rates {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{n} must be between 0 and 1, got {v}"));
            }
        }
        if rates.iter().map(|r| r.1).sum::<f64>() > 1.0 {
            return Err("the fault rates add up to more than 1".into());
        }
        if self.max_output_len < self.min_output_len || self.max_output_len == 0 {
            return Err("max_output_len must be >= min_output_len and > 0".into());
        }
        if self.max_num_seqs == 0 || self.kv_cache_tokens == 0 || self.block_size == 0 {
            return Err("max_num_seqs, kv_cache_tokens and block_size must be > 0".into());
        }
        for (n, v) in [
            ("ttft_ms", self.ttft_ms.unwrap_or(0.0)),
            ("itl_ms", self.itl_ms.unwrap_or(0.0)),
            ("prefill_ms_per_token", self.prefill_ms_per_token),
            ("decode_base_ms", self.decode_base_ms),
            ("decode_ms_per_seq", self.decode_ms_per_seq),
            ("stall_ms", self.stall_ms),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{n} must be a finite number >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// The simulator's tokenizer, public so tests can compute the exact usage it reports:
/// every whitespace-separated word is `1 + (chars - 1) / 4` tokens.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace()
        .map(|w| 1 + (w.chars().count() as u64 - 1) / 4)
        .sum()
}
