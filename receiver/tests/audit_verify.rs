//! `audit verify` (the real binary) on a log of thousands of frames: an untouched log
//! verifies; each kind of tampering is caught, named at its position, and exits non-zero.

use crate::audit_support;

use std::sync::OnceLock;

use airlock_receiver::frame_log::{LogEntry, Verdict};
use audit_support::*;

const FRAMES: u64 = 3000;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build_shared("audit_verify", FRAMES))
}

fn first_problem(report: &serde_json::Value) -> (u64, String, String) {
    let p = &report["first_problem"];
    (
        p["index"].as_u64().unwrap_or(u64::MAX),
        p["kind"].as_str().unwrap_or("").to_owned(),
        p["detail"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn untouched_log_verifies() {
    let f = fixture();
    let copy = f.copy("untouched");
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(ok, "{r:#}");
    assert_eq!(r["entries"].as_u64(), Some(f.entries));
    assert_eq!(r["problem_count"].as_u64(), Some(0));
    assert_eq!(r["missing_seqs"].as_u64(), Some(0));
    assert_eq!(r["warnings"].as_array().map(Vec::len), Some(0), "{r:#}");
    // Signer A (configured) and signer B (announced over the link by A).
    assert_eq!(r["signers"].as_array().map(Vec::len), Some(2), "{r:#}");
    // The text report ends with an OK summary line.
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&copy),
        "--trust-dir",
        path(&f.trust_dir),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("summary: OK"), "{text}");
}

#[test]
fn flipped_byte_is_caught_at_its_entry() {
    let f = fixture();
    let copy = f.copy("flip");
    {
        let t = LogTree::open(&copy);
        let mut v = t.log.get(1234u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
        t.put_raw(1234, &v);
    }
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    let (index, kind, _) = first_problem(&r);
    assert_eq!(index, 1234, "{r:#}");
    assert_eq!(kind, "altered_entry");
    // The text output names the position too, and the exit status is non-zero.
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&copy),
        "--trust-dir",
        path(&f.trust_dir),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FIRST PROBLEM at entry 1234"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 1234"));
}

#[test]
fn deleted_entry_is_named() {
    let f = fixture();
    let copy = f.copy("delete");
    LogTree::open(&copy).remove(777);
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    let (index, kind, detail) = first_problem(&r);
    assert_eq!((index, kind.as_str()), (777, "index_sequence"), "{r:#}");
    assert!(detail.contains("777..=777 are missing"), "{detail}");
}

#[test]
fn reordered_entries_are_caught() {
    let f = fixture();
    let copy = f.copy("reorder");
    {
        let t = LogTree::open(&copy);
        let a = t.log.get(500u64.to_be_bytes()).unwrap().unwrap();
        let b = t.log.get(501u64.to_be_bytes()).unwrap().unwrap();
        t.put_raw(500, &b);
        t.put_raw(501, &a);
    }
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    assert_eq!(first_problem(&r).0, 500, "{r:#}");
}

#[test]
fn reorder_with_a_rewritten_chain_is_flagged_by_receive_time() {
    // An attacker who swaps two entries and renumbers and re-links everything (the entry
    // hash is unkeyed) and rewrites the head record leaves a chain that verifies, and the
    // sender chain is order-free (resends arrive late legitimately). What betrays the swap
    // is the receive time running backwards, reported as a warning at the entry.
    let f = fixture();
    let copy = f.copy("reorder-relinked");
    {
        let t = LogTree::open(&copy);
        let mut a = t.get(600);
        let mut b = t.get(601);
        std::mem::swap(&mut a.index, &mut b.index);
        t.put(&a);
        t.put(&b);
        let head = t.relink_from(600);
        t.set_head(f.entries, head);
    }
    let (_, r) = verify(&copy, &f.trust_dir);
    assert_eq!(r["problem_count"].as_u64(), Some(0), "{r:#}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["index"] == 601 && w["kind"] == "receive_time_backwards"),
        "{r:#}"
    );
}

#[test]
fn appended_forged_entry_is_caught() {
    let f = fixture();
    let copy = f.copy("append");
    {
        let t = LogTree::open(&copy);
        let last = t.get(f.entries - 1);
        let forged = LogEntry {
            index: f.entries,
            received_at_ms: last.received_at_ms + 1000,
            verdict: Verdict::Applied,
            signer_kid: last.signer_kid.clone(),
            seq: last.seq + 1,
            sign1: f.untrusted_sign1(last.seq + 1),
            prev_entry_hash: last.entry_hash().unwrap(),
        };
        t.put(&forged);
    }
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    let (index, _, _) = first_problem(&r);
    assert_eq!(index, f.entries, "{r:#}");
    let kinds: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"appended_entries"), "{kinds:?}");
}

#[test]
fn frame_signed_by_untrusted_key_is_caught_even_with_a_perfect_chain() {
    let f = fixture();
    let copy = f.copy("untrusted");
    let k = 2000;
    {
        let t = LogTree::open(&copy);
        let mut e = t.get(k);
        e.sign1 = f.untrusted_sign1(e.seq);
        e.signer_kid = f.untrusted.kid().to_owned();
        t.put(&e);
        // Re-link the rest and fix the head record: only the signature can tell.
        let head = t.relink_from(k);
        t.set_head(f.entries, head);
    }
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    let (index, kind, _) = first_problem(&r);
    assert_eq!((index, kind.as_str()), (k, "untrusted_signer"), "{r:#}");
    assert_eq!(r["problem_count"].as_u64(), Some(1), "{r:#}");
}

#[test]
fn truncated_tail_is_caught() {
    let f = fixture();
    let copy = f.copy("truncate");
    {
        let t = LogTree::open(&copy);
        for i in f.entries - 5..f.entries {
            t.remove(i);
        }
    }
    let (ok, r) = verify(&copy, &f.trust_dir);
    assert!(!ok);
    let (index, kind, _) = first_problem(&r);
    assert_eq!(
        (index, kind.as_str()),
        (f.entries - 5, "truncated_tail"),
        "{r:#}"
    );
}

#[test]
fn expect_head_catches_a_truncation_that_also_rewrote_the_head_record() {
    let f = fixture();
    let (_, before) = verify(&f.copy("before"), &f.trust_dir);
    let head = before["head"].as_str().unwrap().to_owned();
    let copy = f.copy("truncate-head");
    {
        let t = LogTree::open(&copy);
        t.remove(f.entries - 1);
        let prev = t.get(f.entries - 2).entry_hash().unwrap();
        t.set_head(f.entries - 1, prev);
    }
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&copy),
        "--trust-dir",
        path(&f.trust_dir),
        "--expect-head",
        &head,
        "--json",
    ]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first_problem(&r).1, "expected_head_missing", "{r:#}");
}

#[test]
fn without_keys_or_with_a_wrong_dir_it_says_what_to_do() {
    let f = fixture();
    let out = audit(&["verify", "--data-dir", path(&f.data_dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trust-dir"));
    let nowhere = f.dir.path().join("nowhere");
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&nowhere),
        "--trust-dir",
        path(&f.trust_dir),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no receiver store"));
    assert!(!nowhere.exists(), "a wrong path must not create a store");
}
