//! The one place serde_cbor runs.
//!
//! serde_cbor is unmaintained upstream (RUSTSEC-2021-0127). It is kept behind these two
//! functions and [`decode_envelope`] is only ever called on bytes whose AEAD tag and
//! Ed25519 signature have already been verified (see [`crate::seal::open`]).

use thiserror::Error;

use crate::limits::{self, LimitError, MAX_ENVELOPE};
use crate::message::{Body, Digest32, Envelope};

/// Encoding or decoding an [`Envelope`] failed.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("envelope is not valid CBOR for this protocol version: {0}")]
    /// The bytes are not an envelope of this version (the message says where).
    Cbor(String),
    #[error("envelope is {len} bytes; at most {max} are allowed")]
    /// The encoded envelope is over the size limit.
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    #[error("envelope breaks a size rule: {0}")]
    /// A field breaks a size rule of [`crate::limits`].
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

/// A body checked and CBOR-encoded ahead of time, for [`encode_envelope_with_body`]: the
/// sender encodes bodies off its signing thread, where only the chain fields are left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody(Vec<u8>);

/// Checks a body's size rules and encodes it as it appears inside an envelope.
pub fn encode_body(body: &Body) -> Result<EncodedBody, CodecError> {
    body.validate()?;
    let bytes = serde_cbor::to_vec(body).map_err(|e| CodecError::Cbor(e.to_string()))?;
    Ok(EncodedBody(bytes))
}

/// The bytes [`encode_envelope`] writes for an envelope with this body: serde_cbor writes
/// the struct as a map of its six fields, named, in declaration order, with shortest-form
/// heads. Writing the five chain fields here costs a fraction of re-encoding the body.
pub fn encode_envelope_with_body(
    v: u8,
    sender_kid: &str,
    seq: u64,
    prev: &Digest32,
    issued_at: u64,
    body: &EncodedBody,
) -> Result<Vec<u8>, CodecError> {
    limits::check_str("sender_kid", sender_kid, limits::MAX_KID)?;
    let mut out = Vec::with_capacity(body.0.len() + sender_kid.len() + 80);
    out.push(0xa6);
    push_text(&mut out, "v");
    push_head(&mut out, 0, u64::from(v));
    push_text(&mut out, "sender_kid");
    push_text(&mut out, sender_kid);
    push_text(&mut out, "seq");
    push_head(&mut out, 0, seq);
    push_text(&mut out, "prev");
    push_bstr(&mut out, prev);
    push_text(&mut out, "issued_at");
    push_head(&mut out, 0, issued_at);
    push_text(&mut out, "body");
    out.extend_from_slice(&body.0);
    if out.len() > MAX_ENVELOPE {
        return Err(CodecError::TooLarge {
            len: out.len(),
            max: MAX_ENVELOPE,
        });
    }
    Ok(out)
}

/// A CBOR head: major type and argument, in the shortest form.
pub(crate) fn push_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn push_text(out: &mut Vec<u8>, s: &str) {
    push_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A CBOR byte string (major type 2).
pub(crate) fn push_bstr(out: &mut Vec<u8>, bytes: &[u8]) {
    push_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
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
