//! Sealing and opening frames.
//!
//! Seal: Envelope CBOR -> COSE_Sign1 (EdDSA, signer kid) -> COSE_Encrypt0
//! (ChaCha20-Poly1305, link kid, random 96-bit IV). Both COSE structures are tagged.
//!
//! Open checks, in this order, with one error each: frame size, CBOR structure,
//! algorithm allow-list, link kid known, AEAD tag, inner CBOR structure, signer
//! algorithm, signer kid trusted, signature, envelope payload, signer/envelope kid
//! match, envelope version, freshness (stale, future), replay window. Nothing is
//! decoded with serde_cbor before the AEAD tag and the signature have passed.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use coset::{
    CoseEncrypt0, CoseSign1, Header, RegisteredLabelWithPrivate, TaggedCborSerializable, iana,
};
use ed25519_dalek::{Signature, Signer};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::codec::{self, CodecError, push_bstr};
use crate::keys::{LinkKey, SignerKey};
use crate::limits::MAX_SEALED_FRAME;
use crate::message::{Digest32, ENVELOPE_VERSION, Envelope, OLDEST_ENVELOPE_VERSION};
use crate::replay::{ReplayError, ReplayState};
use crate::trust::TrustStore;

/// A link key must be replaced long before its random 96-bit IVs risk colliding.
/// 2^30 frames keeps the collision probability below 2^-36.
pub const REKEY_AFTER_FRAMES: u64 = 1 << 30;

const IV_LEN: usize = 12;
/// The Poly1305 tag at the end of the ciphertext.
const TAG_LEN: usize = 16;

/// Sealing failed: only on the sender, and only for a message that breaks a rule.
#[derive(Debug, Error)]
pub enum SealError {
    #[error("cannot encode the envelope: {0}")]
    /// The envelope breaks a rule of the codec.
    Codec(#[from] CodecError),
    #[error("cannot build the COSE structure: {0}")]
    /// The COSE structure could not be built.
    Cose(String),
    #[error("sealed frame would be {len} bytes; at most {MAX_SEALED_FRAME} are allowed")]
    /// The sealed frame would be over [`MAX_SEALED_FRAME`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
}

/// Why a frame was refused. One variant per check, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("frame is {len} bytes; at most {MAX_SEALED_FRAME} are allowed")]
    /// Over [`MAX_SEALED_FRAME`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    #[error("frame is not a well-formed COSE_Encrypt0: {0}")]
    /// Not a COSE_Encrypt0.
    Cbor(String),
    #[error("frame uses a cipher other than ChaCha20-Poly1305 (alg 24)")]
    /// Not ChaCha20-Poly1305.
    Algorithm,
    #[error(
        "link key kid {kid} is unknown: install it with `airlock-receiver trust add-link-key FILE`"
    )]
    /// The link key is not installed.
    UnknownLinkKey {
        /// Its kid.
        kid: u32,
    },
    #[error("AEAD tag does not verify: the frame was altered or sealed with another key")]
    /// The AEAD tag does not verify.
    Aead,
    #[error("decrypted frame is not a well-formed COSE_Sign1: {0}")]
    /// The plaintext is not a COSE_Sign1.
    InnerCbor(String),
    #[error("frame is signed with an algorithm other than EdDSA")]
    /// Not EdDSA.
    SignerAlgorithm,
    #[error(
        "signer kid {kid} is not trusted: install its public key with `airlock-receiver trust add-signer FILE`"
    )]
    /// The signer key is not trusted.
    UntrustedSigner {
        /// Its kid.
        kid: String,
    },
    #[error("Ed25519 signature does not verify")]
    /// The signature does not verify.
    BadSignature,
    #[error("signed envelope is malformed: {0}")]
    /// The signed payload is not an envelope.
    Payload(String),
    #[error("envelope names signer {envelope} but was signed by {signer}")]
    /// The envelope's `sender_kid` is not the key that signed it.
    SignerMismatch {
        /// The kid the envelope names.
        envelope: String,
        /// The kid that signed.
        signer: String,
    },
    #[error(
        "envelope version {v} is not supported (this receiver reads versions {OLDEST_ENVELOPE_VERSION} to {ENVELOPE_VERSION}): upgrade the receiver before the sender"
    )]
    /// An envelope version this code does not speak.
    Version {
        /// The version found.
        v: u8,
    },
    #[error("frame was issued {age} s ago, beyond the configured maximum frame age")]
    /// Older than the freshness window.
    Stale {
        /// Its age in seconds.
        age: u64,
    },
    #[error("frame is issued {ahead} s in the future, beyond the configured clock skew")]
    /// Further in the future than the clock skew allows.
    Future {
        /// Seconds ahead of the receiver's clock.
        ahead: u64,
    },
    #[error("replayed frame: {0}")]
    /// Refused by the replay window.
    Replay(ReplayError),
}

impl OpenError {
    /// A stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::TooLarge { .. } => "too_large",
            OpenError::Cbor(_) => "bad_cbor",
            OpenError::Algorithm => "bad_algorithm",
            OpenError::UnknownLinkKey { .. } => "unknown_link_key",
            OpenError::Aead => "aead_failure",
            OpenError::InnerCbor(_) => "bad_inner_cbor",
            OpenError::SignerAlgorithm => "bad_signer_algorithm",
            OpenError::UntrustedSigner { .. } => "untrusted_signer",
            OpenError::BadSignature => "bad_signature",
            OpenError::Payload(_) => "bad_payload",
            OpenError::SignerMismatch { .. } => "signer_mismatch",
            OpenError::Version { .. } => "unsupported_version",
            OpenError::Stale { .. } => "stale",
            OpenError::Future { .. } => "from_future",
            OpenError::Replay(ReplayError::Conflict { .. }) => "seq_conflict",
            OpenError::Replay(_) => "replay",
        }
    }

    /// Every reason label, for pre-registering metrics.
    pub const REASONS: [&'static str; 16] = [
        "too_large",
        "bad_cbor",
        "bad_algorithm",
        "unknown_link_key",
        "aead_failure",
        "bad_inner_cbor",
        "bad_signer_algorithm",
        "untrusted_signer",
        "bad_signature",
        "bad_payload",
        "signer_mismatch",
        "unsupported_version",
        "stale",
        "from_future",
        "replay",
        "seq_conflict",
    ];
}

/// How old or how far ahead a frame's `issued_at` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Oldest `issued_at` accepted, in seconds before now.
    pub max_age_secs: u64,
    /// Furthest `issued_at` accepted in the future, in seconds.
    pub max_skew_secs: u64,
}

impl Default for Freshness {
    /// A week of age (long enough for an operator's resend after an outage) and five minutes of skew.
    fn default() -> Self {
        Self {
            max_age_secs: 7 * 24 * 3600,
            max_skew_secs: 300,
        }
    }
}

/// A signed frame: the COSE_Sign1 bytes and their hash (the chain link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFrame {
    /// The COSE_Sign1 bytes.
    pub sign1: Vec<u8>,
    /// SHA-256 of `sign1`.
    pub hash: Digest32,
}

/// A sealed frame ready for the link, with the Sign1 it wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFrame {
    /// The COSE_Encrypt0 bytes for the link.
    pub sealed: Vec<u8>,
    /// The COSE_Sign1 bytes inside.
    pub sign1: Vec<u8>,
    /// SHA-256 of `sign1`: the chain link.
    pub hash: Digest32,
}

/// An opened, authenticated, fresh, not-yet-seen frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The decoded envelope.
    pub envelope: Envelope,
    /// The COSE_Sign1 bytes (what the frame log stores).
    pub sign1: Vec<u8>,
    /// SHA-256 of `sign1`.
    pub hash: Digest32,
    /// The link key that decrypted it.
    pub link_kid: u32,
    /// The signer key that signed it.
    pub signer_kid: String,
}

/// SHA-256 over COSE_Sign1 bytes: a frame's identity and the `prev` of the next frame.
pub fn frame_hash(sign1: &[u8]) -> Digest32 {
    Sha256::digest(sign1).into()
}

/// The sender's sealing keys.
pub struct Sealer {
    signer: SignerKey,
    link: LinkKey,
    cipher: ChaCha20Poly1305,
    /// The Sign1 protected header, `{1: -8 (EdDSA), 4: kid}`, encoded once.
    sign1_protected: Vec<u8>,
    /// Everything of the Sig_structure (RFC 9052 §4.4) before the payload:
    /// `["Signature1", protected, external_aad h'', ...`.
    sig_structure_prefix: Vec<u8>,
    /// The Encrypt0 protected header, `{1: 24 (ChaCha20-Poly1305), 4: link kid}`, once.
    encrypt0_protected: Vec<u8>,
    /// The Enc_structure (RFC 9052 §5.3), the same for every frame:
    /// `["Encrypt0", protected, external_aad h'']`.
    enc_structure: Vec<u8>,
}

impl Sealer {
    /// A sealer signing with `signer` and encrypting with `link`.
    pub fn new(signer: SignerKey, link: LinkKey) -> Self {
        let cipher = ChaCha20Poly1305::new(link.secret().into());
        let sign1_protected = sign1_protected(signer.kid());
        let mut sig_structure_prefix = b"\x84\x6aSignature1".to_vec();
        push_bstr(&mut sig_structure_prefix, &sign1_protected);
        sig_structure_prefix.push(0x40);
        let mut encrypt0_protected = vec![0xa2, 0x01, 0x18, 0x18, 0x04];
        push_bstr(&mut encrypt0_protected, &link.kid.to_be_bytes());
        let mut enc_structure = b"\x83\x68Encrypt0".to_vec();
        push_bstr(&mut enc_structure, &encrypt0_protected);
        enc_structure.push(0x40);
        Self {
            signer,
            link,
            cipher,
            sign1_protected,
            sig_structure_prefix,
            encrypt0_protected,
            enc_structure,
        }
    }

    /// The signer's kid.
    pub fn signer_kid(&self) -> &str {
        self.signer.kid()
    }

    /// The link key's kid.
    pub fn link_kid(&self) -> u32 {
        self.link.kid
    }

    /// Signs an envelope into a tagged COSE_Sign1.
    ///
    /// Signing is the sender's sequential step (each frame's `prev` is the hash of the
    /// one before), so the two fixed COSE layouts are written directly rather than built
    /// as CBOR value trees: the bytes are those coset writes (tests/seal.rs checks them
    /// against coset), at a tenth of the cost.
    pub fn sign(&self, envelope: &Envelope) -> Result<SignedFrame, SealError> {
        Ok(self.sign_payload(&codec::encode_envelope(envelope)?))
    }

    /// Signs envelope bytes from [`codec::encode_envelope`] or
    /// [`codec::encode_envelope_with_body`] into a tagged COSE_Sign1.
    pub fn sign_payload(&self, payload: &[u8]) -> SignedFrame {
        let protected = &self.sign1_protected;
        let mut tbs = Vec::with_capacity(self.sig_structure_prefix.len() + payload.len() + 9);
        tbs.extend_from_slice(&self.sig_structure_prefix);
        push_bstr(&mut tbs, payload);
        let signature = self.signer.signing_key().sign(&tbs).to_bytes();
        let sign1 = canonical_sign1(protected, payload, &signature);
        let hash = frame_hash(&sign1);
        SignedFrame { sign1, hash }
    }

    /// Encrypts Sign1 bytes into a tagged COSE_Encrypt0 under a fresh random IV.
    pub fn encrypt(&self, sign1: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut iv = [0u8; IV_LEN];
        OsRng.fill_bytes(&mut iv);
        self.encrypt_with_iv(sign1, iv)
    }

    /// Encrypts several Sign1 like [`Self::encrypt`], drawing all their IVs with one read
    /// of the OS generator (one system call per batch instead of one per frame).
    pub fn encrypt_batch<'a>(
        &self,
        sign1s: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<u8>>, SealError> {
        let mut ivs = vec![0u8; IV_LEN * sign1s.len()];
        OsRng.fill_bytes(&mut ivs);
        sign1s
            .zip(ivs.chunks_exact(IV_LEN))
            .map(|(sign1, iv)| {
                let mut fresh = [0u8; IV_LEN];
                fresh.copy_from_slice(iv);
                self.encrypt_with_iv(sign1, fresh)
            })
            .collect()
    }

    /// Only the test vectors use a fixed IV; everything else goes through [`Self::encrypt`].
    ///
    /// Writes the COSE_Encrypt0 directly, like [`Self::sign_payload`] the Sign1: the bytes
    /// are those coset's builder writes (a unit test below compares them), without building
    /// CBOR value trees for every frame.
    pub(crate) fn encrypt_with_iv(
        &self,
        sign1: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<Vec<u8>, SealError> {
        let protected = &self.encrypt0_protected;
        let ciphertext_len = sign1.len() + TAG_LEN;
        // Tag 16, [protected, unprotected {5: iv}, ciphertext]
        let mut sealed = Vec::with_capacity(ciphertext_len + protected.len() + 32);
        sealed.extend_from_slice(&[0xd0, 0x83]);
        push_bstr(&mut sealed, protected);
        sealed.extend_from_slice(&[0xa1, 0x05]);
        push_bstr(&mut sealed, &iv);
        codec::push_head(&mut sealed, 2, ciphertext_len as u64);
        let start = sealed.len();
        sealed.extend_from_slice(sign1);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&Nonce::from(iv), &self.enc_structure, &mut sealed[start..])
            .map_err(|e| SealError::Cose(e.to_string()))?;
        sealed.extend_from_slice(&tag);
        if sealed.len() > MAX_SEALED_FRAME {
            return Err(SealError::TooLarge { len: sealed.len() });
        }
        Ok(sealed)
    }

    /// Signs and encrypts.
    pub fn seal(&self, envelope: &Envelope) -> Result<SealedFrame, SealError> {
        let SignedFrame { sign1, hash } = self.sign(envelope)?;
        let sealed = self.encrypt(&sign1)?;
        Ok(SealedFrame {
            sealed,
            sign1,
            hash,
        })
    }
}

/// Opens a sealed frame: every check of the module doc, in order.
///
/// Does not record the seq: the caller accepts it in `replay` once the frame is logged.
pub fn open(
    sealed: &[u8],
    trust: &TrustStore,
    fresh: &Freshness,
    now: u64,
    replay: &ReplayState,
) -> Result<Opened, OpenError> {
    if sealed.len() > MAX_SEALED_FRAME {
        return Err(OpenError::TooLarge { len: sealed.len() });
    }
    let (sign1, link_kid) = decrypt(sealed, trust)?;
    let (envelope, signer_kid) = verify_signature(&sign1, trust, now)?;
    check_envelope(&envelope, &signer_kid, fresh, now)?;
    replay
        .check(&signer_kid, envelope.seq)
        .map_err(OpenError::Replay)?;
    let hash = frame_hash(&sign1);
    Ok(Opened {
        envelope,
        sign1,
        hash,
        link_kid,
        signer_kid,
    })
}

/// True if a sealed frame passes the AEAD under a known link key: what the link decoder
/// needs to settle a block id (a forged block has no frame that passes). No signature check.
pub fn authenticates(sealed: &[u8], trust: &TrustStore) -> bool {
    sealed.len() <= MAX_SEALED_FRAME && decrypt(sealed, trust).is_ok()
}

/// The auditor's path: checks a logged Sign1 against public keys only (no link key, no clock,
/// no replay window) and returns its envelope.
pub fn verify_sign1(sign1: &[u8], trust: &TrustStore) -> Result<Envelope, OpenError> {
    let (envelope, signer_kid) = verify_signature(sign1, trust, u64::MAX)?;
    if envelope.sender_kid != signer_kid {
        return Err(OpenError::SignerMismatch {
            envelope: envelope.sender_kid,
            signer: signer_kid,
        });
    }
    Ok(envelope)
}

pub(crate) fn decrypt(sealed: &[u8], trust: &TrustStore) -> Result<(Vec<u8>, u32), OpenError> {
    let encrypt0 =
        CoseEncrypt0::from_tagged_slice(sealed).map_err(|e| OpenError::Cbor(e.to_string()))?;
    let protected = &encrypt0.protected.header;
    check_no_critical(protected).map_err(OpenError::Cbor)?;
    if !has_alg(protected, iana::Algorithm::ChaCha20Poly1305) {
        return Err(OpenError::Algorithm);
    }
    let kid_bytes = <[u8; 4]>::try_from(protected.key_id.as_slice())
        .map_err(|_| OpenError::Cbor("link kid must be 4 bytes".into()))?;
    let iv = <[u8; IV_LEN]>::try_from(encrypt0.unprotected.iv.as_slice())
        .map_err(|_| OpenError::Cbor("IV must be 12 bytes".into()))?;
    let link_kid = u32::from_be_bytes(kid_bytes);
    let key = trust
        .link_key(link_kid)
        .ok_or(OpenError::UnknownLinkKey { kid: link_kid })?;
    let cipher = ChaCha20Poly1305::new(key.secret().into());
    let nonce = Nonce::from(iv);
    let sign1 = encrypt0.decrypt_ciphertext(
        b"",
        || OpenError::Cbor("Encrypt0 has no ciphertext".into()),
        |msg, aad| {
            cipher
                .decrypt(&nonce, Payload { msg, aad })
                .map_err(|_| OpenError::Aead)
        },
    )?;
    Ok((sign1, link_kid))
}

fn verify_signature(
    sign1: &[u8],
    trust: &TrustStore,
    now: u64,
) -> Result<(Envelope, String), OpenError> {
    let pending = parse_sign1(sign1, trust, now)?;
    pending.check_signature()?;
    pending.into_envelope()
}

/// A Sign1 whose structure, algorithm and signer passed; its signature is not checked yet.
/// Single frames check it alone, bursts together (see [`crate::open_batch`]).
pub(crate) struct PendingSignature<'t> {
    cose: CoseSign1,
    kid: String,
    key: &'t ed25519_dalek::VerifyingKey,
}

impl PendingSignature<'_> {
    pub(crate) fn key(&self) -> &ed25519_dalek::VerifyingKey {
        self.key
    }

    /// The bytes the signature covers (RFC 9052 Sig_structure) and the signature itself.
    pub(crate) fn signed_parts(&self) -> Result<(Vec<u8>, Signature), OpenError> {
        let sig =
            Signature::from_slice(&self.cose.signature).map_err(|_| OpenError::BadSignature)?;
        Ok((self.cose.tbs_data(b""), sig))
    }

    /// Strict Ed25519 verification: refuses small-order keys and small-order `R`, so that
    /// no signature verifies that was made without the private key.
    pub(crate) fn check_signature(&self) -> Result<(), OpenError> {
        let (tbs, sig) = self.signed_parts()?;
        self.key
            .verify_strict(&tbs, &sig)
            .map_err(|_| OpenError::BadSignature)
    }

    /// Decodes the payload: only once the signature has passed.
    pub(crate) fn into_envelope(self) -> Result<(Envelope, String), OpenError> {
        let payload = self
            .cose
            .payload
            .as_deref()
            .ok_or_else(|| OpenError::Payload("Sign1 has no payload".into()))?;
        let envelope =
            codec::decode_envelope(payload).map_err(|e| OpenError::Payload(e.to_string()))?;
        Ok((envelope, self.kid))
    }
}

/// Structure, algorithm and signer checks of a Sign1: everything before the signature.
pub(crate) fn parse_sign1<'t>(
    sign1: &[u8],
    trust: &'t TrustStore,
    now: u64,
) -> Result<PendingSignature<'t>, OpenError> {
    let cose =
        CoseSign1::from_tagged_slice(sign1).map_err(|e| OpenError::InnerCbor(e.to_string()))?;
    let protected = &cose.protected.header;
    check_no_critical(protected).map_err(OpenError::InnerCbor)?;
    if !has_alg(protected, iana::Algorithm::EdDSA) {
        return Err(OpenError::SignerAlgorithm);
    }
    let kid = String::from_utf8(protected.key_id.clone())
        .map_err(|_| OpenError::InnerCbor("signer kid is not UTF-8".into()))?;
    check_canonical_sign1(sign1, &cose, &kid)?;
    let signer = trust
        .signer(&kid)
        .filter(|s| now == u64::MAX || now >= s.not_before)
        // A weak key cannot enter through the key constructors; this guards a trust store
        // built some other way (the batch path is not strict, see open_batch).
        .filter(|s| !s.key.key.is_weak())
        .ok_or_else(|| OpenError::UntrustedSigner { kid: kid.clone() })?;
    Ok(PendingSignature {
        cose,
        kid,
        key: &signer.key.key,
    })
}

/// The protected header every Sign1 carries: `{1: -8 (EdDSA), 4: kid}`, in this order.
fn sign1_protected(kid: &str) -> Vec<u8> {
    let mut protected = vec![0xa2, 0x01, 0x27, 0x04];
    push_bstr(&mut protected, kid.as_bytes());
    protected
}

/// The one encoding of a Sign1 with this kid, payload and signature: tag 18,
/// `[protected, {}, payload, signature]`, every length in its shortest form.
fn canonical_sign1(protected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut sign1 = Vec::with_capacity(payload.len() + protected.len() + 84);
    sign1.extend_from_slice(&[0xd2, 0x84]);
    push_bstr(&mut sign1, protected);
    sign1.push(0xa0);
    push_bstr(&mut sign1, payload);
    push_bstr(&mut sign1, signature);
    sign1
}

/// The unprotected header and the outer encoding are not signed, but the frame hash covers
/// them: only the one canonical encoding is accepted, so that nobody who lacks the signer
/// key can make a second Sign1 (a second frame hash) for the same signed content.
fn check_canonical_sign1(sign1: &[u8], cose: &CoseSign1, kid: &str) -> Result<(), OpenError> {
    if !cose.unprotected.is_empty() {
        return Err(OpenError::InnerCbor(
            "the Sign1 unprotected header must be empty".into(),
        ));
    }
    let payload = cose.payload.as_deref().unwrap_or_default();
    let expected = canonical_sign1(&sign1_protected(kid), payload, &cose.signature);
    if expected != sign1 {
        return Err(OpenError::InnerCbor(
            "the Sign1 is not in its canonical encoding (protected header {1: -8, 4: kid}, \
             shortest lengths, empty unprotected header)"
                .into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_envelope(
    envelope: &Envelope,
    signer_kid: &str,
    fresh: &Freshness,
    now: u64,
) -> Result<(), OpenError> {
    if envelope.sender_kid != signer_kid {
        return Err(OpenError::SignerMismatch {
            envelope: envelope.sender_kid.clone(),
            signer: signer_kid.to_owned(),
        });
    }
    if !(OLDEST_ENVELOPE_VERSION..=ENVELOPE_VERSION).contains(&envelope.v) {
        return Err(OpenError::Version { v: envelope.v });
    }
    let age = now.saturating_sub(envelope.issued_at);
    if age > fresh.max_age_secs {
        return Err(OpenError::Stale { age });
    }
    let ahead = envelope.issued_at.saturating_sub(now);
    if ahead > fresh.max_skew_secs {
        return Err(OpenError::Future { ahead });
    }
    Ok(())
}

fn has_alg(header: &Header, alg: iana::Algorithm) -> bool {
    header.alg == Some(RegisteredLabelWithPrivate::Assigned(alg))
}

/// Critical headers we do not understand must make the frame fail (RFC 9052 §3.1).
fn check_no_critical(header: &Header) -> Result<(), String> {
    if header.crit.is_empty() {
        Ok(())
    } else {
        Err("critical header parameters are not supported".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use coset::{CoseEncrypt0Builder, HeaderBuilder};

    /// What coset's builder writes for the same Encrypt0 (the writer this one replaced).
    fn coset_encrypt0(sealer: &Sealer, sign1: &[u8], iv: [u8; IV_LEN]) -> Vec<u8> {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ChaCha20Poly1305)
            .key_id(sealer.link.kid.to_be_bytes().to_vec())
            .build();
        let unprotected = HeaderBuilder::new().iv(iv.to_vec()).build();
        CoseEncrypt0Builder::new()
            .protected(protected)
            .unprotected(unprotected)
            .create_ciphertext(sign1, b"", |msg, aad| {
                let payload = Payload { msg, aad };
                sealer.cipher.encrypt(&Nonce::from(iv), payload).unwrap()
            })
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    /// Byte for byte, for lengths on both sides of every CBOR length-header boundary.
    #[test]
    fn encrypt0_bytes_are_exactly_what_coset_writes() {
        let sealer = testkit::sealer();
        for len in [
            0, 1, 7, 8, 23, 24, 239, 240, 255, 256, 700, 65_519, 65_520, 70_000,
        ] {
            let sign1: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let iv: [u8; IV_LEN] = std::array::from_fn(|i| (len + i) as u8);
            let ours = sealer.encrypt_with_iv(&sign1, iv);
            let theirs = coset_encrypt0(&sealer, &sign1, iv);
            match ours {
                Ok(ours) => assert_eq!(ours, theirs, "sign1 of {len} bytes"),
                Err(SealError::TooLarge { len }) => assert_eq!(len, theirs.len()),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
