//! The one place serde_cbor runs.
//!
//! serde_cbor is unmaintained upstream (RUSTSEC-2021-0127). It is kept behind these two
//! functions and [`decode_envelope`] is only ever called on bytes whose AEAD tag and
//! Ed25519 signature have already been verified (see [`crate::seal::open`]).

use thiserror::Error;

use crate::limits::{LimitError, MAX_ENVELOPE};
use crate::message::Envelope;

/// Encoding or decoding an [`Envelope`] failed.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("envelope is not valid CBOR for this protocol version: {0}")]
    Cbor(String),
    #[error("envelope is {len} bytes; at most {max} are allowed")]
    TooLarge { len: usize, max: usize },
    #[error("envelope breaks a size rule: {0}")]
    Limit(#[from] LimitError),
}

/// CBOR-encodes an envelope after checking its size rules.
pub fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    envelope.validate()?;
    let bytes = serde_cbor::to_vec(envelope).map_err(|e| CodecError::Cbor(e.to_string()))?;
    if bytes.len() > MAX_ENVELOPE {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE,
        });
    }
    Ok(bytes)
}

/// Decodes an authenticated envelope and checks its size rules.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, CodecError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE,
        });
    }
    let envelope: Envelope =
        serde_cbor::from_slice(bytes).map_err(|e| CodecError::Cbor(e.to_string()))?;
    envelope.validate()?;
    Ok(envelope)
}
