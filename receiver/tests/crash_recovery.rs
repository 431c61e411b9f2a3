//! Crash test: SIGKILL the receiver at random moments while 10,000 frames arrive, restart,
//! repeat. Afterwards every logged frame was applied exactly once, the hash chain verifies,
//! and the store equals a fresh replay of the log.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use airlock_protocol::message::{Body, local_subject};
use airlock_protocol::seal::verify_sign1;
use airlock_receiver::config::Config;
use airlock_receiver::frame_log::{ChainVerifier, Verdict};
use airlock_receiver::replay::{diff_stores, replay_log_into};
use airlock_receiver::store::records::UserRecord;
use airlock_receiver::store::{SledStore, Store, Table, decode_json};
use airlock_receiver::trust_set::BaseTrust;
use common::*;
use rand::Rng;

const FRAMES: u64 = 10_000;
/// Subjects are reused so users get updated many times (idempotency matters).
const SUBJECTS: u64 = 1_500;

#[test]
fn kill9_during_ingest_then_log_and_store_agree() {
    let setup = Setup::new(LinkKind::Udp);
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<_> = (1..=FRAMES)
        .map(|i| tx.next(provision(i % SUBJECTS)))
        .collect();
    let mut rng = rand::thread_rng();

    let mut cursor = 0usize;
    let mut kills = 0;
    while cursor < frames.len() {
        let rx = setup.start();
        let kill_after = Duration::from_millis(rng.gen_range(20..300));
        let started = Instant::now();
        let mut rx = rx;
        // Feed chunks until the kill moment; the kill lands wherever the receiver is.
        while cursor < frames.len() && started.elapsed() < kill_after {
            let end = (cursor + rng.gen_range(10..90)).min(frames.len());
            let chunk: Vec<Vec<u8>> = frames[cursor..end]
                .iter()
                .map(|f| f.sealed.clone())
                .collect();
            tx.send_udp(setup.udp_port, &chunk);
            cursor = end;
            // Spread the 10,000 frames over a few seconds so the kills land mid-stream.
            std::thread::sleep(Duration::from_millis(15));
        }
        if cursor < frames.len() {
            rx.kill();
            kills += 1;
        } else {
            // Let the last chunk land, kill once more mid-flight, and restart cleanly below.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..50)));
            rx.kill();
            kills += 1;
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills: the test did not exercise recovery"
    );

    // Recovery: a heartbeat names the tail, then resend what `gaps` reports until complete.
    let rx = setup.start();
    let hb = tx.next(heartbeat(tx.session_id));
    tx.send_udp(setup.udp_port, std::slice::from_ref(&hb.sealed));
    let kid = tx.chain.sealer.signer_kid().to_owned();
    let total = FRAMES + 1;
    let mut rounds = 0;
    loop {
        // Waiting is not asserted on: the loop just looks again until the gaps are closed.
        std::thread::sleep(Duration::from_millis(300));
        let gaps = setup.gaps_json();
        let g = &gaps["signers"][&kid];
        if g["highest"] == total && g["missing"].as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        rounds += 1;
        assert!(rounds < 50, "gaps never closed: {gaps}");
        let mut resend = Vec::new();
        for r in g["missing"].as_array().unwrap() {
            let (a, b) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
            for s in a..=b {
                let f = if s == total {
                    &hb
                } else {
                    &frames[s as usize - 1]
                };
                resend.push(tx.chain.sealer.encrypt(&f.sign1).unwrap());
            }
        }
        if g["highest"] != total {
            resend.push(tx.chain.sealer.encrypt(&hb.sign1).unwrap());
        }
        tx.send_udp(setup.udp_port, &resend);
    }
    // `gaps` reads the store as committed; `airlock_log_entries` is published once the
    // commit's flush has returned. Under load the last batch can be in between, so wait for
    // it (a store whose log really lacked entries never gets there, and the offline checks
    // below read the log itself).
    rx.wait_for("the last batch flushed and published", |m| {
        m.get("airlock_log_entries") == total
    });
    drop(rx);

    // Offline checks on the store itself.
    let cfg = Config::load(&setup.config).unwrap();
    let store = SledStore::open(&cfg.store_path()).unwrap();
    let base = BaseTrust::load(&cfg.trust).unwrap();
    let trust = base.effective(&Default::default()).unwrap();

    // 1. The chain verifies and each (signer, seq) is logged exactly once.
    let mut chain = ChainVerifier::new();
    let mut seen = HashSet::new();
    let mut applied_per_user: BTreeMap<String, u64> = BTreeMap::new();
    for row in store.scan_from(Table::Log, &[]) {
        let (_, v) = row.unwrap();
        let e = chain.push(&v).unwrap();
        assert!(
            seen.insert((e.signer_kid.clone(), e.seq)),
            "seq {} logged twice",
            e.seq
        );
        let env = verify_sign1(&e.sign1, &trust).unwrap();
        if let (Body::Provision(p), Verdict::Applied) = (&env.body, e.verdict) {
            *applied_per_user
                .entry(local_subject(&p.issuer, &p.subject))
                .or_default() += 1;
        }
    }
    assert_eq!(chain.summary().entries, total);
    assert_eq!(seen.len() as u64, total);

    // 2. Each logged frame was applied exactly once: per user, the count of applied frames
    //    in the store equals the count of applied entries in the log.
    let mut users = 0;
    for row in store.scan_from(Table::Users, &[]) {
        let (k, v) = row.unwrap();
        let u: UserRecord = decode_json(Table::Users, &k, &v).unwrap();
        assert_eq!(
            Some(&u.applied_frames),
            applied_per_user.get(&u.local_sub),
            "user {}",
            u.local_sub
        );
        users += 1;
    }
    assert_eq!(users, SUBJECTS);

    // 3. The store equals a fresh replay of the log.
    let scratch = SledStore::temporary().unwrap();
    let summary = replay_log_into(&store, &base, &scratch, |_| {}).unwrap();
    assert_eq!(summary.entries, total);
    let diffs = diff_stores(&store, &scratch).unwrap();
    assert!(
        diffs.is_empty(),
        "store differs from the replay of its log: {diffs:?}"
    );
    eprintln!("crash test: {kills} kills, {rounds} resend rounds, {total} frames logged once each");
}
