//! Sealed frames already logged, remembered by digest so that a byte-identical copy (the
//! sender's repetition, the carousel's resends of the same bytes, a replay) is recognised as
//! a duplicate before the AEAD and Ed25519 work of opening it. Bounded: the oldest digests
//! are forgotten first, and a forgotten one only costs a full open (which then finds the
//! frame hash in the log and counts a duplicate anyway).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// How many sealed-frame digests are remembered (32 bytes each, twice: about 4 MiB).
pub const CAPACITY: usize = 65_536;

pub type SealedDigest = [u8; 32];

/// SHA-256 over the sealed (encrypted) bytes as they arrived.
pub fn digest(sealed: &[u8]) -> SealedDigest {
    Sha256::digest(sealed).into()
}

#[derive(Default)]
struct Inner {
    set: HashSet<SealedDigest>,
    order: VecDeque<SealedDigest>,
}

/// A bounded set of digests of sealed frames whose frame is in the log.
#[derive(Default)]
pub struct SeenFrames {
    inner: Mutex<Inner>,
}

impl SeenFrames {
    pub fn contains(&self, d: &SealedDigest) -> bool {
        self.inner.lock().is_ok_and(|i| i.set.contains(d))
    }

    /// Remembers digests of frames that are logged (accepted or duplicates of logged ones).
    pub fn insert_all(&self, digests: impl IntoIterator<Item = SealedDigest>) {
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        for d in digests {
            if i.set.insert(d) {
                i.order.push_back(d);
            }
            while i.order.len() > CAPACITY {
                if let Some(old) = i.order.pop_front() {
                    i.set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets_oldest_first() {
        let seen = SeenFrames::default();
        let ds: Vec<_> = (0..CAPACITY as u32 + 2)
            .map(|i| digest(&i.to_be_bytes()))
            .collect();
        seen.insert_all(ds.iter().copied());
        assert!(!seen.contains(&ds[0]));
        assert!(!seen.contains(&ds[1]));
        assert!(seen.contains(&ds[2]));
        assert!(seen.contains(ds.last().unwrap()));
    }
}
