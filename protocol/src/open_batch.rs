//! Opening a burst of frames at once, with one Ed25519 batch verification for the lot.
//!
//! Ed25519 verification is the receiver's and the auditor's bottleneck. Verifying n
//! signatures together (one multiscalar multiplication, ed25519-dalek's `verify_batch`)
//! costs about half as much per signature as n single checks. Each frame still gets the
//! same result [`crate::seal::open`] / [`crate::seal::verify_sign1`] would give it: every
//! check before and after the signature runs per frame, in the same order, and when a batch
//! fails its frames are checked one by one so that exactly the bad ones are named.
//!
//! Only frames that passed the AEAD reach the batch, so only a holder of the link key can
//! make a batch fall back to single checks (a slowdown, never a wrong verdict).
//!
//! Single checks are strict (`verify_strict`); the batch equation is the cofactored one and
//! cannot be. What makes that safe is that no weak (small-order) key is ever trusted: the
//! key constructors refuse them and [`crate::seal`] refuses a weak key in a trust store
//! before any signature is checked. Under a key that is not of small order, a signature the
//! batch accepts and a strict check would refuse differs from a valid one only by a
//! small-order component of `R`, and making one needs the private key: the signer could as
//! well sign anything. Nobody else can make a batch accept a frame.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::limits::MAX_SEALED_FRAME;
use crate::message::Envelope;
use crate::replay::ReplayState;
use crate::seal::{
    Freshness, OpenError, Opened, PendingSignature, check_envelope, decrypt, frame_hash,
    parse_sign1,
};
use crate::trust::TrustStore;

/// Signatures verified in one multiscalar multiplication. Past a few hundred the gain per
/// signature flattens, and a smaller batch bounds the re-checking a bad frame causes.
pub const MAX_BATCH: usize = 256;

/// One sealed frame of a burst and the time (Unix seconds) it is judged against.
#[derive(Debug, Clone, Copy)]
pub struct ToOpen<'a> {
    /// The COSE_Encrypt0 bytes.
    pub sealed: &'a [u8],
    /// The receiver's clock when the frame arrived (Unix seconds).
    pub now: u64,
}

/// Opens every frame of a burst; results are in input order and each equals what
/// [`crate::seal::open`] returns for that frame alone.
///
/// Like `open`, does not record seqs: frames of one burst are checked against `replay`
/// as it was before the burst.
pub fn open_batch(
    frames: &[ToOpen<'_>],
    trust: &TrustStore,
    fresh: &Freshness,
    replay: &ReplayState,
) -> Vec<Result<Opened, OpenError>> {
    let decrypted: Vec<_> = frames
        .iter()
        .map(|f| decrypt_one(f.sealed, trust))
        .collect();
    let pending: Vec<_> = decrypted
        .iter()
        .zip(frames)
        .map(|(d, f)| match d {
            Ok((sign1, _)) => parse_sign1(sign1, trust, f.now),
            Err(e) => Err(e.clone()),
        })
        .collect();
    let signatures = check_signatures(&pending);
    decrypted
        .into_iter()
        .zip(pending)
        .zip(signatures)
        .zip(frames)
        .map(|(((d, p), s), f)| {
            let (sign1, link_kid) = d?;
            s?;
            finish_open(sign1, link_kid, p?, f.now, fresh, replay)
        })
        .collect()
}

/// The auditor's path for many logged Sign1s: each result equals
/// [`crate::seal::verify_sign1`] for that Sign1 alone.
pub fn verify_sign1_batch(
    sign1s: &[&[u8]],
    trust: &TrustStore,
) -> Vec<Result<Envelope, OpenError>> {
    let pending: Vec<_> = sign1s
        .iter()
        .map(|s| parse_sign1(s, trust, u64::MAX))
        .collect();
    let signatures = check_signatures(&pending);
    pending
        .into_iter()
        .zip(signatures)
        .map(|(p, s)| {
            s?;
            let (envelope, signer_kid) = p?.into_envelope()?;
            if envelope.sender_kid != signer_kid {
                return Err(OpenError::SignerMismatch {
                    envelope: envelope.sender_kid,
                    signer: signer_kid,
                });
            }
            Ok(envelope)
        })
        .collect()
}

fn decrypt_one(sealed: &[u8], trust: &TrustStore) -> Result<(Vec<u8>, u32), OpenError> {
    if sealed.len() > MAX_SEALED_FRAME {
        return Err(OpenError::TooLarge { len: sealed.len() });
    }
    decrypt(sealed, trust)
}

fn finish_open(
    sign1: Vec<u8>,
    link_kid: u32,
    pending: PendingSignature<'_>,
    now: u64,
    fresh: &Freshness,
    replay: &ReplayState,
) -> Result<Opened, OpenError> {
    let (envelope, signer_kid) = pending.into_envelope()?;
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

/// A signature ready for verification, with the index of its frame in the burst.
struct Candidate<'k> {
    index: usize,
    signed: Vec<u8>,
    signature: Signature,
    key: &'k VerifyingKey,
}

/// The signature verdict of every frame whose earlier checks passed (others: `Ok(())`,
/// their error is already in `pending`).
fn check_signatures(
    pending: &[Result<PendingSignature<'_>, OpenError>],
) -> Vec<Result<(), OpenError>> {
    let mut verdicts: Vec<Result<(), OpenError>> = vec![Ok(()); pending.len()];
    let mut candidates = Vec::with_capacity(pending.len().min(MAX_BATCH));
    for (index, p) in pending.iter().enumerate() {
        let Ok(p) = p else { continue };
        match p.signed_parts() {
            Ok((signed, signature)) => candidates.push(Candidate {
                index,
                signed,
                signature,
                key: p.key(),
            }),
            Err(e) => verdicts[index] = Err(e),
        }
        if candidates.len() == MAX_BATCH {
            verify_candidates(&candidates, &mut verdicts);
            candidates.clear();
        }
    }
    verify_candidates(&candidates, &mut verdicts);
    verdicts
}

/// One batch check; if it fails, each signature alone so that only the bad ones fail.
fn verify_candidates(candidates: &[Candidate<'_>], verdicts: &mut [Result<(), OpenError>]) {
    if candidates.len() > 1 && batch_holds(candidates) {
        return;
    }
    for c in candidates {
        if c.key.verify_strict(&c.signed, &c.signature).is_err() {
            verdicts[c.index] = Err(OpenError::BadSignature);
        }
    }
}

fn batch_holds(candidates: &[Candidate<'_>]) -> bool {
    let messages: Vec<&[u8]> = candidates.iter().map(|c| c.signed.as_slice()).collect();
    let signatures: Vec<Signature> = candidates.iter().map(|c| c.signature).collect();
    let keys: Vec<VerifyingKey> = candidates.iter().map(|c| *c.key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}
