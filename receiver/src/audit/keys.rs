//! The signer set as it evolves along the log.
//!
//! KeyAnnounce/KeyRetire frames are fed through the ingest's own state machine
//! ([`crate::apply::apply_batch`]) into a tiny in-memory transaction, so the auditor's
//! idea of "which keys were in force at entry N" cannot drift from the receiver's.

use std::cell::RefCell;
use std::collections::HashMap;

use airlock_protocol::message::{Body, Envelope};
use airlock_protocol::trust::TrustStore;

use super::error::AuditError;
use crate::apply::{AcceptedFrame, apply_batch};
use crate::store::{StateTx, StoreError, Table, TxError};
use crate::trust_set::BaseTrust;

/// (table position, key) -> value.
type Rows = HashMap<(usize, Vec<u8>), Vec<u8>>;

/// An in-memory [`StateTx`]: only ever sees key-change frames, so it stays small.
#[derive(Default)]
struct MemTx {
    rows: RefCell<Rows>,
}

impl StateTx for MemTx {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        Ok(self
            .rows
            .borrow()
            .get(&(table.position(), key.to_vec()))
            .cloned())
    }

    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.rows
            .borrow_mut()
            .insert((table.position(), key.to_vec()), value.to_vec());
        Ok(())
    }
}

/// The configured keys plus the key changes logged so far.
pub struct KeyTracker {
    base: BaseTrust,
    mem: MemTx,
    trust: TrustStore,
}

impl KeyTracker {
    pub fn new(base: BaseTrust) -> Result<Self, AuditError> {
        let trust = base.effective(&Default::default())?;
        Ok(Self {
            base,
            mem: MemTx::default(),
            trust,
        })
    }

    /// The signers in force now.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Whether a body changes the key set (so later entries need the new trust).
    pub fn is_key_change(env: &Envelope) -> bool {
        matches!(env.body, Body::KeyAnnounce(_) | Body::KeyRetire(_))
    }

    /// Feeds a verified key-change frame; true when the signer set changed.
    pub fn observe(
        &mut self,
        env: &Envelope,
        sign1: &[u8],
        received_at_ms: u64,
    ) -> Result<bool, AuditError> {
        let frame = AcceptedFrame::new(env.clone(), sign1.to_vec(), received_at_ms);
        let (_, ledger) = apply_batch(&self.mem, &[frame]).map_err(|e| match e {
            TxError::Store(s) => AuditError::Store(s),
            TxError::Conflict => AuditError::Store(StoreError::Io(
                "conflict in an in-memory transaction".into(),
            )),
        })?;
        let next = self.base.effective(&ledger.keys)?;
        let changed = signer_view(&next) != signer_view(&self.trust);
        self.trust = next;
        Ok(changed)
    }
}

fn signer_view(t: &TrustStore) -> Vec<(String, u64)> {
    t.signers()
        .map(|s| (s.key.kid.clone(), s.not_before))
        .collect()
}
