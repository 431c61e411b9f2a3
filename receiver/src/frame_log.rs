//! The frame log entry: its canonical encoding, its hash, and the chain check.
//!
//! This file is the single definition of the log format; the auditor tooling (`audit ...`)
//! walks the log with this code and public keys only.
//!
//! # Canonical encoding (version 1)
//!
//! All integers are big endian. An entry's stored value is
//!
//! ```text
//! body  = "airlock-log-v1\0"                  15 bytes, domain label
//!         index            u64                 position in the log, 0, 1, 2, ... without holes
//!         received_at_ms   u64                 receiver wall clock, unix milliseconds
//!         verdict          u8                  1 = applied, 2 = logged but without effect
//!         kid_len          u8, kid bytes       signer kid (UTF-8, at most 255 bytes)
//!         seq              u64                 the envelope's seq
//!         sign1_len        u32, sign1 bytes    the decrypted, still signed COSE_Sign1
//!         prev_entry_hash  [u8; 32]            entry_hash of entry index-1, all zero for index 0
//! value = body || entry_hash
//! entry_hash = SHA-256(body)
//! ```
//!
//! The sled key of an entry is its index as 8 big-endian bytes, so iteration is log order.
//! The frame hash that the sender's chain uses (`prev` of the next frame) is SHA-256 of the
//! sign1 bytes, which an auditor recomputes from the entry.
//!
//! # The Merkle tree (transparency log)
//!
//! Leaf `i` of the RFC 9162 tree over the log is entry `i`'s `entry_hash`, as RFC 9162 hashes
//! a leaf: `leaf_hash = SHA-256(0x00 || entry_hash)` ([`tree_leaf`]). The entry hash covers the
//! whole canonical body, so the leaf binds every byte of the entry (and, through
//! `prev_entry_hash`, its place in the chain) while an inclusion proof needs only 32 bytes
//! of leaf data. An auditor recomputes `entry_hash` from the entry's content, never trusting
//! the stored copy.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain label at the start of every encoded entry.
pub const DOMAIN: &[u8; 15] = b"airlock-log-v1\0";
/// `prev_entry_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// What the receiver did with a logged frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Authenticated, fresh, new: its effect is in the store.
    Applied,
    /// Authenticated, fresh and new, but superseded: e.g. a Provision older than the
    /// Revoke already applied for that user, or a KeyRetire of a key not in force.
    NoEffect,
}

impl Verdict {
    pub fn to_byte(self) -> u8 {
        match self {
            Verdict::Applied => 1,
            Verdict::NoEffect => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Verdict::Applied),
            2 => Some(Verdict::NoEffect),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Applied => "applied",
            Verdict::NoEffect => "no_effect",
        }
    }
}

/// One frame log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub received_at_ms: u64,
    pub verdict: Verdict,
    pub signer_kid: String,
    pub seq: u64,
    pub sign1: Vec<u8>,
    pub prev_entry_hash: [u8; 32],
}

/// A stored entry could not be decoded, or the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    #[error("log entry at position {position} is malformed: {what}")]
    Malformed { position: u64, what: &'static str },
    #[error(
        "log entry at position {position} claims index {found}; the log must count 0, 1, 2, ..."
    )]
    IndexGap { position: u64, found: u64 },
    #[error(
        "log entry {index}: its stored hash does not match its content (the entry was altered)"
    )]
    HashMismatch { index: u64 },
    #[error(
        "log entry {index}: prev_entry_hash does not match entry {prev} (an entry was removed, inserted or reordered)"
    )]
    BrokenLink { index: u64, prev: u64 },
    #[error("log entry {index}: the signer kid is longer than 255 bytes")]
    KidTooLong { index: u64 },
    #[error("log entry {index}: the COSE_Sign1 is longer than 4 GiB")]
    Sign1TooLong { index: u64 },
}

impl LogEntry {
    /// The canonical body (everything the entry hash covers).
    pub fn encode_body(&self) -> Result<Vec<u8>, LogError> {
        let kid = self.signer_kid.as_bytes();
        let kid_len =
            u8::try_from(kid.len()).map_err(|_| LogError::KidTooLong { index: self.index })?;
        let sign1_len = u32::try_from(self.sign1.len())
            .map_err(|_| LogError::Sign1TooLong { index: self.index })?;
        let mut out = Vec::with_capacity(
            DOMAIN.len() + 8 + 8 + 1 + 1 + kid.len() + 8 + 4 + self.sign1.len() + 32 + 32,
        );
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.received_at_ms.to_be_bytes());
        out.push(self.verdict.to_byte());
        out.push(kid_len);
        out.extend_from_slice(kid);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&sign1_len.to_be_bytes());
        out.extend_from_slice(&self.sign1);
        out.extend_from_slice(&self.prev_entry_hash);
        Ok(out)
    }

    /// SHA-256 over the canonical body.
    pub fn entry_hash(&self) -> Result<[u8; 32], LogError> {
        Ok(Sha256::digest(self.encode_body()?).into())
    }

    /// The stored value: body followed by the entry hash.
    pub fn encode(&self) -> Result<(Vec<u8>, [u8; 32]), LogError> {
        let mut out = self.encode_body()?;
        let hash: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&hash);
        Ok((out, hash))
    }

    /// The sled key of entry `index`.
    pub fn key(index: u64) -> [u8; 8] {
        index.to_be_bytes()
    }

    /// The frame hash of the logged frame (what the sender's `prev` chain uses).
    pub fn frame_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.sign1).into()
    }
}

/// The Merkle tree leaf hash of the entry whose `entry_hash` is given.
pub fn tree_leaf(entry_hash: &[u8; 32]) -> airlock_protocol::merkle::Hash {
    airlock_protocol::merkle::leaf_hash(entry_hash)
}

/// A decoded stored value, with the hash it carried (not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub entry: LogEntry,
    pub stored_hash: [u8; 32],
}

/// Decodes a stored value. `position` is only used in error messages.
pub fn decode(value: &[u8], position: u64) -> Result<StoredEntry, LogError> {
    let mut r = Reader {
        bytes: value,
        pos: 0,
        position,
    };
    if r.take(DOMAIN.len())? != DOMAIN {
        return Err(r.bad("wrong domain label (not an airlock-log-v1 entry)"));
    }
    let index = r.u64()?;
    let received_at_ms = r.u64()?;
    let verdict = Verdict::from_byte(r.u8()?).ok_or(r.bad("unknown verdict byte"))?;
    let kid_len = usize::from(r.u8()?);
    let signer_kid = std::str::from_utf8(r.take(kid_len)?)
        .map_err(|_| r.bad("signer kid is not UTF-8"))?
        .to_owned();
    let seq = r.u64()?;
    let sign1_len = usize::try_from(r.u32()?).map_err(|_| r.bad("length overflow"))?;
    let sign1 = r.take(sign1_len)?.to_vec();
    let prev_entry_hash = r.array32()?;
    let stored_hash = r.array32()?;
    if r.pos != value.len() {
        return Err(r.bad("trailing bytes after the entry hash"));
    }
    Ok(StoredEntry {
        entry: LogEntry {
            index,
            received_at_ms,
            verdict,
            signer_kid,
            seq,
            sign1,
            prev_entry_hash,
        },
        stored_hash,
    })
}

/// What a chain walk established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSummary {
    /// Entries walked.
    pub entries: u64,
    /// entry_hash of the last entry (GENESIS for an empty log).
    pub head: [u8; 32],
}

/// Incremental chain checker: feed stored values in log order.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    summary: ChainSummary,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one stored value: decodes it, checks its index, its own hash and its link.
    pub fn push(&mut self, value: &[u8]) -> Result<LogEntry, LogError> {
        let position = self.summary.entries;
        let stored = decode(value, position)?;
        let entry = stored.entry;
        if entry.index != position {
            return Err(LogError::IndexGap {
                position,
                found: entry.index,
            });
        }
        let hash = entry.entry_hash()?;
        if hash != stored.stored_hash {
            return Err(LogError::HashMismatch { index: entry.index });
        }
        if entry.prev_entry_hash != self.summary.head {
            return Err(LogError::BrokenLink {
                index: entry.index,
                prev: position.saturating_sub(1),
            });
        }
        self.summary.head = hash;
        self.summary.entries += 1;
        Ok(entry)
    }

    pub fn summary(&self) -> &ChainSummary {
        &self.summary
    }
}

/// Walks stored values (in log order) and checks the whole chain.
///
/// `expected_head`, when given (e.g. the head the live store recorded), must equal the
/// last entry's hash: this catches a truncated tail.
pub fn verify_entry_chain<I, V>(
    values: I,
    expected_head: Option<[u8; 32]>,
) -> Result<ChainSummary, ChainWalkError>
where
    I: IntoIterator<Item = V>,
    V: AsRef<[u8]>,
{
    let mut v = ChainVerifier::new();
    for value in values {
        v.push(value.as_ref()).map_err(ChainWalkError::Entry)?;
    }
    let summary = v.summary().clone();
    if let Some(head) = expected_head
        && head != summary.head
    {
        return Err(ChainWalkError::HeadMismatch {
            entries: summary.entries,
        });
    }
    Ok(summary)
}

/// Why a chain walk failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainWalkError {
    #[error(transparent)]
    Entry(LogError),
    #[error(
        "the log ends after {entries} entries but the recorded head does not match its last entry (the tail was truncated or replaced)"
    )]
    HeadMismatch { entries: u64 },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    position: u64,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: &'static str) -> LogError {
        LogError::Malformed {
            position: self.position,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        let end = self.pos.checked_add(n).ok_or(self.bad("length overflow"))?;
        let s = self.bytes.get(self.pos..end).ok_or(self.bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, LogError> {
        self.take(1)?.first().copied().ok_or(self.bad("truncated"))
    }

    fn u32(&mut self) -> Result<u32, LogError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes(
            s.try_into().map_err(|_| self.bad("truncated"))?,
        ))
    }

    fn u64(&mut self) -> Result<u64, LogError> {
        let s = self.take(8)?;
        Ok(u64::from_be_bytes(
            s.try_into().map_err(|_| self.bad("truncated"))?,
        ))
    }

    fn array32(&mut self) -> Result<[u8; 32], LogError> {
        let s = self.take(32)?;
        s.try_into().map_err(|_| self.bad("truncated"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        let mut out = Vec::new();
        for i in 0..n {
            let e = LogEntry {
                index: i,
                received_at_ms: 1_700_000_000_000 + i,
                verdict: if i % 3 == 0 {
                    Verdict::NoEffect
                } else {
                    Verdict::Applied
                },
                signer_kid: "0011223344556677".into(),
                seq: i + 1,
                sign1: vec![i as u8; 40 + i as usize],
                prev_entry_hash: prev,
            };
            let (v, h) = e.encode().unwrap();
            prev = h;
            out.push(v);
        }
        out
    }

    #[test]
    fn round_trip_and_verify() {
        let log = chain(20);
        let s = verify_entry_chain(&log, None).unwrap();
        assert_eq!(s.entries, 20);
        let d = decode(&log[5], 5).unwrap();
        assert_eq!(d.entry.seq, 6);
        assert_eq!(verify_entry_chain(&log, Some(s.head)).unwrap(), s);
    }

    #[test]
    fn tampering_is_caught_at_its_position() {
        let log = chain(10);
        let mut flipped = log.clone();
        flipped[4][40] ^= 1;
        assert_eq!(
            verify_entry_chain(&flipped, None),
            Err(ChainWalkError::Entry(LogError::HashMismatch { index: 4 }))
        );

        let mut deleted = log.clone();
        deleted.remove(3);
        assert_eq!(
            verify_entry_chain(&deleted, None),
            Err(ChainWalkError::Entry(LogError::IndexGap {
                position: 3,
                found: 4
            }))
        );

        let mut swapped = log.clone();
        swapped.swap(2, 3);
        assert!(verify_entry_chain(&swapped, None).is_err());

        let head = verify_entry_chain(&log, None).unwrap().head;
        assert_eq!(
            verify_entry_chain(&log[..9], Some(head)),
            Err(ChainWalkError::HeadMismatch { entries: 9 })
        );
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let _ = decode(&bytes, 0);
            let mut b = DOMAIN.to_vec();
            b.extend_from_slice(&bytes);
            let _ = decode(&b, 0);
        }
    }
}
