//! Batch opening gives every frame exactly the verdict single opening gives it, whatever
//! mix of good and bad frames a burst holds.

use airlock_protocol::keys::SignerKey;
use airlock_protocol::message::Body;
use airlock_protocol::open_batch::{MAX_BATCH, ToOpen, open_batch, verify_sign1_batch};
use airlock_protocol::replay::ReplayState;
use airlock_protocol::seal::{OpenError, Sealer, open, verify_sign1};
use airlock_protocol::testkit::{self, T0};
use proptest::prelude::*;

/// The kinds of frame a burst can hold.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Good,
    /// A byte of the Ed25519 signature flipped, then encrypted again: passes the AEAD.
    BadSignature,
    /// A valid signature by a key that claims the trusted kid.
    Impostor,
    /// A ciphertext byte flipped: fails the AEAD.
    BadTag,
    Garbage,
    /// Judged long after it was issued.
    Stale,
    /// A seq the replay window has already seen.
    Replayed,
}

const KINDS: [Kind; 7] = [
    Kind::Good,
    Kind::BadSignature,
    Kind::Impostor,
    Kind::BadTag,
    Kind::Garbage,
    Kind::Stale,
    Kind::Replayed,
];

/// Seqs below this are in the replay window used by every test.
const REPLAYED_BELOW: u64 = 1_000;

fn frame(kind: Kind, i: u64) -> (Vec<u8>, u64) {
    let sealer = testkit::sealer();
    let seq = match kind {
        Kind::Replayed => i % REPLAYED_BELOW + 1,
        _ => REPLAYED_BELOW + i,
    };
    let env = testkit::envelope(seq, [0; 32], Body::Provision(testkit::provision("p")));
    let now = if matches!(kind, Kind::Stale) {
        T0 + 7200
    } else {
        T0
    };
    let sealed = match kind {
        Kind::Good | Kind::Stale | Kind::Replayed => sealer.seal(&env).unwrap().sealed,
        Kind::BadSignature => {
            let mut sign1 = sealer.sign(&env).unwrap().sign1;
            let last = sign1.len() - 1;
            sign1[last] ^= 0x01; // the signature is the Sign1's last field
            sealer.encrypt(&sign1).unwrap()
        }
        Kind::Impostor => {
            let key = SignerKey::from_signing_key(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
            let impostor = Sealer::new(key, testkit::link_key());
            let sign1 = impostor.sign(&env).unwrap().sign1;
            // Re-label the Sign1 with the trusted kid so that it reaches the signature check.
            let sign1 = relabel(&sign1, impostor.signer_kid(), testkit::signer().kid());
            sealer.encrypt(&sign1).unwrap()
        }
        Kind::BadTag => {
            let mut sealed = sealer.seal(&env).unwrap().sealed;
            let last = sealed.len() - 1;
            sealed[last] ^= 0x80;
            sealed
        }
        Kind::Garbage => vec![0xa5; 40 + i as usize % 7],
    };
    (sealed, now)
}

fn relabel(sign1: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = sign1
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap();
    let mut out = sign1.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

fn replay_state() -> ReplayState {
    let mut replay = ReplayState::new();
    for seq in 1..REPLAYED_BELOW {
        replay.accept(testkit::signer().kid(), seq).unwrap();
    }
    replay
}

/// Opens the burst both ways and compares the verdicts frame by frame.
fn assert_same_as_single(frames: &[(Vec<u8>, u64)]) -> Vec<Result<(), OpenError>> {
    let trust = testkit::trust();
    let fresh = testkit::freshness();
    let replay = replay_state();
    let burst: Vec<ToOpen> = frames
        .iter()
        .map(|(sealed, now)| ToOpen { sealed, now: *now })
        .collect();
    let batch = open_batch(&burst, &trust, &fresh, &replay);
    assert_eq!(batch.len(), frames.len());
    for (i, ((sealed, now), got)) in frames.iter().zip(&batch).enumerate() {
        let single = open(sealed, &trust, &fresh, *now, &replay);
        assert_eq!(got, &single, "frame {i} of the burst");
    }
    batch.into_iter().map(|r| r.map(|_| ())).collect()
}

#[test]
fn a_mixed_burst_gets_the_single_verdicts() {
    let frames: Vec<_> = (0..70u64)
        .map(|i| frame(KINDS[i as usize % KINDS.len()], i))
        .collect();
    let verdicts = assert_same_as_single(&frames);
    let reasons: Vec<&str> = verdicts
        .iter()
        .take(KINDS.len())
        .map(|v| v.as_ref().err().map_or("ok", OpenError::reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "ok",
            "bad_signature",
            "bad_signature",
            "aead_failure",
            "bad_cbor",
            "stale",
            "replay"
        ]
    );
}

#[test]
fn one_bad_signature_in_a_full_batch_is_the_only_one_refused() {
    let mut frames: Vec<_> = (0..MAX_BATCH as u64 + 44)
        .map(|i| frame(Kind::Good, i))
        .collect();
    frames[MAX_BATCH - 1] = frame(Kind::BadSignature, 7);
    frames[MAX_BATCH + 3] = frame(Kind::BadSignature, 8);
    let verdicts = assert_same_as_single(&frames);
    let refused: Vec<usize> = (0..verdicts.len())
        .filter(|i| verdicts[*i].is_err())
        .collect();
    assert_eq!(refused, [MAX_BATCH - 1, MAX_BATCH + 3]);
}

#[test]
fn empty_and_single_bursts() {
    assert!(assert_same_as_single(&[]).is_empty());
    assert!(assert_same_as_single(&[frame(Kind::Good, 1)])[0].is_ok());
    assert!(assert_same_as_single(&[frame(Kind::BadSignature, 1)])[0].is_err());
}

#[test]
fn sign1_batch_matches_verify_sign1() {
    let sealer = testkit::sealer();
    let trust = testkit::trust();
    let mut sign1s: Vec<Vec<u8>> = (0..40u64)
        .map(|i| {
            let env = testkit::envelope(i + 1, [0; 32], Body::Provision(testkit::provision("a")));
            sealer.sign(&env).unwrap().sign1
        })
        .collect();
    let last = sign1s[5].len() - 1;
    sign1s[5][last] ^= 0x01;
    sign1s[9] = b"not a sign1".to_vec();
    let refs: Vec<&[u8]> = sign1s.iter().map(Vec::as_slice).collect();
    let batch = verify_sign1_batch(&refs, &trust);
    for (i, (s, got)) in sign1s.iter().zip(&batch).enumerate() {
        assert_eq!(got, &verify_sign1(s, &trust), "Sign1 {i}");
    }
    assert_eq!(batch.iter().filter(|r| r.is_err()).count(), 2);
    assert_eq!(batch[5], Err(OpenError::BadSignature));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any mix of good and bad frames, in any order: the same verdicts as one by one.
    #[test]
    fn any_burst_gets_the_single_verdicts(kinds in proptest::collection::vec(0..KINDS.len(), 0..80)) {
        let frames: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| frame(KINDS[*k], i as u64))
            .collect();
        assert_same_as_single(&frames);
    }
}
