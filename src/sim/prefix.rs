//! The simulator's prefix cache: vLLM-style automatic prefix caching over hashed
//! blocks of `block_size` tokens.
//!
//! A block's hash chains the hash of the block before it with the block's tokens, so
//! a block hits only when the whole prefix up to it is the same. A request's hit is
//! the run of leading full blocks already cached, within its first `prompt − 1`
//! tokens (vLLM recomputes at least the last token); the hit tokens skip prefill.
//! After a request, its prompt's blocks, and (without a tokenizer) those of prompt +
//! answer, are cached, so the next turn of a conversation finds its history. The
//! cache holds `kv_cache_tokens / block_size` blocks and evicts the least recently
//! used.
//!
//! Tokens are the simulator's own: with a tokenizer, its ids; without one, pieces of
//! at most four characters of each whitespace-separated word (so a text's piece
//! count is [`super::count_tokens`]).

use std::collections::{BTreeMap, HashMap};

/// Hashes of the simulator's word pieces: each word split into chunks of 4 chars.
pub fn word_pieces(text: &str, out: &mut Vec<u64>) {
    for w in text.split_whitespace() {
        let chars: Vec<char> = w.chars().collect();
        for piece in chars.chunks(4) {
            let mut h: u64 = 0xCBF2_9CE4_8422_2325;
            for c in piece {
                h = (h ^ *c as u64).wrapping_mul(0x0100_0000_01B3);
            }
            out.push(h);
        }
    }
}

pub struct PrefixCache {
    block: usize,
    capacity: usize,
    /// Block hash → last use.
    used: HashMap<u64, u64>,
    /// Last use → block hash (the LRU order).
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl PrefixCache {
    pub fn new(block: usize, capacity_tokens: u64) -> PrefixCache {
        PrefixCache {
            block: block.max(1),
            capacity: (capacity_tokens as usize / block.max(1)).max(1),
            used: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The chained hashes of the full blocks of `ids`.
    fn block_hashes(&self, ids: &[u64]) -> Vec<u64> {
        let mut prev: u64 = 0x9E37_79B9_7F4A_7C15;
        ids.chunks_exact(self.block)
            .map(|b| {
                let mut h = prev;
                for t in b {
                    h = (h ^ t).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(29);
                }
                prev = h ^ (h >> 31);
                prev
            })
            .collect()
    }

    fn touch(&mut self, h: u64) {
        self.tick += 1;
        if let Some(old) = self.used.insert(h, self.tick) {
            self.order.remove(&old);
        }
        self.order.insert(self.tick, h);
        while self.used.len() > self.capacity {
            match self.order.pop_first() {
                Some((_, victim)) => {
                    self.used.remove(&victim);
                }
                None => break,
            }
        }
    }

    /// Looks `prompt` up and returns its cached tokens; then caches the blocks of
    /// `prompt` followed by `answer`.
    pub fn lookup(&mut self, prompt: &[u64], answer: &[u64]) -> u64 {
        let usable = prompt.len().saturating_sub(1);
        let hashes = self.block_hashes(&prompt[..usable]);
        let hit = hashes
            .iter()
            .take_while(|h| self.used.contains_key(h))
            .count();
        let mut all = prompt.to_vec();
        all.extend_from_slice(answer);
        for h in self.block_hashes(&all) {
            self.touch(h);
        }
        (hit * self.block) as u64
    }

    pub fn blocks(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_leading_blocks_hit_and_lru_evicts() {
        let mut c = PrefixCache::new(4, 16);
        let a: Vec<u64> = (0..10).collect();
        assert_eq!(c.lookup(&a, &[]), 0);
        // Same first 8 tokens: 2 blocks hit.
        let mut b: Vec<u64> = (0..8).collect();
        b.extend([100, 101, 102]);
        assert_eq!(c.lookup(&b, &[]), 8);
        // An exact repeat of 8 tokens hits only within the first 7: one block.
        assert_eq!(c.lookup(&a[..8], &[]), 4);
        // A different first block: no hit even if later tokens match.
        let mut d = vec![99];
        d.extend(1..10);
        assert_eq!(c.lookup(&d, &[]), 0);
        // The answer's blocks are cached for the next turn.
        let p: Vec<u64> = (200..205).collect();
        let ans: Vec<u64> = (300..303).collect();
        c.lookup(&p, &ans);
        let mut next = p.clone();
        next.extend(&ans);
        next.extend([400, 401]);
        assert_eq!(c.lookup(&next, &[]), 8);
        assert!(c.blocks() <= 4);
        let mut words = Vec::new();
        word_pieces("ab abcdefg", &mut words);
        assert_eq!(words.len(), 3);
        assert_eq!(words.len() as u64, crate::sim::count_tokens("ab abcdefg"));
    }
}
