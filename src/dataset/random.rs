//! `random` without a tokenizer: prompts of random lowercase words whose length in
//! characters is uniform in [--min-prompt-length, --max-prompt-length], after a shared
//! random prefix of --prefix-length characters (evalscope's prefix-cache experiment).
//! Seeded by --seed and the run index, so each sweep run gets different prompts
//! (evalscope advances `dataset_offset` per run for the same reason).

use anyhow::{bail, Result};

use super::Prompt;
use crate::config::DatasetConfig;

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
    if cfg.max_prompt_length > MAX_CHARS {
        bail!(
            "--dataset random: set --max-prompt-length (characters without --tokenizer-path), \
             e.g. --min-prompt-length 512 --max-prompt-length 1024"
        );
    }
    let mut rng = fastrand::Rng::with_seed(
        cfg.seed ^ (run_index.wrapping_add(1)).wrapping_mul(0x2545_F491_4F6C_DD1D),
    );
    let prefix = random_text(&mut rng, cfg.prefix_length as usize);
    let (lo, hi) = (cfg.min_prompt_length, cfg.max_prompt_length.max(1));
    Ok((0..count)
        .map(|_| {
            let len = rng.u64(lo.max(1)..=hi) as usize;
            let mut p = prefix.clone();
            p.push_str(&random_text(&mut rng, len));
            Prompt::wrap(p, chat)
        })
        .collect())
}

/// Largest token length accepted when --max-prompt-length is left at "no cap".
const MAX_TOKENS: u64 = 1 << 21;

/// evalscope §5.1 with a tokenizer: a shared prefix of `--prefix-length` random
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
    if cfg.max_prompt_length > MAX_TOKENS {
        bail!(
            "--dataset random: set --max-prompt-length (tokens with --tokenizer-path), \
             e.g. --min-prompt-length 512 --max-prompt-length 1024"
        );
    }
    let allowed = tok.allowed_ids();
    if allowed.is_empty() {
        bail!(
            "--tokenizer-path: {} has no ordinary tokens to build prompts from",
            tok.path
        );
    }
    let v = allowed.len();
    let starts = tok.word_start_ids();
    let fillers: &[u32] = if starts.is_empty() { &allowed } else { &starts };
    let mut rng = fastrand::Rng::with_seed(
        cfg.seed ^ (run_index.wrapping_add(1)).wrapping_mul(0x2545_F491_4F6C_DD1D),
    );
    let prefix: Vec<u32> = (0..cfg.prefix_length)
        .map(|_| allowed[rng.usize(..v)])
        .collect();
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
    // evalscope advances dataset_offset per run so later runs miss the prefix cache;
    // the run index in the seed does the same here. Every random draw is made here,
    // in order, so the prompts do not depend on how many threads build them.
    let plans: Vec<(usize, usize, u64)> = (0..count as usize)
        .map(|_| {
            let len = if hi > lo { rng.u64(lo..hi) } else { lo } as usize;
            (len, rng.usize(..v), rng.u64(..))
        })
        .collect();
    let build = |i: usize| -> (usize, String) {
        let (len, offset, seed) = plans[i];
        let mut fill = fastrand::Rng::with_seed(seed);
        let mut ids = prefix.clone();
        ids.extend((0..len).map(|j| allowed[(offset + i + j) % v]));
        let target = ids.len();
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
                    next.push(fillers[fill.usize(..fillers.len())]);
                }
                text = tok.decode(&next);
            }
        }
        best
    };
    // Long prompts are built on every core (evalscope uses a process pool above
    // 4 Mi tokens); a few short ones are not worth the threads.
    let total_tokens: usize = plans.iter().map(|p| p.0).sum();
    let workers = if total_tokens < 1 << 18 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(32)
            .min(plans.len().max(1))
    };
    let n = plans.len();
    let chunk = n.div_ceil(workers).max(1);
    let built: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let build = &build;
                s.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(build)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let (mut off_sum, mut off_max) = (0u64, 0u64);
    let mut out = Vec::with_capacity(built.len());
    for (err, text) in built {
        off_sum += err as u64;
        off_max = off_max.max(err as u64);
        out.push(Prompt::wrap(text, chat));
    }
    crate::report::log::info(format!(
        "random: {count} prompts of {}..={} tokens{}; re-encoded length error: mean {:.3}, max {off_max} tokens",
        lo + cfg.prefix_length,
        hi.saturating_sub(1) + cfg.prefix_length,
        if chat { " plus the chat template" } else { "" },
        if count > 0 { off_sum as f64 / count as f64 } else { 0.0 }
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetKind;

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
}
