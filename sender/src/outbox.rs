//! The durable outbox (sled): accepted records waiting to be sealed, the chain state, the
//! outbound log of every sealed frame, and the valid Provision state the carousel re-sends.
//!
//! Trees:
//! - `meta`: `next_seq` (u64), `head` (the last frame hash), `pending_next` (u64),
//!   `sent_through` (highest seq whose first transmission left the sender).
//! - `pending`: u64 key (ingest order) -> JSON [`PendingItem`].
//! - `ingested`: spool batch id -> unix time; a batch is ingested at most once.
//! - `log`: seq (u64 BE) -> [`LogEntry`] (binary, see [`LogEntry::encode`]).
//! - `state`: issuer NUL subject -> JSON Provision (the latest valid one).
//!
//! Sealing commits the log entries, the new chain state, the consumed pending items and the
//! state changes in one transaction and flushes before any of those frames is handed to the
//! link: a seq is never reused and an accepted record is never lost.

use std::path::{Path, PathBuf};

use airlock_protocol::message::{Digest32, Provision};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::spool::SpoolItem;

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(
        "the outbox {path} is in use by another process (is `airlock-sender run` running?): {detail}"
    )]
    Locked { path: PathBuf, detail: String },
    #[error("outbox {path}: {detail}")]
    Storage { path: PathBuf, detail: String },
    #[error("outbox entry {key} is damaged: {detail}")]
    Damaged { key: String, detail: String },
}

/// An accepted record waiting to be sealed.
pub type PendingItem = SpoolItem;

/// One sealed frame as the sender logged it (the sender's half of the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub hash: Digest32,
    pub prev: Digest32,
    pub issued_at: u64,
    pub kind: String,
    /// Where it came from: a spool source ("a.json#3"), "heartbeat" or "carousel".
    pub origin: String,
    pub sign1: Vec<u8>,
}

const LOG_FORMAT: u8 = 1;

impl LogEntry {
    /// `1 | seq u64 | issued_at u64 | hash 32 | prev 32 | kind_len u8 | kind | origin_len u16 | origin | sign1`
    pub fn encode(&self) -> Vec<u8> {
        let kind = truncate(&self.kind, u8::MAX as usize);
        let origin = truncate(&self.origin, u16::MAX as usize);
        let mut out = Vec::with_capacity(90 + kind.len() + origin.len() + self.sign1.len());
        out.push(LOG_FORMAT);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.prev);
        out.push(kind.len() as u8);
        out.extend_from_slice(kind);
        out.extend_from_slice(&(origin.len() as u16).to_be_bytes());
        out.extend_from_slice(origin);
        out.extend_from_slice(&self.sign1);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader(bytes);
        if r.take(1)? != [LOG_FORMAT] {
            return Err("unknown log entry format".into());
        }
        let seq = r.u64()?;
        let issued_at = r.u64()?;
        let hash = r.array()?;
        let prev = r.array()?;
        let kind_len = usize::from(r.take(1)?.first().copied().unwrap_or(0));
        let kind = String::from_utf8_lossy(r.take(kind_len)?).into_owned();
        let origin_len = usize::from(u16::from_be_bytes(r.array()?));
        let origin = String::from_utf8_lossy(r.take(origin_len)?).into_owned();
        Ok(Self {
            seq,
            hash,
            prev,
            issued_at,
            kind,
            origin,
            sign1: r.0.to_vec(),
        })
    }
}

fn truncate(s: &str, max: usize) -> &[u8] {
    let b = s.as_bytes();
    b.get(..max).unwrap_or(b)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("log entry is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Where the chain stands: the next seq to use and the hash of the last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    pub next_seq: u64,
    pub head: Digest32,
}

/// A change to the carousel's Provision state, committed with the frame that caused it.
#[derive(Debug, Clone)]
pub enum StateChange {
    Upsert(Box<Provision>),
    Remove { issuer: String, subject: String },
}

/// What one sealing step commits.
#[derive(Debug, Default)]
pub struct SealCommit {
    pub consumed: Vec<u64>,
    pub entries: Vec<LogEntry>,
    pub state: Vec<StateChange>,
}

pub struct Outbox {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    pending: sled::Tree,
    ingested: sled::Tree,
    log: sled::Tree,
    state: sled::Tree,
}

const NEXT_SEQ: &[u8] = b"next_seq";
const HEAD: &[u8] = b"head";
const PENDING_NEXT: &[u8] = b"pending_next";
const SENT_THROUGH: &[u8] = b"sent_through";

/// The state tree key of an identity.
pub fn state_key(issuer: &str, subject: &str) -> Vec<u8> {
    let mut k = issuer.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(subject.as_bytes());
    k
}

fn u64_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Outbox {
    /// Opens (or creates) the outbox. Fails with [`OutboxError::Locked`] if `run` holds it.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                let detail = e.to_string();
                if detail.contains("lock") || detail.contains("WouldBlock") {
                    OutboxError::Locked {
                        path: path.to_path_buf(),
                        detail,
                    }
                } else {
                    OutboxError::Storage {
                        path: path.to_path_buf(),
                        detail,
                    }
                }
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| OutboxError::Storage {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        };
        Ok(Self {
            meta: tree("meta")?,
            pending: tree("pending")?,
            ingested: tree("ingested")?,
            log: tree("log")?,
            state: tree("state")?,
            db,
            path: path.to_path_buf(),
        })
    }

    fn storage(&self, e: impl std::fmt::Display) -> OutboxError {
        OutboxError::Storage {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    pub fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush().map(|_| ()).map_err(|e| self.storage(e))
    }

    pub fn chain(&self) -> Result<ChainState, OutboxError> {
        let next = u64_of(self.meta.get(NEXT_SEQ).map_err(|e| self.storage(e))?);
        let head = self
            .meta
            .get(HEAD)
            .map_err(|e| self.storage(e))?
            .and_then(|b| <[u8; 32]>::try_from(b.as_ref()).ok())
            .unwrap_or([0; 32]);
        Ok(ChainState {
            next_seq: next.max(1),
            head,
        })
    }

    pub fn is_ingested(&self, batch_id: &str) -> Result<bool, OutboxError> {
        self.ingested
            .contains_key(batch_id.as_bytes())
            .map_err(|e| self.storage(e))
    }

    /// Queues a spool batch exactly once, durably. Returns false if it was already ingested.
    pub fn ingest(
        &self,
        batch_id: &str,
        items: &[PendingItem],
        now: u64,
    ) -> Result<bool, OutboxError> {
        let encoded: Vec<Vec<u8>> = items
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .map_err(|e| self.storage(e))?;
        let result =
            (&self.meta, &self.pending, &self.ingested).transaction(|(meta, pending, ingested)| {
                if ingested.get(batch_id.as_bytes())?.is_some() {
                    return Ok(false);
                }
                let mut next = u64_of(meta.get(PENDING_NEXT)?);
                for item in &encoded {
                    pending.insert(&next.to_be_bytes(), item.as_slice())?;
                    next += 1;
                }
                meta.insert(PENDING_NEXT, &next.to_be_bytes())?;
                ingested.insert(batch_id.as_bytes(), &now.to_be_bytes())?;
                Ok::<bool, ConflictableTransactionError<()>>(true)
            });
        let fresh = result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        self.flush()?;
        Ok(fresh)
    }

    /// Up to `max` pending items with key >= `from`, oldest first.
    pub fn pending_batch(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, PendingItem)>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.pending.range(from.to_be_bytes()..).take(max) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let key = u64_of(Some(k));
            let item = serde_json::from_slice(&v).map_err(|e| OutboxError::Damaged {
                key: format!("pending/{key}"),
                detail: e.to_string(),
            })?;
            out.push((key, item));
        }
        Ok(out)
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Commits sealed frames and their effects atomically, then flushes.
    pub fn commit(&self, commit: &SealCommit) -> Result<(), OutboxError> {
        let Some(last) = commit.entries.last() else {
            return Ok(());
        };
        let next_seq = last.seq + 1;
        let head = last.hash;
        let encoded: Vec<(u64, Vec<u8>)> =
            commit.entries.iter().map(|e| (e.seq, e.encode())).collect();
        let mut state_ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for change in &commit.state {
            match change {
                StateChange::Upsert(p) => {
                    let v = serde_json::to_vec(p).map_err(|e| self.storage(e))?;
                    state_ops.push((state_key(&p.issuer, &p.subject), Some(v)));
                }
                StateChange::Remove { issuer, subject } => {
                    state_ops.push((state_key(issuer, subject), None))
                }
            }
        }
        let result = (&self.meta, &self.pending, &self.log, &self.state).transaction(
            |(meta, pending, log, state)| {
                for key in &commit.consumed {
                    pending.remove(&key.to_be_bytes())?;
                }
                for (seq, bytes) in &encoded {
                    log.insert(&seq.to_be_bytes(), bytes.as_slice())?;
                }
                for (key, value) in &state_ops {
                    match value {
                        Some(v) => state.insert(key.as_slice(), v.as_slice())?,
                        None => state.remove(key.as_slice())?,
                    };
                }
                meta.insert(NEXT_SEQ, &next_seq.to_be_bytes())?;
                meta.insert(HEAD, &head)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            },
        );
        result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        self.flush()
    }

    /// Drops pending items that can no longer be sent (e.g. expired tickets), durably.
    pub fn discard_pending(&self, keys: &[u64]) -> Result<(), OutboxError> {
        for k in keys {
            self.pending
                .remove(k.to_be_bytes())
                .map_err(|e| self.storage(e))?;
        }
        Ok(())
    }

    /// Log entries with `from <= seq <= to`, in seq order.
    pub fn log_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<LogEntry, OutboxError>> + '_ {
        self.log
            .range(from.to_be_bytes()..=to.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv.map_err(|e| OutboxError::Storage {
                    path: PathBuf::new(),
                    detail: e.to_string(),
                })?;
                LogEntry::decode(&v).map_err(|detail| OutboxError::Damaged {
                    key: format!("log/{}", u64_of(Some(k))),
                    detail,
                })
            })
    }

    /// The lowest and highest seq in the log.
    pub fn log_bounds(&self) -> Result<Option<(u64, u64)>, OutboxError> {
        let first = self.log.first().map_err(|e| self.storage(e))?;
        let last = self.log.last().map_err(|e| self.storage(e))?;
        Ok(match (first, last) {
            (Some((a, _)), Some((b, _))) => Some((u64_of(Some(a)), u64_of(Some(b)))),
            _ => None,
        })
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Removes log entries issued before `cutoff` (unix seconds), never the newest one.
    pub fn prune_log(&self, cutoff: u64) -> Result<usize, OutboxError> {
        let newest = self.log_bounds()?.map(|(_, hi)| hi).unwrap_or(0);
        let mut removed = 0;
        for kv in self.log.iter() {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let seq = u64_of(Some(k.clone()));
            let old = LogEntry::decode(&v)
                .map(|e| e.issued_at < cutoff)
                .unwrap_or(false);
            if !old || seq >= newest {
                break;
            }
            self.log.remove(k).map_err(|e| self.storage(e))?;
            removed += 1;
        }
        for kv in self.ingested.iter() {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            if u64_of(Some(v)) < cutoff {
                self.ingested.remove(k).map_err(|e| self.storage(e))?;
            }
        }
        Ok(removed)
    }

    /// Every identity in the Provision state (carousel input), as state keys.
    pub fn state_keys(&self) -> Result<Vec<Vec<u8>>, OutboxError> {
        self.state
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| self.storage(e)))
            .collect()
    }

    pub fn state_get(&self, key: &[u8]) -> Result<Option<Provision>, OutboxError> {
        let Some(v) = self.state.get(key).map_err(|e| self.storage(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| OutboxError::Damaged {
                key: "state".into(),
                detail: e.to_string(),
            })
    }

    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    pub fn sent_through(&self) -> Result<u64, OutboxError> {
        Ok(u64_of(
            self.meta.get(SENT_THROUGH).map_err(|e| self.storage(e))?,
        ))
    }

    pub fn set_sent_through(&self, seq: u64) -> Result<(), OutboxError> {
        self.meta
            .insert(SENT_THROUGH, &seq.to_be_bytes())
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_protocol::message::Body;
    use airlock_protocol::testkit;

    fn item(subject: &str) -> PendingItem {
        PendingItem {
            source: format!("t#{subject}"),
            body: Body::Provision(testkit::provision(subject)),
        }
    }

    fn entry(seq: u64, issued_at: u64) -> LogEntry {
        LogEntry {
            seq,
            hash: [seq as u8; 32],
            prev: [seq as u8 - 1; 32],
            issued_at,
            kind: "provision".into(),
            origin: "t".into(),
            sign1: vec![1, 2, 3],
        }
    }

    #[test]
    fn log_entries_roundtrip() {
        let e = entry(7, 99);
        assert_eq!(LogEntry::decode(&e.encode()).unwrap(), e);
        assert!(LogEntry::decode(&e.encode()[..20]).is_err());
    }

    #[test]
    fn a_batch_is_ingested_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ob = Outbox::open(dir.path()).unwrap();
            assert!(ob.ingest("b1", &[item("a"), item("b")], 5).unwrap());
            assert!(!ob.ingest("b1", &[item("a"), item("b")], 5).unwrap());
            assert_eq!(ob.pending_len(), 2);
        }
        let ob = Outbox::open(dir.path()).unwrap();
        let pending = ob.pending_batch(0, 10).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].1, item("a"));
        assert!(ob.is_ingested("b1").unwrap());
    }

    #[test]
    fn commit_moves_pending_to_log_and_advances_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.ingest("b", &[item("a")], 1).unwrap();
        assert_eq!(
            ob.chain().unwrap(),
            ChainState {
                next_seq: 1,
                head: [0; 32]
            }
        );
        let p = testkit::provision("a");
        ob.commit(&SealCommit {
            consumed: vec![0],
            entries: vec![entry(1, 10), entry(2, 20)],
            state: vec![StateChange::Upsert(Box::new(p.clone()))],
        })
        .unwrap();
        assert_eq!(ob.pending_len(), 0);
        assert_eq!(
            ob.chain().unwrap(),
            ChainState {
                next_seq: 3,
                head: [2; 32]
            }
        );
        assert_eq!(ob.log_range(1, 5).count(), 2);
        let key = state_key(&p.issuer, &p.subject);
        assert_eq!(ob.state_get(&key).unwrap(), Some(p.clone()));
        ob.commit(&SealCommit {
            consumed: vec![],
            entries: vec![entry(3, 30)],
            state: vec![StateChange::Remove {
                issuer: p.issuer.clone(),
                subject: p.subject.clone(),
            }],
        })
        .unwrap();
        assert_eq!(ob.state_get(&key).unwrap(), None);
        assert_eq!(ob.prune_log(25).unwrap(), 2);
        assert_eq!(ob.log_bounds().unwrap(), Some((3, 3)));
        // The newest entry is kept even when old.
        assert_eq!(ob.prune_log(1000).unwrap(), 0);
    }
}
