//! Intake: the three ways a record comes in. Each produces [`Candidate`]s, and every
//! candidate goes through the one policy filter ([`crate::policy::Policy::admit`]).
//!
//! 1. approval records (JSON) — [`records`]
//! 2. outside ID tokens (JWT, verified against a pinned JWKS) — [`jwt`]
//! 3. just-in-time login tickets — a `login_ticket` record or an ID token; the transfer
//!    code is made after policy, in [`crate::ticket`].

pub mod claims;
pub mod jwt;
pub mod records;

use airlock_protocol::message::Approval;
use thiserror::Error;

use claims::InputClaims;

/// One thing someone asked to send, before policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Names the record in messages: "approvals.json#3".
    pub source: String,
    pub request: Request,
}

/// What the candidate asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Provision {
        issuer: String,
        subject: String,
        claims: InputClaims,
        approval: Approval,
        /// None: policy picks now + max validity.
        valid_until: Option<u64>,
        /// Came from a verified ID token (policy: `allow_token_provision`).
        from_token: bool,
    },
    Revoke {
        issuer: String,
        subject: String,
        approval: Approval,
        reason: String,
    },
    LoginTicket {
        issuer: String,
        subject: String,
        claims: InputClaims,
        approval: Approval,
    },
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Provision { .. } => "provision",
            Request::Revoke { .. } => "revoke",
            Request::LoginTicket { .. } => "login_ticket",
        }
    }

    pub fn identity(&self) -> (&str, &str) {
        match self {
            Request::Provision {
                issuer, subject, ..
            }
            | Request::Revoke {
                issuer, subject, ..
            }
            | Request::LoginTicket {
                issuer, subject, ..
            } => (issuer, subject),
        }
    }
}

/// A record could not be read (before policy).
#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: is {len} bytes; policy.max_record_bytes allows {max}")]
    TooLarge {
        source_name: String,
        len: usize,
        max: usize,
    },
    #[error("{source_name}: malformed JSON: {error}")]
    Json { source_name: String, error: String },
    #[error("{source_name}: not an approval record: {error}")]
    Record { source_name: String, error: String },
    #[error("{source_name}: ID token refused: {error}")]
    Token {
        source_name: String,
        error: jwt::TokenError,
    },
    #[error("{source_name}: empty input: give approval records (JSON) or an ID token")]
    Empty { source_name: String },
}
