//! The sender's hash chain: every envelope's `prev` is the hash of the previous frame's
//! COSE_Sign1, seqs count up by one. A chain starts with a frame whose `prev` is
//! [`GENESIS`], at the seq [`seq_base`] derives from the clock (older chains started at 1):
//! nothing below a chain start is missing from that chain, and a sender that lost its outbox
//! starts a new chain above every seq it used before. These helpers prove completeness or
//! name what is missing.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::message::Digest32;

/// `prev` of the first frame of a chain.
pub const GENESIS: Digest32 = [0u8; 32];

/// Seqs per millisecond of the clock that [`seq_base`] reserves: a sender sealing fewer
/// than this many frames per millisecond on average (about a million a second; it seals
/// tens of thousands) never catches up with the base of a later start.
pub const SEQS_PER_MS: u64 = 1 << 10;

/// The first seq of a chain started at `unix_ms`: above every seq of any chain started
/// earlier by a clock that does not go back (given [`SEQS_PER_MS`]), with no state kept,
/// so that a sender whose outbox is lost does not reuse seqs. Below 2^63 (it fits a signed
/// 64-bit integer) for any date a clock shows.
pub fn seq_base(unix_ms: u64) -> u64 {
    unix_ms.saturating_mul(SEQS_PER_MS).max(1)
}

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

    /// Seq ranges in `1..=up_to` that were never added, except those just below a chain
    /// start (a frame whose prev is [`GENESIS`]): the sender never sealed those.
    pub fn missing(&self, up_to: u64) -> Vec<RangeInclusive<u64>> {
        let mut gaps = Vec::new();
        let mut next = 1u64;
        for (&seq, &(prev, _)) in self.frames.range(..=up_to) {
            if seq > next && prev != GENESIS {
                gaps.push(next..=seq - 1);
            }
            next = seq.saturating_add(1);
        }
        if next <= up_to {
            gaps.push(next..=up_to);
        }
        gaps
    }

    /// Every place where two consecutive seqs are both present but do not link
    /// (and a seq 1 whose prev is not [`GENESIS`]). A chain start (prev [`GENESIS`]) links
    /// to nothing before it.
    pub fn broken_links(&self) -> Vec<BrokenLink> {
        let mut broken = Vec::new();
        let mut previous: Option<(u64, Digest32)> = None;
        for (&seq, &(prev, hash)) in &self.frames {
            let expected = match previous {
                _ if seq == 1 => Some(GENESIS),
                _ if prev == GENESIS => None,
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

    #[test]
    fn a_chain_start_hides_nothing_but_what_was_never_sealed() {
        let h = |n: u8| [n; 32];
        let base = seq_base(1_800_000_000_000);
        let mut chain = ChainCheck::new();
        // An old chain from 1 with a gap, then a new chain (outbox lost) at a clock base.
        chain.add(1, GENESIS, h(1));
        chain.add(3, h(2), h(3));
        chain.add(base, GENESIS, h(10));
        chain.add(base + 2, h(11), h(12));
        assert_eq!(
            chain.missing(base + 3),
            vec![2..=2, base + 1..=base + 1, base + 3..=base + 3]
        );
        assert!(chain.broken_links().is_empty());
        // A new chain's first frames lost: everything from the old tail is missing.
        let mut late = ChainCheck::new();
        late.add(base + 1, h(10), h(11));
        assert_eq!(late.missing(base + 1), vec![1..=base]);
    }

    #[test]
    fn seq_bases_grow_faster_than_a_sender_seals() {
        assert!(seq_base(1_800_000_000_001) - seq_base(1_800_000_000_000) >= 1000);
        assert!(seq_base(u64::MAX) == u64::MAX);
        assert_eq!(seq_base(0), 1);
        // Below i64::MAX in the year 9999 (unix ms 253,402,300,799,000).
        assert!(seq_base(253_402_300_799_000) < i64::MAX as u64);
    }
}
