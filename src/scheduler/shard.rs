//! One shard's deterministic share of a sweep point's load, for N load generators
//! that share no coordinator (a Kubernetes Indexed Job): every shard computes the
//! same global plan from the same flags and keeps its own part of it.
//!
//! - concurrency and request counts are split in contiguous blocks, the remainder
//!   going to the first shards (`parallel/N`, `number/N`);
//! - unpaced requests: shard `i` takes the `i`-th contiguous slice of the dataset
//!   order;
//! - paced requests (`--rate`, trace replay): every shard lays out the same global
//!   schedule and keeps a seeded random subset of its arrivals, of exactly its
//!   share's size. A random subset of a Poisson process's arrivals is again a
//!   Poisson process (thinning); the shards' subsets are disjoint and their union is
//!   the global schedule, arrival for arrival.

use std::ops::Range;

/// Flags that may differ between the shards of one run (they change where and how
/// a shard runs, not the load it sends). Everything else must be equal to merge.
pub const SHARD_LOCAL_KEYS: &[&str] = &[
    "shard_index",
    "outputs_dir",
    "no_timestamp",
    "start_in",
    "metrics_addr",
    "metrics_linger",
    "debug",
    "log_every_n_query",
    "clock_ref",
    "source_addrs",
    "enable_progress_tracker",
    "otlp_endpoint",
    "otlp_protocol",
    "otlp_sample_ratio",
];

use super::point::SweepPoint;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// This shard's contiguous block of `0..total` (sizes differ by at most one; the
    /// first `total % count` shards get one more).
    pub fn share(&self, total: u64) -> Range<u64> {
        let (base, extra) = (total / self.count, total % self.count);
        let start = self.index * base + self.index.min(extra);
        let len = base + u64::from(self.index < extra);
        start..start + len
    }

    /// The load this shard puts on the server at a global sweep point.
    pub fn point(&self, p: &SweepPoint) -> SweepPoint {
        let len = |r: Range<u64>| r.end - r.start;
        SweepPoint {
            parallel: if p.parallel > 0 {
                len(self.share(p.parallel as u64)) as i64
            } else {
                p.parallel
            },
            number: len(self.share(p.number)),
            rate: if p.rate > 0.0 {
                p.rate / self.count as f64
            } else {
                p.rate
            },
        }
    }

    /// The global indices (ascending) of `0..total` this shard sends: its contiguous
    /// slice, or with `thin_seed` a seeded random subset of the same size (a random
    /// permutation's positions that fall in the shard's block).
    pub fn owned(&self, total: u64, thin_seed: Option<u64>) -> Vec<u64> {
        let mine = self.share(total);
        match thin_seed {
            None => mine.collect(),
            Some(seed) => {
                let mut perm: Vec<u64> = (0..total).collect();
                fastrand::Rng::with_seed(seed).shuffle(&mut perm);
                (0..total)
                    .filter(|&k| mine.contains(&perm[k as usize]))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_total_once_with_remainders_first() {
        let sizes: Vec<u64> = (0..4)
            .map(|i| {
                let r = Shard { index: i, count: 4 }.share(10);
                r.end - r.start
            })
            .collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        for thin in [None, Some(7)] {
            let mut all: Vec<u64> = (0..4)
                .flat_map(|i| Shard { index: i, count: 4 }.owned(10, thin))
                .collect();
            all.sort();
            assert_eq!(all, (0..10).collect::<Vec<_>>());
        }
        let p = SweepPoint {
            parallel: 10,
            number: 7,
            rate: 8.0,
        };
        let s = Shard { index: 3, count: 4 }.point(&p);
        assert_eq!((s.parallel, s.number, s.rate), (2, 1, 2.0));
    }

    #[test]
    fn thinning_is_random_balanced_and_seeded() {
        let a = Shard { index: 0, count: 2 }.owned(1000, Some(3));
        assert_eq!(a.len(), 500);
        assert_eq!(a, Shard { index: 0, count: 2 }.owned(1000, Some(3)));
        // Not a contiguous block: both halves of the schedule are represented.
        let early = a.iter().filter(|&&k| k < 500).count();
        assert!((200..300).contains(&early), "{early}");
    }
}
