//! Sealing and opening: round trips for every body type, and every check of the opening order.

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::message::{Body, ENVELOPE_VERSION};
use airlock_protocol::replay::ReplayState;
use airlock_protocol::seal::{OpenError, Sealer, open, verify_sign1};
use airlock_protocol::testkit::{self, T0};
use airlock_protocol::trust::TrustStore;
use proptest::prelude::*;

fn open_now(sealed: &[u8]) -> Result<airlock_protocol::seal::Opened, OpenError> {
    open(
        sealed,
        &testkit::trust(),
        &testkit::freshness(),
        T0,
        &ReplayState::new(),
    )
}

#[test]
fn every_body_type_round_trips() {
    let sealer = testkit::sealer();
    for (i, body) in testkit::bodies().into_iter().enumerate() {
        let env = testkit::envelope(i as u64 + 1, [0; 32], body);
        let frame = sealer.seal(&env).unwrap();
        let opened = open_now(&frame.sealed).unwrap();
        assert_eq!(opened.envelope, env);
        assert_eq!(opened.hash, frame.hash);
        assert_eq!(opened.sign1, frame.sign1);
        assert_eq!(opened.link_kid, 7);
        assert_eq!(verify_sign1(&frame.sign1, &testkit::trust()).unwrap(), env);
    }
}

#[test]
fn each_check_has_its_own_error() {
    let sealer = testkit::sealer();
    let env = testkit::envelope(5, [0; 32], Body::Provision(testkit::provision("x")));
    let sealed = sealer.seal(&env).unwrap().sealed;
    let fresh = testkit::freshness();

    assert!(matches!(open_now(b"\x00garbage"), Err(OpenError::Cbor(_))));

    let mut no_link = testkit::trust();
    no_link.remove_link_key(7);
    let err = open(&sealed, &no_link, &fresh, T0, &ReplayState::new()).unwrap_err();
    assert_eq!(err, OpenError::UnknownLinkKey { kid: 7 });
    assert!(err.to_string().contains("trust add-link-key"));

    let mut wrong_link = testkit::trust();
    wrong_link.add_link_key(LinkKey::from_bytes(7, [9; 32]));
    let err = open(&sealed, &wrong_link, &fresh, T0, &ReplayState::new()).unwrap_err();
    assert_eq!(err, OpenError::Aead);

    let mut no_signer = TrustStore::new();
    no_signer.add_link_key(testkit::link_key());
    let err = open(&sealed, &no_signer, &fresh, T0, &ReplayState::new()).unwrap_err();
    assert!(matches!(err, OpenError::UntrustedSigner { .. }));

    // A different key claiming the trusted kid: the signature fails.
    let impostor = Sealer::new(SignerKey::generate(), testkit::link_key());
    let mut forged_env = env.clone();
    forged_env.sender_kid = impostor.signer_kid().to_owned();
    let forged = impostor.seal(&forged_env).unwrap().sealed;
    let err = open_now(&forged).unwrap_err();
    assert!(matches!(err, OpenError::UntrustedSigner { .. }));

    let mut mismatched = env.clone();
    mismatched.sender_kid = "0000000000000000".into();
    let err = open_now(&sealer.seal(&mismatched).unwrap().sealed).unwrap_err();
    assert!(matches!(err, OpenError::SignerMismatch { .. }));

    let mut v2 = env.clone();
    v2.v = ENVELOPE_VERSION + 1;
    let err = open_now(&sealer.seal(&v2).unwrap().sealed).unwrap_err();
    assert_eq!(
        err,
        OpenError::Version {
            v: ENVELOPE_VERSION + 1
        }
    );

    let err = open(
        &sealed,
        &testkit::trust(),
        &fresh,
        T0 + 3601,
        &ReplayState::new(),
    );
    assert_eq!(err.unwrap_err(), OpenError::Stale { age: 3601 });
    let err = open(
        &sealed,
        &testkit::trust(),
        &fresh,
        T0 - 61,
        &ReplayState::new(),
    );
    assert_eq!(err.unwrap_err(), OpenError::Future { ahead: 61 });

    let mut replay = ReplayState::new();
    replay.accept(testkit::signer().kid(), 5).unwrap();
    let err = open(&sealed, &testkit::trust(), &fresh, T0, &replay).unwrap_err();
    assert!(matches!(err, OpenError::Replay(_)));
    assert_eq!(err.reason(), "replay");
}

#[test]
fn signer_not_yet_valid_is_untrusted() {
    let mut trust = TrustStore::new();
    trust.add_link_key(testkit::link_key());
    trust.add_signer(testkit::signer().public(), T0 + 10);
    let env = testkit::envelope(1, [0; 32], Body::Provision(testkit::provision("x")));
    let sealed = testkit::sealer().seal(&env).unwrap().sealed;
    let err = open(
        &sealed,
        &trust,
        &testkit::freshness(),
        T0,
        &ReplayState::new(),
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::UntrustedSigner { .. }));
}

#[test]
fn oversized_envelope_cannot_be_sealed_or_opened() {
    let mut p = testkit::provision("big");
    p.claims.groups = vec!["g".into(); 65];
    let env = testkit::envelope(1, [0; 32], Body::Provision(p));
    assert!(testkit::sealer().seal(&env).is_err());
    let huge = vec![0u8; airlock_protocol::limits::MAX_SEALED_FRAME + 1];
    assert!(matches!(open_now(&huge), Err(OpenError::TooLarge { .. })));
}

fn sealed_sample() -> Vec<u8> {
    let env = testkit::envelope(1, [0; 32], Body::Provision(testkit::provision("p")));
    testkit::sealer().seal(&env).unwrap().sealed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any single bit flip is caught: by the CBOR parser, the header checks or the AEAD tag.
    #[test]
    fn any_bit_flip_is_rejected(bit in 0usize..(8 * 700)) {
        let mut sealed = sealed_sample();
        let bit = bit % (sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        let err = open_now(&sealed).unwrap_err();
        prop_assert!(matches!(err,
            OpenError::Cbor(_) | OpenError::Algorithm | OpenError::UnknownLinkKey { .. } | OpenError::Aead),
            "bit {} gave {:?}", bit, err);
    }

    #[test]
    fn truncation_is_rejected(cut in 1usize..700) {
        let sealed = sealed_sample();
        let cut = cut.min(sealed.len());
        let err = open_now(&sealed[..sealed.len() - cut]).unwrap_err();
        prop_assert!(matches!(err, OpenError::Cbor(_)), "{:?}", err);
    }

    #[test]
    fn extension_is_rejected(extra in proptest::collection::vec(any::<u8>(), 1..64)) {
        let mut sealed = sealed_sample();
        sealed.extend_from_slice(&extra);
        let err = open_now(&sealed).unwrap_err();
        prop_assert!(matches!(err, OpenError::Cbor(_)), "{:?}", err);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = open_now(&bytes);
    }
}

#[test]
fn batch_encryption_opens_like_single_and_never_reuses_an_iv() {
    let sealer = testkit::sealer();
    let signed: Vec<_> = (1..=3)
        .map(|seq| {
            let mut env = testkit::provision_of_size(300);
            env.seq = seq;
            sealer.sign(&env).unwrap()
        })
        .collect();
    let sealed = sealer
        .encrypt_batch(signed.iter().map(|s| s.sign1.as_slice()))
        .unwrap();
    assert_eq!(sealed.len(), 3);
    for (frame, s) in sealed.iter().zip(&signed) {
        assert_eq!(open_now(frame).unwrap().sign1, s.sign1);
        assert_eq!(frame.len(), sealer.encrypt(&s.sign1).unwrap().len());
    }
    // Each frame has its own IV, so equal inputs never give equal ciphertexts.
    let twice = sealer
        .encrypt_batch([signed[0].sign1.as_slice(); 2].into_iter())
        .unwrap();
    assert_ne!(twice[0], twice[1]);
}

/// Checks that Sign1 bytes are what coset's builder writes for the same frame: coset's
/// layout (it re-serializes them unchanged), coset's encoding of the protected header, and
/// a signature over coset's Sig_structure (Ed25519 is deterministic, so it is the same).
fn assert_coset_layout(sign1: &[u8]) {
    use coset::{CborSerializable, CoseSign1, HeaderBuilder, TaggedCborSerializable, iana};
    let parsed = CoseSign1::from_tagged_slice(sign1).unwrap();
    assert_eq!(parsed.clone().to_tagged_vec().unwrap(), sign1);
    let expected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .key_id(testkit::signer().kid().as_bytes().to_vec())
        .build();
    assert_eq!(parsed.protected.header, expected);
    let original = parsed.protected.original_data.clone().unwrap();
    assert_eq!(original, expected.to_vec().unwrap());
    assert!(parsed.unprotected.is_empty());
    // verify_sign1 checks the signature over the Sig_structure coset computes.
    verify_sign1(sign1, &testkit::trust()).unwrap();
}

#[test]
fn sign1_bytes_are_exactly_what_coset_writes() {
    let sealer = testkit::sealer();
    let mut envelopes: Vec<_> = testkit::bodies()
        .into_iter()
        .enumerate()
        .map(|(i, body)| testkit::envelope(i as u64 + 1, [3; 32], body))
        .collect();
    // Payload lengths on both sides of the 1-, 2- and 4-byte CBOR length forms.
    for size in [200, 255, 256, 300, 65_535, 65_536, 70_000] {
        let env = testkit::provision_of_size(size);
        if airlock_protocol::codec::encode_envelope(&env).is_ok() {
            envelopes.push(env);
        }
    }
    for env in &envelopes {
        let signed = sealer.sign(env).unwrap();
        assert_coset_layout(&signed.sign1);
        assert_eq!(
            verify_sign1(&signed.sign1, &testkit::trust()).unwrap(),
            *env
        );
    }
}

#[test]
fn an_envelope_around_a_pre_encoded_body_is_byte_identical() {
    use airlock_protocol::codec::{encode_body, encode_envelope, encode_envelope_with_body};
    use airlock_protocol::message::Envelope;
    let numbers = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX];
    let kids = [
        "",
        "k",
        "fd110d301d2f077d",
        &"x".repeat(24),
        &"y".repeat(64),
    ];
    for body in testkit::bodies() {
        let encoded = encode_body(&body).unwrap();
        for (i, &n) in numbers.iter().enumerate() {
            for kid in kids {
                let env = Envelope {
                    v: [ENVELOPE_VERSION, 30][i % 2],
                    sender_kid: kid.to_string(),
                    seq: n,
                    prev: [i as u8; 32],
                    issued_at: numbers[numbers.len() - 1 - i],
                    body: body.clone(),
                };
                let fast = encode_envelope_with_body(
                    env.v,
                    &env.sender_kid,
                    env.seq,
                    &env.prev,
                    env.issued_at,
                    &encoded,
                );
                assert_eq!(fast.unwrap(), encode_envelope(&env).unwrap());
            }
        }
    }
    let heartbeat = encode_body(&testkit::bodies()[0]).unwrap();
    let long_kid = "z".repeat(65);
    assert!(
        encode_envelope_with_body(ENVELOPE_VERSION, &long_kid, 1, &[0; 32], 1, &heartbeat).is_err()
    );
}

/// A CBOR byte string head in its shortest form (lengths below 2^16 are enough here).
fn bstr(out: &mut Vec<u8>, bytes: &[u8]) {
    match bytes.len() {
        n @ 0..24 => out.push(0x40 | n as u8),
        n @ 24..256 => out.extend_from_slice(&[0x58, n as u8]),
        n => out.extend_from_slice(&[0x59, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(bytes);
}

/// A Sign1 laid out field by field: protected header, raw unprotected map, payload, signature.
fn sign1_of(kid: &str, unprotected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut protected = vec![0xa2, 0x01, 0x27, 0x04];
    bstr(&mut protected, kid.as_bytes());
    let mut sign1 = vec![0xd2, 0x84];
    bstr(&mut sign1, &protected);
    sign1.extend_from_slice(unprotected);
    bstr(&mut sign1, payload);
    bstr(&mut sign1, signature);
    sign1
}

/// A trust store that holds the identity point as a signer key (bypassing the key
/// constructors, which refuse it), the envelope it "signs" and the sealed forgery: a
/// signature with R = identity and s = 0, made without any private key.
fn weak_key_forgery() -> (TrustStore, airlock_protocol::message::Envelope, Vec<u8>) {
    use airlock_protocol::keys::{SignerPublicKey, signer_kid};
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let point = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let kid = signer_kid(&point);
    let mut trust = TrustStore::new();
    trust.add_link_key(testkit::link_key());
    trust.add_signer(
        SignerPublicKey {
            kid: kid.clone(),
            key: point,
        },
        0,
    );
    let mut env = testkit::envelope(9, [0; 32], Body::Provision(testkit::provision("forged")));
    env.sender_kid = kid.clone();
    let payload = airlock_protocol::codec::encode_envelope(&env).unwrap();
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let sign1 = sign1_of(&kid, &[0xa0], &payload, &signature);
    let sealed = testkit::sealer().encrypt(&sign1).unwrap();
    (trust, env, sealed)
}

#[test]
fn a_signature_without_a_private_key_under_a_weak_key_is_refused() {
    let (trust, _, sealed) = weak_key_forgery();
    let err = open(
        &sealed,
        &trust,
        &testkit::freshness(),
        T0,
        &ReplayState::new(),
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::UntrustedSigner { .. }), "{err:?}");
}

#[test]
fn a_weak_key_forgery_is_refused_on_the_batch_path_too() {
    use airlock_protocol::open_batch::{ToOpen, open_batch};
    let (mut trust, _, forged) = weak_key_forgery();
    trust.add_signer(testkit::signer().public(), 0);
    let good = testkit::sealer()
        .seal(&testkit::envelope(
            1,
            [0; 32],
            Body::Provision(testkit::provision("g")),
        ))
        .unwrap()
        .sealed;
    let frames = [
        ToOpen {
            sealed: &good,
            now: T0,
        },
        ToOpen {
            sealed: &forged,
            now: T0,
        },
    ];
    let results = open_batch(&frames, &trust, &testkit::freshness(), &ReplayState::new());
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(OpenError::UntrustedSigner { .. })),
        "{:?}",
        results[1]
    );
}

/// A Sign1 of the test signer (a real key, not of small order) whose signature the
/// non-strict Ed25519 rule accepts and the strict one refuses: R is the identity (a
/// small-order point) and s = k·a, so [s]B − [k]A = identity = R holds, while
/// `verify_strict` refuses any small-order R. Making it takes the private key; it tells the
/// two rules apart. Returns the sealed frame, its Sign1, the signed bytes, the signature
/// and the key.
fn small_order_r_frame() -> (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    ed25519_dalek::Signature,
    ed25519_dalek::VerifyingKey,
) {
    use coset::{CoseSign1, TaggedCborSerializable};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let sealer = testkit::sealer();
    let env = testkit::envelope(11, [0; 32], Body::Provision(testkit::provision("strict")));
    let genuine = sealer.sign(&env).unwrap().sign1;
    let parsed = CoseSign1::from_tagged_slice(&genuine).unwrap();
    let payload = parsed.payload.clone().unwrap();
    let kid = testkit::signer().kid().to_owned();
    // The layout below is the sealer's own: only the signature differs.
    assert_eq!(
        sign1_of(&kid, &[0xa0], &payload, &parsed.signature),
        genuine
    );
    let tbs = parsed.tbs_data(b"");
    // The test kit's signer key, as ed25519-dalek sees it.
    let secret = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let public = secret.verifying_key();
    assert_eq!(
        airlock_protocol::keys::signer_kid(&public),
        kid,
        "the test kit's signer"
    );
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point, compressed
    let k: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(public.as_bytes())
        .chain_update(&tbs)
        .finalize()
        .into();
    let s = Scalar::from_bytes_mod_order_wide(&k) * secret.to_scalar();
    let mut raw = [0u8; 64];
    raw[..32].copy_from_slice(&r);
    raw[32..].copy_from_slice(s.as_bytes());
    let signature = ed25519_dalek::Signature::from_bytes(&raw);
    let sign1 = sign1_of(&kid, &[0xa0], &payload, &raw);
    let sealed = sealer.encrypt(&sign1).unwrap();
    (sealed, sign1, tbs, signature, public)
}

/// The receiver's signature rule is the strict one: a signature that ed25519-dalek's
/// `verify` accepts but `verify_strict` refuses (small-order R under a real key) is refused
/// `bad_signature` when a frame is opened alone and when a burst falls back to single checks.
/// (A burst whose batch equation holds is checked by the cofactored batch rule, which cannot
/// be strict: decisions D15 says why refusing weak keys suffices there.)
#[test]
fn a_signature_only_non_strict_verification_accepts_is_refused() {
    use airlock_protocol::open_batch::{ToOpen, open_batch};
    use ed25519_dalek::Verifier;
    let (sealed, sign1, tbs, signature, public) = small_order_r_frame();
    assert!(
        public.verify(&tbs, &signature).is_ok(),
        "the non-strict rule accepts it"
    );
    assert!(
        public.verify_strict(&tbs, &signature).is_err(),
        "the strict rule refuses it"
    );
    assert_eq!(open_now(&sealed).unwrap_err(), OpenError::BadSignature);
    assert_eq!(
        verify_sign1(&sign1, &testkit::trust()).unwrap_err(),
        OpenError::BadSignature
    );
    // A burst with a frame whose signature is simply wrong: the batch fails, every frame is
    // checked alone, and the small-order one is refused like the wrong one.
    let good = testkit::sealer()
        .seal(&testkit::envelope(
            1,
            [0; 32],
            Body::Provision(testkit::provision("g")),
        ))
        .unwrap()
        .sealed;
    let wrong = {
        let env = testkit::envelope(2, [0; 32], Body::Provision(testkit::provision("w")));
        let mut sign1 = testkit::sealer().sign(&env).unwrap().sign1;
        let last = sign1.len() - 1;
        sign1[last] ^= 1;
        testkit::sealer().encrypt(&sign1).unwrap()
    };
    let frames = [&good, &wrong, &sealed].map(|f| ToOpen { sealed: f, now: T0 });
    let results = open_batch(
        &frames,
        &testkit::trust(),
        &testkit::freshness(),
        &ReplayState::new(),
    );
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert_eq!(results[1].as_ref().unwrap_err(), &OpenError::BadSignature);
    assert_eq!(results[2].as_ref().unwrap_err(), &OpenError::BadSignature);
    // Alone in a burst it is checked singly, strictly.
    let alone = open_batch(
        &[ToOpen {
            sealed: &sealed,
            now: T0,
        }],
        &testkit::trust(),
        &testkit::freshness(),
        &ReplayState::new(),
    );
    assert_eq!(alone[0].as_ref().unwrap_err(), &OpenError::BadSignature);
}

/// Re-encodings of a genuine Sign1 that keep its signature valid: a non-empty unprotected
/// header, and a payload length in a longer form than needed.
fn re_encodings(sign1: &[u8]) -> Vec<Vec<u8>> {
    use coset::{CoseSign1, TaggedCborSerializable};
    let parsed = CoseSign1::from_tagged_slice(sign1).unwrap();
    let signer = testkit::signer();
    let kid = signer.kid();
    let payload = parsed.payload.clone().unwrap();
    let signature = parsed.signature.clone();
    let with_header = sign1_of(kid, &[0xa1, 0x19, 0x01, 0x00, 0x40], &payload, &signature);
    let mut long_length = sign1_of(kid, &[0xa0], &[], &signature);
    // Replace the empty payload `40` with a 4-byte length form holding the real payload.
    let at = long_length.len() - 66 - 1;
    assert_eq!(long_length[at], 0x40);
    let mut head = vec![0x5a];
    head.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    head.extend_from_slice(&payload);
    long_length.splice(at..=at, head);
    vec![with_header, long_length]
}

#[test]
fn re_encoded_sign1_is_refused_so_the_real_copy_is_never_a_replay() {
    let sealer = testkit::sealer();
    let env = testkit::envelope(3, [0; 32], Body::Provision(testkit::provision("r")));
    let signed = sealer.sign(&env).unwrap();
    for variant in re_encodings(&signed.sign1) {
        assert_ne!(variant, signed.sign1);
        let err = verify_sign1(&variant, &testkit::trust()).unwrap_err();
        assert!(matches!(err, OpenError::InnerCbor(_)), "{err:?}");
        let sealed = sealer.encrypt(&variant).unwrap();
        let err = open_now(&sealed).unwrap_err();
        assert!(matches!(err, OpenError::InnerCbor(_)), "{err:?}");
        assert_eq!(err.reason(), "bad_inner_cbor");
    }
    // The genuine one still opens, with the hash the chain expects.
    let opened = open_now(&sealer.encrypt(&signed.sign1).unwrap()).unwrap();
    assert_eq!(opened.hash, signed.hash);
}

#[test]
fn a_login_ticket_asking_for_gigabytes_of_argon2_memory_is_refused_on_intake() {
    let mut ticket = match testkit::bodies()
        .into_iter()
        .find(|b| matches!(b, Body::LoginTicket(_)))
    {
        Some(Body::LoginTicket(t)) => t,
        _ => unreachable!(),
    };
    ticket.code_hash = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into();
    let env = testkit::envelope(4, [0; 32], Body::LoginTicket(ticket));
    // The sender refuses to seal it ...
    assert!(testkit::sealer().seal(&env).is_err());
    // ... and a receiver refuses it after the signature, before anything is applied.
    let sealer = testkit::sealer();
    // Encoded as the sender would (index keys, array enums), but without its size checks.
    let mut payload = Vec::new();
    serde::Serialize::serialize(
        &env,
        &mut serde_cbor::Serializer::new(&mut payload)
            .packed_format()
            .legacy_enums(),
    )
    .unwrap();
    let sealed = sealer
        .encrypt(&sealer.sign_payload(&payload).sign1)
        .unwrap();
    let err = open_now(&sealed).unwrap_err();
    assert!(matches!(err, OpenError::Payload(_)), "{err:?}");
    assert!(err.to_string().contains("m=4194304"), "{err}");
}
