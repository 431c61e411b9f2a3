//! The one place serde_cbor runs.
//!
//! serde_cbor is unmaintained upstream (RUSTSEC-2021-0127). It is kept behind these two
//! functions and [`decode_envelope`] is only ever called on bytes whose AEAD tag and
//! Ed25519 signature have already been verified (see [`crate::seal::open`]).

use thiserror::Error;

use serde::{Deserialize, Serialize};

use crate::limits::{self, LimitError, MAX_ENVELOPE};
use crate::message::{Body, Digest32, ENVELOPE_VERSION, Envelope, NAMED_KEYS_VERSION};

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
    #[error(
        "envelope says version {v} but its keys are {found}: version 1 names fields in text, later versions by index"
    )]
    /// The envelope's key form does not match its version.
    KeyForm {
        /// The version the envelope states.
        v: u8,
        /// What its top-level keys are ("text" or "integers").
        found: &'static str,
    },
    #[error(
        "a pre-encoded body is in the version {ENVELOPE_VERSION} form; a version {v} envelope must be encoded whole (encode_envelope)"
    )]
    /// [`encode_envelope_with_body`] was asked for a version with text keys.
    BodyForm {
        /// The version asked for.
        v: u8,
    },
}

/// Version 1 names fields and variants in text (`{"provision": {"issuer": ...}}`); every
/// later version writes a struct's fields keyed by their index and an enum as the array
/// `[variant index, value]` (serde_cbor's packed form with its array enums).
fn to_cbor<T: Serialize>(value: &T, v: u8) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let written = if v == NAMED_KEYS_VERSION {
        value.serialize(&mut serde_cbor::Serializer::new(&mut out))
    } else {
        value.serialize(
            &mut serde_cbor::Serializer::new(&mut out)
                .packed_format()
                .legacy_enums(),
        )
    };
    written.map_err(|e| CodecError::Cbor(e.to_string()))?;
    Ok(out)
}

/// CBOR-encodes an envelope after checking its size rules, in the key form of its `v`.
pub fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    envelope.validate()?;
    let bytes = to_cbor(envelope, envelope.v)?;
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

/// Checks a body's size rules and encodes it as it appears inside an envelope of
/// [`ENVELOPE_VERSION`].
pub fn encode_body(body: &Body) -> Result<EncodedBody, CodecError> {
    body.validate()?;
    let bytes = to_cbor(body, ENVELOPE_VERSION)?;
    Ok(EncodedBody(bytes))
}

/// The bytes [`encode_envelope`] writes for an envelope with this body: serde_cbor writes
/// the struct as a map of its six fields, keyed by their index in declaration order, with
/// shortest-form heads. Writing the five chain fields here costs a fraction of re-encoding
/// the body. Only for index-keyed versions: the pre-encoded body is in that form.
pub fn encode_envelope_with_body(
    v: u8,
    sender_kid: &str,
    seq: u64,
    prev: &Digest32,
    issued_at: u64,
    body: &EncodedBody,
) -> Result<Vec<u8>, CodecError> {
    if v == NAMED_KEYS_VERSION {
        return Err(CodecError::BodyForm { v });
    }
    limits::check_str("sender_kid", sender_kid, limits::MAX_KID)?;
    let mut out = Vec::with_capacity(body.0.len() + sender_kid.len() + 64);
    out.push(0xa6);
    push_head(&mut out, 0, 0);
    push_head(&mut out, 0, u64::from(v));
    push_head(&mut out, 0, 1);
    push_text(&mut out, sender_kid);
    push_head(&mut out, 0, 2);
    push_head(&mut out, 0, seq);
    push_head(&mut out, 0, 3);
    push_bstr(&mut out, prev);
    push_head(&mut out, 0, 4);
    push_head(&mut out, 0, issued_at);
    push_head(&mut out, 0, 5);
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
    let form = key_form(bytes);
    let de = serde_cbor::Deserializer::from_slice(bytes);
    // Each form is read in its own way only: version 1 has no index keys and no array enums,
    // later versions no map enums. Text keys stay readable in both: `claims.extra` is a map
    // of names.
    let mut de = if form == KeyForm::Text {
        de.disable_packed_format().disable_legacy_enums()
    } else {
        de.disable_standard_enums()
    };
    let envelope = Envelope::deserialize(&mut de)
        .and_then(|e| de.end().map(|()| e))
        .map_err(|e| CodecError::Cbor(e.to_string()))?;
    check_key_form(form, envelope.v)?;
    envelope.validate()?;
    Ok(envelope)
}

/// What the envelope map's first key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyForm {
    Text,
    Integer,
    Other,
}

impl KeyForm {
    fn name(self) -> &'static str {
        match self {
            KeyForm::Text => "text",
            KeyForm::Integer => "integers",
            KeyForm::Other => "neither text nor integers",
        }
    }
}

fn key_form(bytes: &[u8]) -> KeyForm {
    // The map head's length argument: 0-23 in the head byte, else 1, 2, 4 or 8 bytes after
    // it; 0xbf (indefinite length) has none.
    let key_at = match bytes.first() {
        Some(0xa0..=0xb7 | 0xbf) => 1,
        Some(0xb8) => 2,
        Some(0xb9) => 3,
        Some(0xba) => 5,
        Some(0xbb) => 9,
        _ => return KeyForm::Other,
    };
    match bytes.get(key_at).map(|b| b >> 5) {
        Some(0) => KeyForm::Integer,
        Some(3) => KeyForm::Text,
        _ => KeyForm::Other,
    }
}

/// Checks that a decoded envelope's keys are in its version's form: text in version 1,
/// integers after. The decoder read it in the form its first key showed; this ties that form
/// to the version the signer stated. A version this crate does not know is left to the
/// version check of [`crate::seal`], which names it.
fn check_key_form(found: KeyForm, v: u8) -> Result<(), CodecError> {
    let expected = if v == NAMED_KEYS_VERSION {
        KeyForm::Text
    } else if v <= ENVELOPE_VERSION {
        KeyForm::Integer
    } else {
        return Ok(());
    };
    if found == expected {
        Ok(())
    } else {
        Err(CodecError::KeyForm {
            v,
            found: found.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Heartbeat, OLDEST_ENVELOPE_VERSION};
    use crate::testkit;

    fn sample(v: u8) -> Envelope {
        let mut env = testkit::envelope(3, [7; 32], testkit::bodies().remove(0));
        env.v = v;
        env
    }

    #[test]
    fn each_version_round_trips_in_its_own_form() {
        for v in OLDEST_ENVELOPE_VERSION..=ENVELOPE_VERSION {
            let env = sample(v);
            let bytes = encode_envelope(&env).unwrap();
            let want = if v == NAMED_KEYS_VERSION {
                KeyForm::Text
            } else {
                KeyForm::Integer
            };
            assert_eq!(key_form(&bytes), want, "v{v}");
            assert_eq!(decode_envelope(&bytes).unwrap(), env);
        }
    }

    #[test]
    fn a_version_in_the_other_form_is_refused() {
        // Version 2 in text keys, version 1 in index keys: the signer stated the wrong version.
        let text_v2 = serde_cbor::to_vec(&sample(ENVELOPE_VERSION)).unwrap();
        let err = decode_envelope(&text_v2).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::KeyForm {
                    v: ENVELOPE_VERSION,
                    found: "text"
                }
            ),
            "{err:?}"
        );
        let indexed_v1 = sample(NAMED_KEYS_VERSION);
        let bytes = to_cbor(&indexed_v1, ENVELOPE_VERSION).unwrap();
        let err = decode_envelope(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::KeyForm {
                    v: 1,
                    found: "integers"
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("version 1 names fields in text"),
            "{err}"
        );
    }

    #[test]
    fn each_form_refuses_the_other_forms_enums() {
        // A version 1 envelope whose body is an array enum, a version 2 one with a map enum.
        let hb = Body::Heartbeat(Heartbeat {
            session_id: 9,
            interval_secs: 10,
        });
        let with_hb = |v| Envelope {
            body: hb.clone(),
            ..sample(v)
        };
        let mut v1 = serde_cbor::to_vec(&with_hb(NAMED_KEYS_VERSION)).unwrap();
        let named_body = serde_cbor::to_vec(&hb).unwrap();
        let array_body = to_cbor(&hb, ENVELOPE_VERSION).unwrap();
        assert!(v1.ends_with(&named_body));
        v1.truncate(v1.len() - named_body.len());
        v1.extend_from_slice(&array_body);
        assert!(matches!(decode_envelope(&v1), Err(CodecError::Cbor(_))));

        let mut v2 = to_cbor(&with_hb(ENVELOPE_VERSION), ENVELOPE_VERSION).unwrap();
        assert!(v2.ends_with(&array_body));
        v2.truncate(v2.len() - array_body.len());
        let mut map_body = Vec::new();
        hb.serialize(&mut serde_cbor::Serializer::new(&mut map_body).packed_format())
            .unwrap();
        v2.extend_from_slice(&map_body);
        assert!(matches!(decode_envelope(&v2), Err(CodecError::Cbor(_))));
    }

    #[test]
    fn an_index_is_the_fields_place_even_when_earlier_fields_are_absent() {
        // docs/protocol.md § 1: groups is field 6 of claims whether or not 0-5 are present.
        let claims = crate::message::Claims {
            groups: vec!["a".into()],
            ..Default::default()
        };
        let bytes = to_cbor(&claims, ENVELOPE_VERSION).unwrap();
        assert_eq!(bytes, [0xa1, 0x06, 0x81, 0x61, b'a']);
    }

    #[test]
    fn the_envelope_writer_refuses_version_1() {
        let body = encode_body(&testkit::bodies()[0]).unwrap();
        let err = encode_envelope_with_body(NAMED_KEYS_VERSION, "k", 1, &[0; 32], 1, &body);
        assert!(matches!(err, Err(CodecError::BodyForm { v: 1 })));
    }
}
