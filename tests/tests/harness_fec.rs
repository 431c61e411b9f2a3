//! The harness against the protocol crate's own codec: FEC under seeded loss, and replayed
//! and forged datagrams through the relay, with protocol-level stand-ins for both halves.

use std::time::Duration;

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::link::LinkParams;
use airlock_protocol::message::Body;
use airlock_protocol::seal::Sealer;
use airlock_protocol::testkit;
use airlock_tests::datagram;
use airlock_tests::impair::ImpairConfig;
use airlock_tests::peer::{LinkReceiver, LinkSender};
use airlock_tests::udp_relay::{RelayConfig, UdpRelay};

const FRAMES: u64 = 2000;

async fn setup(impair: ImpairConfig, record_limit: usize) -> (LinkReceiver, UdpRelay, LinkSender) {
    let rx = LinkReceiver::bind(testkit::trust()).await.unwrap();
    let relay = UdpRelay::start(RelayConfig {
        impair,
        record_limit,
        ..RelayConfig::to(rx.local_addr().unwrap())
    })
    .await
    .unwrap();
    let tx = LinkSender::new(
        relay.local_addr(),
        testkit::sealer(),
        0x5EED,
        &LinkParams::default(),
    )
    .await
    .unwrap();
    (rx, relay, tx)
}

async fn send_provisions(tx: &mut LinkSender, n: u64) {
    for i in 0..n {
        let mut p = testkit::provision(&format!("user-{i}"));
        p.claims.extra.insert("pad".into(), "x".repeat(300));
        tx.send(Body::Provision(p)).await.unwrap();
    }
    tx.flush().await.unwrap();
}

#[tokio::test]
async fn default_fec_recovers_every_frame_at_ten_percent_loss() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let impair = ImpairConfig {
        loss: 0.10,
        ..ImpairConfig::seeded(2026)
    };
    let (mut rx, relay, mut tx) = setup(impair, 0).await;
    let (done, _) = tokio::join!(
        rx.run_until(
            |r| r.accepted().len() as u64 == FRAMES,
            Duration::from_secs(3),
            Duration::from_secs(60),
        ),
        send_provisions(&mut tx, FRAMES)
    );
    let s = relay.stats();
    let l = rx.link_stats().clone();
    assert!(
        done,
        "{} of {FRAMES} frames arrived; relay: {s}; decoder: {l:?}",
        rx.accepted().len()
    );
    // The link really was lossy, and FEC really did the work.
    let rate = s.impair.lost_random as f64 / s.received as f64;
    assert!((0.07..0.13).contains(&rate), "loss rate {rate}");
    assert_eq!(l.blocks_lost, 0);
    let seqs: Vec<u64> = rx.accepted().iter().map(|o| o.envelope.seq).collect();
    assert_eq!(
        seqs,
        (1..=FRAMES).collect::<Vec<_>>(),
        "each frame once, in order"
    );
    eprintln!("10% loss: {s}; decoder {l:?}");
}

#[tokio::test]
async fn replayed_datagrams_change_nothing() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (mut rx, relay, mut tx) = setup(ImpairConfig::seeded(1), 100_000).await;
    let (done, _) = tokio::join!(
        rx.run_until(
            |r| r.accepted().len() == 200,
            Duration::from_secs(3),
            Duration::from_secs(30),
        ),
        send_provisions(&mut tx, 200)
    );
    assert!(done);
    let sent = relay.stats().received;
    assert_eq!(relay.replay_recorded().await.unwrap() as u64, sent);
    rx.run_until(
        |_| false,
        Duration::from_millis(300),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rx.accepted().len(), 200, "nothing accepted twice");
    // Replays of a decoded block are duplicates at the link layer, or replays at open.
    let l = rx.link_stats();
    let replays = rx.rejected().get("replay").copied().unwrap_or(0);
    assert!(
        l.duplicate_symbols + replays > 0,
        "{l:?} {:?}",
        rx.rejected()
    );
    assert_eq!(rx.rejected().keys().filter(|k| **k != "replay").count(), 0);
}

#[tokio::test]
async fn forged_datagrams_are_rejected_with_named_reasons() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (mut rx, relay, mut tx) = setup(ImpairConfig::seeded(1), 10).await;
    let (done, _) = tokio::join!(
        rx.run_until(
            |r| r.accepted().len() == 20,
            Duration::from_secs(3),
            Duration::from_secs(30),
        ),
        send_provisions(&mut tx, 20)
    );
    assert!(done);
    let session = datagram::peek(&relay.recorded()[0]).unwrap().session_id;

    // An attacker on the link: noise, CRC-valid garbage symbols, and whole well-formed blocks
    // of frames that are garbage, under a foreign link key, or signed by an untrusted key
    // under the real (stolen) link key.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
    relay
        .inject(&datagram::random_bytes(&mut rng, 300))
        .await
        .unwrap();
    let like = datagram::forge_like(&mut rng, &relay.recorded()[0]).unwrap();
    relay.inject(&like).await.unwrap();
    let foreign = Sealer::new(SignerKey::generate(), LinkKey::generate(99));
    let stolen_link = Sealer::new(SignerKey::generate(), testkit::link_key());
    let env = testkit::envelope(
        5000,
        [0; 32],
        Body::Provision(testkit::provision("mallory")),
    );
    let frames = vec![
        datagram::random_bytes(&mut rng, 500),
        foreign.seal(&env).unwrap().sealed,
        stolen_link.seal(&env).unwrap().sealed,
    ];
    for d in datagram::forge_frames_block(session, 90_000, 1472, &frames).unwrap() {
        relay.inject(&d).await.unwrap();
    }
    rx.run_until(
        |_| false,
        Duration::from_millis(300),
        Duration::from_secs(30),
    )
    .await;

    assert_eq!(rx.accepted().len(), 20, "nothing forged accepted");
    let r = rx.rejected();
    assert_eq!(r.get("bad_cbor"), Some(&1), "{r:?}");
    assert_eq!(r.get("unknown_link_key"), Some(&1), "{r:?}");
    assert_eq!(r.get("untrusted_signer"), Some(&1), "{r:?}");
    assert_eq!(
        rx.link_errors().get("crc"),
        Some(&1),
        "{:?}",
        rx.link_errors()
    );
}
