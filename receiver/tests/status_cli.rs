//! `airlock-receiver status`: the running daemon's summary (health, heartbeat, store,
//! frames, rejections by reason, open gaps, users) from its ops listener, and a clear error
//! when no daemon answers.

use crate::common;

use common::*;

#[test]
fn status_summarises_the_running_daemon_and_says_when_none_answers() {
    let setup = Setup::new(LinkKind::Udp);
    let (ok, out, err) = setup.cli(&["status"]);
    assert!(!ok, "status without a daemon succeeded: {out}");
    assert!(
        err.contains("does not answer on its ops listener") && err.contains("is it running?"),
        "{err}"
    );

    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let mut frames = Vec::new();
    for i in 1..=10u64 {
        frames.push(tx.next(provision(i)));
    }
    frames.push(tx.next(heartbeat(tx.session_id)));
    // Seq 5 never arrives (a gap); a copy of seq 6 with a flipped byte is refused.
    let mut forged = frames[5].sealed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x55;
    let delivered: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, f)| f.sealed.clone())
        .chain(std::iter::once(forged))
        .collect();
    tx.send_udp(setup.udp_port, &delivered);
    let m = rx.wait_for("frames and the refusal", |m| {
        m.accepted() == 10 && m.rejected_total() == 1
    });

    let (ok, out, err) = setup.cli(&["status"]);
    assert!(ok, "status failed: {err}\n{out}");
    assert!(out.contains("health:     ok"), "{out}");
    assert!(out.contains("heartbeat:  last "), "{out}");
    assert!(
        out.contains("store:      readable, 10 log entries"),
        "{out}"
    );
    assert!(out.contains("frames:     10 accepted"), "{out}");
    assert!(
        out.contains("open gaps:  1 ranges, 1 missing seqs"),
        "{out}"
    );
    assert!(out.contains("users:      9 provisioned"), "{out}");
    let reason = m
        .values
        .iter()
        .find(|(k, v)| k.starts_with("airlock_frames_rejected_total") && **v > 0.0)
        .map(|(k, _)| k.split('"').nth(1).unwrap().to_string())
        .unwrap();
    assert!(out.contains(&format!("rejected:   {reason} 1 ")), "{out}");
}

#[test]
fn status_page_shows_the_same_summary_and_the_refusals_of_the_last_hour() {
    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<_> = (1..=3u64).map(|i| tx.next(provision(i))).collect();
    let mut forged = frames[0].sealed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x55;
    let mut delivered: Vec<Vec<u8>> = frames.iter().map(|f| f.sealed.clone()).collect();
    delivered.push(forged);
    tx.send_udp(setup.udp_port, &delivered);
    let m = rx.wait_for("frames and the refusal", |m| {
        m.accepted() == 3 && m.rejected_total() == 1
    });
    let reason = m
        .values
        .iter()
        .find(|(k, v)| k.starts_with("airlock_frames_rejected_total") && **v > 0.0)
        .map(|(k, _)| k.split('"').nth(1).unwrap().to_string())
        .unwrap();

    let (status, body) = airlock_receiver::ops_client::get(rx.ops, "/status").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(
        body.contains("<th>Users provisioned</th><td>3</td>"),
        "{body}"
    );
    assert!(
        body.contains("<th>Frames accepted</th><td>3</td>"),
        "{body}"
    );
    assert!(body.contains("<svg "), "{body}");
    assert!(
        body.contains("ok: waiting for the first heartbeat"),
        "no heartbeat was sent: {body}"
    );
    assert!(
        body.contains(&format!("<th>{reason}</th><td>1</td>")),
        "{body}"
    );
    assert!(
        !body.contains("<script") && !body.contains("http"),
        "{body}"
    );
    if let Ok(dir) = std::env::var("AIRLOCK_STATUS_PAGE_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("status.html"), &body).unwrap();
    }
}

#[test]
fn status_page_shows_the_signing_key_schedule() {
    use airlock_protocol::keys::SignerKey;
    use airlock_protocol::message::{Body, KeyAnnounce, KeyRetire};
    use airlock_protocol::seal::Sealer;

    let setup = Setup::new(LinkKind::Udp);
    let rx = setup.start();
    let old_kid = setup.signer.kid().to_owned();
    let (status, body) = airlock_receiver::ops_client::get(rx.ops, "/status").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<h2>Frame signing keys</h2>"), "{body}");
    assert!(
        body.contains(&format!(
            "<tr><td>{old_kid}</td><td>{}</td>",
            setup.signer.public().fingerprint()
        )),
        "{body}"
    );
    assert!(
        body.contains("<td>the start of the log</td><td>until retired (no end date)</td><td class=\"ok\">trusted</td>"),
        "{body}"
    );

    // The sender announces a new key and retires its old one.
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let new_key = SignerKey::generate();
    let not_before = now() - 60;
    let announce = tx.next(Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: new_key.kid().to_owned(),
        public_key: new_key.public().key.to_bytes(),
        not_before,
    }));
    tx.send_udp(setup.udp_port, &[announce.sealed]);
    rx.wait_for("the announcement", |m| m.accepted() == 1);
    let new_sealer = Sealer::new(clone_signer(&new_key), setup.link.clone());
    let mut env = tx.envelope(1, provision(1), now());
    env.sender_kid = new_key.kid().to_owned();
    let by_new = new_sealer.seal(&env).unwrap();
    let retire = tx.next(Body::KeyRetire(KeyRetire::Signer {
        kid: old_kid.clone(),
    }));
    tx.send_udp(setup.udp_port, &[by_new.sealed, retire.sealed]);
    rx.wait_for("the new key's frame and the retirement", |m| {
        m.accepted() == 3
    });

    let (_, body) = airlock_receiver::ops_client::get(rx.ops, "/status").unwrap();
    assert!(
        body.contains(&format!(
            "<td>retired by KeyRetire seq 2 from signer {old_kid}, log entry 2</td><td class=\"bad\">not trusted</td>"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "<tr><td>{}</td><td>{}</td><td>announced by {old_kid} (log entry 0)</td><td>{}</td><td>until retired (no end date)</td><td class=\"ok\">trusted</td></tr>",
            new_key.kid(),
            new_key.public().fingerprint(),
            airlock_receiver::audit::timefmt::format_secs(not_before)
        )),
        "{body}"
    );
    if let Ok(dir) = std::env::var("AIRLOCK_STATUS_PAGE_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("status-keys.html"), &body).unwrap();
    }
}
