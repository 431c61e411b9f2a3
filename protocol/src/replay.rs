//! The replay window: per signer, the highest seq seen plus a bitmap of the seqs just below.
//!
//! A seq above the highest is new. A seq fewer than [`WINDOW`] below it (the highest itself
//! and the 65,535 seqs under it) is new unless its bit is set. A seq `WINDOW` or more below
//! is refused as too old: the window is wide (65,536 seqs) so that
//! an operator's `resend` of a gap still fits, while memory stays bounded (8 KiB a signer).

use std::collections::BTreeMap;

use thiserror::Error;

/// How many seqs below the highest are remembered.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;
const STATE_VERSION: u8 = 1;

/// Why a seq is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    #[error("seq 0 is never used: seqs start at 1")]
    /// Seq 0 is never sealed.
    Zero,
    #[error("seq {seq} was already accepted")]
    /// The seq was already accepted.
    Seen {
        /// The seq.
        seq: u64,
    },
    #[error(
        "seq {seq} is {WINDOW} or more below the highest accepted seq {highest}: older than the replay window"
    )]
    /// The seq fell out of the window.
    TooOld {
        /// The seq.
        seq: u64,
        /// The highest accepted seq of the signer.
        highest: u64,
    },
    /// The seq was accepted before with other content: not a replay of a frame but a sender
    /// that signs new frames under seqs it already used (it runs from an old backup of its
    /// outbox, or its clock went back before it started a new chain). Its approvals are not
    /// applied: move the restored outbox aside so that the sender starts a new chain.
    #[error(
        "seq {seq} was already accepted with other content: the sender reuses seqs (an old outbox backup, or a clock set back?); \
         its new frames are refused until it starts a new chain (docs/operations.md, \"Outbox lost\")"
    )]
    Conflict {
        /// The seq.
        seq: u64,
    },
}

/// Decoding persisted replay state failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("replay state is corrupt at byte {offset}: {what}")]
pub struct ReplayStateError {
    /// Where in the bytes.
    pub offset: usize,
    /// What was expected there.
    pub what: &'static str,
}

/// One signer's window.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    bits: Box<[u64; WORDS]>,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayWindow(highest {})", self.highest)
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            highest: 0,
            bits: Box::new([0; WORDS]),
        }
    }
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest accepted seq, 0 if none.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `seq` would be accepted. Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > self.highest {
            return Ok(());
        }
        if self.highest - seq >= WINDOW {
            return Err(ReplayError::TooOld {
                seq,
                highest: self.highest,
            });
        }
        if self.bit(seq) {
            return Err(ReplayError::Seen { seq });
        }
        Ok(())
    }

    /// Records `seq` as accepted (after [`check`](Self::check) passed and the frame is logged).
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.highest {
            self.advance_to(seq);
        }
        let (word, mask) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
        Ok(())
    }

    fn advance_to(&mut self, seq: u64) {
        if seq - self.highest >= WINDOW {
            self.bits.fill(0);
        } else {
            for s in self.highest + 1..=seq {
                let (word, mask) = Self::slot(s);
                if let Some(w) = self.bits.get_mut(word) {
                    *w &= !mask;
                }
            }
        }
        self.highest = seq;
    }

    fn bit(&self, seq: u64) -> bool {
        let (word, mask) = Self::slot(seq);
        self.bits.get(word).is_some_and(|w| w & mask != 0)
    }

    fn slot(seq: u64) -> (usize, u64) {
        let pos = seq % WINDOW;
        ((pos / 64) as usize, 1u64 << (pos % 64))
    }
}

/// Replay windows of every signer, keyed by signer kid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayState {
    windows: BTreeMap<String, ReplayWindow>,
}

impl ReplayState {
    /// No signer seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `seq` of signer `kid` would be accepted, without accepting it.
    pub fn check(&self, kid: &str, seq: u64) -> Result<(), ReplayError> {
        match self.windows.get(kid) {
            Some(w) => w.check(seq),
            None if seq == 0 => Err(ReplayError::Zero),
            None => Ok(()),
        }
    }

    /// Accepts `seq` of signer `kid`, or says why not (then nothing changes).
    pub fn accept(&mut self, kid: &str, seq: u64) -> Result<(), ReplayError> {
        self.windows.entry(kid.to_owned()).or_default().accept(seq)
    }

    /// The highest accepted seq of `kid`, 0 if none.
    pub fn highest(&self, kid: &str) -> u64 {
        self.windows.get(kid).map_or(0, ReplayWindow::highest)
    }

    /// The signers with a window.
    pub fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.windows.keys().map(String::as_str)
    }

    /// `version u8 | count u16 | (kid_len u8 | kid | highest u64 | bitmap WINDOW/8 bytes)*`, big endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        let count = u16::try_from(self.windows.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (kid, w) in self.windows.iter().take(usize::from(count)) {
            let kid = &kid.as_bytes()[..kid.len().min(255)];
            out.push(kid.len() as u8);
            out.extend_from_slice(kid);
            out.extend_from_slice(&w.highest.to_be_bytes());
            for word in w.bits.iter() {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        out
    }

    /// Decodes [`ReplayState::to_bytes`]; corrupt bytes are an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReplayStateError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(1)? != [STATE_VERSION] {
            return Err(r.err("unknown version"));
        }
        let count = u16::from_be_bytes(r.array()?);
        let mut windows = BTreeMap::new();
        for _ in 0..count {
            let kid_len = usize::from(r.take(1)?.first().copied().unwrap_or(0));
            let kid = std::str::from_utf8(r.take(kid_len)?)
                .map_err(|_| r.err("kid is not UTF-8"))?
                .to_owned();
            let mut w = ReplayWindow {
                highest: u64::from_be_bytes(r.array()?),
                ..ReplayWindow::default()
            };
            for word in w.bits.iter_mut() {
                *word = u64::from_be_bytes(r.array()?);
            }
            windows.insert(kid, w);
        }
        if r.pos != bytes.len() {
            return Err(r.err("trailing bytes"));
        }
        Ok(Self { windows })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReplayStateError> {
        let end = self.pos.checked_add(n).ok_or(self.err("length overflow"))?;
        let slice = self.bytes.get(self.pos..end).ok_or(self.err("truncated"))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReplayStateError> {
        let slice = self.take(N)?;
        <[u8; N]>::try_from(slice).map_err(|_| self.err("truncated"))
    }

    fn err(&self, what: &'static str) -> ReplayStateError {
        ReplayStateError {
            offset: self.pos,
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The model: an exact set of accepted seqs, with the same too-old rule.
    fn model_check(seen: &BTreeSet<u64>, seq: u64) -> Result<(), ReplayError> {
        let highest = seen.iter().next_back().copied().unwrap_or(0);
        if seq == 0 {
            Err(ReplayError::Zero)
        } else if seq <= highest && highest - seq >= WINDOW {
            Err(ReplayError::TooOld { seq, highest })
        } else if seen.contains(&seq) {
            Err(ReplayError::Seen { seq })
        } else {
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn window_matches_exact_model(
            arrivals in proptest::collection::vec(
                prop_oneof![0u64..300, 0u64..200_000, Just(0u64)], 1..600)
        ) {
            let mut window = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            for seq in arrivals {
                let expected = model_check(&seen, seq);
                prop_assert_eq!(window.check(seq), expected.clone());
                prop_assert_eq!(window.accept(seq), expected.clone());
                if expected.is_ok() {
                    seen.insert(seq);
                }
            }
        }

        /// The boundary the documents state: with `highest` accepted, a seq `d` below it is
        /// judged by the window while `d < WINDOW` and refused as too old from `d = WINDOW` on.
        #[test]
        fn too_old_starts_exactly_window_below_the_highest(
            highest in WINDOW..u64::MAX / 2,
            d in prop_oneof![0..4u64, WINDOW - 4..WINDOW + 4, 0..2 * WINDOW],
        ) {
            let mut window = ReplayWindow::new();
            window.accept(highest).unwrap();
            let seq = highest - d;
            let verdict = window.check(seq);
            if d == 0 {
                prop_assert_eq!(verdict, Err(ReplayError::Seen { seq }));
            } else if d < WINDOW {
                prop_assert_eq!(verdict, Ok(()));
            } else {
                prop_assert_eq!(verdict, Err(ReplayError::TooOld { seq, highest }));
            }
        }

        #[test]
        fn state_bytes_round_trip(seqs in proptest::collection::vec(1u64..100_000, 0..50)) {
            let mut state = ReplayState::new();
            for (i, seq) in seqs.iter().enumerate() {
                let _ = state.accept(if i % 2 == 0 { "a" } else { "b" }, *seq);
            }
            let back = ReplayState::from_bytes(&state.to_bytes()).unwrap();
            prop_assert_eq!(back, state);
        }

        #[test]
        fn corrupt_state_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ReplayState::from_bytes(&bytes);
        }
    }

    #[test]
    fn in_order_and_out_of_order() {
        let mut state = ReplayState::new();
        state.accept("k", 1).unwrap();
        state.accept("k", 3).unwrap();
        assert_eq!(state.check("k", 3), Err(ReplayError::Seen { seq: 3 }));
        state.accept("k", 2).unwrap();
        assert_eq!(state.highest("k"), 3);
        state.accept("k", 3 + WINDOW).unwrap();
        assert!(matches!(
            state.check("k", 3),
            Err(ReplayError::TooOld { .. })
        ));
        assert_eq!(state.check("other", 1), Ok(()));
    }
}
