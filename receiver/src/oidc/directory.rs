//! The identity data the OpenID provider reads, filled by the ingest side.
//!
//! The provider never writes users or tickets; it only reads them and consumes
//! tickets. [`IdentityDirectory`] is implemented on the store (either backend) in
//! `crate::identity_directory`; tests implement it on a small in-memory map.

use airlock_protocol::message::Claims;

/// A failure of the directory backend (I/O, corruption). The provider answers
/// `server_error` / a 500 page and logs the message.
#[derive(Debug, thiserror::Error)]
#[error("identity directory: {0}")]
pub struct DirectoryError(pub String);

/// A user the link brought in (by a Provision, or by a LoginTicket alone), keyed by the local `sub`
/// (`airlock_protocol::message::local_subject(issuer, subject)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Outside issuer.
    pub issuer: String,
    /// Outside subject.
    pub subject: String,
    /// The allow-listed claims that crossed the diode.
    pub claims: Claims,
    /// Unix seconds after which the approval no longer allows new logins or refreshes.
    pub valid_until: u64,
    /// The frame seq of the Provision (or LoginTicket) that created or last updated the user.
    pub provisioned_seq: u64,
    /// True once a Revoke frame was applied for this identity.
    pub revoked: bool,
    /// True when a Provision admitted the person. False for someone known only from
    /// LoginTickets: their `valid_until` is then the last transfer code's expiry, which
    /// bounds that code, not their sessions (there is no approval window to expire).
    pub provisioned: bool,
}

/// A just-in-time login ticket, found by the locator of its transfer code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTicket {
    /// Argon2id PHC string of the transfer code's secret part.
    pub code_hash: String,
    pub issuer: String,
    pub subject: String,
    pub claims: Claims,
    /// Unix seconds after which the code no longer works.
    pub expires_at: u64,
    /// The seq of the LoginTicket frame.
    pub seq: u64,
    /// True once [`IdentityDirectory::consume_ticket`] succeeded for it.
    pub used: bool,
}

/// Read access to users and tickets, plus the single-use consumption of tickets.
pub trait IdentityDirectory: Send + Sync + 'static {
    /// The user with this local `sub`, if the link brought them in (revoked users are
    /// returned with `revoked = true`, not hidden, so the provider can say why a login
    /// fails; people known only from tickets with `provisioned = false`).
    fn user(&self, local_sub: &str) -> Result<Option<DirectoryUser>, DirectoryError>;

    /// The ticket with this locator, if any (used and expired ones included).
    fn ticket(&self, locator: &[u8; 16]) -> Result<Option<DirectoryTicket>, DirectoryError>;

    /// Every ticket filed under this locator: different codes may share one of the
    /// 2^25 locators. Default: the one ticket [`Self::ticket`] returns.
    fn tickets(&self, locator: &[u8; 16]) -> Result<Vec<DirectoryTicket>, DirectoryError> {
        Ok(self.ticket(locator)?.into_iter().collect())
    }

    /// Atomically marks the ticket of frame `seq` under `locator` used; true only for
    /// the one call that flipped it. Default: [`Self::consume_ticket`] (one ticket per locator).
    fn consume_ticket_seq(&self, locator: &[u8; 16], seq: u64) -> Result<bool, DirectoryError> {
        let _ = seq;
        self.consume_ticket(locator)
    }

    /// Atomically marks the ticket used. Returns true only for the one call that
    /// flipped it from unused to used; false if it was already used or unknown.
    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, DirectoryError>;

    /// The mirrored documents of outside IdPs (IdpMirror frames), newest per issuer.
    /// Default: none (a directory without the link's mirrors).
    fn idp_mirrors(&self) -> Result<Vec<MirroredIdp>, DirectoryError> {
        Ok(Vec::new())
    }
}

/// An outside IdP's discovery document and JWKS, byte for byte as the sender fetched them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredIdp {
    pub issuer: String,
    pub discovery: Vec<u8>,
    pub jwks: Vec<u8>,
    pub fetched_at: u64,
    pub seq: u64,
}
