//! The UDP relay itself: forwarding, impairments through real sockets, recording, replay,
//! forgery injection and drop filters.

use std::net::SocketAddr;
use std::time::Duration;

use airlock_tests::datagram::{self, Peek};
use airlock_tests::impair::{ImpairConfig, Impairer};
use airlock_tests::udp_relay::{self, RelayConfig, UdpRelay};
use tokio::net::UdpSocket;

async fn sink() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Index plus complement: one corrupted byte never turns into another original.
fn payload(i: u32) -> Vec<u8> {
    let mut v = [i.to_be_bytes(), (!i).to_be_bytes()].concat();
    v.extend(std::iter::repeat_n((i % 251) as u8, 92));
    v
}

/// Sends `payloads` to the relay, a few at a time, and collects what arrives at `sink` until
/// the relay has forwarded everything it will forward (and that all arrived).
async fn push_through(relay: &UdpRelay, sink: &UdpSocket, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    for chunk in payloads.chunks(20) {
        for p in chunk {
            client.send_to(p, relay.local_addr()).await.unwrap();
        }
        // Drain what has arrived so far so no socket buffer overflows.
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(2), sink.recv(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = relay.stats();
        let settled = s.received == payloads.len() as u64
            && got.len() as u64 == s.forwarded + s.injected
            && s.impair.received == s.received - s.filtered;
        if settled {
            // One idle period more, so held-back datagrams are flushed.
            match tokio::time::timeout(Duration::from_millis(200), sink.recv(&mut buf)).await {
                Ok(Ok(n)) => got.push(buf[..n].to_vec()),
                _ => return got,
            }
            continue;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay did not settle: {s} got {}",
            got.len()
        );
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), sink.recv(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
        }
    }
}

#[tokio::test]
async fn forwards_everything_in_order_without_impairment() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (sink, target) = sink().await;
    let relay = UdpRelay::start(RelayConfig::to(target)).await.unwrap();
    let sent: Vec<Vec<u8>> = (0..1000).map(payload).collect();
    let got = push_through(&relay, &sink, &sent).await;
    assert_eq!(got, sent);
    let s = relay.stop().await;
    assert_eq!((s.received, s.forwarded, s.impair.lost()), (1000, 1000, 0));
}

#[tokio::test]
async fn impairments_through_sockets_match_the_model_exactly() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let impair = ImpairConfig {
        loss: 0.2,
        duplicate: 0.1,
        corrupt: 0.1,
        reorder: 0.05,
        reorder_depth: 2,
        ..ImpairConfig::seeded(1234)
    };
    let (sink, target) = sink().await;
    let relay = UdpRelay::start(RelayConfig {
        impair,
        ..RelayConfig::to(target)
    })
    .await
    .unwrap();
    let sent: Vec<Vec<u8>> = (0..2000).map(payload).collect();
    let got = push_through(&relay, &sink, &sent).await;
    let s = relay.stop().await;

    // The same seed through the pure model gives the same datagrams (order aside: the
    // relay's idle flush may release held ones earlier than the model's end-of-run flush).
    let mut model = Impairer::new(impair).unwrap();
    let mut expected: Vec<Vec<u8>> = sent.iter().flat_map(|p| model.process(p.clone())).collect();
    expected.extend(model.flush());
    let (mut a, mut b) = (got.clone(), expected);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(s.impair, model.stats());

    assert_eq!(
        got.len() as u64,
        2000 - s.impair.lost() + s.impair.duplicated
    );
    assert!(s.impair.lost_random > 300 && s.impair.duplicated > 100 && s.impair.corrupted > 100);
    let originals: std::collections::HashSet<&Vec<u8>> = sent.iter().collect();
    let altered = got.iter().filter(|d| !originals.contains(d)).count() as u64;
    assert!(altered >= s.impair.corrupted && altered <= 2 * s.impair.corrupted);
}

#[tokio::test]
async fn replays_recorded_datagrams_and_injects_forgeries() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (sink, target) = sink().await;
    let relay = UdpRelay::start(RelayConfig {
        record_limit: 5,
        ..RelayConfig::to(target)
    })
    .await
    .unwrap();
    let header = |i: u32| Peek {
        session_id: 77,
        block_id: i,
        block_len: 64,
        symbol_size: 64,
        esi: 0,
    };
    let sent: Vec<Vec<u8>> = (0..8)
        .map(|i| datagram::build(&header(i), &[i as u8; 64]))
        .collect();
    let got = push_through(&relay, &sink, &sent).await;
    assert_eq!(got, sent);
    assert_eq!(
        relay.recorded(),
        sent[..5].to_vec(),
        "record limit honoured"
    );

    assert_eq!(relay.replay_recorded().await.unwrap(), 5);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let forged = datagram::forge_like(&mut rng, &sent[0]).unwrap();
    relay.inject(&forged).await.unwrap();
    relay
        .inject(&datagram::random_bytes(&mut rng, 200))
        .await
        .unwrap();

    let mut buf = vec![0u8; 65_536];
    let mut injected = Vec::new();
    while injected.len() < 7 {
        let n = tokio::time::timeout(Duration::from_secs(5), sink.recv(&mut buf))
            .await
            .expect("injected datagrams arrive")
            .unwrap();
        injected.push(buf[..n].to_vec());
    }
    assert_eq!(injected[..5], sent[..5]);
    assert_eq!(
        datagram::peek(&injected[5]),
        Some(header(0)),
        "forgery passes the CRC"
    );
    assert_ne!(injected[5], sent[0]);
    assert_eq!(injected[6].len(), 200);
    assert_eq!(relay.stats().injected, 7);
}

#[tokio::test]
async fn drop_filter_removes_whole_blocks() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (sink, target) = sink().await;
    let relay = UdpRelay::start(RelayConfig::to(target)).await.unwrap();
    relay.set_drop_filter(udp_relay::drop_blocks([3, 5]));
    let mut sent = Vec::new();
    for block_id in 0..8u32 {
        for esi in 0..6u32 {
            let p = Peek {
                session_id: 1,
                block_id,
                block_len: 256,
                symbol_size: 64,
                esi,
            };
            sent.push(datagram::build(&p, &[esi as u8; 64]));
        }
    }
    let got = push_through(&relay, &sink, &sent).await;
    let blocks: std::collections::BTreeSet<u32> = got
        .iter()
        .map(|d| datagram::peek(d).unwrap().block_id)
        .collect();
    assert_eq!(blocks, [0, 1, 2, 4, 6, 7].into_iter().collect());
    assert_eq!(got.len(), 36);
    assert_eq!(relay.stats().filtered, 12);

    relay.set_drop_filter(udp_relay::drop_span(2, 3));
    let more: Vec<Vec<u8>> = (0..10).map(payload).collect();
    let got = push_through_more(&relay, &sink, &more).await;
    assert_eq!(got, [&more[..2], &more[5..]].concat());
}

/// Like push_through for a relay that already counted earlier traffic.
async fn push_through_more(
    relay: &UdpRelay,
    sink: &UdpSocket,
    payloads: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let before = relay.stats();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for p in payloads {
        client.send_to(p, relay.local_addr()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let s = relay.stats();
        if s.received - before.received == payloads.len() as u64
            && got.len() as u64 == s.forwarded - before.forwarded
        {
            return got;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), sink.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
        } else {
            panic!("relay did not settle: {s}");
        }
    }
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let err = UdpRelay::start(RelayConfig::to("192.0.2.1:9".parse().unwrap()))
        .await
        .err()
        .expect("non-loopback target refused");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn impairment_can_change_mid_run() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let (sink, target) = sink().await;
    let relay = UdpRelay::start(RelayConfig::to(target)).await.unwrap();
    relay
        .set_impairment(ImpairConfig {
            loss: 1.0,
            ..ImpairConfig::seeded(1)
        })
        .unwrap();
    let lost: Vec<Vec<u8>> = (0..10).map(payload).collect();
    assert!(push_through(&relay, &sink, &lost).await.is_empty());
    relay.set_impairment(ImpairConfig::seeded(1)).unwrap();
    let kept: Vec<Vec<u8>> = (10..20).map(payload).collect();
    assert_eq!(push_through_more(&relay, &sink, &kept).await, kept);
    assert!(
        relay
            .set_impairment(ImpairConfig {
                loss: 2.0,
                ..ImpairConfig::default()
            })
            .is_err()
    );
}
