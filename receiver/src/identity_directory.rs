//! The OpenID provider's view of users and tickets ([`IdentityDirectory`]), on the store.

use std::sync::Arc;

use crate::oidc::directory::{DirectoryError, DirectoryTicket, DirectoryUser, IdentityDirectory};
use crate::store::records::{TicketRecord, UserRecord};
use crate::store::{Store, Table, decode_json};

/// Reads users and tickets the ingest wrote; consumes tickets durably.
pub struct StoreDirectory<S: Store> {
    store: Arc<S>,
}

impl<S: Store> StoreDirectory<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self { store }
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
        Ok(Some(DirectoryUser {
            issuer: u.issuer,
            subject: u.subject,
            claims: u.claims,
            valid_until: u.valid_until,
            provisioned_seq: u.provisioned_seq,
            revoked: u.revoked,
        }))
    }

    fn ticket(&self, locator: &[u8; 16]) -> Result<Option<DirectoryTicket>, DirectoryError> {
        let Some(bytes) = self.store.get(Table::Tickets, locator).map_err(err)? else {
            return Ok(None);
        };
        let t: TicketRecord = decode_json(Table::Tickets, locator, &bytes).map_err(err)?;
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
        self.store.consume_ticket(locator).map_err(err)
    }
}
