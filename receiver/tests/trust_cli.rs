//! `trust list|add-signer|add-link-key|remove` and config errors, through the real binary.

use crate::common;

use airlock_protocol::keys::{LinkKey, SignerKey};
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
