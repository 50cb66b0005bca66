//! Datasets: where prompts come from (evalscope). Each kind materialises a list of
//! prompts; the engine cycles over it until a run has its number of requests.
//!
//! Prompt lengths are in tokens with `--tokenizer-path`, else in characters, as
//! evalscope's `--min/--max-prompt-length`.

pub mod config;
mod conversation;
mod encoder;
mod fit;
mod flickr8k;
mod mmmu;
pub mod multi_turn;
mod open_decisions;
mod openqa;
mod parquet_rows;
pub mod prompt;
mod random;
pub mod random_vl;
mod swe_smith;
pub mod template;
pub mod trace;
mod trie;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub use config::{DatasetArgs, DatasetConfig, DatasetKind, Hub, ImageSpec, InputLenMode};
use prompt::in_range;
pub use prompt::{
    max_request_bytes, prompt_bytes, read_dataset_text, set_max_request_bytes, Prompt,
};

/// Most bytes of generated prompts (random text, images) a run holds: a long run
/// re-sends them in turn instead of holding one per request (2,000,000 random
/// prompts would take gigabytes, and evalscope holds them all).
const GENERATED_BYTES: u64 = 256 << 20;

/// About how many bytes one generated prompt of `cfg` holds: its text (a token is
/// about 4 characters) and the request around it.
fn text_bytes(cfg: &DatasetConfig) -> u64 {
    let lo = cfg.min_prompt_length.min(1 << 40);
    let hi = cfg.max_prompt_length.min(1 << 40);
    let per_unit = if cfg.tokenizer.is_some() { 4 } else { 1 };
    (cfg.prefix_length.min(1 << 40) + (lo + hi) / 2) * per_unit + 256
}

/// How many distinct prompts to generate for `count` requests: all of them, unless
/// they would take more than GENERATED_BYTES; then as many as fit, said once.
fn distinct(cfg: &DatasetConfig, count: u64, bytes_each: u64) -> u64 {
    let fit = (GENERATED_BYTES / bytes_each.max(1)).max(1);
    if fit >= count {
        return count;
    }
    crate::telemetry::log::info(format!(
        "--dataset {}: {count} requests take turns over {fit} distinct generated prompts \
         (about {} MiB held); each is sent again every {fit} requests",
        cfg.name,
        (fit * bytes_each) >> 20
    ));
    fit
}

/// The checks a dataset can make from its settings alone, run before the output
/// directory exists and before the connection test: a setting the dataset will
/// refuse fails the invocation with nothing written and nothing sent.
pub fn preflight(cfg: &DatasetConfig) -> Result<()> {
    if cfg.prompt.is_some() {
        return Ok(());
    }
    match cfg.kind {
        DatasetKind::Random
        | DatasetKind::RandomVl
        | DatasetKind::RandomEmbedding
        | DatasetKind::RandomRerank
        | DatasetKind::MultiTurn(config::MultiTurnKind::Random) => random::check_cap(cfg),
        DatasetKind::MultiTurn(config::MultiTurnKind::Trie(set)) => trie::preflight(set, cfg),
        DatasetKind::MultiTurn(config::MultiTurnKind::SweSmith) => swe_smith::preflight(cfg),
        DatasetKind::MmmuMultiImage | DatasetKind::OpenDecisions => match cfg.path.as_deref() {
            None => bail!(
                "--dataset {} needs --dataset-path: {}",
                cfg.name,
                if cfg.kind == DatasetKind::OpenDecisions {
                    open_decisions::HINT
                } else {
                    mmmu::HINT
                }
            ),
            Some(p) if !std::path::Path::new(p).exists() => {
                bail!("--dataset-path: `{p}` does not exist")
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Builds up to `count` prompts for run number `run_index` (0-based; random prompts
/// differ between runs so a prefix cache cannot serve later runs).
pub fn load(cfg: &DatasetConfig, chat: bool, count: u64, run_index: u64) -> Result<Vec<Prompt>> {
    if let Some(p) = &cfg.prompt {
        // --prompt takes priority over --dataset; one prompt re-sent N times.
        let one = vec![Prompt::wrap(p.clone(), chat)];
        return match &cfg.query_template {
            Some(t) => template::apply(t, &cfg.model, one),
            None => Ok(one),
        };
    }
    let prompts = match cfg.kind {
        DatasetKind::OpenQa => {
            let questions = match &cfg.path {
                Some(path) => openqa::read_jsonl(path)?,
                None => openqa::bundled(),
            };
            let fit = fit::Fitter::new(cfg)?;
            questions
                .iter()
                .filter_map(|q| fit::text_prompt(q, cfg, fit.as_ref(), chat))
                .take(count as usize)
                .collect::<Vec<_>>()
        }
        DatasetKind::LineByLine => {
            let path = cfg
                .path
                .as_deref()
                .context("--dataset line_by_line needs --dataset-path FILE")?;
            line_by_line(path, cfg, chat, count)?
        }
        DatasetKind::Random => {
            random::generate(cfg, chat, distinct(cfg, count, text_bytes(cfg)), run_index)?
        }
        DatasetKind::Embedding => encoder::embedding(cfg, count)?,
        DatasetKind::Rerank => encoder::rerank(cfg, count)?,
        DatasetKind::RandomEmbedding => {
            let texts = random::embedding_texts(cfg, count * cfg.batch_size as u64, run_index)?;
            encoder::batches(texts, cfg.batch_size, count)
        }
        DatasetKind::RandomRerank => random::rerank(cfg, count, run_index)?,
        DatasetKind::Flickr8k => flickr8k::load(&flickr8k::FLICKR8K, cfg, chat, count)?,
        DatasetKind::KontextBench => flickr8k::load(&flickr8k::KONTEXT_BENCH, cfg, chat, count)?,
        DatasetKind::MmmuMultiImage => mmmu::load(cfg, chat, count)?,
        DatasetKind::OpenDecisions => open_decisions::load(cfg, count)?,
        DatasetKind::RandomVl => {
            random_vl::log_shape(&cfg.image);
            let image = (cfg.image.width * cfg.image.height) as u64 * 4 * cfg.image.num as u64;
            random_vl::generate(
                cfg,
                chat,
                distinct(cfg, count, text_bytes(cfg) + image),
                run_index,
            )?
        }
        DatasetKind::LongAlpaca => {
            // evalscope downloads AI-ModelScope/LongAlpaca-12k (split train) from
            // ModelScope; perfscope never downloads.
            let Some(path) = cfg.path.as_deref() else {
                bail!(
                    "--dataset longalpaca needs --dataset-path: download LongAlpaca-12k \
                     (ModelScope AI-ModelScope/LongAlpaca-12k or Hugging Face \
                     Yukang/LongAlpaca-12k, the JSON list LongAlpaca-12k.json) and pass its path"
                );
            };
            let fit = fit::Fitter::new(cfg)?;
            read_text_field(path, "instruction")?
                .iter()
                .filter_map(|q| fit::text_prompt(q, cfg, fit.as_ref(), chat))
                .take(count as usize)
                .collect()
        }
        DatasetKind::SpeedBenchmark { long } => {
            // evalscope: '熵' x L as a plain completions prompt, each length twice.
            let lens: &[usize] = if long {
                &[63_488, 129_024]
            } else {
                &[1, 6_144, 14_336, 30_720]
            };
            lens.iter()
                .flat_map(|&l| [l, l])
                .map(|l| Prompt::Text("熵".repeat(l)))
                .collect()
        }
        DatasetKind::ShareGpt { zh } => multi_turn::share_gpt_prompts(cfg, zh, chat, count)?,
        DatasetKind::MultiTurn(_) | DatasetKind::MooncakeTrace | DatasetKind::WorkloadTrace => {
            bail!(
                "--dataset {}: conversations and traces are loaded by their own runner                  (--multi-turn, or --open-loop for a trace)",
                cfg.name
            )
        }
        DatasetKind::Custom => custom(cfg, chat, count)?,
    };
    let prompts = match &cfg.query_template {
        Some(t) if !prompts.is_empty() => template::apply(t, &cfg.model, prompts)?,
        _ => prompts,
    };
    if prompts.is_empty() {
        let source = cfg.path.as_deref().unwrap_or("the bundled questions");
        bail!(
            "--dataset {}: no prompts left from {source} after the length filter \
             [--min-prompt-length {}, --max-prompt-length {}] ({})",
            cfg.name,
            cfg.min_prompt_length,
            cfg.max_prompt_length,
            if cfg.tokenizer.is_some() {
                "tokens"
            } else {
                "characters"
            }
        );
    }
    Ok(prompts)
}

/// evalscope's custom template: every non-empty line of `--dataset-path` is a
/// prompt, length filtered, chat-wrapped for chat endpoints (no JSON interpretation).
fn custom(cfg: &DatasetConfig, chat: bool, count: u64) -> Result<Vec<Prompt>> {
    let path = cfg
        .path
        .as_deref()
        .context("--dataset custom needs --dataset-path FILE (one prompt per line)")?;
    let text = read_dataset_text(path, "--dataset-path")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && in_range(l, cfg))
        .take(count as usize)
        .map(|l| Prompt::wrap(l.to_string(), chat))
        .collect())
}

/// The string field `field` of every item of a JSON list file, or of every line of a
/// JSONL file (evalscope: `item[field].strip()`). Errors name the file and the line
/// (JSONL) or the item (JSON list).
pub fn read_text_field(path: &str, field: &str) -> Result<Vec<String>> {
    let text = read_dataset_text(path, "--dataset-path")?;
    let pick = |v: &Value, at: &str| -> Result<Option<String>> {
        match v.get(field) {
            Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.trim().to_string())),
            _ => bail!("{path}:{at}: no string field \"{field}\""),
        }
    };
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{path}:{}: not a JSON list of objects ({e})", e.line())
        })?;
        for (i, v) in items.iter().enumerate() {
            out.extend(pick(v, &format!(" item {}", i + 1))?);
        }
    } else {
        for (line, v) in prompt::read_jsonl(path)? {
            out.extend(pick(&v, &line.to_string())?);
        }
    }
    Ok(out)
}

/// evalscope's line_by_line: each non-empty line is plain text (a prompt, length
/// filtered), a JSON array (chat messages, verbatim) or a JSON object (a whole body).
fn line_by_line(path: &str, cfg: &DatasetConfig, chat: bool, count: u64) -> Result<Vec<Prompt>> {
    let text = read_dataset_text(path, "--dataset-path")?;
    let fit = fit::Fitter::new(cfg)?;
    let mut out = Vec::new();
    for line in text.lines() {
        if out.len() as u64 >= count {
            break;
        }
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        // A line that looks like JSON but does not parse is treated as text, as
        // evalscope does (it falls back on a JSON decode error).
        let parsed = if l.starts_with('[') || l.starts_with('{') {
            serde_json::from_str::<Value>(l).ok()
        } else {
            None
        };
        match parsed {
            Some(Value::Array(a)) => out.push(Prompt::Messages(Value::Array(a))),
            Some(Value::Object(o)) => out.push(Prompt::Body(o)),
            _ => out.extend(fit::text_prompt(l, cfg, fit.as_ref(), chat)),
        }
    }
    Ok(out)
}

/// A dataset configuration with evalscope's defaults, for the dataset tests.
#[cfg(test)]
pub(crate) fn test_config(kind: DatasetKind) -> DatasetConfig {
    DatasetConfig {
        kind,
        name: "x".into(),
        path: None,
        prompt: None,
        min_prompt_length: 0,
        max_prompt_length: u64::MAX,
        prefix_length: 0,
        prefix_count: 1,
        dataset_offset: 0,
        seed: 0,
        query_template: None,
        model: "m".into(),
        tokenizer: None,
        batch_size: 1,
        num_documents: 10,
        document_length_ratio: 5.0,
        tokenize: false,
        args: DatasetArgs::default(),
        num_workers: 0,
        hub: Hub::default(),
        image: ImageSpec {
            width: 8,
            height: 8,
            format: "RGB".into(),
            num: 1,
            patch_size: 28,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: DatasetKind) -> DatasetConfig {
        test_config(kind)
    }

    #[test]
    fn line_by_line_kinds_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.txt");
        std::fs::write(
            &p,
            "hello there\n\n[{\"role\":\"user\",\"content\":\"hi\"}]\n{\"prompt\":\"x\",\"max_tokens\":3}\n[not json\nab\n",
        )
        .unwrap();
        let mut c = cfg(DatasetKind::LineByLine);
        c.path = Some(p.to_string_lossy().into_owned());
        c.min_prompt_length = 3;
        let out = load(&c, false, 100, 0).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], Prompt::Text("hello there".into()));
        assert!(matches!(out[1], Prompt::Messages(_)));
        assert!(matches!(out[2], Prompt::Body(_)));
        assert_eq!(out[3], Prompt::Text("[not json".into()));
    }

    #[test]
    fn openqa_jsonl_question_field_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("open_qa.jsonl");
        std::fs::write(
            &p,
            "{\"question\": \"  why?  \", \"human_answers\": []}\n\n{\"question\": \"how?\"}\n",
        )
        .unwrap();
        let mut c = cfg(DatasetKind::OpenQa);
        c.path = Some(p.to_string_lossy().into_owned());
        assert_eq!(
            load(&c, false, 10, 0).unwrap(),
            vec![Prompt::Text("why?".into()), Prompt::Text("how?".into())]
        );
        std::fs::write(&p, "{\"question\": \"ok\"}\n{\"q\": 1}\n").unwrap();
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("open_qa.jsonl:2") && e.contains("question"),
            "{e}"
        );
        std::fs::write(&p, "not json\n").unwrap();
        let e = format!("{:#}", load(&c, false, 10, 0).unwrap_err());
        assert!(e.contains("open_qa.jsonl:1"), "{e}");
        c.path = Some(
            dir.path()
                .join("missing.jsonl")
                .to_string_lossy()
                .into_owned(),
        );
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("--dataset-path") && e.contains("missing.jsonl"),
            "{e}"
        );
    }

    #[test]
    fn longalpaca_json_list_and_jsonl_and_custom_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LongAlpaca-12k.json");
        std::fs::write(
            &p,
            r#"[{"instruction": " summarise this long paper ", "output": "x"}, {"instruction": "short"}]"#,
        )
        .unwrap();
        let mut c = cfg(DatasetKind::LongAlpaca);
        c.path = Some(p.to_string_lossy().into_owned());
        c.min_prompt_length = 10;
        assert_eq!(
            load(&c, false, 10, 0).unwrap(),
            vec![Prompt::Text("summarise this long paper".into())]
        );
        std::fs::write(&p, "{\"instruction\": \"a\"}\n{\"input\": \"b\"}\n").unwrap();
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("LongAlpaca-12k.json:2") && e.contains("instruction"),
            "{e}"
        );
        std::fs::write(&p, "[{\"instruction\": \"a\"},\n {\"instruction\": 3}]").unwrap();
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(e.contains("item 2"), "{e}");
        std::fs::write(&p, "[{\"instruction\": \"a\"},\n oops]").unwrap();
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(e.contains("LongAlpaca-12k.json:2"), "{e}");
        c.path = None;
        let e = load(&c, false, 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("--dataset-path")
                && e.contains("Yukang/LongAlpaca-12k, the JSON list")
                && !e.contains("  "),
            "{e}"
        );

        let p = dir.path().join("prompts.txt");
        std::fs::write(&p, "first prompt\n\n{\"not\": \"parsed\"}\nx\n").unwrap();
        let mut c = cfg(DatasetKind::Custom);
        c.path = Some(p.to_string_lossy().into_owned());
        c.min_prompt_length = 2;
        let out = load(&c, true, 10, 0).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            Prompt::Messages(
                serde_json::json!([{"role": "user", "content": "{\"not\": \"parsed\"}"}])
            )
        );
    }

    #[test]
    fn openqa_bundled_and_filter_error() {
        let c = cfg(DatasetKind::OpenQa);
        let out = load(&c, true, 5, 0).unwrap();
        assert_eq!(out.len(), 5);
        let mut c = cfg(DatasetKind::OpenQa);
        c.max_prompt_length = 2;
        let err = load(&c, true, 5, 0).unwrap_err().to_string();
        assert!(err.contains("--max-prompt-length 2"), "{err}");
    }
}
