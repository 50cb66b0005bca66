//! The workload flags of evalscope 1.12–1.14: multi-turn sessions, `--dataset-args`
//! (with the deprecated `--multi-turn-args` folded in), `--prefix-count`,
//! `--num-workers`, `--data-source`, `--scenario`, and trace replay.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::cli::PerfArgs;
use crate::dataset::multi_turn::TurnBounds;
use crate::dataset::{DatasetArgs, DatasetKind, Hub, InputLenMode};
use crate::telemetry::log;

/// What the workload flags resolve to.
pub(crate) struct Workload {
    pub turns: Option<TurnBounds>,
    pub args: DatasetArgs,
    pub hub: Hub,
    pub num_workers: usize,
    pub trace: Option<TraceReplay>,
}

/// Trace replay settings (`mooncake_trace`, `workload_trace`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceReplay {
    /// Tokens per `hash_ids` block.
    pub block_size: u64,
    /// Replay speed: offsets are divided by it.
    pub speedup: f64,
}

/// The keys `--dataset-args` accepts for each dataset (evalscope's plugin schemas).
fn allowed_keys(kind: DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::OpenQa
        | DatasetKind::LongAlpaca
        | DatasetKind::LineByLine
        | DatasetKind::ShareGpt { .. } => &[
            "target_input_len",
            "input_len_mode",
            "prefix_file",
            "prefix_role",
        ],
        DatasetKind::MultiTurn(
            crate::dataset::multi_turn::MultiTurnKind::Random
            | crate::dataset::multi_turn::MultiTurnKind::ShareGpt { .. }
            | crate::dataset::multi_turn::MultiTurnKind::SweSmith,
        ) => &[
            "first_turn_length",
            "subsequent_turn_length",
            "chars_per_token",
        ],
        DatasetKind::WorkloadTrace => &[
            "speed",
            "model_override",
            "model_mapping",
            "match_output_length",
        ],
        _ => &[],
    }
}

pub(crate) fn resolve_workload(a: &PerfArgs, kind: DatasetKind, chat: bool) -> Result<Workload> {
    check_prefix_count(a)?;
    let turns = resolve_turns(a, kind, chat)?;
    let mut num_workers = match a.num_workers {
        Some(n) if n < 0 => bail!("--num-workers {n}: must be >= 0 (0 = automatic)"),
        Some(n) => Some(n as usize),
        None => None,
    };
    let mut args = match &a.dataset_args {
        Some(s) => parse_object("--dataset-args", s)?,
        None => Map::new(),
    };
    if let Some(s) = &a.multi_turn_args {
        fold_multi_turn_args(parse_object("--multi-turn-args", s)?, &mut args);
    }
    // evalscope: a legacy num_workers inside the JSON is promoted only when
    // --num-workers was not given.
    if let Some(v) = args.shift_remove("num_workers") {
        match v.as_u64() {
            Some(n) if num_workers.is_none() => {
                log::warn("num_workers inside --dataset-args is deprecated; use --num-workers");
                num_workers = Some(n as usize);
            }
            Some(_) => {}
            None => bail!("--dataset-args: num_workers must be an integer >= 0, got {v}"),
        }
    }
    let hub = match a.data_source.as_deref() {
        None | Some("modelscope") => Hub::ModelScope,
        Some("huggingface") => Hub::HuggingFace,
        Some("local") => Hub::Local,
        Some(o) => bail!("--data-source {o}: use modelscope, huggingface or local"),
    };
    let trace = resolve_trace(a, kind)?;
    Ok(Workload {
        turns,
        args: dataset_args(&a.dataset, kind, args, a.tokenizer_path.is_some())?,
        hub,
        num_workers: num_workers.unwrap_or(0),
        trace,
    })
}

fn parse_object(flag: &str, s: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => bail!("{flag}: expected a JSON object"),
        Err(e) => bail!("{flag}: invalid JSON: {e}"),
    }
}

/// evalscope 1.14.1: the deprecated `--multi-turn-args` keys are copied into
/// `--dataset-args` unless set there (which wins, with a warning); `num_workers` is
/// never copied.
fn fold_multi_turn_args(mt: Map<String, Value>, args: &mut Map<String, Value>) {
    log::warn("--multi-turn-args is deprecated; pass these keys in --dataset-args");
    for (k, v) in mt {
        if k == "num_workers" {
            continue;
        }
        if args.contains_key(&k) {
            log::warn(format!(
                "{k} is in both --dataset-args and --multi-turn-args; --dataset-args wins"
            ));
        } else {
            args.insert(k, v);
        }
    }
}

/// `--multi-turn`, `--min-turns`, `--max-turns`.
fn resolve_turns(a: &PerfArgs, kind: DatasetKind, chat: bool) -> Result<Option<TurnBounds>> {
    let multi_dataset = matches!(kind, DatasetKind::MultiTurn(_));
    if !a.multi_turn {
        if multi_dataset {
            bail!(
                "--dataset {} is a multi-turn dataset: add --multi-turn (--number then counts \
                 conversations)",
                a.dataset
            );
        }
        return Ok(None);
    }
    if a.open_loop {
        bail!("--multi-turn cannot be combined with --open-loop (evalscope rejects it too)");
    }
    if !multi_dataset {
        bail!(
            "--multi-turn needs a multi-turn dataset: random_multi_turn, share_gpt_zh_multi_turn, \
             share_gpt_en_multi_turn, custom_multi_turn, swe_smith or a trie_* trace set \
             (got --dataset {})",
            a.dataset
        );
    }
    if !chat {
        bail!(
            "--multi-turn sends the conversation as chat messages: use a chat URL \
             (…/v1/chat/completions) or --apply-chat-template"
        );
    }
    if a.prompt.is_some() {
        bail!("--multi-turn takes its turns from --dataset; drop --prompt");
    }
    if let Some(m) = a.max_turns {
        if m == 0 {
            bail!("--max-turns must be >= 1");
        }
        if m < a.min_turns.max(1) {
            bail!("--max-turns {m} must be >= --min-turns {}", a.min_turns);
        }
    }
    Ok(Some(TurnBounds {
        min: a.min_turns,
        max: a.max_turns,
    }))
}

/// evalscope 1.14.1: `--prefix-count` is an integer >= 1; above 1 it needs the
/// `random` dataset, no `--prompt` and a positive `--prefix-length`.
fn check_prefix_count(a: &PerfArgs) -> Result<()> {
    if a.prefix_count < 1 {
        bail!("--prefix-count {}: must be an integer >= 1", a.prefix_count);
    }
    if a.prefix_count > 1 {
        if a.prompt.is_some() {
            bail!("--prefix-count > 1 cannot be combined with --prompt");
        }
        if a.dataset != "random" {
            bail!(
                "--prefix-count > 1 needs --dataset random (got {})",
                a.dataset
            );
        }
        if a.prefix_length == 0 {
            bail!("--prefix-count > 1 needs --prefix-length > 0");
        }
    }
    Ok(())
}

/// `--trace-block-size` and `--trace-speedup` (and workload_trace's `speed`).
fn resolve_trace(a: &PerfArgs, kind: DatasetKind) -> Result<Option<TraceReplay>> {
    if !(a.trace_speedup > 0.0 && a.trace_speedup.is_finite()) {
        bail!("--trace-speedup {}: must be a number > 0", a.trace_speedup);
    }
    if a.trace_block_size == 0 {
        bail!("--trace-block-size must be >= 1 (Mooncake traces use 512)");
    }
    if !kind.is_trace() {
        return Ok(None);
    }
    if !a.open_loop {
        bail!(
            "--dataset {} replays the trace's own schedule: add --open-loop",
            a.dataset
        );
    }
    if a.dataset_path.is_none() {
        bail!(
            "--dataset {} needs --dataset-path: a JSONL trace (see docs/workloads.md; \
             examples/traces/synthetic_mooncake.jsonl is bundled)",
            a.dataset
        );
    }
    Ok(Some(TraceReplay {
        block_size: a.trace_block_size,
        speedup: a.trace_speedup,
    }))
}

/// `--tokenize-prompt` (evalscope): needs a tokenizer and the OpenAI protocol, not
/// random_vl; a chat URL becomes `/completions`, where token ids go.
pub(crate) fn tokenize_prompt_url(
    a: &PerfArgs,
    kind: DatasetKind,
    protocol: &crate::protocol::Protocol,
    url: &str,
) -> Result<String> {
    if a.tokenizer_path.is_none() {
        bail!("--tokenize-prompt sends token ids: it needs --tokenizer-path");
    }
    if !matches!(protocol, crate::protocol::Protocol::OpenAi) {
        bail!(
            "--tokenize-prompt works with OpenAI-compatible completions (--api openai, local, \
             local_vllm or sim), not --api {}",
            a.api
        );
    }
    if matches!(
        kind,
        DatasetKind::RandomVl
            | DatasetKind::Flickr8k
            | DatasetKind::KontextBench
            | DatasetKind::MmmuMultiImage
    ) {
        // evalscope 1.14.1 refuses mmmu_multi_image too: images are not token ids.
        bail!(
            "--tokenize-prompt cannot send images: not with --dataset {}",
            a.dataset
        );
    }
    let (path, query) = crate::redact::split_query(url);
    Ok(
        match path.trim_end_matches('/').strip_suffix("chat/completions") {
            Some(base) => format!("{base}completions{query}"),
            None => url.to_string(),
        },
    )
}

/// Checks `--dataset-args` against the dataset's keys and reads the ones it uses.
fn dataset_args(
    name: &str,
    kind: DatasetKind,
    m: Map<String, Value>,
    tokenizer: bool,
) -> Result<DatasetArgs> {
    let allowed = allowed_keys(kind);
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        if allowed.is_empty() {
            bail!("--dataset-args: --dataset {name} takes no keys (got `{k}`)");
        }
        bail!(
            "--dataset-args: unknown key `{k}` for --dataset {name}; allowed: {}",
            allowed.join(", ")
        );
    }
    let mut out = DatasetArgs::default();
    let int = |k: &str, v: &Value| -> Result<u64> {
        v.as_u64()
            .filter(|n| *n > 0)
            .with_context(|| format!("--dataset-args: {k} must be an integer > 0, got {v}"))
    };
    for (k, v) in &m {
        match k.as_str() {
            "target_input_len" => out.target_input_len = Some(int(k, v)?),
            "input_len_mode" => {
                out.input_len_mode = match v.as_str() {
                    Some("cap") => InputLenMode::Cap,
                    Some("drop") => InputLenMode::Drop,
                    _ => {
                        bail!("--dataset-args: input_len_mode must be \"cap\" or \"drop\", got {v}")
                    }
                }
            }
            "prefix_file" => {
                let p = v.as_str().with_context(|| {
                    format!("--dataset-args: prefix_file must be a path, got {v}")
                })?;
                out.prefix_file = Some(p.to_string());
            }
            "prefix_role" => {
                out.prefix_system = match v.as_str() {
                    Some("system") => true,
                    Some("user") => false,
                    _ => {
                        bail!("--dataset-args: prefix_role must be \"system\" or \"user\", got {v}")
                    }
                }
            }
            "speed" => match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => out.speed = Some(x),
                _ => bail!("--dataset-args: speed must be a number > 0, got {v}"),
            },
            "model_override" => {
                out.model_override = Some(
                    v.as_str()
                        .with_context(|| {
                            format!("--dataset-args: model_override must be a string, got {v}")
                        })?
                        .to_string(),
                )
            }
            "model_mapping" => {
                let o = v.as_object().filter(|o| o.values().all(Value::is_string));
                out.model_mapping = o
                    .with_context(|| {
                        format!("--dataset-args: model_mapping must map names to names, got {v}")
                    })?
                    .clone();
            }
            "match_output_length" => {
                out.match_output_length = v.as_bool().with_context(|| {
                    format!("--dataset-args: match_output_length must be true or false, got {v}")
                })?
            }
            // Multi-turn lengths: checked, used only by evalscope's swe_smith.
            _ => log::warn(format!(
                "--dataset-args: {k} is accepted for --dataset {name} but only evalscope's \
                 swe_smith uses it; ignored"
            )),
        }
    }
    if out.target_input_len.is_some() && !tokenizer {
        bail!("--dataset-args: target_input_len is in tokens and needs --tokenizer-path");
    }
    if out.prefix_file.is_some() {
        if out.target_input_len.is_none() {
            bail!("--dataset-args: prefix_file needs target_input_len");
        }
        if out.input_len_mode == InputLenMode::Drop {
            bail!("--dataset-args: prefix_file cannot be combined with input_len_mode \"drop\"");
        }
    }
    if !m.contains_key("prefix_role") {
        out.prefix_system = true;
    }
    Ok(out)
}
