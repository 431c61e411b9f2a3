//! `audit replay` (the real binary): no differences on an untouched log; after a direct
//! edit of the live store it names the edited user.

use crate::audit_support;

use std::collections::BTreeSet;

use airlock_protocol::message::local_subject;
use audit_support::*;

const FRAMES: u64 = 2000;

fn replay(data_dir: &std::path::Path, trust_dir: &std::path::Path) -> std::process::Output {
    audit(&[
        "replay",
        "--data-dir",
        path(data_dir),
        "--trust-dir",
        path(trust_dir),
    ])
}

#[test]
fn untouched_log_replays_to_the_live_store_and_an_edit_is_named() {
    let f = build(FRAMES, &BTreeSet::new());

    let clean = f.copy("clean");
    let out = replay(&clean, &f.trust_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("summary: OK"), "{text}");
    assert!(
        text.contains(&format!("replayed {} entries", f.entries)),
        "{text}"
    );

    // Someone with write access to the store gives user42 another e-mail address.
    let edited = f.copy("edited");
    let sub = local_subject(ISSUER, "user42");
    {
        let store = airlock_receiver::store::SledStore::open(&edited.join("store.sled")).unwrap();
        let users = store.db().open_tree("users").unwrap();
        let v = users
            .get(sub.as_bytes())
            .unwrap()
            .expect("user42 is provisioned");
        let mut rec: serde_json::Value = serde_json::from_slice(&v).unwrap();
        rec["claims"]["email"] = "attacker@example.net".into();
        users
            .insert(sub.as_bytes(), serde_json::to_vec(&rec).unwrap())
            .unwrap();
        store.db().flush().unwrap();
    }
    let out = replay(&edited, &f.trust_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("DIFFERENCE users {sub}")), "{text}");
    assert!(text.contains("user42"), "{text}");
    assert!(text.contains("attacker@example.net"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 difference"));

    // --json names it too.
    let out = audit(&[
        "replay",
        "--data-dir",
        path(&edited),
        "--trust-dir",
        path(&f.trust_dir),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], false);
    assert_eq!(r["differences"][0]["table"], "users");
    assert_eq!(r["differences"][0]["key"], sub.as_str());

    // A user the log never provisioned, inserted directly, is named as well.
    let inserted = f.copy("inserted");
    {
        let store = airlock_receiver::store::SledStore::open(&inserted.join("store.sled")).unwrap();
        let users = store.db().open_tree("users").unwrap();
        let (_, v) = users.iter().next().unwrap().unwrap();
        let mut rec: serde_json::Value = serde_json::from_slice(&v).unwrap();
        let ghost = local_subject(ISSUER, "ghost");
        rec["subject"] = "ghost".into();
        rec["local_sub"] = ghost.clone().into();
        users
            .insert(ghost.as_bytes(), serde_json::to_vec(&rec).unwrap())
            .unwrap();
        store.db().flush().unwrap();
    }
    let out = replay(&inserted, &f.trust_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("only in the live store"), "{text}");
    assert!(text.contains("ghost"), "{text}");
}
