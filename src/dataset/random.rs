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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetKind;

    #[test]
    fn lengths_in_range_and_prefix_shared() {
        let cfg = DatasetConfig {
            kind: DatasetKind::Random,
            name: "random".into(),
            path: None,
            prompt: None,
            min_prompt_length: 20,
            max_prompt_length: 40,
            prefix_length: 10,
            seed: 7,
            query_template: None,
            model: "m".into(),
            image: crate::config::ImageSpec {
                width: 8,
                height: 8,
                format: "RGB".into(),
                num: 1,
                patch_size: 28,
            },
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
