//! The real `airlock-receiver run` reading a serial line (a pty pair): COBS-framed
//! datagrams in; line noise is counted and does not stop good frames.

use crate::common;

use airlock_protocol::message::local_subject;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio_serial::SerialPort;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_a_serial_pty_are_applied_and_noise_is_counted() {
    let (mut master, slave) = tokio_serial::SerialStream::pair().expect("pty pair");
    let device = slave.name().expect("pty has a name");
    let setup = Setup::new(LinkKind::Serial(device));
    let rx = tokio::task::block_in_place(|| setup.start());
    let mut tx = TestSender::new(&setup.signer, &setup.link);

    let frames: Vec<Vec<u8>> = (1..=20).map(|i| tx.next(provision(i)).sealed).collect();
    let mut bytes = tx.serial_bytes(&frames[..10]);
    // Line noise: one datagram of a block corrupted (its CRC fails, the block's repair
    // symbols still recover the frame) and random bytes, each delimited.
    let mut noisy = tx.serial_bytes(&[tx
        .chain
        .sealer
        .seal(&tx.envelope(500, provision(500), now()))
        .unwrap()
        .sealed]);
    let mid = noisy.len() / 2;
    noisy[mid] = noisy[mid].wrapping_add(1).max(1);
    bytes.extend_from_slice(&noisy);
    bytes.extend_from_slice(b"\x00\x17\x42noise noise\x05\x00");
    bytes.extend(tx.serial_bytes(&frames[10..]));
    master.write_all(&bytes).await.unwrap();
    master.flush().await.unwrap();

    let m = tokio::task::block_in_place(|| {
        rx.wait_for("21 frames over serial", |m| m.accepted() == 21)
    });
    let noise = m.get("airlock_link_errors_total{reason=\"crc\"}")
        + m.get("airlock_link_errors_total{reason=\"bad_header\"}")
        + m.get("airlock_link_errors_total{reason=\"cobs\"}");
    assert!(
        m.get("airlock_link_errors_total{reason=\"crc\"}") >= 1,
        "corruption counted:\n{}",
        m.raw
    );
    assert!(noise >= 2, "line noise counted:\n{}", m.raw);
    assert_eq!(m.rejected_total(), 0);
    let users = tokio::task::block_in_place(|| setup.users_json());
    assert_eq!(users.len(), 21);
    let sub = local_subject(ISSUER, "subject-20");
    assert!(users.iter().any(|u| u["local_sub"] == sub.as_str()));
    drop(slave);
}
