//! The durable outbox (sled): accepted records waiting to be sealed, the chain state, the
//! outbound log of every sealed frame, and the valid Provision state the carousel re-sends.
//!
//! Trees:
//! - `meta`: `next_seq` (u64), `head` (the last frame hash), `chain_kid` (the signer kid
//!   the chain belongs to), `chain_start` (u64, its first seq), `pending_next` (u64, the index
//!   of the next item ingested), `pending_done` (u64, every pending index below it is
//!   consumed), `sent_through` (highest seq whose first transmission left the sender).
//! - `pending`: index of its first item (u64 BE) -> a chunk of consecutive items,
//!   `2 | count u32 | JSON array of` [`PendingItem`]. (Older outboxes hold one JSON item per
//!   key; both are read.) A chunk is removed once all its items are consumed.
//! - `ingested`: spool batch id -> unix time; a batch is ingested at most once.
//! - `log`: seq of its first entry (u64 BE) -> the entries one commit logged,
//!   `2 | (len u32 | entry)*` with each entry as [`LogEntry::encode`]. (A value starting
//!   with 1 is one entry, as older outboxes wrote them.)
//! - `state_journal`: u64 counter -> the state changes of one commit, in order.
//! - `state`: issuer NUL subject -> JSON Provision (the latest valid one), as of the last
//!   [`Outbox::fold_state`], which the reads below run first.
//!
//! Why chunks: sled costs several microseconds per key written (transaction or batch alike),
//! which at tens of thousands of frames per second is more than the whole budget of the
//! core that commits. So a commit writes a handful of keys, whatever its number of frames,
//! and per-identity state updates are deferred to idle time (the journal).
//!
//! Sealing commits the log entries, the new chain state, the pending cursor and the state
//! journal in one transaction and flushes before any of those frames is handed to the
//! link: a seq is never reused and an accepted record is never lost.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use airlock_protocol::chain::{GENESIS, seq_base};
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
/// The first byte of a chunk value (log, pending, journal).
const CHUNK: u8 = 2;
/// Pending items per stored chunk: one seal batch.
pub const PENDING_CHUNK: usize = 1024;

impl LogEntry {
    /// `1 | seq u64 | issued_at u64 | hash 32 | prev 32 | kind_len u8 | kind | origin_len u16 | origin | sign1`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    fn encoded_len(&self) -> usize {
        let kind = truncate(&self.kind, u8::MAX as usize);
        let origin = truncate(&self.origin, u16::MAX as usize);
        84 + kind.len() + origin.len() + self.sign1.len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let kind = truncate(&self.kind, u8::MAX as usize);
        let origin = truncate(&self.origin, u16::MAX as usize);
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

/// The entries of one log value with `from <= seq <= to`.
fn decode_log_value(
    key: &[u8],
    value: &[u8],
    from: u64,
    to: u64,
) -> Vec<Result<LogEntry, OutboxError>> {
    let damaged = |detail| OutboxError::Damaged {
        key: format!("log/{}", u64_of(Some(sled::IVec::from(key)))),
        detail,
    };
    let parts = match log_parts(value) {
        Ok(parts) => parts,
        Err(detail) => return vec![Err(damaged(detail))],
    };
    parts
        .into_iter()
        // A part whose head does not parse is kept, so that decoding reports it.
        .filter(|p| !entry_head(p).is_ok_and(|(seq, _)| !(from..=to).contains(&seq)))
        .map(|p| LogEntry::decode(p).map_err(damaged))
        .collect()
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

/// One log value: the entries of one commit.
fn encode_log_chunk(entries: &[LogEntry]) -> Vec<u8> {
    let len = entries.iter().map(|e| 4 + e.encoded_len()).sum::<usize>();
    let mut out = Vec::with_capacity(1 + len);
    out.push(CHUNK);
    for e in entries {
        out.extend_from_slice(&(e.encoded_len() as u32).to_be_bytes());
        e.encode_into(&mut out);
    }
    out
}

/// The encoded entries in one log value, without decoding them.
fn log_parts(value: &[u8]) -> Result<Vec<&[u8]>, String> {
    match value.first() {
        Some(&LOG_FORMAT) => Ok(vec![value]),
        Some(&CHUNK) => {
            let mut r = Reader(&value[1..]);
            let mut parts = Vec::new();
            while !r.0.is_empty() {
                let len = u32::from_be_bytes(r.array()?) as usize;
                parts.push(r.take(len)?);
            }
            Ok(parts)
        }
        _ => Err("unknown log entry format".into()),
    }
}

/// Seq and issued_at of an encoded entry (its first fields), without decoding the rest.
fn entry_head(part: &[u8]) -> Result<(u64, u64), String> {
    let mut r = Reader(part);
    r.take(1)?;
    Ok((r.u64()?, r.u64()?))
}

fn encode_pending_chunk(items: &[PendingItem]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![CHUNK];
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    serde_json::to_writer(&mut out, items)?;
    Ok(out)
}

/// How many items a pending value holds (older outboxes: one JSON item per key).
fn pending_count(value: &[u8]) -> u64 {
    match value {
        [CHUNK, a, b, c, d, ..] => u64::from(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => 1,
    }
}

fn decode_pending(value: &[u8]) -> Result<Vec<PendingItem>, String> {
    match value.first() {
        Some(&CHUNK) => {
            let items: Vec<PendingItem> =
                serde_json::from_slice(value.get(5..).unwrap_or_default())
                    .map_err(|e| e.to_string())?;
            if items.len() as u64 != pending_count(value) {
                return Err("pending chunk count does not match its items".into());
            }
            Ok(items)
        }
        _ => serde_json::from_slice(value)
            .map(|item| vec![item])
            .map_err(|e| e.to_string()),
    }
}

/// A state key and its new JSON Provision, or `None` for a removal.
type StateOp = (Vec<u8>, Option<Vec<u8>>);

/// `(key_len u32 | key | 0 | or 1 | value_len u32 | value)*`
fn encode_journal(ops: &[StateOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in ops {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// A [`StateOp`] as read back: borrowed from the journal value.
type StateOpRef<'a> = (&'a [u8], Option<&'a [u8]>);

fn decode_journal(bytes: &[u8]) -> Result<Vec<StateOpRef<'_>>, String> {
    let mut r = Reader(bytes);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let key_len = u32::from_be_bytes(r.array()?) as usize;
        let key = r.take(key_len)?;
        let value = match r.take(1)? {
            [0] => None,
            _ => {
                let len = u32::from_be_bytes(r.array()?) as usize;
                Some(r.take(len)?)
            }
        };
        ops.push((key, value));
    }
    Ok(ops)
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
    journal: sled::Tree,
    /// The key of the next state journal value (only the commit path writes it).
    journal_next: AtomicU64,
    /// Held around every write, and by a backup while it copies the trees writes overwrite
    /// (see [`Outbox::backup_view`]): the backup sees the outbox between two writes.
    gate: Mutex<()>,
}

/// A key and its value, as stored.
pub type Row = (Vec<u8>, Vec<u8>);

/// What a backup copies: the trees the writers overwrite, read while every writer is held,
/// and the log (append-only), cut at the next seq read under the same hold.
pub struct BackupView<'a> {
    /// Tree name and rows, in a fixed order.
    pub gated: Vec<(&'static str, Vec<Row>)>,
    pub next_seq: u64,
    pub head: Digest32,
    pub chain_kid: String,
    pub sent_through: u64,
    /// How long the writers were held (microseconds).
    pub pause_us: u64,
    log: &'a sled::Tree,
}

impl BackupView<'_> {
    /// The log values whose first seq is below the snapshot's next seq (a commit after the
    /// hold writes keys at or above it), as stored.
    pub fn log_rows(&self) -> impl Iterator<Item = Result<Row, OutboxError>> + '_ {
        self.log.range(..self.next_seq.to_be_bytes()).map(|kv| {
            kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| OutboxError::Storage {
                    path: PathBuf::new(),
                    detail: e.to_string(),
                })
        })
    }
}

/// The trees of an outbox, in the order a backup writes them (log last).
pub const TREES: [&str; 6] = [
    "meta",
    "pending",
    "ingested",
    "state_journal",
    "state",
    "log",
];

const NEXT_SEQ: &[u8] = b"next_seq";
const HEAD: &[u8] = b"head";
const PENDING_NEXT: &[u8] = b"pending_next";
const PENDING_DONE: &[u8] = b"pending_done";
const SENT_THROUGH: &[u8] = b"sent_through";
const CHAIN_KID: &[u8] = b"chain_kid";
const CHAIN_START: &[u8] = b"chain_start";

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
        let journal = tree("state_journal")?;
        let journal_next = journal
            .last()
            .map_err(|e| OutboxError::Storage {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?
            .map_or(0, |(k, _)| u64_of(Some(k)) + 1);
        Ok(Self {
            meta: tree("meta")?,
            pending: tree("pending")?,
            ingested: tree("ingested")?,
            log: tree("log")?,
            state: tree("state")?,
            journal,
            journal_next: AtomicU64::new(journal_next),
            gate: Mutex::new(()),
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

    /// Keeps every other writer (and a backup) out until dropped.
    fn hold(&self) -> MutexGuard<'_, ()> {
        // The guarded value is (): a panic while held leaves nothing inconsistent behind.
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the writers, copies the trees they overwrite and reads the chain, then lets
    /// them go; the log is read afterwards through the view ([`BackupView::log_rows`]).
    pub fn backup_view(&self) -> Result<BackupView<'_>, OutboxError> {
        let started = std::time::Instant::now();
        let guard = self.hold();
        let waited = started.elapsed();
        let rows = |t: &sled::Tree| -> Result<Vec<Row>, OutboxError> {
            t.iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|e| self.storage(e))
        };
        let gated = vec![
            ("meta", rows(&self.meta)?),
            ("pending", rows(&self.pending)?),
            ("ingested", rows(&self.ingested)?),
            ("state_journal", rows(&self.journal)?),
            ("state", rows(&self.state)?),
        ];
        drop(guard);
        let pause = started.elapsed().saturating_sub(waited);
        // Read from the copy: the live meta may have moved on since the hold.
        let meta_value = |key: &[u8]| {
            gated
                .first()
                .and_then(|(_, rows)| rows.iter().find(|(k, _)| k == key))
                .map(|(_, v)| v.as_slice())
        };
        let meta_u64 = |key: &[u8]| {
            meta_value(key)
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes)
        };
        let head = meta_value(HEAD)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .unwrap_or([0; 32]);
        let chain_kid = meta_value(CHAIN_KID)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        Ok(BackupView {
            next_seq: meta_u64(NEXT_SEQ).max(1),
            head,
            chain_kid,
            sent_through: meta_u64(SENT_THROUGH),
            pause_us: u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
            gated,
            log: &self.log,
        })
    }

    /// Writes one row into tree `name` of a new outbox (restore); flush when done.
    pub fn import_row(&self, name: &str, key: &[u8], value: &[u8]) -> Result<(), OutboxError> {
        let tree = match name {
            "meta" => &self.meta,
            "pending" => &self.pending,
            "ingested" => &self.ingested,
            "state_journal" => &self.journal,
            "state" => &self.state,
            "log" => &self.log,
            other => {
                return Err(OutboxError::Damaged {
                    key: other.to_owned(),
                    detail: "not a tree of the outbox".into(),
                });
            }
        };
        tree.insert(key, value)
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// Whether the outbox holds nothing at all (a restore writes only into such a one).
    pub fn is_empty(&self) -> bool {
        [
            &self.meta,
            &self.pending,
            &self.ingested,
            &self.journal,
            &self.state,
            &self.log,
        ]
        .iter()
        .all(|t| t.is_empty())
    }

    /// The signer kid the chain belongs to (empty for a new outbox).
    pub fn chain_kid(&self) -> Result<String, OutboxError> {
        Ok(self
            .meta
            .get(CHAIN_KID)
            .map_err(|e| self.storage(e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default())
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

    /// The chain signer `kid` seals on. With no chain for it (a new or lost outbox, or a new
    /// signer key) a new one starts, durably, at [`seq_base`] of `now_ms` (never below the
    /// outbox's next seq) with prev GENESIS: above every seq this sender used before, so an
    /// outbox loss never makes it reuse seqs. Returns the chain and, if it is new, its start.
    /// An outbox of an older version (a chain without a recorded kid) is the chain of `kid`.
    pub fn chain_for(
        &self,
        kid: &str,
        now_ms: u64,
    ) -> Result<(ChainState, Option<u64>), OutboxError> {
        let _held = self.hold();
        let stored = self.meta.get(NEXT_SEQ).map_err(|e| self.storage(e))?;
        let owner = self.meta.get(CHAIN_KID).map_err(|e| self.storage(e))?;
        match (&stored, &owner) {
            (Some(_), Some(owner)) if owner.as_ref() == kid.as_bytes() => {
                return Ok((self.chain()?, None));
            }
            (Some(_), None) => {
                self.meta
                    .insert(CHAIN_KID, kid.as_bytes())
                    .map_err(|e| self.storage(e))?;
                self.flush()?;
                return Ok((self.chain()?, None));
            }
            _ => {}
        }
        let start = seq_base(now_ms).max(u64_of(stored));
        self.meta
            .transaction(|meta| {
                meta.insert(NEXT_SEQ, &start.to_be_bytes())?;
                meta.insert(HEAD, &GENESIS)?;
                meta.insert(CHAIN_KID, kid.as_bytes())?;
                meta.insert(CHAIN_START, &start.to_be_bytes())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        self.flush()?;
        Ok((
            ChainState {
                next_seq: start,
                head: GENESIS,
            },
            Some(start),
        ))
    }

    /// The first seq of the current chain (0 for an outbox of an older version).
    pub fn chain_start(&self) -> Result<u64, OutboxError> {
        Ok(u64_of(
            self.meta.get(CHAIN_START).map_err(|e| self.storage(e))?,
        ))
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
        let encoded: Vec<(Vec<u8>, u64)> = items
            .chunks(PENDING_CHUNK)
            .map(|c| encode_pending_chunk(c).map(|v| (v, c.len() as u64)))
            .collect::<Result<_, _>>()
            .map_err(|e| self.storage(e))?;
        let held = self.hold();
        let result =
            (&self.meta, &self.pending, &self.ingested).transaction(|(meta, pending, ingested)| {
                if ingested.get(batch_id.as_bytes())?.is_some() {
                    return Ok(false);
                }
                let mut next = u64_of(meta.get(PENDING_NEXT)?);
                for (chunk, count) in &encoded {
                    pending.insert(&next.to_be_bytes(), chunk.as_slice())?;
                    next += count;
                }
                meta.insert(PENDING_NEXT, &next.to_be_bytes())?;
                ingested.insert(batch_id.as_bytes(), &now.to_be_bytes())?;
                Ok::<bool, ConflictableTransactionError<()>>(true)
            });
        drop(held);
        let fresh = result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        self.flush()?;
        Ok(fresh)
    }

    /// About `max` unconsumed pending items with key >= `from`, oldest first (whole chunks,
    /// so a chunk is decoded once).
    pub fn pending_batch(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, PendingItem)>, OutboxError> {
        let from = from.max(self.pending_done()?);
        // The chunk holding `from` may start below it.
        let start = match self.pending.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => u64_of(Some(kv.map_err(|e| self.storage(e))?.0)),
            None => from,
        };
        let mut out = Vec::new();
        for kv in self.pending.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let first = u64_of(Some(k));
            let items = decode_pending(&v).map_err(|detail| OutboxError::Damaged {
                key: format!("pending/{first}"),
                detail,
            })?;
            let keyed = (first..).zip(items).filter(|(key, _)| *key >= from);
            out.extend(keyed);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    fn pending_done(&self) -> Result<u64, OutboxError> {
        Ok(u64_of(
            self.meta.get(PENDING_DONE).map_err(|e| self.storage(e))?,
        ))
    }

    /// Accepted records not yet sealed.
    pub fn pending_len(&self) -> usize {
        let done = self.pending_done().unwrap_or(0);
        let mut n = 0;
        for (k, v) in self.pending.iter().flatten() {
            let first = u64_of(Some(k));
            n += (first + pending_count(&v)).saturating_sub(first.max(done));
        }
        n as usize
    }

    /// Keys of the pending chunks whose items all lie below `done`.
    fn finished_chunks(&self, done: u64) -> Result<Vec<u64>, OutboxError> {
        let mut keys = Vec::new();
        for kv in self.pending.range(..done.to_be_bytes()) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let first = u64_of(Some(k));
            if first + pending_count(&v) <= done {
                keys.push(first);
            }
        }
        Ok(keys)
    }

    /// Commits sealed frames and their effects atomically, then flushes: the log entries
    /// (one value), the chain state, the pending cursor past `consumed` (which must follow
    /// on from the previous commit's), and the state changes (one journal value).
    pub fn commit(&self, commit: &SealCommit) -> Result<(), OutboxError> {
        let log_value = commit
            .entries
            .first()
            .map(|first| (first.seq, encode_log_chunk(&commit.entries)));
        let chain = commit.entries.last().map(|last| (last.seq + 1, last.hash));
        let done = commit.consumed.iter().max().map(|k| k + 1);
        let finished = match done {
            Some(done) => self.finished_chunks(done)?,
            None => Vec::new(),
        };
        let journal = self.journal_value(&commit.state)?;
        if log_value.is_none() && done.is_none() && journal.is_none() {
            return Ok(());
        }
        let held = self.hold();
        let result = (&self.meta, &self.pending, &self.log, &self.journal).transaction(
            |(meta, pending, log, journal_tree)| {
                if let Some((seq, value)) = &log_value {
                    log.insert(&seq.to_be_bytes(), value.as_slice())?;
                }
                if let Some((next_seq, head)) = &chain {
                    meta.insert(NEXT_SEQ, &next_seq.to_be_bytes())?;
                    meta.insert(HEAD, head)?;
                }
                if let Some(done) = done {
                    meta.insert(PENDING_DONE, &done.to_be_bytes())?;
                }
                for key in &finished {
                    pending.remove(&key.to_be_bytes())?;
                }
                if let Some((key, value)) = &journal {
                    journal_tree.insert(&key.to_be_bytes(), value.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            },
        );
        drop(held);
        result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        self.flush()
    }

    /// The journal key and value for a commit's state changes, if it has any.
    fn journal_value(
        &self,
        changes: &[StateChange],
    ) -> Result<Option<(u64, Vec<u8>)>, OutboxError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let mut ops: Vec<StateOp> = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                StateChange::Upsert(p) => {
                    let v = serde_json::to_vec(p).map_err(|e| self.storage(e))?;
                    ops.push((state_key(&p.issuer, &p.subject), Some(v)));
                }
                StateChange::Remove { issuer, subject } => {
                    ops.push((state_key(issuer, subject), None))
                }
            }
        }
        let key = self.journal_next.fetch_add(1, Relaxed);
        Ok(Some((key, encode_journal(&ops))))
    }

    /// Applies up to `max` journal values to the state tree, oldest first, each atomically
    /// with its removal (so a crash never applies one twice or skips one). Returns how many.
    pub fn fold_state(&self, max: usize) -> Result<usize, OutboxError> {
        let mut n = 0;
        for kv in self.journal.iter().take(max) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let ops = decode_journal(&v).map_err(|detail| OutboxError::Damaged {
                key: format!("state_journal/{}", u64_of(Some(k.clone()))),
                detail,
            })?;
            let held = self.hold();
            let result = (&self.state, &self.journal).transaction(|(state, journal)| {
                for (key, value) in &ops {
                    match value {
                        Some(v) => state.insert(*key, *v)?,
                        None => state.remove(*key)?,
                    };
                }
                journal.remove(&k)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            });
            drop(held);
            result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
            n += 1;
        }
        Ok(n)
    }

    /// Log entries with `from <= seq <= to`, in seq order.
    pub fn log_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<LogEntry, OutboxError>> + '_ {
        // The value holding `from` may start below it.
        let start = match self.log.range(..=from.to_be_bytes()).next_back() {
            Some(Ok((k, _))) => u64_of(Some(k)),
            _ => from,
        };
        let values = if start <= to {
            Some(self.log.range(start.to_be_bytes()..=to.to_be_bytes()))
        } else {
            None
        };
        values.into_iter().flatten().flat_map(move |kv| match kv {
            Ok((k, v)) => decode_log_value(&k, &v, from, to),
            Err(e) => vec![Err(OutboxError::Storage {
                path: PathBuf::new(),
                detail: e.to_string(),
            })],
        })
    }

    /// The lowest and highest seq in the log.
    pub fn log_bounds(&self) -> Result<Option<(u64, u64)>, OutboxError> {
        let first = self.log.first().map_err(|e| self.storage(e))?;
        let last = self.log.last().map_err(|e| self.storage(e))?;
        let (Some((a, _)), Some((b, v))) = (first, last) else {
            return Ok(None);
        };
        let key = u64_of(Some(b));
        let damaged = |detail| OutboxError::Damaged {
            key: format!("log/{key}"),
            detail,
        };
        let parts = log_parts(&v).map_err(damaged)?;
        let hi = match parts.last() {
            Some(part) => entry_head(part).map_err(damaged)?.0,
            None => key,
        };
        Ok(Some((u64_of(Some(a)), hi)))
    }

    /// Entries in the log (reads every value's framing; for tests and tools).
    pub fn log_len(&self) -> usize {
        self.log
            .iter()
            .flatten()
            .map(|(_, v)| log_parts(&v).map_or(0, |p| p.len()))
            .sum()
    }

    /// Removes log values whose entries were all issued before `cutoff` (unix seconds),
    /// never the one holding the newest entry. Returns how many entries went.
    pub fn prune_log(&self, cutoff: u64) -> Result<usize, OutboxError> {
        let _held = self.hold();
        let newest = self.log_bounds()?.map(|(_, hi)| hi).unwrap_or(0);
        let mut removed = 0;
        for kv in self.log.iter() {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            let heads: Vec<(u64, u64)> = log_parts(&v)
                .and_then(|parts| parts.iter().map(|p| entry_head(p)).collect())
                .unwrap_or_default();
            let old = !heads.is_empty() && heads.iter().all(|&(_, at)| at < cutoff);
            if !old || heads.iter().any(|&(seq, _)| seq >= newest) {
                break;
            }
            self.log.remove(k).map_err(|e| self.storage(e))?;
            removed += heads.len();
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
        self.fold_state(usize::MAX)?;
        self.state
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| self.storage(e)))
            .collect()
    }

    pub fn state_get(&self, key: &[u8]) -> Result<Option<Provision>, OutboxError> {
        self.fold_state(usize::MAX)?;
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

    /// Identities in the state as of the last fold (cheap: the status file reads it).
    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    pub fn sent_through(&self) -> Result<u64, OutboxError> {
        Ok(u64_of(
            self.meta.get(SENT_THROUGH).map_err(|e| self.storage(e))?,
        ))
    }

    pub fn set_sent_through(&self, seq: u64) -> Result<(), OutboxError> {
        let _held = self.hold();
        self.meta
            .insert(SENT_THROUGH, &seq.to_be_bytes())
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the outbox again in the same process. sled's flusher thread lets go of the
    /// file lock a moment after the last handle drops (a new process never waits: the old
    /// one's exit releases it), so an in-process reopen retries briefly on `Locked`.
    fn reopen(path: &Path) -> Outbox {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Outbox::open(path) {
                Err(OutboxError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }
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
    fn a_new_outbox_or_a_new_key_starts_a_chain_above_every_seq_used_before() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let (first, started) = {
            let ob = Outbox::open(dir.path()).unwrap();
            ob.chain_for("a", t0).unwrap()
        };
        assert_eq!(started, Some(seq_base(t0)));
        assert_eq!(
            first,
            ChainState {
                next_seq: seq_base(t0),
                head: GENESIS
            }
        );
        let ob = reopen(dir.path());
        // The same key continues its chain, also after a reopen and a later clock.
        assert_eq!(ob.chain_for("a", t0 + 5_000).unwrap(), (first, None));
        // A new key starts its own chain at the clock's base.
        let (second, started) = ob.chain_for("b", t0 + 5_000).unwrap();
        assert_eq!(started, Some(seq_base(t0 + 5_000)));
        assert_eq!(ob.chain_start().unwrap(), second.next_seq);
        drop(ob);
        // The outbox is lost: a fresh one a second later starts above the old chain.
        let lost = tempfile::tempdir().unwrap();
        let ob = Outbox::open(lost.path()).unwrap();
        let (third, _) = ob.chain_for("b", t0 + 6_000).unwrap();
        assert!(
            third.next_seq > second.next_seq + 1000,
            "{third:?} vs {second:?}"
        );
        // An outbox of an older version (a chain without a kid) is the chain of the key.
        let old = tempfile::tempdir().unwrap();
        let ob = Outbox::open(old.path()).unwrap();
        ob.meta.insert(NEXT_SEQ, &8u64.to_be_bytes()).unwrap();
        assert_eq!(ob.chain_for("a", t0).unwrap().0.next_seq, 8);
        assert_eq!(ob.chain_for("a", t0).unwrap().1, None);
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
        let ob = reopen(dir.path());
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

    fn consume(ob: &Outbox, keys: std::ops::Range<u64>) {
        ob.commit(&SealCommit {
            consumed: keys.collect(),
            ..SealCommit::default()
        })
        .unwrap();
    }

    #[test]
    fn pending_chunks_are_consumed_by_cursor_and_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<_> = (0..2500).map(|i| item(&format!("s{i}"))).collect();
        {
            let ob = Outbox::open(dir.path()).unwrap();
            ob.ingest("b", &items, 1).unwrap();
            assert_eq!(ob.pending.len(), 3, "chunks of {PENDING_CHUNK}");
            let batch = ob.pending_batch(0, 600).unwrap();
            assert_eq!(batch.len(), PENDING_CHUNK, "whole chunks");
            consume(&ob, 0..600);
            assert_eq!(ob.pending_len(), 1900);
            assert_eq!(ob.pending.len(), 3);
        }
        // After a restart, reading from 0 resumes at the cursor.
        let ob = reopen(dir.path());
        let batch = ob.pending_batch(0, 10).unwrap();
        assert_eq!(batch.first().map(|(k, _)| *k), Some(600));
        assert_eq!(batch[0].1, items[600]);
        consume(&ob, 600..1100);
        assert_eq!(ob.pending.len(), 2, "the first chunk is gone");
        assert_eq!(ob.pending_len(), 1400);
        consume(&ob, 1100..2500);
        assert_eq!(ob.pending_len(), 0);
        assert_eq!(ob.pending.len(), 0);
        assert!(ob.pending_batch(0, 10).unwrap().is_empty());
    }

    #[test]
    fn log_values_hold_one_commit_and_ranges_cross_them() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        for first in [1u64, 4, 7] {
            let entries = (first..first + 3).map(|s| entry(s, s * 10)).collect();
            ob.commit(&SealCommit {
                entries,
                ..SealCommit::default()
            })
            .unwrap();
        }
        assert_eq!(ob.log.len(), 3);
        assert_eq!(ob.log_len(), 9);
        assert_eq!(ob.log_bounds().unwrap(), Some((1, 9)));
        let seqs = |a, b| -> Vec<u64> { ob.log_range(a, b).map(|e| e.unwrap().seq).collect() };
        assert_eq!(seqs(2, 5), vec![2, 3, 4, 5]);
        assert_eq!(seqs(5, 5), vec![5]);
        assert_eq!(seqs(8, 100), vec![8, 9]);
        assert_eq!(seqs(10, 20), Vec::<u64>::new());
        assert_eq!(ob.log_range(3, 3).next().unwrap().unwrap(), entry(3, 30));
        // A value goes only when all its entries are old.
        assert_eq!(ob.prune_log(45).unwrap(), 3);
        assert_eq!(ob.log_bounds().unwrap(), Some((4, 9)));
    }

    #[test]
    fn values_written_one_per_key_by_older_versions_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.log
            .insert(1u64.to_be_bytes(), entry(1, 10).encode())
            .unwrap();
        ob.log
            .insert(2u64.to_be_bytes(), entry(2, 20).encode())
            .unwrap();
        let old_item = serde_json::to_vec(&item("a")).unwrap();
        ob.pending.insert(0u64.to_be_bytes(), old_item).unwrap();
        ob.meta.insert(PENDING_NEXT, &1u64.to_be_bytes()).unwrap();
        assert_eq!(ob.log_range(1, 2).count(), 2);
        assert_eq!(ob.log_bounds().unwrap(), Some((1, 2)));
        assert_eq!(ob.pending_len(), 1);
        assert_eq!(ob.pending_batch(0, 10).unwrap(), vec![(0, item("a"))]);
        ob.ingest("b", &[item("b")], 1).unwrap();
        assert_eq!(ob.pending_batch(1, 10).unwrap(), vec![(1, item("b"))]);
        consume(&ob, 0..1);
        assert_eq!(ob.pending_len(), 1);
        assert_eq!(ob.pending.len(), 1);
    }

    #[test]
    fn state_changes_are_journaled_and_folded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = testkit::provision("a");
        let key = state_key(&a.issuer, &a.subject);
        {
            let ob = Outbox::open(dir.path()).unwrap();
            let change = |c| SealCommit {
                state: vec![c],
                ..SealCommit::default()
            };
            ob.commit(&change(StateChange::Upsert(Box::new(a.clone()))))
                .unwrap();
            ob.commit(&change(StateChange::Remove {
                issuer: a.issuer.clone(),
                subject: a.subject.clone(),
            }))
            .unwrap();
            ob.commit(&change(StateChange::Upsert(Box::new(testkit::provision(
                "b",
            )))))
            .unwrap();
            assert_eq!(ob.state_len(), 0, "not folded yet");
            assert_eq!(ob.fold_state(1).unwrap(), 1);
            assert_eq!(ob.state_len(), 1);
        }
        // The rest is folded after a restart, in order: "a" stays removed.
        let ob = reopen(dir.path());
        assert_eq!(ob.state_get(&key).unwrap(), None);
        assert_eq!(ob.state_len(), 1);
        assert_eq!(ob.journal.len(), 0);
    }
}
