//! The daemon sends over real UDP on 127.0.0.1; the protocol crate's decoder and `open`
//! read it back.

use crate::common;

use std::time::Duration;

use airlock_protocol::message::Body;
use airlock_sender::daemon::Daemon;
use airlock_sender::engine::unix_now;
use airlock_sender::outbox::Outbox;
use airlock_sender::spool::{self, Command};
use airlock_sender::submit::submit;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

async fn receive_until(
    sock: &UdpSocket,
    rx: &mut MiniReceiver,
    mut done: impl FnMut(&MiniReceiver) -> bool,
) {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(rx) {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .expect("timed out waiting for frames")
            .unwrap();
        rx.push_datagram(&buf[..n]);
    }
}

fn submit_text(fx: &Fixture, text: &str) {
    let report = submit(
        &fx.config(),
        &[("t.json".into(), text.as_bytes().to_vec())],
        unix_now(),
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_over_udp_decode_open_and_chain() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let fx = Fixture::udp(port);
    // Repeat every frame twice: the receiver must see each seq once and the rest as replays.
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("repetitions = 1", "repetitions = 2");
    std::fs::write(&fx.config_path, text).unwrap();
    let records: Vec<String> = (0..20)
        .map(|i| provision_record(&format!("user-{i}")))
        .collect();
    submit_text(&fx, &records.join("\n"));
    let revoke = format!(
        r#"{{"kind":"revoke","issuer":"{ISSUER}","subject":"user-3","approver":"a","ticket_ref":"t"}}"#
    );
    submit_text(&fx, &revoke);
    submit_text(&fx, &sign_token(&good_claims("jit")));

    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    let mut rx = MiniReceiver::new(fx.trust());
    // 1 heartbeat + 20 provisions + 1 revoke + 1 ticket, each also repeated once.
    receive_until(&sock, &mut rx, |r| {
        r.envelopes.len() >= 23 && r.duplicates >= 23
    })
    .await;

    let kinds = rx.kinds();
    assert_eq!(kinds.iter().filter(|k| **k == "provision").count(), 20);
    assert_eq!(kinds.iter().filter(|k| **k == "revoke").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "login_ticket").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "heartbeat").count(), 1);
    let mut seqs: Vec<u64> = rx.envelopes.iter().map(|e| e.seq).collect();
    seqs.sort();
    // One chain from a clock-derived start, with no hole.
    let first = seqs[0];
    assert_eq!(seqs, (first..first + 23).collect::<Vec<_>>());
    rx.assert_chain();
    let Body::Heartbeat(hb) = &rx
        .envelopes
        .iter()
        .find(|e| e.body.kind() == "heartbeat")
        .unwrap()
        .body
    else {
        panic!()
    };
    assert_eq!(hb.session_id, daemon.session_id);

    // Metrics endpoint.
    let mut conn = tokio::net::TcpStream::connect(daemon.metrics_addr.unwrap())
        .await
        .unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(
        page.contains("airlock_sender_frames_sealed_total 23"),
        "{page}"
    );

    daemon.stop();
    daemon.wait().await.unwrap();
    // The outbound log holds exactly what went out, chained.
    let ob = Outbox::open(&fx.config().db_dir()).unwrap();
    let logged: Vec<_> = ob.log_range(1, u64::MAX).map(|e| e.unwrap()).collect();
    assert_eq!(logged.len(), 23);
    for (entry, (env, hash)) in logged.iter().zip({
        let mut v: Vec<_> = rx.envelopes.iter().zip(rx.hashes.iter()).collect();
        v.sort_by_key(|(e, _)| e.seq);
        v
    }) {
        assert_eq!(entry.seq, env.seq);
        assert_eq!(&entry.hash, hash);
        assert_eq!(entry.kind, env.body.kind());
    }
    assert_eq!(ob.pending_len(), 0);
    assert_eq!(ob.sent_through().unwrap(), first + 22);
    // user-3 was revoked: the carousel state holds the other 19.
    assert_eq!(ob.state_len(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_command_re_encrypts_logged_frames() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fx = Fixture::udp(sock.local_addr().unwrap().port());
    submit_text(
        &fx,
        &[provision_record("a"), provision_record("b")].join("\n"),
    );
    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    let mut rx = MiniReceiver::new(fx.trust());
    receive_until(&sock, &mut rx, |r| r.envelopes.len() >= 3).await;
    assert_eq!(rx.duplicates, 0);
    let first = rx.envelopes.iter().map(|e| e.seq).min().unwrap();

    spool::write_command(
        &fx.config().spool_dir(),
        &Command::Resend {
            from: first + 1,
            to: first + 2,
        },
    )
    .unwrap();
    receive_until(&sock, &mut rx, |r| r.duplicates >= 2).await;
    assert_eq!(rx.envelopes.len(), 3, "a resend never makes a new seq");
    daemon.stop();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_submitted_while_running_are_sent() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fx = Fixture::udp(sock.local_addr().unwrap().port());
    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    let mut rx = MiniReceiver::new(fx.trust());
    receive_until(&sock, &mut rx, |r| !r.envelopes.is_empty()).await;
    submit_text(&fx, &provision_record("late"));
    receive_until(&sock, &mut rx, |r| r.envelopes.len() >= 2).await;
    assert!(matches!(&rx.envelopes[1].body, Body::Provision(p) if p.subject == "late"));
    daemon.stop();
    daemon.wait().await.unwrap();
    assert!(spool::list(&fx.config().spool_dir()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carousel_re_seals_valid_provisions_and_heartbeats_repeat() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fx = Fixture::udp(sock.local_addr().unwrap().port());
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("carousel_secs = 0", "carousel_secs = 10")
        .replace("heartbeat_secs = 3600", "heartbeat_secs = 1");
    std::fs::write(&fx.config_path, text).unwrap();
    submit_text(
        &fx,
        &[
            provision_record("keep-1"),
            provision_record("keep-2"),
            provision_record("gone"),
        ]
        .join("\n"),
    );
    let revoke = format!(
        r#"{{"kind":"revoke","issuer":"{ISSUER}","subject":"gone","approver":"a","ticket_ref":"t"}}"#
    );
    submit_text(&fx, &revoke);
    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    let mut rx = MiniReceiver::new(fx.trust());
    let provisions = |r: &MiniReceiver| {
        r.envelopes
            .iter()
            .filter(|e| e.body.kind() == "provision")
            .count()
    };
    // 3 provisions, then after 10 s the carousel's 2 (the revoked identity is not re-sent).
    receive_until(&sock, &mut rx, |r| provisions(r) >= 5).await;
    let first = rx.envelopes.iter().map(|e| e.seq).min().unwrap();
    let carousel: Vec<&str> = rx
        .envelopes
        .iter()
        .filter_map(|e| match &e.body {
            Body::Provision(p) if e.seq > first + 4 => Some(p.subject.as_str()),
            _ => None,
        })
        .collect();
    let mut sorted = carousel.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["keep-1", "keep-2"]);
    assert!(
        rx.kinds().iter().filter(|k| **k == "heartbeat").count() >= 5,
        "a heartbeat every second"
    );
    rx.assert_chain();
    daemon.stop();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_on_a_slow_link_is_prompt_and_the_restart_sends_the_rest() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fx = Fixture::udp(sock.local_addr().unwrap().port());
    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("pacing_bytes_per_sec = 0", "pacing_bytes_per_sec = 20000");
    std::fs::write(&fx.config_path, text).unwrap();
    let records: Vec<String> = (0..200)
        .map(|i| provision_record(&format!("slow-{i}")))
        .collect();
    submit_text(&fx, &records.join("\n"));
    let mut rx = MiniReceiver::new(fx.trust());

    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    receive_until(&sock, &mut rx, |r| r.envelopes.len() >= 5).await;
    daemon.stop();
    daemon.wait().await.unwrap();
    // 200 frames at 20 kB/s take ~10 s; the stop did not wait for them: they are durable
    // and above the "sent through" mark.
    {
        let ob = Outbox::open(&fx.config().db_dir()).unwrap();
        let last = ob.chain().unwrap().next_seq - 1;
        let sent = ob.sent_through().unwrap();
        assert!(sent < last, "sent through {sent}, last seq {last}");
        assert_eq!(ob.pending_len(), 0);
    }

    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    receive_until(&sock, &mut rx, |r| {
        r.envelopes
            .iter()
            .filter(|e| e.body.kind() == "provision")
            .count()
            >= 200
    })
    .await;
    rx.assert_chain();
    // Wait for the last first-session frame (the heartbeat, the 201st seq) too.
    let first = rx.envelopes.iter().map(|e| e.seq).min().unwrap();
    receive_until(&sock, &mut rx, |r| {
        r.envelopes.iter().any(|e| e.seq == first + 200)
    })
    .await;
    daemon.stop();
    daemon.wait().await.unwrap();
    // Frames re-sent at start-up count as first transmissions: the mark moved past them.
    let ob = Outbox::open(&fx.config().db_dir()).unwrap();
    assert!(
        ob.sent_through().unwrap() >= 201,
        "{}",
        ob.sent_through().unwrap()
    );
}
