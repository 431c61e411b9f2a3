//! The real `airlock-receiver run` fed over loopback UDP: provisioned users appear; every
//! kind of bad input is refused under its own reason and changes nothing.

use crate::common;

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::message::local_subject;
use airlock_protocol::seal::Sealer;
use common::*;

#[test]
fn provisioned_users_appear_and_bad_frames_change_nothing() {
    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);

    // Five users, one heartbeat.
    let mut good: Vec<Vec<u8>> = (1..=5).map(|i| tx.next(provision(i)).sealed).collect();
    let hb = tx.next(heartbeat(tx.session_id)).sealed;
    good.push(hb);
    tx.send_udp(setup.udp_port, &good);
    let m = rx.wait_for("6 accepted frames", |m| m.accepted() == 6);
    assert_eq!(m.get("airlock_log_entries"), 6);
    assert_eq!(m.get("airlock_heartbeats_total"), 1);

    let users = setup.users_json();
    assert_eq!(users.len(), 5);
    let sub3 = local_subject(ISSUER, "subject-3");
    let u3 = users
        .iter()
        .find(|u| u["local_sub"] == sub3.as_str())
        .expect("user 3 present");
    assert_eq!(u3["claims"]["email"], "user3@example.org");
    assert_eq!(u3["provisioned_seq"], 3);
    assert_eq!(u3["revoked"], false);

    // Each bad frame travels in its own block, so the link itself is healthy.
    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    // Tampered: one bit of the ciphertext flipped.
    let mut tampered = tx
        .chain
        .sealer
        .seal(&tx.envelope(100, provision(100), now()))
        .unwrap()
        .sealed;
    let at = tampered.len() - 20;
    tampered[at] ^= 0x01;
    bad.push(("aead_failure", tampered));
    // A different frame reusing an already accepted seq: a seq conflict, not a duplicate.
    bad.push((
        "seq_conflict",
        tx.chain
            .sealer
            .seal(&tx.envelope(2, provision(200), now()))
            .unwrap()
            .sealed,
    ));
    // Stale: issued two hours ago (max age one hour).
    bad.push((
        "stale",
        tx.chain
            .sealer
            .seal(&tx.envelope(101, provision(101), now() - 7200))
            .unwrap()
            .sealed,
    ));
    // From the future, beyond the skew.
    bad.push((
        "from_future",
        tx.chain
            .sealer
            .seal(&tx.envelope(102, provision(102), now() + 3600))
            .unwrap()
            .sealed,
    ));
    // Wrong keys: an unknown link kid; the right kid with another secret; an untrusted signer.
    let other_link = Sealer::new(clone_signer(&setup.signer), LinkKey::generate(99));
    bad.push((
        "unknown_link_key",
        other_link
            .seal(&tx.envelope(103, provision(103), now()))
            .unwrap()
            .sealed,
    ));
    let same_kid = Sealer::new(clone_signer(&setup.signer), LinkKey::generate(7));
    bad.push((
        "aead_failure",
        same_kid
            .seal(&tx.envelope(104, provision(104), now()))
            .unwrap()
            .sealed,
    ));
    let rogue = SignerKey::generate();
    let rogue_sealer = Sealer::new(clone_signer(&rogue), setup.link.clone());
    let mut rogue_env = tx.envelope(105, provision(105), now());
    rogue_env.sender_kid = rogue.kid().to_owned();
    bad.push((
        "untrusted_signer",
        rogue_sealer.seal(&rogue_env).unwrap().sealed,
    ));
    // Garbage inside a well-formed block.
    bad.push(("bad_cbor", b"this is not a COSE structure at all".to_vec()));

    let before = rx.metrics();
    for (_, frame) in &bad {
        tx.send_udp(setup.udp_port, std::slice::from_ref(frame));
    }
    // Garbage datagrams: random bytes and a valid datagram with a flipped byte (CRC).
    let mut corrupt = tx.datagrams(&[tx
        .chain
        .sealer
        .seal(&tx.envelope(106, provision(106), now()))
        .unwrap()
        .sealed]);
    let d0 = &mut corrupt[0][0];
    let mid = d0.len() / 2;
    d0[mid] ^= 0xff;
    send_raw(
        setup.udp_port,
        &[
            vec![0u8; 3],
            b"garbage garbage garbage garbage garbage".to_vec(),
            corrupt[0][0].clone(),
        ],
    );
    // An exact copy of an accepted frame: a duplicate, not a rejection.
    tx.send_udp(setup.udp_port, &[good[0].clone()]);

    let m = rx.wait_for("all bad frames counted", |m| {
        m.received() == before.received() + bad.len() as u64 + 1
    });
    for reason in [
        "aead_failure",
        "seq_conflict",
        "stale",
        "from_future",
        "unknown_link_key",
        "untrusted_signer",
        "bad_cbor",
    ] {
        let want = bad.iter().filter(|(r, _)| *r == reason).count() as u64;
        assert_eq!(
            m.rejected(reason) - before.rejected(reason),
            want,
            "reason {reason}:\n{}",
            m.raw
        );
    }
    assert_eq!(m.duplicates(), before.duplicates() + 1);
    let link_errors: u64 = ["crc", "bad_header", "short_datagram", "bad_magic"]
        .iter()
        .map(|r| m.get(&format!("airlock_link_errors_total{{reason=\"{r}\"}}")))
        .sum();
    assert!(
        link_errors >= 3,
        "garbage datagrams counted as link errors:\n{}",
        m.raw
    );
    // Nothing changed.
    assert_eq!(m.accepted(), 6);
    assert_eq!(m.get("airlock_log_entries"), 6);
    assert_eq!(setup.users_json(), users);
}

#[test]
fn revoke_and_out_of_order_provision() {
    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let p1 = tx.next(provision(1)).sealed;
    let revoke = tx
        .next(airlock_protocol::message::Body::Revoke(
            airlock_protocol::message::Revoke {
                issuer: ISSUER.into(),
                subject: "subject-1".into(),
                approval: approval(),
                reason: "left".into(),
            },
        ))
        .sealed;
    // The Revoke arrives first; the older Provision must not bring the user back.
    tx.send_udp(setup.udp_port, &[revoke]);
    rx.wait_for("revoke", |m| m.accepted() == 1);
    tx.send_udp(setup.udp_port, &[p1]);
    let m = rx.wait_for("provision", |m| m.accepted() == 2);
    assert_eq!(m.get("airlock_frames_no_effect_total"), 1);
    let users = setup.users_json();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["revoked"], true);
    // gaps: none (seqs 1 and 2 both arrived).
    assert_eq!(
        setup.gaps_json()["signers"][tx.chain.sealer.signer_kid()]["missing"],
        serde_json::json!([])
    );
}

#[test]
fn healthz_turns_unhealthy_when_heartbeats_stop() {
    let setup = Setup::with_extra(LinkKind::Udp, "[heartbeat]\nalarm_after_secs = 3\n");
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let health = || airlock_receiver::ops_client::get(rx.ops, "/healthz").unwrap();
    // Silence since start-up eventually trips the alarm (a wait, not a timing assertion).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while health().0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "never turned unhealthy"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(health().1.contains("no heartbeat"));
    // A heartbeat makes it healthy again, and the metrics show it.
    let hb = tx.next(heartbeat(tx.session_id)).sealed;
    tx.send_udp(setup.udp_port, &[hb]);
    // The scrape reads the heartbeat time before the counters, so one scrape may fall
    // between the two writes; wait for one that shows both.
    let m = rx.wait_for("heartbeat and its age", |m| {
        m.get("airlock_heartbeats_total") == 1 && m.raw.contains("airlock_heartbeat_age_seconds")
    });
    assert_eq!(m.get("airlock_heartbeats_total"), 1);
    // Keep the heartbeats coming (a stalled machine must not make this flaky).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while health().0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never turned healthy");
        let hb = tx.next(heartbeat(tx.session_id)).sealed;
        tx.send_udp(setup.udp_port, &[hb]);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `link.udp.allowed_sources`: datagrams from anywhere else are counted and dropped before
/// the decoder; the allowed source's frames go through.
#[test]
fn datagrams_from_other_sources_are_dropped_before_decoding() {
    let setup = Setup::with_udp_options("allowed_sources = [\"127.0.0.2\"]");
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let first = tx.next(provision(1)).sealed;
    tx.send_udp_from("127.0.0.1", setup.udp_port, std::slice::from_ref(&first));
    let refused = |m: &Metrics| {
        m.raw
            .lines()
            .find_map(|l| {
                l.strip_prefix("airlock_link_errors_total{reason=\"source_not_allowed\"} ")
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // One frame is one block: its source and repair datagrams are all refused.
    let m = rx.wait_for("refused source", |m| refused(m) >= 2);
    assert_eq!(m.received(), 0, "nothing reached the ingest");
    let second = tx.next(provision(2)).sealed;
    tx.send_udp_from("127.0.0.2", setup.udp_port, &[first, second]);
    let after = rx.wait_for("both frames", |m| m.accepted() == 2);
    assert_eq!(
        refused(&after),
        refused(&m),
        "the allowed source was not refused"
    );
    assert_eq!(setup.users_json().len(), 2);
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A forged datagram: valid header and CRC, attacker-chosen symbol.
fn forged_datagram(session_id: u64, block_id: u32, block_len: u32, symbol: &[u8]) -> Vec<u8> {
    airlock_protocol::link::DatagramHeader {
        session_id,
        block_id,
        block_len,
        symbol_size: u16::try_from(symbol.len()).unwrap(),
        payload_id: [0, 0, 0, 0],
    }
    .write(symbol)
}

/// The fault campaign's two link findings against the real receiver. (1) One forged,
/// well-formed datagram per block id of the real session, ahead of the real blocks: before,
/// each id was settled by the forgery and the real blocks were thrown away, silencing the
/// session; now every real frame arrives and the forgeries show in a metric and on
/// /healthz. (2) A flood of forged datagrams announcing 256 KiB blocks in tiny symbols, over
/// many sessions and ids: memory stays bounded (an RSS bound, not a timing).
#[test]
fn forged_datagrams_neither_silence_a_session_nor_cost_memory_beyond_the_bound() {
    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let pid = rx.child.id();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let before = rss_kib(pid);

    // Per id, a block of one 4-byte junk frame: it decodes, and its frame fails the AEAD.
    let poison: Vec<Vec<u8>> = (0..64u32)
        .map(|id| {
            let mut junk = vec![0u8; 64];
            junk[..4].copy_from_slice(&[0, 0, 0, 4]);
            junk[4..8].copy_from_slice(&id.to_be_bytes());
            forged_datagram(tx.session_id, id, 8, &junk)
        })
        .collect();
    send_raw(setup.udp_port, &poison);
    rx.wait_for("forged blocks", |m| {
        m.get("airlock_blocks_unauthenticated_total") >= 32
    });

    let mut flood = Vec::new();
    for i in 0..256u32 {
        for symbol_size in [8usize, 64] {
            flood.push(forged_datagram(
                u64::from(1000 + i % 3),
                i,
                256 * 1024,
                &vec![0u8; symbol_size],
            ));
        }
    }
    for chunk in flood.chunks(64) {
        send_raw(setup.udp_port, chunk);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let m = rx.wait_for("the flood", |m| {
        m.get("airlock_link_symbol_size_refused_total") >= 200
    });
    let after = rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    println!(
        "receiver RSS before {before} KiB, after the flood {after} KiB (+{grown_mib} MiB); pending bytes {}",
        m.get("airlock_link_pending_bytes")
    );
    assert!(
        m.get("airlock_link_pending_bytes") <= 32 * 1024 * 1024,
        "{}",
        m.raw
    );
    assert!(
        grown_mib < 96,
        "RSS grew by {grown_mib} MiB under the flood"
    );

    // The real session: every frame arrives, although its first block ids were forged.
    for i in 1..=20 {
        let f = tx.next(provision(i)).sealed;
        tx.send_udp(setup.udp_port, &[f]);
    }
    rx.wait_for("all 20 real frames", |m| m.accepted() == 20);
    let (_, health) = airlock_receiver::ops_client::get(rx.ops, "/healthz").unwrap();
    assert!(health.contains("forged FEC blocks"), "{health}");
}

/// A sender that reuses seqs (an old outbox backup restored, a clock set back) under the same
/// key. Its new frames
/// are refused under their own reason (`seq_conflict`, not a duplicate or a plain replay),
/// and /healthz turns unhealthy naming the cause, so the lost approvals cannot go unnoticed.
#[test]
fn a_sender_restarting_its_seqs_is_refused_loudly_not_silently() {
    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    for i in 1..=3 {
        let f = tx.next(provision(i)).sealed;
        tx.send_udp(setup.udp_port, &[f]);
    }
    rx.wait_for("the first run", |m| m.accepted() == 3);
    // An old outbox backup restored (or a clock set back): seqs 1, 2, 3 again under the
    // same key, with other content.
    let mut lost = TestSender::new(&setup.signer, &setup.link);
    for i in 10..=12 {
        let f = lost.next(provision(i)).sealed;
        lost.send_udp(setup.udp_port, &[f]);
    }
    let m = rx.wait_for("conflicts", |m| m.rejected("seq_conflict") == 3);
    assert_eq!(m.rejected("replay"), 0, "{}", m.raw);
    let (status, health) = airlock_receiver::ops_client::get(rx.ops, "/healthz").unwrap();
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("old backup of its outbox"), "{health}");
}
