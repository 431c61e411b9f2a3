//! End-to-end throughput: UDP in, FEC decode, open (AEAD + Ed25519), log, apply, flush.
//! Ignored by default; run it with an optimised build:
//!
//! ```text
//! cargo test --release -p airlock-receiver --test integration -- throughput:: --ignored --nocapture
//! ```

use crate::common;

use common::*;

const FRAMES: usize = 60_000;
/// Frames in flight (sent, not yet accepted) at most: a diode sender paces itself to what
/// the receiver sustains; this keeps the loopback socket buffer from overflowing.
const WINDOW: u64 = 6_000;

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
        .chain
        .sealer
        .seal(&tx.envelope(1, sized_provision(&tx, 1), now()))
        .unwrap()
        .sealed
        .len();
    let frames: Vec<Vec<u8>> = (1..=FRAMES as u64)
        .map(|i| tx.next(sized_provision(&tx, i)).sealed)
        .collect();
    // Encode up front so the measured time is the receiver's, not the test sender's sealing.
    let (start, m) = send_windowed(&rx, setup.udp_port, &mut tx, &frames, WINDOW);
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
