//! Random texts: `random` prompts, and `random_embedding` / `random_rerank` inputs.
//! With `--tokenizer-path` lengths are in tokens (evalscope: vocabulary
//! windows converged by decode/re-encode, see `Vocab`); without one, random
//! lowercase words whose length in characters is uniform in [--min-prompt-length,
//! --max-prompt-length], after a shared random prefix of --prefix-length characters
//! for `random` (evalscope's prefix-cache experiment). Seeded by --seed and the run
//! index, so each sweep run gets different texts (evalscope advances
//! `dataset_offset` per run for the same reason).

use anyhow::{bail, Result};

use super::config::DatasetConfig;
use super::prompt::Prompt;

/// Largest length accepted when --max-prompt-length is left at its "no cap" default.
const MAX_CHARS: u64 = 1 << 20;

fn random_text(rng: &mut fastrand::Rng, len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
            if s.len() == len {
                // Never end with a space: servers may strip it.
                s.pop();
                s.push(rng.lowercase());
                break;
            }
        }
        let word = rng.usize(2..=8).min(len - s.len());
        for _ in 0..word {
            s.push(rng.lowercase());
        }
    }
    s
}

pub fn generate(
    cfg: &DatasetConfig,
    chat: bool,
    count: u64,
    run_index: u64,
) -> Result<Vec<Prompt>> {
    if let Some(t) = &cfg.tokenizer {
        return generate_tokens(cfg, t, chat, count, run_index);
    }
    check_cap(cfg)?;
    let mut rng = run_rng(cfg, run_index);
    let prefixes = char_prefixes(cfg, &mut rng)?;
    let (lo, hi) = (cfg.min_prompt_length, cfg.max_prompt_length.max(1));
    Ok((0..count)
        .map(|i| {
            let len = rng.u64(lo.max(1)..=hi) as usize;
            let mut p = prefixes[(i % prefixes.len() as u64) as usize].clone();
            p.push_str(&random_text(&mut rng, len));
            Prompt::wrap(p, chat)
        })
        .collect())
}

/// `--prefix-count` distinct prefixes of `--prefix-length` characters (one, possibly
/// empty, by default). Request i gets prefix i mod count (evalscope 1.14.1).
fn char_prefixes(cfg: &DatasetConfig, rng: &mut fastrand::Rng) -> Result<Vec<String>> {
    let n = cfg.prefix_count.max(1) as usize;
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let p = random_text(rng, cfg.prefix_length as usize);
        if out.contains(&p) {
            if cfg.prefix_length < 4 {
                bail!(
                    "--prefix-count {n}: too many distinct prefixes for --prefix-length {}",
                    cfg.prefix_length
                );
            }
            continue;
        }
        out.push(p);
    }
    Ok(out)
}

/// `--prefix-count` distinct token prefixes (evalscope 1.14.1): each drawn
/// uniformly from the allowed ids; one equal to an earlier prefix is counted up as a
/// base-V number (last position first, with carry) until it is new.
fn token_prefixes(
    cfg: &DatasetConfig,
    allowed: &[u32],
    rng: &mut fastrand::Rng,
) -> Result<Vec<Vec<u32>>> {
    let (n, len, v) = (
        cfg.prefix_count.max(1),
        cfg.prefix_length as usize,
        allowed.len(),
    );
    if n > 1 && (v as f64).powi(len.min(64) as i32) < n as f64 {
        bail!("--prefix-count {n}: more than the {v}^{len} possible prefixes of --prefix-length {len}");
    }
    let index: std::collections::HashMap<u32, usize> =
        allowed.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let mut p: Vec<u32> = (0..len).map(|_| allowed[rng.usize(..v)]).collect();
        while !seen.insert(p.clone()) {
            for pos in (0..len).rev() {
                let next = (index.get(&p[pos]).copied().unwrap_or(0) + 1) % v;
                p[pos] = allowed[next];
                if next != 0 {
                    break;
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// Texts for `n` turns of `random_multi_turn`: the shared prefix (prepended to every
/// turn by the caller) and texts of a length uniform in [max(1, min), max] tokens
/// (characters without a tokenizer). evalscope does not subtract the chat template
/// here, unlike `random`.
pub(super) fn turn_texts(
    cfg: &DatasetConfig,
    rng: &mut fastrand::Rng,
    n: usize,
) -> Result<(String, Vec<String>)> {
    check_cap(cfg)?;
    let prefix = prefix_text(cfg, rng)?;
    let lens: Vec<usize> = (0..n).map(|_| length(rng, cfg)).collect();
    let what = format!(
        "{n} turns of {}..={} tokens after a {}-token prefix",
        cfg.min_prompt_length.max(1),
        cfg.max_prompt_length.max(1),
        cfg.prefix_length
    );
    Ok((prefix, texts(cfg, rng, &lens, &what)?))
}

/// The shared --prefix-length prefix of the multi-turn texts.
fn prefix_text(cfg: &DatasetConfig, rng: &mut fastrand::Rng) -> Result<String> {
    Ok(match &cfg.tokenizer {
        Some(t) => {
            let vocab = Vocab::new(t)?;
            let v = vocab.allowed.len();
            let ids: Vec<u32> = (0..cfg.prefix_length)
                .map(|_| vocab.allowed[rng.usize(..v)])
                .collect();
            t.decode(&ids)
        }
        None => random_text(rng, cfg.prefix_length as usize),
    })
}

/// Texts of exactly the given token lengths (at least 1 each; characters without a
/// tokenizer) after the shared --prefix-length prefix (returned apart): the trie
/// traces' recorded lengths.
pub(super) fn texts_of_lengths(
    cfg: &DatasetConfig,
    rng: &mut fastrand::Rng,
    lens: &[usize],
    what: &str,
) -> Result<(String, Vec<String>)> {
    let prefix = prefix_text(cfg, rng)?;
    let lens: Vec<usize> = lens.iter().map(|&n| n.max(1)).collect();
    Ok((prefix, texts(cfg, rng, &lens, what)?))
}

/// Largest token length accepted when --max-prompt-length is left at "no cap".
const MAX_TOKENS: u64 = 1 << 21;

/// The random stream of run `run_index`: evalscope advances `dataset_offset` per
/// run so later runs miss the prefix cache; the run index in the seed does the same.
pub(super) fn run_rng(cfg: &DatasetConfig, run_index: u64) -> fastrand::Rng {
    // --dataset-offset moves the texts as evalscope's vocabulary offset does: another
    // offset, other texts (a prefix cache warmed by one run misses the next).
    fastrand::Rng::with_seed(
        cfg.seed
            ^ (run_index.wrapping_add(1)).wrapping_mul(0x2545_F491_4F6C_DD1D)
            ^ cfg.dataset_offset.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// Rejects an uncapped --max-prompt-length, in the unit the run counts in.
pub(super) fn check_cap(cfg: &DatasetConfig) -> Result<()> {
    let (cap, unit) = match cfg.tokenizer {
        Some(_) => (MAX_TOKENS, "tokens with --tokenizer-path"),
        None => (MAX_CHARS, "characters without --tokenizer-path"),
    };
    if cfg.max_prompt_length > cap {
        bail!(
            "--dataset {}: --max-prompt-length {} is more than this dataset generates \
             ({cap} {unit}); set a smaller one, e.g. --min-prompt-length 512 \
             --max-prompt-length 1024",
            cfg.name,
            cfg.max_prompt_length
        );
    }
    Ok(())
}

/// One random text to build: a window of `len` allowed tokens from `offset`, and the
/// seed of its fill tokens (drawn up front so the result does not depend on how many
/// threads build the texts).
#[derive(Clone, Copy)]
struct Plan {
    len: usize,
    /// Which of the `--prefix-count` prefixes goes first.
    prefix: usize,
    offset: usize,
    seed: u64,
}

/// The vocabulary random texts are made of (evalscope): every id but special and
/// byte-fallback tokens, and the word-initial ones used to fill a short text up.
struct Vocab<'a> {
    tok: &'a crate::tokenizer::Tokenizer,
    allowed: Vec<u32>,
    fillers: Vec<u32>,
}

impl<'a> Vocab<'a> {
    fn new(tok: &'a crate::tokenizer::Tokenizer) -> Result<Self> {
        let allowed = tok.allowed_ids();
        if allowed.is_empty() {
            bail!(
                "--tokenizer-path: {} has no ordinary tokens to build prompts from",
                tok.path
            );
        }
        let starts = tok.word_start_ids();
        let fillers = if starts.is_empty() {
            allowed.clone()
        } else {
            starts
        };
        Ok(Vocab {
            tok,
            allowed,
            fillers,
        })
    }

    fn plan(&self, rng: &mut fastrand::Rng, len: usize) -> Plan {
        Plan {
            len,
            prefix: 0,
            offset: rng.usize(..self.allowed.len()),
            seed: rng.u64(..),
        }
    }

    /// `prefix` then a contiguous window of the vocabulary (the vLLM random-dataset
    /// scheme), converged by decode/re-encode so that `measure` of the text is the
    /// token count. Returns the remaining error and the text.
    fn build(&self, prefix: &[u32], p: Plan, measure: &dyn Fn(&str) -> usize) -> (usize, String) {
        let (tok, v) = (self.tok, self.allowed.len());
        let mut ids = prefix.to_vec();
        ids.extend((0..p.len).map(|j| self.allowed[(p.offset + j) % v]));
        let target = ids.len();
        let mut fill = fastrand::Rng::with_seed(p.seed);
        let mut text = tok.decode(&ids);
        // evalscope's decode/re-encode convergence (10 rounds), keeping the closest
        // text seen. Fill tokens start a new word where the vocabulary has such
        // tokens, so they do not merge with the text before them.
        let mut best = (usize::MAX, text.clone());
        for _ in 0..10 {
            let m = measure(&text);
            let err = m.abs_diff(target);
            if err < best.0 {
                best = (err, text.clone());
            }
            if err == 0 {
                break;
            }
            let mut next = tok.encode(&text);
            if m > target {
                next.truncate(next.len().saturating_sub(m - target));
                // A cut inside a multi-byte character decodes to U+FFFD, which
                // re-encodes longer: drop it and let the next round fill up.
                text = tok.decode(&next).trim_end_matches('\u{FFFD}').to_string();
            } else {
                for _ in m..target {
                    next.push(self.fillers[fill.usize(..self.fillers.len())]);
                }
                text = tok.decode(&next);
            }
        }
        best
    }

    /// Builds every plan, on `--num-workers` threads: 1 serial, N > 1 that many, 0
    /// (automatic) every core when there are many tokens (evalscope uses a process
    /// pool above 4 Mi tokens; a few short texts are not worth the threads). Results
    /// are in plan order.
    fn build_all(
        &self,
        prefixes: &[Vec<u32>],
        plans: &[Plan],
        measure: &(dyn Fn(&str) -> usize + Sync),
        num_workers: usize,
    ) -> Vec<(usize, String)> {
        let total_tokens: usize = plans.iter().map(|p| p.len).sum();
        let n = plans.len();
        let workers = match num_workers {
            0 if total_tokens < 1 << 18 => 1,
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(32),
            w => w,
        }
        .min(n.max(1));
        let chunk = n.div_ceil(workers).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&p| self.build(&prefixes[p.prefix], p, measure))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // A builder that panicked re-raises here: a missing text would shift
                // every rerank group after it.
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }
}

/// Logs the re-encoded length error of built texts (evalscope logs the summed
/// mismatch once as a warning).
fn log_error(what: String, built: &[(usize, String)]) {
    let max = built.iter().map(|b| b.0).max().unwrap_or(0);
    let sum: usize = built.iter().map(|b| b.0).sum();
    crate::telemetry::log::info(format!(
        "{what}; re-encoded length error: mean {:.3}, max {max} tokens",
        if built.is_empty() {
            0.0
        } else {
            sum as f64 / built.len() as f64
        }
    ));
}

/// evalscope with a tokenizer: a shared prefix of `--prefix-length` random
/// tokens, then a contiguous window of the allowed vocabulary (specials and
/// byte-fallback tokens excluded) of a length uniform in [min, max], converged by
/// decode/re-encode so the text re-encodes to the target length. With a chat URL the
/// chat template's own tokens are subtracted from the bounds, so the server sees
/// about the requested length. The remaining error is measured and logged.
fn generate_tokens(
    cfg: &DatasetConfig,
    tok: &crate::tokenizer::Tokenizer,
    chat: bool,
    count: u64,
    run_index: u64,
) -> Result<Vec<Prompt>> {
    check_cap(cfg)?;
    // --tokenize-prompt: evalscope sends the raw ids, prefix + input_len of them, with
    // no chat template around them.
    let chat = chat && !cfg.tokenize;
    let vocab = Vocab::new(tok)?;
    let v = vocab.allowed.len();
    let mut rng = run_rng(cfg, run_index);
    let prefixes = token_prefixes(cfg, &vocab.allowed, &mut rng)?;
    let empty = serde_json::json!([{"role": "user", "content": ""}]);
    let template_len = if chat {
        tok.count(&tok.render_chat(&empty, true)?)
    } else {
        0
    };
    let (lo, hi) = (
        cfg.min_prompt_length.saturating_sub(template_len),
        (cfg.max_prompt_length + 1)
            .saturating_sub(template_len)
            .max(1),
    );
    // What the server counts for a prompt text, minus the template's own tokens.
    // Converging on this (rather than the bare text, as evalscope does) keeps
    // templates that strip or join text at their boundaries from adding error.
    let measure = |text: &str| -> usize {
        if chat {
            let m = serde_json::json!([{"role": "user", "content": text}]);
            tok.render_chat(&m, true)
                .map(|r| tok.count(&r))
                .unwrap_or_else(|_| tok.count(text) + template_len)
                .saturating_sub(template_len) as usize
        } else {
            tok.count(text) as usize
        }
    };
    // Request i reads the window at offset_i + i, as evalscope does.
    let plans: Vec<Plan> = (0..count as usize)
        .map(|i| {
            let len = if hi > lo { rng.u64(lo..hi) } else { lo } as usize;
            let mut p = vocab.plan(&mut rng, len);
            // evalscope: offset_i = (randint(0, V) + dataset_offset) mod V, read at + i.
            p.offset = (p.offset + i + cfg.dataset_offset as usize) % v;
            p.prefix = i % prefixes.len();
            p
        })
        .collect();
    let built = vocab.build_all(&prefixes, &plans, &measure, cfg.num_workers);
    log_error(
        format!(
            "random: {count} prompts of {}..={} tokens{}",
            lo + cfg.prefix_length,
            hi.saturating_sub(1) + cfg.prefix_length,
            if chat { " plus the chat template" } else { "" },
        ),
        &built,
    );
    Ok(built
        .into_iter()
        .map(|(_, text)| Prompt::wrap(text, chat))
        .collect())
}

/// A length uniform in [max(1, min), max] (evalscope's random_embedding bounds).
fn length(rng: &mut fastrand::Rng, cfg: &DatasetConfig) -> usize {
    let hi = cfg.max_prompt_length.max(1);
    rng.u64(cfg.min_prompt_length.clamp(1, hi)..=hi) as usize
}

/// Builds texts of the given lengths: tokens with a tokenizer (converged on the bare
/// text, which is what an encoder counts), else characters of random words.
fn texts(
    cfg: &DatasetConfig,
    rng: &mut fastrand::Rng,
    lens: &[usize],
    what: &str,
) -> Result<Vec<String>> {
    let Some(tok) = &cfg.tokenizer else {
        return Ok(lens.iter().map(|&n| random_text(rng, n)).collect());
    };
    let vocab = Vocab::new(tok)?;
    let plans: Vec<Plan> = lens.iter().map(|&n| vocab.plan(rng, n)).collect();
    let measure = |t: &str| tok.count(t) as usize;
    let built = vocab.build_all(&[Vec::new()], &plans, &measure, cfg.num_workers);
    log_error(format!("{}: {what}", cfg.name), &built);
    Ok(built.into_iter().map(|(_, t)| t).collect())
}

/// evalscope's `random_embedding`: `count` texts of a length uniform in
/// [max(1, min), max] tokens (characters without a tokenizer), no shared prefix.
pub fn embedding_texts(cfg: &DatasetConfig, count: u64, run_index: u64) -> Result<Vec<String>> {
    check_cap(cfg)?;
    let mut rng = run_rng(cfg, run_index);
    let lens: Vec<usize> = (0..count).map(|_| length(&mut rng, cfg)).collect();
    let what = format!(
        "{count} texts of {}..={} tokens",
        cfg.min_prompt_length.max(1),
        cfg.max_prompt_length.max(1)
    );
    texts(cfg, &mut rng, &lens, &what)
}

/// evalscope's `random_rerank`: per request a query of a length uniform in
/// [max(1, min), max] and `num_documents` documents of query length ×
/// `document_length_ratio` each (both from --extra-args).
pub fn rerank(cfg: &DatasetConfig, count: u64, run_index: u64) -> Result<Vec<Prompt>> {
    check_cap(cfg)?;
    let mut rng = run_rng(cfg, run_index);
    let per = 1 + cfg.num_documents;
    let mut lens = Vec::with_capacity(count as usize * per);
    for _ in 0..count {
        let q = length(&mut rng, cfg);
        let d = ((q as f64 * cfg.document_length_ratio).round() as usize).max(1);
        lens.push(q);
        lens.extend(std::iter::repeat_n(d, cfg.num_documents));
    }
    let what = format!(
        "{count} queries of {}..={} tokens, each with {} documents {}x as long",
        cfg.min_prompt_length.max(1),
        cfg.max_prompt_length.max(1),
        cfg.num_documents,
        cfg.document_length_ratio
    );
    let all = texts(cfg, &mut rng, &lens, &what)?;
    Ok(all
        .chunks(per)
        .map(|c| super::encoder::pair(&c[0], c[1..].to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetKind;

    #[test]
    fn lengths_in_range_and_prefix_shared() {
        let cfg = DatasetConfig {
            min_prompt_length: 20,
            max_prompt_length: 40,
            prefix_length: 10,
            seed: 7,
            ..crate::dataset::test_config(DatasetKind::Random)
        };
        let ps = generate(&cfg, false, 200, 0).unwrap();
        let texts: Vec<String> = ps
            .into_iter()
            .map(|p| match p {
                Prompt::Text(t) => t,
                other => panic!("{other:?}"),
            })
            .collect();
        let prefix = &texts[0][..10];
        for t in &texts {
            let n = t.chars().count();
            assert!((30..=50).contains(&n), "{n}");
            assert_eq!(&t[..10], prefix);
        }
        let other = generate(&cfg, false, 1, 1).unwrap();
        assert_ne!(other[0], Prompt::Text(texts[0].clone()));
    }

    fn texts_of(p: &Prompt, key: &str) -> Vec<String> {
        match p {
            Prompt::Body(b) => match &b[key] {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect(),
                other => panic!("{other}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_embedding_batches_and_random_rerank_documents_in_characters() {
        let cfg = DatasetConfig {
            min_prompt_length: 0,
            max_prompt_length: 30,
            seed: 3,
            batch_size: 4,
            num_documents: 3,
            document_length_ratio: 2.5,
            ..crate::dataset::test_config(DatasetKind::RandomEmbedding)
        };
        let ps = crate::dataset::load(&cfg, false, 5, 0).unwrap();
        assert_eq!(ps.len(), 5);
        let mut lens = std::collections::HashSet::new();
        for p in &ps {
            let texts = texts_of(p, "input");
            assert_eq!(texts.len(), 4);
            for t in texts {
                // [max(1, min), max]: never empty.
                assert!((1..=30).contains(&t.chars().count()), "{t:?}");
                lens.insert(t.len());
            }
        }
        assert!(lens.len() > 5, "{lens:?}");
        // One text per request without batch_size: a string input.
        let single = DatasetConfig {
            batch_size: 1,
            ..cfg.clone()
        };
        let ps = crate::dataset::load(&single, false, 3, 0).unwrap();
        assert!(ps
            .iter()
            .all(|p| matches!(p, Prompt::Text(t) if !t.is_empty())));
        assert_ne!(ps, crate::dataset::load(&single, false, 3, 1).unwrap());

        let rr = DatasetConfig {
            kind: DatasetKind::RandomRerank,
            min_prompt_length: 10,
            max_prompt_length: 20,
            ..cfg
        };
        let ps = crate::dataset::load(&rr, false, 6, 0).unwrap();
        assert_eq!(ps.len(), 6);
        for p in &ps {
            let q = texts_of(p, "query").remove(0).chars().count();
            assert!((10..=20).contains(&q), "{q}");
            let docs = texts_of(p, "documents");
            assert_eq!(docs.len(), 3);
            for d in docs {
                assert_eq!(d.chars().count(), (q as f64 * 2.5).round() as usize);
            }
        }
    }
}
