//! What a serial diode carries: bytes on the wire per frame kind, from the real sender
//! daemon writing to a pty pair with the default link settings (FEC 25 % / at least 2
//! repair symbols, 1200-byte datagrams, COBS framing, 2 repetitions), counted on the
//! far end and decoded there. A measurement, printed; it asserts only that every frame
//! arrived.
//!
//! ```text
//! cargo test -p airlock-sender --test integration -- serial_capacity:: --ignored --nocapture --test-threads 1
//! ```

use crate::common;

use std::time::{Duration, Instant};

use airlock_protocol::link::cobs::Deframer;
use airlock_sender::daemon::Daemon;
use airlock_sender::engine::unix_now;
use airlock_sender::link::transport::Transport;
use airlock_sender::submit::submit;
use common::*;
use tokio::io::AsyncReadExt;

/// 115,200 baud, 8N1: ten bits on the line per byte.
const LINE_BYTES_PER_SEC: f64 = 11_520.0;
/// Frames of one kind in a bulk run (a carousel or a batch of approvals).
const BULK: usize = 300;

/// The link as a deployment has it: the defaults, not the test fixture's fast settings.
fn with_default_link(fx: &Fixture) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text
        .replace("mtu = 1200\nlinger_ms = 2\n", "")
        .replace("repetitions = 1\n", "repetitions = 2\n")
        .replace(
            "repetition_spacing_ms = 100\n",
            "repetition_spacing_ms = 500\n",
        );
    std::fs::write(&fx.config_path, text).unwrap();
}

fn record(kind: &str, i: usize) -> String {
    let sub = format!("user-{i:06}");
    let claims = serde_json::json!({
        "email": format!("{sub}@example.com"), "email_verified": true,
        "name": "Jane Doe", "groups": ["airlock-users"]
    });
    let mut r = serde_json::json!({
        "kind": kind, "issuer": ISSUER, "subject": sub,
        "approver": "alice@example.com", "ticket_ref": "CHG-1",
    });
    match kind {
        "provision" => {
            r["claims"] = claims;
            r["valid_until"] = serde_json::json!(unix_now() + 86_400);
        }
        "login_ticket" => r["claims"] = claims,
        _ => r["reason"] = serde_json::json!("left the company"),
    }
    r.to_string()
}

/// Reads the line until it has been quiet for well over the repetition spacing; returns
/// the bytes read, each datagram fed to `rx`.
async fn read_until_quiet(
    line: &mut tokio_serial::SerialStream,
    deframer: &mut Deframer,
    rx: &mut MiniReceiver,
) -> u64 {
    let mut buf = vec![0u8; 65_536];
    let mut bytes = 0u64;
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Ok(Ok(got)) =
            tokio::time::timeout(Duration::from_millis(200), line.read(&mut buf)).await
        {
            if got == 0 {
                break;
            }
            bytes += got as u64;
            last = Instant::now();
            for datagram in deframer.push(&buf[..got]) {
                rx.push_datagram(&datagram.unwrap());
            }
        }
    }
    bytes
}

/// Bytes on the line for `n` records of `kind` submitted to a running daemon once its
/// start-up frames are out, and the frames of `kind` decoded from them; with the bytes of
/// the start-up frames.
async fn wire_bytes(kind: &str, n: usize) -> (u64, usize, u64) {
    let (ours, mut theirs) = tokio_serial::SerialStream::pair().unwrap();
    let fx = Fixture::udp(9);
    with_default_link(&fx);
    let mut rx = MiniReceiver::new(fx.trust());
    let mut deframer = Deframer::new(64 * 1024);
    let daemon = Daemon::start(&fx.config(), Some(Transport::Stream(Box::new(ours))))
        .await
        .unwrap();
    let start_up = read_until_quiet(&mut theirs, &mut deframer, &mut rx).await;
    let records: Vec<String> = (0..n).map(|i| record(kind, i)).collect();
    let report = submit(
        &fx.config(),
        &[("in.json".into(), records.join("\n").into_bytes())],
        unix_now(),
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let bytes = read_until_quiet(&mut theirs, &mut deframer, &mut rx).await;
    daemon.stop();
    daemon.wait().await.unwrap();
    let frames = rx.kinds().iter().filter(|k| **k == kind).count();
    (bytes, frames, start_up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; about 40 s"]
async fn bytes_on_the_wire_per_frame_kind() {
    println!(
        "serial capacity at 115,200 baud 8N1 ({LINE_BYTES_PER_SEC} B/s), default FEC and 2 repetitions"
    );
    let mut bulk_provision = 0.0;
    for kind in ["provision", "login_ticket", "revoke"] {
        let (single, got, start_up) = wire_bytes(kind, 1).await;
        assert_eq!(got, 1, "the {kind} frame arrived");
        let (many, got, _) = wire_bytes(kind, BULK).await;
        assert_eq!(got, BULK, "every {kind} frame arrived");
        let each = many as f64 / BULK as f64;
        if kind == "provision" {
            bulk_provision = each;
        }
        println!(
            "{kind}: alone {single} B on the wire ({:.2} s of line, {:.1}/s); in bulk {each:.0} B each ({:.1}/s); start-up frames {start_up} B",
            single as f64 / LINE_BYTES_PER_SEC,
            LINE_BYTES_PER_SEC / single as f64,
            LINE_BYTES_PER_SEC / each,
        );
    }
    for users in [10_000u64, 100_000] {
        let secs = users as f64 * bulk_provision / LINE_BYTES_PER_SEC;
        println!(
            "carousel of {users} users: {:.0} s = {:.1} min per cycle",
            secs,
            secs / 60.0
        );
    }
}
