//! `trust list|add-signer|add-link-key|remove` and config errors, through the real binary.

use crate::common;

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::message::{Body, KeyRetire};
use common::*;

#[test]
fn trust_commands_install_list_and_remove_keys_with_fingerprints() {
    let setup = Setup::new(LinkKind::Udp);
    let (ok, out, err) = setup.cli(&["trust", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains(setup.signer.kid()), "{out}");
    assert!(out.contains(&setup.signer.public().fingerprint()), "{out}");
    assert!(out.contains(&setup.link.fingerprint()), "{out}");

    let new_signer = SignerKey::generate();
    let pubfile = setup.path().join("new.pub");
    std::fs::write(&pubfile, new_signer.public().to_spki_pem().unwrap()).unwrap();
    let (ok, out, err) = setup.cli(&["trust", "add-signer", pubfile.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains(&new_signer.public().fingerprint()), "{out}");
    // Installing it twice is refused.
    let (ok, _, err) = setup.cli(&["trust", "add-signer", pubfile.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("already trusted"), "{err}");

    let link2 = LinkKey::generate(8);
    let linkfile = setup.path().join("link8.key");
    std::fs::write(&linkfile, link2.to_text().as_bytes()).unwrap();
    let (ok, _, err) = setup.cli(&["trust", "add-link-key", linkfile.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(
        out.contains(new_signer.kid()) && out.contains(&link2.fingerprint()),
        "{out}"
    );

    let (ok, _, err) = setup.cli(&["trust", "remove", "--signer", new_signer.kid()]);
    assert!(ok, "{err}");
    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(!out.contains(new_signer.kid()), "{out}");
    // A key from the config file is not removed behind the operator's back.
    let (ok, _, err) = setup.cli(&["trust", "remove", "--signer", setup.signer.kid()]);
    assert!(!ok);
    assert!(err.contains("receiver.toml"), "{err}");
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let setup = Setup::with_extra(LinkKind::Udp, "[ingest]\nmax_batches = 5\n");
    let (ok, _, err) = setup.cli(&["check-config"]);
    assert!(!ok);
    assert!(
        err.contains("receiver.toml") && err.contains("max_batches"),
        "{err}"
    );
}

/// A small-order point (here the identity) is refused as a signer key file: anyone could
/// sign for it without a private key.
#[test]
fn a_weak_signer_key_file_is_refused() {
    let setup = Setup::new(LinkKind::Udp);
    // SPKI of the Ed25519 identity point (0x01 then 31 zero bytes).
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n";
    let file = setup.path().join("weak.pub");
    std::fs::write(&file, pem).unwrap();
    let (ok, _, err) = setup.cli(&["trust", "add-signer", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("small-order (weak) point"), "{err}");
}

/// Sends the KeyRetire `body` over UDP to a running daemon, then a frame after it, which is
/// refused as `refused_as`; stops the daemon so that the CLI can read the store.
fn retire_over_the_link(setup: &Setup, tx: &mut TestSender, body: Body, refused_as: &str) {
    let mut rx = setup.start();
    let retire = tx.next(body);
    let after = tx.next(provision(1));
    tx.send_udp(setup.udp_port, &[retire.sealed]);
    rx.wait_for("the retirement", |m| m.accepted() == 1);
    tx.send_udp(setup.udp_port, &[after.sealed]);
    rx.wait_for("the refusal of a frame after it", |m| {
        m.rejected(refused_as) == 1
    });
    rx.stop();
}

/// A KeyRetire bans a signer kid until the operator reinstates it after a ceremony: a plain
/// install is refused and names the retirement, `--reinstate` lifts it (frames are accepted
/// again), `trust list` shows the retirement and why before and after, and a later KeyRetire
/// bans the kid again.
#[test]
fn a_retired_signer_is_reinstated_only_with_reinstate_and_trust_list_says_why() {
    let setup = Setup::new(LinkKind::Udp);
    let kid = setup.signer.kid().to_owned();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    retire_over_the_link(
        &setup,
        &mut tx,
        Body::KeyRetire(KeyRetire::Signer { kid: kid.clone() }),
        "untrusted_signer",
    );
    let why = format!("KeyRetire seq 1 from signer {kid}, log entry 0");

    let (ok, out, err) = setup.cli(&["trust", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("signer.pub  [retired over the link by {why}]")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "signer kids retired over the link:\n  kid {kid}  by {why}\n"
        )),
        "{out}"
    );

    let file = setup.path().join("signer.pub");
    let file = file.to_str().unwrap();
    let (ok, _, err) = setup.cli(&["trust", "add-signer", file]);
    assert!(!ok, "a plain install must not lift a retirement");
    assert!(
        err.contains(&format!(
            "signer kid {kid} was retired over the link ({why})"
        )) && err.contains("--reinstate"),
        "{err}"
    );
    let (ok, out, err) = setup.cli(&["trust", "add-signer", file, "--reinstate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("lifts the retirement by {why}")),
        "{out}"
    );
    assert!(
        setup
            .path()
            .join(format!("trust.d/signer-{kid}.reinstated"))
            .exists()
    );
    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(
        out.contains("signer.pub  [retirement lifted by the operator]"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  kid {kid}  by {why}  [lifted: reinstated by the operator]"
        )),
        "{out}"
    );

    // Trusted again after a restart; a later KeyRetire bans it again.
    let rx = setup.start();
    let again = tx.next(provision(2));
    tx.send_udp(setup.udp_port, &[again.sealed]);
    rx.wait_for("a frame of the reinstated signer", |m| m.accepted() == 1);
    let retire = tx.next(Body::KeyRetire(KeyRetire::Signer { kid: kid.clone() }));
    tx.send_udp(setup.udp_port, &[retire.sealed]);
    rx.wait_for("the second retirement", |m| m.accepted() == 2);
    let after = tx.next(provision(3));
    tx.send_udp(setup.udp_port, &[after.sealed]);
    let m = rx.wait_for("a refusal after the second retirement", |m| {
        m.rejected("untrusted_signer") == 1
    });
    assert_eq!(m.accepted(), 2);
}

/// The same for a link key: `trust add-link-key --reinstate` lifts a KeyRetire of a link kid
/// (before, only a hand-written marker could).
#[test]
fn a_retired_link_key_is_reinstated_only_with_reinstate_and_trust_list_says_why() {
    let setup = Setup::new(LinkKind::Udp);
    let kid = setup.signer.kid().to_owned();
    let link_kid = setup.link.kid;
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    retire_over_the_link(
        &setup,
        &mut tx,
        Body::KeyRetire(KeyRetire::Link { kid: link_kid }),
        "unknown_link_key",
    );
    let why = format!("KeyRetire seq 1 from signer {kid}, log entry 0");

    let (ok, out, err) = setup.cli(&["trust", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("link.key  [retired over the link by {why}]")),
        "{out}"
    );
    assert!(
        out.contains(&format!("link key {link_kid} retired by {why}\n")),
        "{out}"
    );

    let file = setup.path().join("link.key");
    let file = file.to_str().unwrap();
    let (ok, _, err) = setup.cli(&["trust", "add-link-key", file]);
    assert!(!ok, "a plain install must not lift a retirement");
    assert!(
        err.contains(&format!(
            "link key kid {link_kid} was retired over the link ({why})"
        )) && err.contains("--reinstate"),
        "{err}"
    );
    let (ok, out, err) = setup.cli(&["trust", "add-link-key", file, "--reinstate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("lifts the retirement by {why}")),
        "{out}"
    );
    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(
        out.contains("link.key  [retirement lifted by the operator]"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "link key {link_kid} retired by {why}  [lifted: reinstated by the operator]"
        )),
        "{out}"
    );
    // Installing it once more is refused as already trusted.
    let (ok, _, err) = setup.cli(&["trust", "add-link-key", file]);
    assert!(!ok);
    assert!(err.contains("already trusted"), "{err}");

    let rx = setup.start();
    let again = tx.next(provision(2));
    tx.send_udp(setup.udp_port, &[again.sealed]);
    rx.wait_for("a frame under the reinstated link key", |m| {
        m.accepted() == 1
    });
}

/// `trust remove --signer KID` removes a key that only arrived over the link (KeyAnnounce):
/// `trust list` then says it is not trusted, and frames it signs are refused after a restart.
#[test]
fn trust_remove_takes_an_announced_key_and_its_frames_are_then_refused() {
    use airlock_protocol::message::KeyAnnounce;
    use airlock_protocol::seal::Sealer;

    let setup = Setup::new(LinkKind::Udp);
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let announced = SignerKey::generate();
    let by_announced = Sealer::new(clone_signer(&announced), setup.link.clone());
    let frame_of_announced = |seq: u64, i: u64| {
        let mut env = tx.envelope(seq, provision(i), now());
        env.sender_kid = announced.kid().to_owned();
        by_announced.seal(&env).unwrap().sealed
    };
    let first = frame_of_announced(1, 1);
    let second = frame_of_announced(2, 2);
    let announce = tx.next(Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: announced.kid().to_owned(),
        public_key: announced.public().key.to_bytes(),
        not_before: 0,
    }));
    let mut rx = setup.start();
    tx.send_udp(setup.udp_port, &[announce.sealed]);
    rx.wait_for("the announcement", |m| m.accepted() == 1);
    tx.send_udp(setup.udp_port, &[first]);
    rx.wait_for("a frame of the announced key", |m| m.accepted() == 2);
    rx.stop();

    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(
        out.contains(&format!("kid {}  fingerprint", announced.kid())),
        "{out}"
    );
    // A kid neither installed nor announced is refused.
    let (ok, _, err) = setup.cli(&["trust", "remove", "--signer", "00000000000000ff"]);
    assert!(!ok);
    assert!(err.contains("nor announced over the link"), "{err}");
    let (ok, out, err) = setup.cli(&["trust", "remove", "--signer", announced.kid()]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("removed signer kid {}", announced.kid())),
        "{out}"
    );
    let (_, out, _) = setup.cli(&["trust", "list"]);
    assert!(
        out.contains(
            "[not trusted: it, or a key on its announcement chain, was removed by the operator]"
        ),
        "{out}"
    );

    let rx = setup.start();
    tx.send_udp(setup.udp_port, &[second]);
    let m = rx.wait_for("the refusal of the removed key's frame", |m| {
        m.rejected("untrusted_signer") == 1
    });
    assert_eq!(m.accepted(), 0);
}
