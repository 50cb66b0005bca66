//! The flags as stored (benchmark_args.json, the `run` table): secrets masked.

use serde_json::{Map, Value};

use crate::cli::PerfArgs;
use crate::redact::{is_secret_header, redact_url, MASK};

pub(crate) fn masked_args(a: &PerfArgs) -> Map<String, Value> {
    let mut m = match serde_json::to_value(a) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for k in ["api_key", "wandb_api_key", "swanlab_api_key"] {
        if m.get(k).is_some_and(|v| !v.is_null()) {
            m.insert(k.into(), MASK.into());
        }
    }
    m.insert("url".into(), redact_url(&a.url).into());
    let headers: Map<String, Value> = a
        .headers
        .iter()
        .filter_map(|h| h.split_once('='))
        .map(|(k, v)| {
            let secret = is_secret_header(k.trim());
            (
                k.trim().to_string(),
                Value::String(if secret { MASK.into() } else { v.into() }),
            )
        })
        .collect();
    m.insert("headers".into(), Value::Object(headers));
    if let Some(c) = &a.local_server_cmd {
        m.insert(
            "local_server_cmd".into(),
            crate::local_server::mask_command(c).into(),
        );
    }
    m.insert("stream".into(), (!a.no_stream).into());
    // evalscope 1.14.1 records an unset --logprobs as null and an unset
    // --num-workers as 0 (automatic).
    if !a.logprobs {
        m.insert("logprobs".into(), Value::Null);
    }
    if a.num_workers.is_none() {
        m.insert("num_workers".into(), 0.into());
    }
    // evalscope types these as int (warmup_num int or float): a whole value is
    // recorded as an integer (21600, not 21600.0).
    for k in [
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "warmup_num",
    ] {
        if let Some(x) = m.get(k).and_then(Value::as_f64) {
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                m.insert(k.into(), (x as i64).into());
            }
        }
    }
    m.shift_remove("no_stream");
    m.shift_remove("no_apply_chat_template");
    // None = decided from the URL (evalscope); the per-run args hold the outcome.
    let chat = match (a.apply_chat_template, a.no_apply_chat_template) {
        (true, _) => Value::Bool(true),
        (_, true) => Value::Bool(false),
        _ => Value::Null,
    };
    m.insert("apply_chat_template".into(), chat);
    if let [single] = a.max_tokens.as_slice() {
        m.insert("max_tokens".into(), (*single).into());
    }
    for k in ["stop", "stop_token_ids"] {
        if m.get(k)
            .and_then(Value::as_array)
            .is_some_and(|v| v.is_empty())
        {
            m.insert(k.into(), Value::Null);
        }
    }
    if let Ok(Value::Object(x)) = serde_json::from_str::<Value>(&a.extra_args) {
        m.insert("extra_args".into(), Value::Object(x));
    }
    // evalscope stores the parsed objects.
    for (k, v) in [
        ("dataset_args", &a.dataset_args),
        ("multi_turn_args", &a.multi_turn_args),
    ] {
        if let Some(Ok(x)) = v.as_deref().map(serde_json::from_str::<Value>) {
            m.insert(k.into(), x);
        }
    }
    if let Some(Ok(v)) = a.sim_args.as_deref().map(serde_json::from_str::<Value>) {
        m.insert("sim_args".into(), v);
    }
    m
}

/// evalscope 1.14.1's `benchmark_args.json` key order (its `Arguments` fields).
const EVALSCOPE_ORDER: [&str; 81] = [
    "model",
    "model_id",
    "attn_implementation",
    "api",
    "tokenizer_path",
    "port",
    "url",
    "headers",
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "api_key",
    "no_test_connection",
    "scenario",
    "number",
    "parallel",
    "rate",
    "warmup_num",
    "enable_pd_metrics",
    "open_loop",
    "sleep_interval",
    "duration",
    "sla_auto_tune",
    "sla_variable",
    "sla_params",
    "sla_num_runs",
    "sla_upper_bound",
    "sla_lower_bound",
    "sla_fixed_parallel",
    "sla_number_multiplier",
    "db_commit_interval",
    "queue_size_multiplier",
    "in_flight_task_multiplier",
    "num_workers",
    "log_every_n_query",
    "debug",
    "enable_progress_tracker",
    "visualizer",
    "wandb_api_key",
    "swanlab_api_key",
    "swanlab_host",
    "name",
    "alias",
    "outputs_dir",
    "no_timestamp",
    "max_prompt_length",
    "min_prompt_length",
    "prefix_length",
    "prefix_count",
    "prompt",
    "query_template",
    "apply_chat_template",
    "image_width",
    "image_height",
    "image_format",
    "image_num",
    "image_patch_size",
    "dataset",
    "dataset_path",
    "data_source",
    "dataset_offset",
    "dataset_args",
    "frequency_penalty",
    "repetition_penalty",
    "logprobs",
    "max_tokens",
    "min_tokens",
    "n_choices",
    "seed",
    "stop",
    "stop_token_ids",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "extra_args",
    "tokenize_prompt",
    "multi_turn",
    "min_turns",
    "max_turns",
    "multi_turn_args",
];

/// The keys in evalscope's order, perfscope's own after them in theirs.
pub(crate) fn evalscope_order(m: Map<String, Value>) -> Map<String, Value> {
    let mut rest = m;
    let mut out = Map::new();
    for k in EVALSCOPE_ORDER {
        if let Some(v) = rest.shift_remove(k) {
            out.insert(k.into(), v);
        }
    }
    out.extend(rest);
    out
}
