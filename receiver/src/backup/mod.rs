//! Online backup of the embedded (sled) store, and its restore.
//!
//! sled lets one process open a directory, so the running daemon exports its own store:
//! `GET /backup` on the ops listener (loopback, bearer token from the token file the daemon
//! writes at start) streams every tree ([`export`]); `airlock-receiver backup` writes the
//! stream as one file per tree plus a manifest with SHA-256 sums ([`cmd`]); `restore` checks
//! the sums, imports into an empty data directory, and refuses a log whose chain, tree,
//! checkpoints or derived state do not verify (the audit code).
//!
//! Consistency: the tables the ingest overwrites (meta: head, replay window, gaps, keys, tree;
//! users, tickets, mirrors) are copied while the ingest is held at a batch boundary
//! ([`IngestGate`]); the tables it only appends to (log, seqs, revocations, checkpoints) are
//! then streamed without the gate, cut at the log length read under it. So the pause does not
//! grow with the log.

pub mod cmd;
pub mod export;
pub mod format;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by the ingest's committer around each batch, and by a backup while it copies the
/// tables the ingest overwrites: the backup sees the store between two batches.
#[derive(Debug, Default)]
pub struct IngestGate(Mutex<()>);

impl IngestGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the current batch to finish and keeps the next one out until dropped.
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        // The guarded value is (): a panic while held leaves nothing inconsistent behind.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
