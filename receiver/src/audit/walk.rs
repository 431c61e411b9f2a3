//! One pass over the frame log: the entry hash chain, and every Sign1 against the signers
//! in force at that point. Every audit command that reads the log uses this walk.
//!
//! Unlike the ingest's `ChainVerifier`, the walk does not stop at the first fault: it
//! re-anchors on each entry so that one tampered entry is reported where it is, and the rest
//! of the log is still checked.

use airlock_protocol::message::Envelope;
use airlock_protocol::open_batch::verify_sign1_batch;
use airlock_protocol::seal::OpenError;
use airlock_protocol::trust::TrustStore;
use indicatif::ProgressBar;

use super::error::AuditError;
use super::keys::KeyTracker;
use super::progress;
use crate::apply::decode_head;
use crate::frame_log::{GENESIS, LogEntry, decode};
use crate::store::{Store, Table, meta};
use crate::trust_set::BaseTrust;

/// Entries read, hashed and verified together (signatures on every core).
const CHUNK: usize = 4096;

/// What is wrong with an entry's place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The stored value cannot be decoded at all.
    Malformed(String),
    /// Stored under the key of entry `key` but claims index `index`: moved.
    Moved { key: String, index: u64 },
    /// The previous entry was `expected - 1`, this one claims `found`.
    Sequence { expected: u64, found: u64 },
    /// Its stored hash does not match its content.
    Altered,
    /// Its `prev_entry_hash` is not the hash of the entry before it.
    BrokenLink,
}

impl ChainFault {
    pub fn kind(&self) -> &'static str {
        match self {
            ChainFault::Malformed(_) => "malformed_entry",
            ChainFault::Moved { .. } => "moved_entry",
            ChainFault::Sequence { .. } => "index_sequence",
            ChainFault::Altered => "altered_entry",
            ChainFault::BrokenLink => "broken_link",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ChainFault::Malformed(what) => format!("cannot be decoded: {what}"),
            ChainFault::Moved { key, index } => {
                format!("stored at position {key} but claims index {index}: entries were moved")
            }
            ChainFault::Sequence { expected, found } if found > expected => format!(
                "claims index {found} right after {}: entries {expected}..={} are missing",
                expected.saturating_sub(1),
                found - 1
            ),
            ChainFault::Sequence { expected, found } => format!(
                "claims index {found} right after {}: entries were reordered or duplicated",
                expected.saturating_sub(1)
            ),
            ChainFault::Altered => {
                "its content does not match its stored hash: the entry was altered".into()
            }
            ChainFault::BrokenLink => "prev_entry_hash is not the hash of the preceding entry: an entry was removed, inserted or reordered here".into(),
        }
    }
}

/// What is wrong with an entry's signed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigFault {
    /// The entry could not be decoded, so there is no frame to check.
    Unreadable,
    /// `verify_sign1` refused it (untrusted signer, bad signature, malformed Sign1, ...).
    Open(OpenError),
    /// The entry's metadata (kid, seq) differs from the signed envelope.
    Mismatch(String),
    /// Signed by a key that was announced but not yet valid when it was received.
    NotYetValid {
        kid: String,
        not_before: u64,
        received_at: u64,
    },
}

impl SigFault {
    pub fn kind(&self) -> &'static str {
        match self {
            SigFault::Unreadable => "unreadable",
            SigFault::Open(e) => e.reason(),
            SigFault::Mismatch(_) => "metadata_mismatch",
            SigFault::NotYetValid { .. } => "signer_not_yet_valid",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SigFault::Unreadable => "no frame to verify (entry undecodable)".into(),
            SigFault::Open(e) => e.to_string(),
            SigFault::Mismatch(what) => what.clone(),
            SigFault::NotYetValid {
                kid,
                not_before,
                received_at,
            } => format!(
                "signer {kid} is valid from {not_before} but the frame was received at {received_at}"
            ),
        }
    }
}

/// One log entry as the walk saw it.
#[derive(Debug)]
pub struct Walked {
    /// Position in the scan (0, 1, 2, ...), which is the index an intact log would have.
    pub position: u64,
    pub entry: Option<LogEntry>,
    /// The entry hash stored with it.
    pub stored_hash: Option<[u8; 32]>,
    /// SHA-256 of the entry's Sign1 (the sender chain's frame hash).
    pub frame_hash: Option<[u8; 32]>,
    pub chain: Vec<ChainFault>,
    pub frame: Result<Envelope, SigFault>,
}

impl Walked {
    /// The index to name in reports: the entry's own when readable, else its position.
    pub fn index(&self) -> u64 {
        self.entry.as_ref().map_or(self.position, |e| e.index)
    }
}

/// Where the walk ended, and what the store's head record says.
#[derive(Debug, Clone, Default)]
pub struct WalkEnd {
    pub entries: u64,
    /// Stored hash of the last entry (GENESIS for an empty log).
    pub head: [u8; 32],
    pub last_index: Option<u64>,
    /// (next index, head hash) from the store's meta record, if present.
    pub recorded: Option<(u64, [u8; 32])>,
}

/// Entries the store says it holds (for progress bars; an estimate if tampered).
pub fn expected_len<S: Store>(store: &S) -> u64 {
    match store.get(Table::Meta, meta::HEAD) {
        Ok(Some(v)) => decode_head(&v).map(|(n, _)| n).unwrap_or(0),
        _ => store.len(Table::Log) as u64,
    }
}

/// Walks the whole log, calling `visit` for every entry in log order.
pub fn walk<S: Store, F>(
    store: &S,
    base: &BaseTrust,
    label: &str,
    mut visit: F,
) -> Result<WalkEnd, AuditError>
where
    F: FnMut(&Walked) -> Result<(), AuditError>,
{
    let bar = progress::bar(expected_len(store), label);
    let mut keys = KeyTracker::new(base.clone())?;
    let mut chain = ChainState::default();
    let mut rows = store.scan_from(Table::Log, &[]);
    let mut next = read_chunk(&mut rows, &mut chain)?;
    while !next.is_empty() {
        let mut chunk = next;
        // Verify this chunk on the worker threads while this thread reads the next one.
        let (verified, read) = std::thread::scope(|s| {
            let worker = s.spawn(|| verify_chunk(&mut chunk, &mut keys));
            let read = read_chunk(&mut rows, &mut chain);
            (worker.join(), read)
        });
        verified.map_err(|_| {
            AuditError::Store(crate::store::StoreError::Io(
                "a signature verification thread failed".into(),
            ))
        })??;
        next = read?;
        for w in &chunk {
            visit(w)?;
        }
        bar.inc(chunk.len() as u64);
    }
    finish(&bar);
    let recorded = match store.get(Table::Meta, meta::HEAD)? {
        Some(v) => Some(decode_head(&v)?),
        None => None,
    };
    Ok(WalkEnd {
        entries: chain.position,
        head: chain.prev_hash.unwrap_or(GENESIS),
        last_index: chain.last_index,
        recorded,
    })
}

type Rows<'a> = Box<dyn Iterator<Item = Result<crate::store::Row, crate::store::StoreError>> + 'a>;

/// Reads and chain-links up to [`CHUNK`] entries.
fn read_chunk(rows: &mut Rows<'_>, chain: &mut ChainState) -> Result<Vec<Walked>, AuditError> {
    let mut chunk: Vec<Walked> = Vec::with_capacity(CHUNK);
    for row in rows.by_ref().take(CHUNK) {
        let (key, value) = row?;
        chunk.push(chain.push(&key, &value));
    }
    Ok(chunk)
}

fn finish(bar: &ProgressBar) {
    bar.finish_and_clear();
}

/// The chain walk's state between entries.
#[derive(Default)]
struct ChainState {
    position: u64,
    expected_index: u64,
    /// Stored hash of the previous entry; None at the start or after an unreadable entry.
    prev_hash: Option<[u8; 32]>,
    prev_unreadable: bool,
    last_index: Option<u64>,
}

impl ChainState {
    fn push(&mut self, key: &[u8], value: &[u8]) -> Walked {
        let position = self.position;
        self.position += 1;
        let mut faults = Vec::new();
        let stored = match decode(value, position) {
            Ok(s) => s,
            Err(e) => {
                faults.push(ChainFault::Malformed(e.to_string()));
                self.prev_unreadable = true;
                self.prev_hash = None;
                self.expected_index += 1;
                return Walked {
                    position,
                    entry: None,
                    stored_hash: None,
                    frame_hash: None,
                    chain: faults,
                    frame: Err(SigFault::Unreadable),
                };
            }
        };
        let entry = stored.entry;
        let key_index = <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes);
        if key_index != Some(entry.index) {
            faults.push(ChainFault::Moved {
                key: key_index.map_or_else(|| hex::encode(key), |k| k.to_string()),
                index: entry.index,
            });
        }
        if entry.index != self.expected_index {
            faults.push(ChainFault::Sequence {
                expected: self.expected_index,
                found: entry.index,
            });
        }
        let expected_prev = if position == 0 {
            Some(GENESIS)
        } else {
            self.prev_hash
        };
        if !self.prev_unreadable && expected_prev != Some(entry.prev_entry_hash) {
            faults.push(ChainFault::BrokenLink);
        }
        self.prev_unreadable = false;
        self.prev_hash = Some(stored.stored_hash);
        self.expected_index = entry.index.saturating_add(1);
        self.last_index = Some(entry.index);
        Walked {
            position,
            entry: Some(entry),
            stored_hash: Some(stored.stored_hash),
            frame_hash: None,
            chain: faults,
            frame: Err(SigFault::Unreadable),
        }
    }
}

/// Verifies the chunk's signatures in parallel; after a frame that changes the signer set,
/// the rest of the chunk is verified again with the new set.
fn verify_chunk(chunk: &mut [Walked], keys: &mut KeyTracker) -> Result<(), AuditError> {
    let mut start = 0;
    while start < chunk.len() {
        let rest = chunk.get_mut(start..).unwrap_or_default();
        verify_parallel(rest, keys.trust());
        let mut restart = None;
        for (i, w) in rest.iter().enumerate() {
            let (Ok(env), Some(entry)) = (&w.frame, &w.entry) else {
                continue;
            };
            if KeyTracker::is_key_change(env)
                && keys.observe(env, &entry.sign1, entry.received_at_ms)?
            {
                restart = Some(start + i + 1);
                break;
            }
        }
        match restart {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(())
}

/// Entries a worker takes at a time, and so the size of one Ed25519 batch verification:
/// big enough for most of the batch gain, small enough that a worker the OS schedules away
/// does not hold up the others for long at the end of a chunk.
const PIECE: usize = 128;

fn verify_parallel(items: &mut [Walked], trust: &TrustStore) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pieces = std::sync::Mutex::new(items.chunks_mut(PIECE));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    // A poisoned lock only means another worker panicked: stop taking work.
                    let piece = match pieces.lock() {
                        Ok(mut it) => it.next(),
                        Err(_) => None,
                    };
                    let Some(piece) = piece else { break };
                    piece.iter_mut().for_each(check_hashes);
                    check_frames(piece, trust);
                }
            });
        }
    });
}

/// The entry's own hash (CPU-bound, so it runs on the workers) and its frame hash.
fn check_hashes(w: &mut Walked) {
    let Some(e) = &w.entry else { return };
    if w.frame_hash.is_some() {
        return; // a re-verification after a key change: hashes are done
    }
    w.frame_hash = Some(e.frame_hash());
    if e.entry_hash().ok() != w.stored_hash {
        // Keep the order of faults: altered content is reported before a broken link.
        let at = w
            .chain
            .iter()
            .position(|f| *f == ChainFault::BrokenLink)
            .unwrap_or(w.chain.len());
        w.chain.insert(at, ChainFault::Altered);
    }
}

/// Verifies the signatures of a piece in one batch, then each entry's agreement with what
/// was signed.
fn check_frames(piece: &mut [Walked], trust: &TrustStore) {
    let readable: Vec<&[u8]> = piece
        .iter()
        .filter_map(|w| w.entry.as_ref().map(|e| e.sign1.as_slice()))
        .collect();
    let mut verified = verify_sign1_batch(&readable, trust).into_iter();
    for w in piece {
        // Only readable entries were verified: take a result for those alone.
        let signed = w.entry.as_ref().and_then(|e| Some((e, verified.next()?)));
        w.frame = match signed {
            Some((e, signed)) => check_signed(e, signed.map_err(SigFault::Open), trust),
            None => Err(SigFault::Unreadable),
        };
    }
}

/// The entry's agreement with what was signed, and the signer's validity when received.
fn check_signed(
    e: &LogEntry,
    signed: Result<Envelope, SigFault>,
    trust: &TrustStore,
) -> Result<Envelope, SigFault> {
    let env = signed?;
    if env.sender_kid != e.signer_kid || env.seq != e.seq {
        return Err(SigFault::Mismatch(format!(
            "the entry says signer {} seq {} but the signed frame is signer {} seq {}",
            e.signer_kid, e.seq, env.sender_kid, env.seq
        )));
    }
    let received_at = e.received_at_ms / 1000;
    if let Some(s) = trust.signer(&env.sender_kid)
        && received_at < s.not_before
    {
        return Err(SigFault::NotYetValid {
            kid: env.sender_kid,
            not_before: s.not_before,
            received_at,
        });
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_log::Verdict;

    /// (key, value) rows of an intact chain of `n` entries (unsigned: chain checks only).
    fn rows(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut prev = GENESIS;
        (0..n)
            .map(|i| {
                let e = LogEntry {
                    index: i,
                    received_at_ms: 1000 + i,
                    verdict: Verdict::Applied,
                    signer_kid: "k".into(),
                    seq: i + 1,
                    sign1: vec![i as u8; 50],
                    prev_entry_hash: prev,
                };
                let (v, h) = e.encode().unwrap();
                prev = h;
                (LogEntry::key(i).to_vec(), v)
            })
            .collect()
    }

    fn faults(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<(u64, Vec<ChainFault>)> {
        let mut c = ChainState::default();
        rows.iter()
            .map(|(k, v)| {
                let mut w = c.push(k, v);
                check_hashes(&mut w);
                (w.index(), w.chain)
            })
            .filter(|(_, f)| !f.is_empty())
            .collect()
    }

    #[test]
    fn intact_chain_has_no_faults() {
        assert!(faults(&rows(50)).is_empty());
    }

    #[test]
    fn each_tampering_is_localised() {
        let mut r = rows(20);
        r[7].1[40] ^= 1;
        assert_eq!(faults(&r), vec![(7, vec![ChainFault::Altered])]);

        let mut r = rows(20);
        r.remove(5);
        let f = faults(&r);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].1,
            vec![
                ChainFault::Sequence {
                    expected: 5,
                    found: 6
                },
                ChainFault::BrokenLink
            ]
        );

        let mut r = rows(20);
        let (a, b) = (r[3].1.clone(), r[4].1.clone());
        r[3].1 = b;
        r[4].1 = a;
        let f = faults(&r);
        assert_eq!(f.first().map(|x| x.0), Some(4), "{f:?}"); // entry 4 sits at position 3
        assert!(f.iter().all(|(i, _)| (3..=5).contains(i)), "{f:?}");

        let mut r = rows(20);
        r[9].1.truncate(30);
        let f = faults(&r);
        assert!(matches!(f[0].1[0], ChainFault::Malformed(_)));
        assert_eq!(
            f.len(),
            1,
            "the entry after an unreadable one is not blamed: {f:?}"
        );
    }
}
