//! The daemon sends over a pseudo-terminal pair with COBS framing; the other end deframes,
//! decodes and opens with the protocol crate.

use crate::common;

use std::time::Duration;

use airlock_protocol::link::cobs::Deframer;
use airlock_sender::daemon::Daemon;
use airlock_sender::engine::unix_now;
use airlock_sender::link::transport::Transport;
use airlock_sender::submit::submit;
use common::*;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cross_a_serial_pair_cobs_framed() {
    let (ours, mut theirs) = tokio_serial::SerialStream::pair().expect("pty pair");
    let fx = Fixture::udp(9);
    let records: Vec<String> = (0..5)
        .map(|i| provision_record(&format!("s-{i}")))
        .collect();
    let report = submit(
        &fx.config(),
        &[("s.json".into(), records.join("\n").into_bytes())],
        unix_now(),
    )
    .unwrap();
    assert!(report.errors.is_empty());

    let daemon = Daemon::start(&fx.config(), Some(Transport::Stream(Box::new(ours))))
        .await
        .unwrap();
    let mut rx = MiniReceiver::new(fx.trust());
    let mut deframer = Deframer::new(70_000);
    let mut buf = vec![0u8; 4096];
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rx.envelopes.len() < 6 {
        let n = tokio::time::timeout_at(deadline, theirs.read(&mut buf))
            .await
            .expect("timed out")
            .unwrap();
        read += n;
        for datagram in deframer.push(&buf[..n]) {
            rx.push_datagram(&datagram.expect("COBS frame"));
        }
    }
    assert_eq!(rx.kinds().iter().filter(|k| **k == "provision").count(), 5);
    rx.assert_chain();
    // The byte counter counts wire bytes (COBS and delimiters included), the same bytes
    // pacing counts: once the line is quiet, it equals what came out of the pty.
    let counted = || {
        daemon
            .metrics
            .bytes_sent_total
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    while counted() != read as u64 {
        match tokio::time::timeout(Duration::from_millis(500), theirs.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    assert_eq!(counted(), read as u64);
    daemon.stop();
    daemon.wait().await.unwrap();
}
