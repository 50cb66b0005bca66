//! Prompts exact to the token for a planned conversation, as AIPerf 0.12.0's
//! `ConversationReconstructor` (`weka_synth_buf.py`) builds them: every hash id
//! of a trace decodes to the same `block_size` tokens wherever it appears (parent
//! and subagents alike), so a server's prefix cache sees what the recording saw.
//!
//! - Turn 0: one `system` message of the tool + system prefix blocks (rounded up
//!   to whole blocks), then a `user` message with the remaining blocks and a
//!   synthesized tail, together exactly `in` tokens.
//! - Turn k: the conversation is cut back to the longest common hash-id prefix with
//!   turn k−1, then an `assistant` segment of `ceil(out_{k−1} / bs)` blocks (the
//!   model's reply, synthesized; never the live reply) and a `user` segment (the
//!   tool result) with the rest, again exactly `in` tokens in all. A turn never
//!   ends with an assistant message, and a planning pass caps assistant segments
//!   so a later pull-back lands on a user block (AIPerf's
//!   `compute_asst_block_caps`).
//!
//! Token ids come from the tokenizer's word-start vocabulary (each decodes to a
//! separate word, so the server's re-tokenisation changes little); the text of
//! a segment is the decode of its ids. Counts are exact in these ids; the server
//! adds the chat template's tokens and a few at segment joins.

use anyhow::{bail, Result};
use std::sync::Arc;

/// The ids to draw from and how ids become text.
pub struct Vocab<'a> {
    pub ids: &'a [u32],
    pub decode: &'a dyn Fn(&[u32]) -> String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of the rebuilt conversation. Blocks `[block_start, +block_count)`
/// of the tile; only the last segment may hold tokens past its blocks (the tail).
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub role: Role,
    block_start: usize,
    block_count: usize,
    pub tokens: Arc<Vec<u32>>,
    pub text: Arc<str>,
}

/// A stable 64-bit FNV-1a over the parts (std's hasher may change between
/// releases; prompts must not).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Builds one conversation's turns.
pub struct Synth<'a> {
    vocab: &'a Vocab<'a>,
    bs: usize,
    trace_id: &'a str,
    conv_id: &'a str,
    segments: Vec<Segment>,
}

/// One turn as the synthesizer needs it.
pub struct TurnInput<'a> {
    pub hash_ids: &'a [i64],
    pub input: u64,
    /// The recorded output of this turn (the next turn's assistant size).
    pub output: u64,
}

impl<'a> Synth<'a> {
    pub fn new(vocab: &'a Vocab<'a>, bs: u64, trace_id: &'a str, conv_id: &'a str) -> Self {
        Synth {
            vocab,
            bs: bs as usize,
            trace_id,
            conv_id,
            segments: Vec::new(),
        }
    }

    fn draw(&self, seed: u64, n: usize) -> Vec<u32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| self.vocab.ids[rng.usize(..self.vocab.ids.len())])
            .collect()
    }

    /// The tokens of these blocks: each hash id's own `bs` tokens.
    fn blocks(&self, ids: &[i64]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() * self.bs);
        for h in ids {
            let seed = fnv(&[self.trace_id.as_bytes(), &h.to_le_bytes()]);
            out.extend(self.draw(seed, self.bs));
        }
        out
    }

    /// `n` synthesized tokens, keyed by the conversation and turn.
    fn tail(&self, turn: usize, n: usize) -> Vec<u32> {
        let seed = fnv(&[
            self.conv_id.as_bytes(),
            &(turn as u64).to_le_bytes(),
            b"partial_tail",
        ]);
        self.draw(seed, n)
    }

    fn segment(
        &self,
        role: Role,
        block_start: usize,
        block_count: usize,
        tokens: Vec<u32>,
    ) -> Segment {
        let text: Arc<str> = (self.vocab.decode)(&tokens).into();
        Segment {
            role,
            block_start,
            block_count,
            tokens: Arc::new(tokens),
            text,
        }
    }

    fn init(&mut self, t: &TurnInput, tool: u64, system: u64) -> Result<()> {
        let bs = self.bs;
        let input = t.input as usize;
        let m_full = input / bs;
        let covered = m_full.min(t.hash_ids.len());
        let synth_n = (m_full - covered) * bs + input % bs;
        let mut cursor = 0;
        let mut segs = Vec::new();
        if tool + system > 0 {
            let need = ((tool + system) as usize).div_ceil(bs);
            if need > t.hash_ids.len() {
                bail!(
                    "conversation `{}`: the tool/system prefix needs {need} hash blocks, the first request has {}",
                    self.conv_id,
                    t.hash_ids.len()
                );
            }
            let blocks = need.min(covered);
            if blocks > 0 {
                segs.push(self.segment(
                    Role::System,
                    0,
                    blocks,
                    self.blocks(&t.hash_ids[..blocks]),
                ));
                cursor = blocks;
            }
        }
        let mut user = self.blocks(&t.hash_ids[cursor..covered]);
        if synth_n > 0 {
            user.extend(self.tail(0, synth_n));
        }
        if !user.is_empty() || segs.is_empty() {
            segs.push(self.segment(Role::User, cursor, covered - cursor, user));
        }
        self.segments = segs;
        Ok(())
    }

    fn advance(&mut self, k: usize, prev: &TurnInput, t: &TurnInput, cap: Option<usize>) {
        let bs = self.bs;
        let g = geometry(prev.hash_ids, t.hash_ids, t.input as usize, bs);
        self.truncate(g.lcp);
        let new_ids = t.hash_ids.get(g.lcp..g.covered).unwrap_or_default();
        let mut region = self.blocks(new_ids);
        if g.tail > 0 {
            region.extend(self.tail(k, g.tail));
        }
        let mut asst = if prev.output > 0 {
            (prev.output as usize).div_ceil(bs)
        } else {
            0
        };
        if !self.segments.iter().any(|s| s.role == Role::User) {
            // Nothing of the user is left: the conversation resumes with a user.
            asst = 0;
        }
        asst = asst.min(g.new_blocks);
        if let Some(c) = cap {
            asst = asst.min(c);
        }
        if g.tail == 0 && asst == g.new_blocks && asst > 0 {
            // A turn ends with a user message: the last new block goes to it.
            asst -= 1;
        }
        let split = (asst * bs).min(region.len());
        let user = region.split_off(split);
        if asst > 0 {
            self.segments
                .push(self.segment(Role::Assistant, g.lcp, asst, region));
        }
        if !user.is_empty() {
            self.segments
                .push(self.segment(Role::User, g.lcp + asst, g.new_blocks - asst, user));
        }
    }

    /// Cuts the tile back to `target` blocks (AIPerf's
    /// `truncate_synth_buf_at_block`): a segment ending there loses its tail, one
    /// crossing it is sliced at the block boundary, later ones are dropped.
    fn truncate(&mut self, target: usize) {
        if target == 0 {
            self.segments.clear();
            return;
        }
        let mut cursor = 0;
        for i in 0..self.segments.len() {
            let s = &self.segments[i];
            if cursor + s.block_count < target {
                cursor += s.block_count;
                continue;
            }
            if cursor + s.block_count == target {
                let keep = s.block_count * self.bs;
                if s.tokens.len() > keep {
                    let tokens = s.tokens[..keep].to_vec();
                    self.segments[i] = self.segment(s.role, s.block_start, s.block_count, tokens);
                }
                self.segments.truncate(i + 1);
                return;
            }
            if cursor == target {
                self.segments.truncate(i);
                return;
            }
            let kept = target - cursor;
            let tokens = s.tokens[..(kept * self.bs).min(s.tokens.len())].to_vec();
            self.segments[i] = self.segment(s.role, s.block_start, kept, tokens);
            self.segments.truncate(i + 1);
            return;
        }
    }
}

struct Geometry {
    lcp: usize,
    covered: usize,
    new_blocks: usize,
    tail: usize,
}

fn geometry(prev: &[i64], curr: &[i64], input: usize, bs: usize) -> Geometry {
    let full = input / bs;
    let covered = curr.len().min(full);
    let lcp = prev.iter().zip(curr).take_while(|(a, b)| a == b).count();
    Geometry {
        lcp,
        covered,
        new_blocks: covered.saturating_sub(lcp),
        tail: input % bs + full.saturating_sub(curr.len()) * bs,
    }
}

/// AIPerf's pass-1 planner: per-turn caps on assistant blocks so that a later
/// block-aligned pull-back lands on a user block.
fn asst_caps(turns: &[TurnInput], bs: usize) -> Vec<Option<usize>> {
    let mut caps = vec![None; turns.len()];
    let mut tile: Vec<usize> = Vec::new();
    let mut eff = vec![0usize; turns.len()];
    for (k, t) in turns.iter().enumerate() {
        let prev: &[i64] = if k > 0 { turns[k - 1].hash_ids } else { &[] };
        let g = geometry(prev, t.hash_ids, t.input as usize, bs);
        if k == 0 {
            tile = vec![0; g.covered];
            continue;
        }
        let e = g.lcp.min(tile.len());
        eff[k] = e;
        let new_blocks = g.covered.saturating_sub(e);
        if new_blocks == 0 && g.tail == 0 && e >= 1 {
            let owner = tile[e - 1];
            if owner != 0 && e > eff[owner] {
                let bound = (e - 1) - eff[owner];
                caps[owner] = Some(caps[owner].map_or(bound, |c: usize| c.min(bound)));
            }
        }
        tile.truncate(e);
        tile.extend(std::iter::repeat_n(k, new_blocks));
    }
    caps
}

/// Every turn's full message list (system, user, assistant segments), each
/// exactly its `input` tokens. Segments shared between turns share memory.
pub fn conversation(
    vocab: &Vocab,
    block_size: u64,
    trace_id: &str,
    conv_id: &str,
    tool: u64,
    system: u64,
    turns: &[TurnInput],
) -> Result<Vec<Vec<Segment>>> {
    if vocab.ids.is_empty() {
        bail!("--tokenizer-path: the tokenizer has no word tokens to build prompts from");
    }
    let mut s = Synth::new(vocab, block_size, trace_id, conv_id);
    let caps = asst_caps(turns, block_size as usize);
    let mut out = Vec::with_capacity(turns.len());
    for (k, t) in turns.iter().enumerate() {
        if k == 0 {
            s.init(t, tool, system)?;
        } else {
            s.advance(k, &turns[k - 1], t, caps[k]);
        }
        out.push(s.segments.clone());
    }
    Ok(out)
}
