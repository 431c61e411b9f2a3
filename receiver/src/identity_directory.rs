//! The OpenID provider's view of users and tickets ([`IdentityDirectory`]), on the store.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::oidc::directory::{
    DirectoryError, DirectoryTicket, DirectoryUser, IdentityDirectory, MirroredIdp,
};
use crate::store::records::{MirrorRecord, TicketRecord, UserRecord};
use crate::store::{Store, Table, decode_json};

/// Reads users and tickets the ingest wrote; consumes tickets durably.
///
/// On a store whose commits become durable only at the flush (sled), the ingest commits a
/// burst and then flushes; in between, a reader could see an effect that a crash would
/// erase. With [`StoreDirectory::gated`], a user or ticket last changed by log entry `i` is
/// visible only once the ingest published a durable log length above `i`.
pub struct StoreDirectory<S: Store> {
    store: Arc<S>,
    durable: Option<Arc<Metrics>>,
}

impl<S: Store> StoreDirectory<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            durable: None,
        }
    }

    /// Hides records newer than the durable log length the ingest publishes in `metrics`.
    pub fn gated(store: Arc<S>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            durable: Some(metrics),
        }
    }

    fn visible(&self, log_index: u64) -> bool {
        self.durable
            .as_ref()
            .is_none_or(|m| log_index < m.log_entries.load(Ordering::Acquire))
    }
}

fn err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(e.to_string())
}

impl<S: Store> IdentityDirectory for StoreDirectory<S> {
    fn user(&self, local_sub: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        let key = local_sub.as_bytes();
        let Some(bytes) = self.store.get(Table::Users, key).map_err(err)? else {
            return Ok(None);
        };
        let u: UserRecord = decode_json(Table::Users, key, &bytes).map_err(err)?;
        if !self.visible(u.last.log_index) {
            return Ok(None);
        }
        Ok(Some(DirectoryUser {
            issuer: u.issuer,
            subject: u.subject,
            claims: u.claims,
            valid_until: u.valid_until,
            provisioned_seq: u.provisioned_seq,
            revoked: u.revoked,
            provisioned: !u.ticket_only,
        }))
    }

    fn ticket(&self, locator: &[u8; 16]) -> Result<Option<DirectoryTicket>, DirectoryError> {
        let Some(bytes) = self.store.get(Table::Tickets, locator).map_err(err)? else {
            return Ok(None);
        };
        let t: TicketRecord = decode_json(Table::Tickets, locator, &bytes).map_err(err)?;
        if !self.visible(t.log_index) {
            return Ok(None);
        }
        Ok(Some(DirectoryTicket {
            code_hash: t.code_hash,
            issuer: t.issuer,
            subject: t.subject,
            claims: t.claims,
            expires_at: t.expires_at,
            seq: t.seq,
            used: t.used,
        }))
    }

    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, DirectoryError> {
        if self.ticket(locator)?.is_none() {
            return Ok(false);
        }
        self.store.consume_ticket(locator).map_err(err)
    }

    fn idp_mirrors(&self) -> Result<Vec<MirroredIdp>, DirectoryError> {
        let mut out = Vec::new();
        for row in self.store.scan_from(Table::Mirrors, b"") {
            let (key, bytes) = row.map_err(err)?;
            let m: MirrorRecord = decode_json(Table::Mirrors, &key, &bytes).map_err(err)?;
            if self.visible(m.log_index) {
                out.push(MirroredIdp {
                    issuer: m.issuer,
                    discovery: m.discovery,
                    jwks: m.jwks,
                    fetched_at: m.fetched_at,
                    seq: m.seq,
                });
            }
        }
        Ok(out)
    }
}
