//! The ingest against a store, without the network: classification, idempotent commit,
//! key rotation over the link, replay equality. Plus an ignored in-process throughput probe.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use airlock_protocol::keys::SignerKey;
use airlock_protocol::message::{Body, KeyAnnounce, KeyRetire};
use airlock_protocol::seal::{Freshness, Sealer};
use airlock_receiver::config::TrustConfig;
use airlock_receiver::ingest::{Incoming, Ingest, NoHooks};
use airlock_receiver::metrics::Metrics;
use airlock_receiver::replay::{diff_stores, replay_log_into};
use airlock_receiver::store::{SledStore, Store, Table};
use airlock_receiver::trust_set::BaseTrust;
use common::*;

fn incoming(sealed: Vec<u8>) -> Incoming {
    Incoming {
        sealed,
        source: "test".into(),
        received_at_ms: now() * 1000,
    }
}

fn setup() -> (
    tempfile::TempDir,
    BaseTrust,
    SignerKey,
    airlock_protocol::keys::LinkKey,
) {
    let dir = tempfile::tempdir().unwrap();
    let signer = SignerKey::generate();
    let link = airlock_protocol::keys::LinkKey::generate(7);
    std::fs::write(
        dir.path().join("s.pub"),
        signer.public().to_spki_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("l.key"), link.to_text().as_bytes()).unwrap();
    let base = BaseTrust::load(&TrustConfig {
        signers: vec![dir.path().join("s.pub")],
        link_keys: vec![dir.path().join("l.key")],
        dir: None,
    })
    .unwrap();
    (dir, base, signer, link)
}

fn ingest(store: &Arc<SledStore>, base: &BaseTrust, metrics: &Arc<Metrics>) -> Ingest<SledStore> {
    let fresh = Freshness {
        max_age_secs: 3600,
        max_skew_secs: 60,
    };
    Ingest::new(
        store.clone(),
        base.clone(),
        fresh,
        metrics.clone(),
        Box::new(NoHooks),
        10,
    )
    .unwrap()
}

#[test]
fn duplicates_within_and_across_batches_are_counted_not_applied() {
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut ing = ingest(&store, &base, &metrics);
    let mut tx = TestSender::new(&signer, &link);
    let a = tx.next(provision(1));
    let b = tx.next(provision(2));
    let r = ing
        .process(vec![
            incoming(a.sealed.clone()),
            incoming(a.sealed.clone()),
            incoming(b.sealed.clone()),
        ])
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 1));
    // Re-encrypted copy (a resend): same Sign1, so a duplicate too.
    let r = ing
        .process(vec![incoming(tx.chain.sealer.encrypt(&a.sign1).unwrap())])
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 1));
    assert_eq!(store.len(Table::Log), 2);
    // A byte-identical repetition of a logged frame is known without a second open.
    let again = ing.verifier().open(vec![incoming(b.sealed.clone())]);
    assert_eq!(again.known(), 1);
    let r = ing.process_opened(again).unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 1));
    // A frame never logged is opened.
    let c = tx.next(provision(3));
    assert_eq!(ing.verifier().open(vec![incoming(c.sealed)]).known(), 0);
}

#[test]
fn key_rotation_over_the_link() {
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut ing = ingest(&store, &base, &metrics);
    let mut tx = TestSender::new(&signer, &link);
    let new_key = SignerKey::generate();
    let announce = tx.next(Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: new_key.kid().to_owned(),
        public_key: new_key.public().key.to_bytes(),
        not_before: 0,
    }));
    // In the same burst: a frame by the new key right after the announcement, which must
    // be opened under the new trust.
    let new_sealer = Sealer::new(clone_signer(&new_key), link.clone());
    let mut env = tx.envelope(1, provision(7), now());
    env.sender_kid = new_key.kid().to_owned();
    let by_new = new_sealer.seal(&env).unwrap();
    let r = ing
        .process(vec![incoming(announce.sealed), incoming(by_new.sealed)])
        .unwrap();
    assert_eq!(r.accepted, 2, "{r:?}");
    // The old key retires itself; its later frames are refused.
    let retire = tx.next(Body::KeyRetire(KeyRetire::Signer {
        kid: signer.kid().to_owned(),
    }));
    let after = tx.next(provision(8));
    let r = ing
        .process(vec![incoming(retire.sealed), incoming(after.sealed)])
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 1));
    assert_eq!(metrics.rejected("untrusted_signer"), 1);

    // Replay of the log reproduces the store, key changes included.
    let scratch = SledStore::temporary().unwrap();
    replay_log_into(&*store, &base, &scratch, |_| {}).unwrap();
    assert!(diff_stores(&*store, &scratch).unwrap().is_empty());
    // And a restarted ingest trusts what the log says.
    drop(ing);
    let ing = ingest(&store, &base, &metrics);
    assert!(ing.trust().signer(new_key.kid()).is_some());
    assert!(ing.trust().signer(signer.kid()).is_none());
}

/// A Sign1 laid out by hand (protected header with EdDSA and the kid, empty unprotected
/// map), so that a test can put any signature on it.
fn sign1_by_hand(kid: &str, payload: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    fn bstr(out: &mut Vec<u8>, bytes: &[u8]) {
        match bytes.len() {
            n @ 0..24 => out.push(0x40 | n as u8),
            n @ 24..256 => out.extend_from_slice(&[0x58, n as u8]),
            n => out.extend_from_slice(&[0x59, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(bytes);
    }
    let mut protected = vec![0xa2, 0x01, 0x27, 0x04];
    bstr(&mut protected, kid.as_bytes());
    let mut sign1 = vec![0xd2, 0x84];
    bstr(&mut sign1, &protected);
    sign1.push(0xa0);
    bstr(&mut sign1, payload);
    bstr(&mut sign1, signature);
    sign1
}

/// A KeyAnnounce of a weak (small-order) key, here the identity point with the kid derived
/// from it, signed by a trusted signer: it is logged (it is authentic) but changes nothing,
/// and is counted as `airlock_frames_no_effect_total`. A frame "signed" under that kid
/// without any private key (R = identity, s = 0, which the identity key would verify) is
/// refused `untrusted_signer`, now and after a restart.
#[test]
fn a_key_announce_of_a_weak_key_changes_nothing_and_is_counted() {
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut ing = ingest(&store, &base, &metrics);
    let mut tx = TestSender::new(&signer, &link);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak_kid = airlock_protocol::keys::signer_kid(
        &ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap(),
    );
    let before: Vec<String> = ing.trust().signer_kids().map(str::to_owned).collect();
    let announce = tx.next(Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: weak_kid.clone(),
        public_key: identity,
        not_before: 0,
    }));
    let mut env = tx.envelope(1, provision(9), now());
    env.sender_kid = weak_kid.clone();
    let payload = airlock_protocol::codec::encode_envelope(&env).unwrap();
    let mut no_key_signature = [0u8; 64];
    no_key_signature[0] = 1;
    let forged = tx
        .chain
        .sealer
        .encrypt(&sign1_by_hand(&weak_kid, &payload, &no_key_signature))
        .unwrap();
    let r = ing
        .process(vec![incoming(announce.sealed), incoming(forged.clone())])
        .unwrap();
    assert_eq!((r.accepted, r.no_effect, r.rejected), (1, 1, 1), "{r:?}");
    assert_eq!(metrics.frames_no_effect.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.rejected("untrusted_signer"), 1);
    let after: Vec<String> = ing.trust().signer_kids().map(str::to_owned).collect();
    assert_eq!(after, before, "the trusted signers did not change");
    assert!(ing.trust().signer(&weak_kid).is_none());

    // A restarted ingest builds its trust from the log: still no weak key.
    drop(ing);
    let mut ing = ingest(&store, &base, &metrics);
    assert!(ing.trust().signer(&weak_kid).is_none());
    let r = ing.process(vec![incoming(forged)]).unwrap();
    assert_eq!(r.rejected, 1);
    assert_eq!(metrics.rejected("untrusted_signer"), 2);
}

/// Several receivers on one store (the HA shape). A key change logged by one reaches another
/// as a duplicate, and the duplicate's commit hands it the stored key set. A receiver that
/// never heard the announcement re-reads the stored keys on its first refusal for an unknown
/// signer, so the next copy of the new signer's frame is accepted without a restart.
#[test]
fn key_change_logged_by_another_receiver_is_picked_up() {
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut a = ingest(&store, &base, &metrics);
    let mut b = ingest(&store, &base, &metrics);
    let mut c = ingest(&store, &base, &metrics);
    let mut tx = TestSender::new(&signer, &link);
    let new_key = SignerKey::generate();
    let announce = tx.next(Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: new_key.kid().to_owned(),
        public_key: new_key.public().key.to_bytes(),
        not_before: 0,
    }));
    assert_eq!(
        a.process(vec![incoming(announce.sealed.clone())])
            .unwrap()
            .accepted,
        1
    );
    assert_eq!(
        b.process(vec![incoming(announce.sealed)])
            .unwrap()
            .duplicates,
        1
    );
    assert!(b.trust().signer(new_key.kid()).is_some());

    let new_sealer = Sealer::new(clone_signer(&new_key), link.clone());
    let mut env = tx.envelope(1, provision(9), now());
    env.sender_kid = new_key.kid().to_owned();
    let by_new = new_sealer.seal(&env).unwrap();
    let first = c.process(vec![incoming(by_new.sealed.clone())]).unwrap();
    assert_eq!((first.accepted, first.rejected), (0, 1));
    let again = c.process(vec![incoming(by_new.sealed)]).unwrap();
    assert_eq!(again.accepted, 1, "{again:?}");
    assert!(c.trust().signer(new_key.kid()).is_some());
}

#[test]
#[ignore = "probe: cargo test --release -p airlock-receiver --test integration -- ingest_store:: --ignored --nocapture"]
fn in_process_ingest_rate() {
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut ing = ingest(&store, &base, &metrics);
    let mut tx = TestSender::new(&signer, &link);
    let n = 20_000;
    let frames: Vec<Incoming> = (1..=n)
        .map(|i| incoming(tx.next(provision(i)).sealed))
        .collect();
    let t = Instant::now();
    for chunk in frames.chunks(2048) {
        ing.process(chunk.to_vec()).unwrap();
    }
    let el = t.elapsed().as_secs_f64();
    eprintln!(
        "in-process ingest: {n} frames in {el:.2} s = {:.0} frames/s",
        n as f64 / el
    );
    assert_eq!(store.len(Table::Log) as u64, n);
}

#[test]
fn directory_hides_what_is_not_yet_durable() {
    use airlock_protocol::message::local_subject;
    use airlock_receiver::apply::{AcceptedFrame, apply_batch};
    use airlock_receiver::identity_directory::StoreDirectory;
    use airlock_receiver::oidc::directory::IdentityDirectory;
    let (dir, base, signer, link) = setup();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mut ing = ingest(&store, &base, &metrics);
    let directory = StoreDirectory::gated(store.clone(), metrics.clone());
    let mut tx = TestSender::new(&signer, &link);
    ing.process(vec![incoming(tx.next(provision(1)).sealed)])
        .unwrap();
    let sub1 = local_subject(ISSUER, "subject-1");
    assert!(directory.user(&sub1).unwrap().is_some());
    // Committed but not yet published as durable by the ingest: invisible.
    let f = tx.next(provision(2));
    let env = airlock_protocol::seal::verify_sign1(&f.sign1, &ing.trust()).unwrap();
    let frame = AcceptedFrame::new(env, f.sign1, now() * 1000);
    store
        .transact(|t| apply_batch(t, std::slice::from_ref(&frame)))
        .unwrap();
    assert!(
        directory
            .user(&local_subject(ISSUER, "subject-2"))
            .unwrap()
            .is_none()
    );
    assert!(
        StoreDirectory::new(store.clone())
            .user(&local_subject(ISSUER, "subject-2"))
            .unwrap()
            .is_some()
    );
}
