//! End-to-end throughput: UDP in, FEC decode, open (AEAD + Ed25519), log, apply, flush.
//! Ignored by default; run it with an optimised build:
//!
//! ```text
//! cargo test --release -p airlock-receiver --test throughput -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use airlock_protocol::message::Body;
use common::*;

const FRAMES: usize = 60_000;
/// Frames in flight (sent, not yet accepted) at most: a diode sender paces itself to what
/// the receiver sustains; this keeps the loopback socket buffer from overflowing.
const WINDOW: u64 = 6_000;

/// A Provision whose sealed frame is about 600 bytes.
fn sized_provision(tx: &TestSender, i: u64) -> Body {
    let mut body = provision(i);
    let size = |b: &Body| {
        tx.sealer
            .seal(&tx.envelope(1, b.clone(), now()))
            .unwrap()
            .sealed
            .len()
    };
    let base = size(&body);
    if let Body::Provision(p) = &mut body {
        p.claims
            .extra
            .insert("pad".into(), "x".repeat(600usize.saturating_sub(base + 12)));
    }
    body
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn frames_accepted_per_second() {
    let setup = Setup::with_extra(
        LinkKind::Udp,
        "[ingest]\nmax_batch = 2048\nqueue_frames = 16384\n",
    );
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let sample = tx
        .sealer
        .seal(&tx.envelope(1, sized_provision(&tx, 1), now()))
        .unwrap()
        .sealed
        .len();
    let frames: Vec<Vec<u8>> = (1..=FRAMES as u64)
        .map(|i| tx.next(sized_provision(&tx, i)).sealed)
        .collect();
    // Encode up front so the measured time is the receiver's, not the test sender's sealing.
    let chunks: Vec<Vec<Vec<Vec<u8>>>> = frames.chunks(500).map(|c| tx.datagrams(c)).collect();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    let start = Instant::now();
    for (chunk, n) in chunks
        .iter()
        .zip(frames.chunks(500).map(|c| c.len() as u64))
    {
        while sent.saturating_sub(rx.metrics().received()) > WINDOW {
            std::thread::sleep(Duration::from_millis(1));
        }
        for block in chunk {
            for d in block {
                sock.send_to(d, ("127.0.0.1", setup.udp_port)).unwrap();
            }
        }
        sent += n;
    }
    let m = rx.wait_for("all frames", |m| {
        m.accepted() + m.rejected_total() + m.duplicates() >= FRAMES as u64
    });
    let elapsed = start.elapsed();
    let accepted = m.accepted();
    let rate = accepted as f64 / elapsed.as_secs_f64();
    eprintln!(
        "throughput: {accepted} of {FRAMES} frames (~{sample} B sealed Provisions) accepted in {:.2} s = {rate:.0} frames/s; \
         {} store transactions (one flush each), blocks lost {}",
        elapsed.as_secs_f64(),
        m.get("airlock_ingest_batches_total"),
        m.get("airlock_blocks_lost_total"),
    );
    assert_eq!(accepted, FRAMES as u64, "every frame accepted:\n{}", m.raw);
}
