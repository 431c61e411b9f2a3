//! The messages that cross the diode: the [`Envelope`] and its [`Body`] variants.
//!
//! These are plain data. Encoding lives in [`crate::codec`]; size rules live in
//! [`crate::limits`] and are enforced by [`Envelope::validate`], which the codec calls on
//! both encode and decode so an oversized message can neither be sent nor accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{self, LimitError};

/// The envelope version this crate writes: maps keyed by field and variant index
/// (docs/protocol.md § 1). Version 1 named them in text; the index keys take a 600-byte
/// Provision down by about a third, which is line time on a serial diode.
pub const ENVELOPE_VERSION: u8 = 2;

/// The oldest envelope version this crate still reads: frames of senders not yet upgraded,
/// and every frame already in a frame log, must open and replay.
pub const OLDEST_ENVELOPE_VERSION: u8 = 1;

/// Version 1: text keys (field and variant names). Every later version uses index keys.
pub const NAMED_KEYS_VERSION: u8 = 1;

/// A 32-byte SHA-256 digest (frame hashes, chain heads).
pub type Digest32 = [u8; 32];

/// Every message on the link: who sent it, where it sits in the sender's chain, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version: [`ENVELOPE_VERSION`] when written, [`OLDEST_ENVELOPE_VERSION`] up to
    /// it when read.
    pub v: u8,
    /// The signer key id; must equal the `kid` of the COSE_Sign1 that carries the envelope.
    pub sender_kid: String,
    /// Strictly increasing per signer key; a chain starts at a clock-derived seq
    /// ([`crate::chain::seq_base`]; 1 for chains of older senders).
    pub seq: u64,
    /// SHA-256 of the previous frame's COSE_Sign1 bytes (all zero for the first frame of a
    /// chain).
    #[serde(with = "serde_bytes")]
    pub prev: Digest32,
    /// Unix time (seconds) at which the sender sealed the frame.
    pub issued_at: u64,
    /// What the frame says.
    pub body: Body,
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Upsert a pre-approved user.
    Provision(Provision),
    /// Deprovision a user.
    Revoke(Revoke),
    /// Just-in-time access of a user who authenticated outside.
    LoginTicket(LoginTicket),
    /// A new signer key or link-key activation.
    KeyAnnounce(KeyAnnounce),
    /// Stop trusting a key.
    KeyRetire(KeyRetire),
    /// Liveness, latest seq and chain head.
    Heartbeat(Heartbeat),
    /// An outside IdP's discovery document and JWKS.
    IdpMirror(IdpMirror),
}

impl Body {
    /// A short lowercase name for logs, metrics and exports.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Provision(_) => "provision",
            Body::Revoke(_) => "revoke",
            Body::LoginTicket(_) => "login_ticket",
            Body::KeyAnnounce(_) => "key_announce",
            Body::KeyRetire(_) => "key_retire",
            Body::Heartbeat(_) => "heartbeat",
            Body::IdpMirror(_) => "idp_mirror",
        }
    }

    /// The outside identity (issuer, subject) this body is about, if any.
    pub fn identity(&self) -> Option<(&str, &str)> {
        match self {
            Body::Provision(p) => Some((&p.issuer, &p.subject)),
            Body::Revoke(r) => Some((&r.issuer, &r.subject)),
            Body::LoginTicket(t) => Some((&t.issuer, &t.subject)),
            _ => None,
        }
    }
}

/// The allow-listed claims of an outside identity that may cross the diode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// E-mail address.
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Whether the outside IdP verified the e-mail address.
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Full name.
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Given name.
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Family name.
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Preferred user name.
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Group names (allow-listed by the sender's policy).
    pub groups: Vec<String>,
    /// Further string claims a deployment allow-lists (e.g. `department`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Who approved an identity crossing, when, and under which ticket of their process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved (a person's identifier in the approval process).
    pub approver: String,
    /// When (Unix seconds).
    pub approved_at: u64,
    /// The ticket or change reference of the approval.
    pub ticket_ref: String,
}

/// Upsert a pre-approved user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    /// The outside issuer (the IdP's `iss`).
    pub issuer: String,
    /// The user's subject at that issuer.
    pub subject: String,
    /// The allow-listed claims to hold inside.
    pub claims: Claims,
    /// Who approved the crossing.
    pub approval: Approval,
    /// Unix time after which the approval no longer lets the user log in.
    pub valid_until: u64,
}

/// Deprovision a user: sessions and refresh tokens die inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoke {
    /// The outside issuer (the IdP's `iss`).
    pub issuer: String,
    /// The user's subject at that issuer.
    pub subject: String,
    /// Who approved the removal.
    pub approval: Approval,
    /// Why, for the audit trail.
    pub reason: String,
}

/// Just-in-time access for a user who authenticated outside moments ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginTicket {
    /// Lets the receiver find the ticket in O(1); derived from the transfer code, not secret.
    #[serde(with = "serde_bytes")]
    pub locator: [u8; 16],
    /// Argon2id PHC string of the transfer code's secret part.
    pub code_hash: String,
    /// The outside issuer (the IdP's `iss`).
    pub issuer: String,
    /// The user's subject at that issuer.
    pub subject: String,
    /// The allow-listed claims for this login.
    pub claims: Claims,
    /// Who approved the access.
    pub approval: Approval,
    /// Unix time after which the code no longer works.
    pub expires_at: u64,
}

/// Announce a new key. Link keys never cross the link: only their activation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAnnounce {
    /// A new signer key, trusted from `not_before` because a trusted signer vouches for it.
    Signer {
        /// The new key's id.
        kid: String,
        #[serde(with = "serde_bytes")]
        /// The new key's raw Ed25519 public key.
        public_key: [u8; 32],
        /// Unix seconds from which its signatures count.
        not_before: u64,
    },
    /// The sender will start sealing with link key `kid` (installed on paper) at `not_before`.
    Link {
        /// The link key id.
        kid: u32,
        /// Unix seconds from which the sender seals with it.
        not_before: u64,
    },
}

/// Stop trusting a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRetire {
    /// A signer key, by kid.
    Signer {
        /// The key id.
        kid: String,
    },
    /// A link key, by kid.
    Link {
        /// The key id.
        kid: u32,
    },
}

/// Liveness. The envelope's `seq` and `prev` are the sender's latest seq and chain head,
/// so every seq below a heartbeat's is one the receiver should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's random per-start session id (the one in the datagram header).
    pub session_id: u64,
    /// Seconds until the next heartbeat; the receiver alarms after a few missed ones.
    pub interval_secs: u32,
}

/// A snapshot of an outside IdP's discovery document and JWKS, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpMirror {
    /// The IdP's issuer identifier.
    pub issuer: String,
    #[serde(with = "serde_bytes")]
    /// The discovery document, byte for byte as fetched.
    pub discovery: Vec<u8>,
    #[serde(with = "serde_bytes")]
    /// The JWKS, byte for byte as fetched.
    pub jwks: Vec<u8>,
    /// When the sender fetched them (Unix seconds).
    pub fetched_at: u64,
}

impl Envelope {
    /// Checks every size rule of [`crate::limits`].
    pub fn validate(&self) -> Result<(), LimitError> {
        limits::check_str("sender_kid", &self.sender_kid, limits::MAX_KID)?;
        self.body.validate()
    }
}

impl Body {
    /// Checks the size rules of [`crate::limits`] that apply to the body.
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Body::Provision(p) => {
                check_identity(&p.issuer, &p.subject)?;
                check_claims(&p.claims)?;
                check_approval(&p.approval)
            }
            Body::Revoke(r) => {
                check_identity(&r.issuer, &r.subject)?;
                check_approval(&r.approval)?;
                limits::check_str("reason", &r.reason, limits::MAX_TEXT)
            }
            Body::LoginTicket(t) => {
                check_identity(&t.issuer, &t.subject)?;
                check_claims(&t.claims)?;
                check_approval(&t.approval)?;
                limits::check_str("code_hash", &t.code_hash, limits::MAX_TEXT)?;
                limits::check_argon2_phc("code_hash", &t.code_hash)
            }
            Body::KeyAnnounce(KeyAnnounce::Signer { kid, .. })
            | Body::KeyRetire(KeyRetire::Signer { kid }) => {
                limits::check_str("kid", kid, limits::MAX_KID)
            }
            Body::KeyAnnounce(KeyAnnounce::Link { .. })
            | Body::KeyRetire(KeyRetire::Link { .. })
            | Body::Heartbeat(_) => Ok(()),
            Body::IdpMirror(m) => {
                limits::check_str("issuer", &m.issuer, limits::MAX_TEXT)?;
                limits::check_len("discovery", m.discovery.len(), limits::MAX_DOCUMENT)?;
                limits::check_len("jwks", m.jwks.len(), limits::MAX_DOCUMENT)
            }
        }
    }
}

fn check_identity(issuer: &str, subject: &str) -> Result<(), LimitError> {
    limits::check_str("issuer", issuer, limits::MAX_TEXT)?;
    limits::check_str("subject", subject, limits::MAX_TEXT)?;
    if issuer.is_empty() || subject.is_empty() {
        return Err(LimitError::Empty("issuer/subject"));
    }
    Ok(())
}

fn check_approval(a: &Approval) -> Result<(), LimitError> {
    limits::check_str("approver", &a.approver, limits::MAX_TEXT)?;
    limits::check_str("ticket_ref", &a.ticket_ref, limits::MAX_TEXT)
}

fn check_claims(c: &Claims) -> Result<(), LimitError> {
    for (name, value) in [
        ("email", &c.email),
        ("name", &c.name),
        ("given_name", &c.given_name),
        ("family_name", &c.family_name),
        ("preferred_username", &c.preferred_username),
    ] {
        if let Some(v) = value {
            limits::check_str(name, v, limits::MAX_TEXT)?;
        }
    }
    limits::check_len("groups", c.groups.len(), limits::MAX_GROUPS)?;
    for g in &c.groups {
        limits::check_str("group", g, limits::MAX_TEXT)?;
    }
    limits::check_len("extra claims", c.extra.len(), limits::MAX_EXTRA_CLAIMS)?;
    for (k, v) in &c.extra {
        limits::check_str("extra claim name", k, limits::MAX_KID)?;
        limits::check_str("extra claim value", v, limits::MAX_TEXT)?;
    }
    Ok(())
}

/// The inside `sub` of an outside identity: stable, opaque, and the same on every receiver.
///
/// SHA-256 over a domain label, the issuer and the subject (NUL-separated so that
/// ("a", "bc") and ("ab", "c") differ), first 16 bytes, lowercase hex.
pub fn local_subject(issuer: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"airlock-sub-v1\0");
    h.update(issuer.as_bytes());
    h.update([0u8]);
    h.update(subject.as_bytes());
    let digest = h.finalize();
    hex::encode(&digest[..16])
}
