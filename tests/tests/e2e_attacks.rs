//! Replayed and forged datagrams on the link are rejected and counted, and the
//! identity state does not change - also after a receiver restart, when the link-layer
//! memory is gone and only the persisted replay state stands between a replay and the store.

use std::time::Duration;

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::link::{BlockDecoder, DecoderConfig};
use airlock_protocol::message::{Body, ENVELOPE_VERSION, Envelope};
use airlock_protocol::seal::Sealer;
use airlock_protocol::testkit;
use airlock_tests::datagram;
use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::ops::metric_sum;
use airlock_tests::peer::unix_now;
use rand::SeedableRng;

const USERS: u64 = 200;

async fn sorted_users(d: &Deployment) -> Vec<serde_json::Value> {
    let mut u = d.users().await.unwrap();
    u.sort_by_key(|v| v["local_sub"].as_str().unwrap_or("").to_string());
    u
}

/// Polls the receiver's metrics until `ok` holds for them (or fails after 20 s).
async fn wait_metrics(
    d: &Deployment,
    what: &str,
    ok: impl Fn(&std::collections::BTreeMap<String, f64>) -> bool,
) -> std::collections::BTreeMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = d.receiver_metrics().await.unwrap();
        if ok(&m) {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {m:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rejected(m: &std::collections::BTreeMap<String, f64>, reason: &str) -> f64 {
    metric_sum(m, "airlock_frames_rejected_total", &[("reason", reason)])
}

/// Replays: duplicates at the link layer or at the frame layer, or replay rejections.
fn replays_seen(m: &std::collections::BTreeMap<String, f64>) -> f64 {
    metric_sum(m, "airlock_frames_duplicate_total", &[])
        + rejected(m, "replay")
        + metric_sum(m, "airlock_link_duplicate_symbols_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_forged_datagrams_change_nothing() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        repetitions: 1,
        record_limit: 1_000_000,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    let last = d.wait_sender_idle(Duration::from_secs(60)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    let n = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(10),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(n, USERS as usize);
    d.wait_no_gaps(last, Duration::from_secs(30)).await.unwrap();
    let before = sorted_users(&d).await;
    let m0 = d.receiver_metrics().await.unwrap();
    let relay = d.relay().unwrap();
    let recorded = relay.recorded();
    let session = datagram::peek(&recorded[0]).unwrap().session_id;

    // 1. Replay every recorded datagram of the stream.
    relay.replay_recorded().await.unwrap();
    let m1 = wait_metrics(&d, "replays counted", |m| {
        replays_seen(m) > replays_seen(&m0)
    })
    .await;

    // 2. Forgeries. The sealed frames of the stream, recovered from the recording (an
    //    attacker on the link sees them too), and frames of the attacker's making.
    let mut dec = BlockDecoder::new(DecoderConfig {
        max_block_bytes: 1 << 20,
        ..DecoderConfig::default()
    });
    let sealed: Vec<Vec<u8>> = recorded
        .iter()
        .flat_map(|d| dec.push_datagram(d).unwrap_or_default())
        .collect();
    assert!(sealed.len() as u64 >= USERS);
    let mut tampered = sealed[5].clone();
    let at = tampered.len() - 20;
    tampered[at] ^= 0x40;
    let envelope = Envelope {
        v: ENVELOPE_VERSION,
        sender_kid: "mallory".into(),
        seq: 1_000_000,
        prev: [0; 32],
        issued_at: unix_now(),
        body: Body::Provision(testkit::provision("mallory")),
    };
    let foreign = Sealer::new(SignerKey::generate(), LinkKey::generate(99));
    let stolen_link_key = LinkKey::load(&d.path().join("keys").join("link.key")).unwrap();
    let untrusted_signer = Sealer::new(SignerKey::generate(), stolen_link_key);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let forged_frames = vec![
        datagram::random_bytes(&mut rng, 400),
        foreign.seal(&envelope).unwrap().sealed,
        untrusted_signer.seal(&envelope).unwrap().sealed,
        tampered,
    ];
    // A session of the attacker's choosing carries the forged frames...
    for dg in datagram::forge_frames_block(0xBAD, 7, 1200, &forged_frames).unwrap() {
        relay.inject(&dg).await.unwrap();
    }
    // ...and the real session a block of replayed real frames under a fresh block id.
    let top = recorded
        .iter()
        .filter_map(|d| datagram::peek(d))
        .map(|p| p.block_id)
        .max()
        .unwrap();
    for dg in datagram::forge_frames_block(session, top + 3, 1200, &sealed[..50]).unwrap() {
        relay.inject(&dg).await.unwrap();
    }
    // Noise and CRC-valid garbage symbols.
    for i in 0..100 {
        relay
            .inject(&datagram::random_bytes(&mut rng, 50 + i * 10))
            .await
            .unwrap();
        let like = datagram::forge_like(&mut rng, &recorded[i % recorded.len()]).unwrap();
        relay.inject(&like).await.unwrap();
    }
    let m2 = wait_metrics(&d, "forgeries rejected", |m| {
        rejected(m, "bad_cbor") > rejected(&m1, "bad_cbor")
            && rejected(m, "unknown_link_key") > rejected(&m1, "unknown_link_key")
            && rejected(m, "untrusted_signer") > rejected(&m1, "untrusted_signer")
            && rejected(m, "aead_failure") > rejected(&m1, "aead_failure")
            && replays_seen(m) >= replays_seen(&m1) + 50.0
    })
    .await;
    let crc = metric_sum(&m2, "airlock_link_errors_total", &[]);
    assert!(crc >= 100.0, "noise refused on the link: {crc}");
    assert_eq!(
        sorted_users(&d).await,
        before,
        "state unchanged by replays and forgeries"
    );

    // 3. Restart the receiver: its link-layer memory is gone, the replay state is not.
    d.restart_receiver().await.unwrap();
    let m3 = d.receiver_metrics().await.unwrap();
    d.relay().unwrap().replay_recorded().await.unwrap();
    wait_metrics(&d, "replays after restart", |m| {
        metric_sum(m, "airlock_frames_duplicate_total", &[]) + rejected(m, "replay")
            >= metric_sum(&m3, "airlock_frames_duplicate_total", &[])
                + rejected(&m3, "replay")
                + USERS as f64
    })
    .await;
    let after = sorted_users(&d).await;
    assert_eq!(after, before, "state unchanged by replays after a restart");
    assert!(
        after.iter().all(|u| u["applied_frames"] == 1),
        "nothing applied twice"
    );
    // Heartbeats still get through: the forged block id did not wedge the real session.
    let g = d
        .wait_no_gaps(last + 2, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "after attacks: gaps {g:?}; relay {}",
        d.relay().unwrap().stats()
    );
}
