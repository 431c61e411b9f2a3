//! The audit tools on a log written by the real daemon (`airlock-receiver run`, fed over
//! loopback UDP): the running daemon's store is refused with copy instructions; a copy
//! taken after a clean stop verifies, replays without differences, and shows a user.

use crate::audit_support;
use crate::common;

use airlock_protocol::message::local_subject;
use audit_support::{audit, copy_dir, path};
use common::*;

const FRAMES: u64 = 600;

#[test]
fn daemon_written_log_audits_clean() {
    let setup = Setup::new(LinkKind::Udp);
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let mut frames: Vec<Vec<u8>> = (1..FRAMES)
        .map(|i| tx.next(provision(i % 150)).sealed)
        .collect();
    frames.push(tx.next(heartbeat(tx.session_id)).sealed);
    for chunk in frames.chunks(50) {
        tx.send_udp(setup.udp_port, chunk);
    }
    rx.wait_for("every frame logged", |m| {
        m.get("airlock_log_entries") == FRAMES
    });

    // While the daemon runs, its store is locked: the auditor is told to copy it.
    let config = path(&setup.config).to_owned();
    let out = audit(&["verify", "--config", &config]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("copy the data directory"), "{err}");

    rx.stop();
    let copy = setup.path().join("audit-copy");
    copy_dir(&setup.path().join("data"), &copy);

    // --config supplies the signer keys (link keys are not read); --data-dir the copy.
    let out = audit(&[
        "verify",
        "--config",
        &config,
        "--data-dir",
        path(&copy),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{r:#}");
    assert_eq!(r["entries"].as_u64(), Some(FRAMES));
    assert_eq!(r["missing_seqs"].as_u64(), Some(0));

    let out = audit(&["replay", "--config", &config, "--data-dir", path(&copy)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 difference(s)"), "{text}");

    let sub = local_subject(ISSUER, "subject-7");
    let out = audit(&[
        "show",
        "--config",
        &config,
        "--data-dir",
        path(&copy),
        "--user",
        &sub,
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{r:#}");
    // subject-7 is provisioned by frames 7, 157, 307, 457.
    assert_eq!(r["frames"].as_array().map(Vec::len), Some(4), "{r:#}");
}
