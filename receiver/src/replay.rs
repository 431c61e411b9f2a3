//! Rebuilding state from the frame log alone, and comparing two stores.
//!
//! [`replay_log_into`] walks a log (checking its hash chain and every signature against the
//! configured keys plus the key changes logged before each entry) and applies each frame to
//! another store with the same state machine as the live ingest. The crash tests and
//! `audit replay` use it to prove the live store equals a replay of its log.

use airlock_protocol::message::Body;
use airlock_protocol::seal::{OpenError, verify_sign1};
use thiserror::Error;

use crate::apply::{AcceptedFrame, Ledger, Outcome, apply_batch};
use crate::frame_log::{ChainVerifier, LogEntry, LogError};
use crate::store::records::TicketRecord;
use crate::store::{Store, StoreError, Table, decode_json, meta, printable_key};
use crate::trust_set::{BaseTrust, TrustError};

#[derive(Debug, Error)]
pub enum ReplayLogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] LogError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("log entry {index}: its signature does not verify against the keys in force: {source}")]
    Signature { index: u64, source: OpenError },
    #[error("log entry {index}: replay gives {replayed} where the log says {logged}")]
    Divergence {
        index: u64,
        logged: String,
        replayed: String,
    },
    #[error("the replay target is not empty: use a fresh store")]
    NotEmpty,
}

/// What a replay walked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub entries: u64,
    pub head: [u8; 32],
}

/// Entries applied per transaction during a replay.
const REPLAY_BATCH: usize = 512;

/// Replays the whole log of `source` into the empty store `dest`; `progress` is called with
/// the number of entries done after each batch.
pub fn replay_log_into<A: Store, B: Store>(
    source: &A,
    base: &BaseTrust,
    dest: &B,
    mut progress: impl FnMut(u64),
) -> Result<ReplaySummary, ReplayLogError> {
    if !dest.is_empty(Table::Log) {
        return Err(ReplayLogError::NotEmpty);
    }
    // The tree is part of the state when the source keeps one: the replay rebuilds it too.
    if source.get(Table::Meta, meta::TREE)?.is_some() {
        let empty = airlock_protocol::merkle::Frontier::new().to_bytes();
        dest.transact(|tx| tx.put(Table::Meta, meta::TREE, &empty))?;
    }
    // Which key signs the checkpoints is not in the log (the receiver pins it at start):
    // carried over as it is, like the checkpoints a replay does not rebuild.
    if let Some(k) = source.get(Table::Meta, meta::CHECKPOINT_KEY)? {
        dest.transact(|tx| tx.put(Table::Meta, meta::CHECKPOINT_KEY, &k))?;
    }
    let mut chain = ChainVerifier::new();
    let mut trust = base.effective(&Default::default())?;
    let mut batch: Vec<(LogEntry, AcceptedFrame)> = Vec::new();
    for row in source.scan_from(Table::Log, &[]) {
        let (_, value) = row?;
        let entry = chain.push(&value)?;
        let envelope =
            verify_sign1(&entry.sign1, &trust).map_err(|source| ReplayLogError::Signature {
                index: entry.index,
                source,
            })?;
        let rekey = matches!(envelope.body, Body::KeyAnnounce(_) | Body::KeyRetire(_));
        let frame = AcceptedFrame::new(envelope, entry.sign1.clone(), entry.received_at_ms);
        batch.push((entry, frame));
        if rekey || batch.len() >= REPLAY_BATCH {
            let ledger = apply_checked(dest, &batch)?;
            batch.clear();
            progress(chain.summary().entries);
            if rekey {
                trust = base.effective(&ledger.keys)?;
            }
        }
    }
    if !batch.is_empty() {
        apply_checked(dest, &batch)?;
        progress(chain.summary().entries);
    }
    dest.flush()?;
    let s = chain.summary();
    Ok(ReplaySummary {
        entries: s.entries,
        head: s.head,
    })
}

fn apply_checked<B: Store>(
    dest: &B,
    batch: &[(LogEntry, AcceptedFrame)],
) -> Result<Ledger, ReplayLogError> {
    let frames: Vec<AcceptedFrame> = batch.iter().map(|(_, f)| f.clone()).collect();
    let (outcomes, ledger) = dest.transact(|tx| apply_batch(tx, &frames))?;
    for ((entry, _), outcome) in batch.iter().zip(outcomes) {
        let ok = matches!(&outcome, Outcome::Logged(a) if a.index == entry.index && a.verdict == entry.verdict);
        if !ok {
            return Err(ReplayLogError::Divergence {
                index: entry.index,
                logged: entry.verdict.as_str().to_owned(),
                replayed: format!("{outcome:?}"),
            });
        }
    }
    Ok(ledger)
}

/// One difference between two stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub table: &'static str,
    pub key: String,
    pub what: &'static str,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.table, self.key, self.what)
    }
}

/// Compares every table of `live` with `replayed`. A ticket's `used` flag is set by the
/// provider, not by a frame, so it is ignored.
pub fn diff_stores<A: Store, B: Store>(
    live: &A,
    replayed: &B,
) -> Result<Vec<Difference>, StoreError> {
    let mut out = Vec::new();
    for table in Table::ALL.into_iter().filter(|t| t.derived_from_log()) {
        let mut a = live.scan_from(table, &[]).peekable();
        let mut b = replayed.scan_from(table, &[]).peekable();
        loop {
            let (ka, kb) = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(Err(_)), _) | (_, Some(Err(_))) => {
                    let err = a
                        .next()
                        .and_then(Result::err)
                        .or_else(|| b.next().and_then(Result::err));
                    return Err(err.unwrap_or(StoreError::Io("scan failed".into())));
                }
                (Some(Ok((ka, _))), Some(Ok((kb, _)))) => (Some(ka.clone()), Some(kb.clone())),
                (Some(Ok((ka, _))), None) => (Some(ka.clone()), None),
                (None, Some(Ok((kb, _)))) => (None, Some(kb.clone())),
            };
            let d = |key: &[u8], what| Difference {
                table: table.name(),
                key: printable_key(key),
                what,
            };
            match (ka, kb) {
                (Some(ka), Some(kb)) if ka == kb => {
                    let va = a
                        .next()
                        .and_then(Result::ok)
                        .map(|r| r.1)
                        .unwrap_or_default();
                    let vb = b
                        .next()
                        .and_then(Result::ok)
                        .map(|r| r.1)
                        .unwrap_or_default();
                    if !same_value(table, &ka, &va, &vb) {
                        out.push(d(&ka, "values differ"));
                    }
                }
                (Some(ka), kb) if kb.as_ref().is_none_or(|kb| ka < *kb) => {
                    out.push(d(&ka, "only in the live store"));
                    a.next();
                }
                (_, Some(kb)) => {
                    out.push(d(&kb, "only in the replayed store"));
                    b.next();
                }
                _ => break,
            }
        }
    }
    Ok(out)
}

fn same_value(table: Table, key: &[u8], a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    if table == Table::Users {
        return same_user(a, b);
    }
    if table != Table::Tickets {
        return false;
    }
    let parse = |v: &[u8]| decode_json::<TicketRecord>(Table::Tickets, key, v).ok();
    match (parse(a), parse(b)) {
        (Some(mut x), Some(mut y)) => {
            x.used = false;
            y.used = false;
            x == y
        }
        _ => false,
    }
}

/// A live user record written before the `ticket_only` mark existed has no such field,
/// where the replay computes it from the log: the rest must still be equal.
fn same_user(live: &[u8], replayed: &[u8]) -> bool {
    let parse = |v: &[u8]| serde_json::from_slice::<serde_json::Value>(v).ok();
    match (parse(live), parse(replayed)) {
        (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(mut b))) => {
            if !a.contains_key("ticket_only") {
                b.remove("ticket_only");
            }
            a == b
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_from_before_the_ticket_only_mark_matches_its_replay() {
        let old = br#"{"local_sub":"s","valid_until":5,"revoked":false}"#;
        let replayed = br#"{"local_sub":"s","valid_until":5,"revoked":false,"ticket_only":true}"#;
        assert!(same_value(Table::Users, b"s", old, replayed));
        // Once the live record carries the mark, it must agree.
        let live = br#"{"local_sub":"s","valid_until":5,"revoked":false,"ticket_only":false}"#;
        assert!(!same_value(Table::Users, b"s", live, replayed));
        let other = br#"{"local_sub":"s","valid_until":6,"revoked":false,"ticket_only":true}"#;
        assert!(!same_value(Table::Users, b"s", old, other));
    }
}
