//! The sender's hash chain: every envelope's `prev` is the hash of the previous frame's
//! COSE_Sign1, seqs count up from 1. These helpers prove completeness or name what is missing.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::message::Digest32;

/// `prev` of a signer's first frame.
pub const GENESIS: Digest32 = [0u8; 32];

/// A broken link: the frame at `seq` names a `prev` that is not the hash of frame `seq - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The seq whose `prev` does not match.
    pub seq: u64,
    /// The hash of frame `seq - 1`.
    pub expected_prev: Digest32,
    /// The `prev` frame `seq` carries.
    pub found_prev: Digest32,
}

/// Collects (seq, prev, hash) of one signer's frames in any order and checks the chain.
#[derive(Debug, Clone, Default)]
pub struct ChainCheck {
    frames: BTreeMap<u64, (Digest32, Digest32)>,
}

impl ChainCheck {
    /// An empty check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a frame; a second frame with the same seq is ignored (duplicates are not links).
    pub fn add(&mut self, seq: u64, prev: Digest32, hash: Digest32) {
        self.frames.entry(seq).or_insert((prev, hash));
    }

    /// The highest seq added, 0 if none.
    pub fn highest(&self) -> u64 {
        self.frames.keys().next_back().copied().unwrap_or(0)
    }

    /// Seq ranges in `1..=up_to` that were never added.
    pub fn missing(&self, up_to: u64) -> Vec<RangeInclusive<u64>> {
        missing_seqs(self.frames.keys().copied(), up_to)
    }

    /// Every place where two consecutive seqs are both present but do not link
    /// (and a seq 1 whose prev is not [`GENESIS`]).
    pub fn broken_links(&self) -> Vec<BrokenLink> {
        let mut broken = Vec::new();
        let mut previous: Option<(u64, Digest32)> = None;
        for (&seq, &(prev, hash)) in &self.frames {
            let expected = match previous {
                _ if seq == 1 => Some(GENESIS),
                Some((p_seq, p_hash)) if p_seq + 1 == seq => Some(p_hash),
                _ => None,
            };
            if let Some(expected_prev) = expected.filter(|e| *e != prev) {
                broken.push(BrokenLink {
                    seq,
                    expected_prev,
                    found_prev: prev,
                });
            }
            previous = Some((seq, hash));
        }
        broken
    }
}

/// Seq ranges in `1..=up_to` missing from `seen` (any order, duplicates allowed).
pub fn missing_seqs(seen: impl IntoIterator<Item = u64>, up_to: u64) -> Vec<RangeInclusive<u64>> {
    let mut seen: Vec<u64> = seen
        .into_iter()
        .filter(|s| (1..=up_to).contains(s))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    let mut gaps = Vec::new();
    let mut next = 1u64;
    for seq in seen
        .into_iter()
        .chain(std::iter::once(up_to.saturating_add(1)))
    {
        if seq > next {
            gaps.push(next..=seq - 1);
        }
        next = seq.saturating_add(1);
    }
    gaps
}

/// Formats ranges as `3, 7-9, 12` for people.
pub fn format_ranges(ranges: &[RangeInclusive<u64>]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_ranges() {
        assert_eq!(missing_seqs([1, 2, 5, 9], 10), vec![3..=4, 6..=8, 10..=10]);
        assert_eq!(missing_seqs([], 3), vec![1..=3]);
        assert!(missing_seqs([1, 2, 3], 3).is_empty());
        assert_eq!(format_ranges(&missing_seqs([2], 5)), "1, 3-5");
    }

    #[test]
    fn finds_broken_links() {
        let h = |n: u8| [n; 32];
        let mut chain = ChainCheck::new();
        chain.add(1, GENESIS, h(1));
        chain.add(2, h(1), h(2));
        chain.add(3, h(9), h(3));
        chain.add(5, h(4), h(5)); // 4 missing: no link to check
        let broken = chain.broken_links();
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].seq, 3);
        assert_eq!(chain.missing(5), vec![4..=4]);
    }
}
