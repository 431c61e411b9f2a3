//! Size limits on every field and on the whole frame.
//!
//! They bound what a sender may seal and what a receiver will allocate for, before and
//! after authentication. Changing one is a protocol change: document it in docs/protocol.md.

use thiserror::Error;

/// Identifiers: key ids, claim names.
pub const MAX_KID: usize = 64;
/// Ordinary text fields: issuer, subject, claim values, approver, reasons.
pub const MAX_TEXT: usize = 512;
/// Entries in `groups`.
pub const MAX_GROUPS: usize = 64;
/// Entries in `extra` claims.
pub const MAX_EXTRA_CLAIMS: usize = 32;
/// An IdP discovery document or JWKS carried by `IdpMirror`.
pub const MAX_DOCUMENT: usize = 24 * 1024;
/// A CBOR-encoded envelope.
pub const MAX_ENVELOPE: usize = 56 * 1024;
/// A sealed frame (COSE_Encrypt0 bytes): envelope plus COSE overhead.
pub const MAX_SEALED_FRAME: usize = 60 * 1024;

/// A size rule was broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

pub(crate) fn check_str(field: &'static str, value: &str, max: usize) -> Result<(), LimitError> {
    check_len(field, value.len(), max)
}

pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        return Err(LimitError::TooLong { field, len, max });
    }
    Ok(())
}
