//! `audit export`, `audit show`, `audit reconcile`, and gap reporting in `audit verify`,
//! through the real binary.

use crate::audit_support;

use std::collections::BTreeSet;

use airlock_protocol::message::local_subject;
use audit_support::*;

const FRAMES: u64 = 2000;

fn lost() -> BTreeSet<u64> {
    [100, 101, 250].into_iter().collect()
}

#[test]
fn gaps_fail_verify_unless_allowed_and_are_named() {
    let f = build(FRAMES, &lost());
    // Audits always run on a copy (the builder's store may still be closing).
    let data = f.copy("audit");
    let (ok, r) = verify(&data, &f.trust_dir);
    assert!(!ok);
    assert_eq!(r["problem_count"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["missing_seqs"].as_u64(), Some(3));
    let a = r["signers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["missing_count"] == 3)
        .expect("signer A has the gaps");
    assert_eq!(a["missing"], serde_json::json!([[100, 101], [250, 250]]));
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&data),
        "--trust-dir",
        path(&f.trust_dir),
        "--allow-gaps",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100-101, 250"));
}

#[test]
fn export_show_and_reconcile() {
    let f = build(FRAMES, &lost());
    let data = f.copy("audit");
    let dd = path(&data);
    let td = path(&f.trust_dir);

    // export: one JSON object per entry.
    let out = audit(&["export", "--data-dir", dd, "--trust-dir", td]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, f.entries);
    let p = lines
        .iter()
        .find(|l| l["body_type"] == "provision")
        .unwrap();
    for field in [
        "index",
        "seq",
        "signer_kid",
        "received_at",
        "verdict",
        "issuer",
        "subject",
        "local_sub",
        "approver",
        "ticket_ref",
        "claims",
    ] {
        assert!(!p[field].is_null(), "{field} missing in {p}");
    }
    assert_eq!(p["signature"], "ok");

    // --from/--to by seq and by time.
    let out = audit(&[
        "export",
        "--data-dir",
        dd,
        "--trust-dir",
        td,
        "--from",
        "10",
        "--to",
        "12",
    ]);
    let n = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(n, 6, "seqs 10..=12 of signer A and of signer B");
    let t0 = lines[20]["received_at"].as_str().unwrap().to_owned();
    let t1 = lines[29]["received_at"].as_str().unwrap().to_owned();
    let out = audit(&[
        "export",
        "--data-dir",
        dd,
        "--trust-dir",
        td,
        "--from",
        &t0,
        "--to",
        &t1,
    ]);
    let n = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(n, 10);
    let out = audit(&[
        "export",
        "--data-dir",
        dd,
        "--trust-dir",
        td,
        "--from",
        "soon",
    ]);
    assert!(!out.status.success());

    // show: by outside subject and by local sub, same frames.
    let out = audit(&[
        "show",
        "--data-dir",
        dd,
        "--trust-dir",
        td,
        "--user",
        "user7",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_subject: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = by_subject["frames"].as_array().unwrap();
    // user7 is frame i with i % 300 == 7 (2 halves x ~7 each), minus none lost.
    assert!(frames.len() >= 6, "{by_subject:#}");
    assert!(frames.iter().all(|fr| fr["subject"] == "user7"));
    let idx: Vec<u64> = frames
        .iter()
        .map(|fr| fr["index"].as_u64().unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "in log order");
    assert_eq!(by_subject["users"][0]["subject"], "user7");
    assert!(by_subject["sessions_note"].is_null());
    let sub = local_subject(ISSUER, "user7");
    let out = audit(&["show", "--data-dir", dd, "--trust-dir", td, "--user", &sub]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("frames that touched {sub} ({})", frames.len())),
        "{text}"
    );
    assert!(text.contains("approved by approver"), "{text}");
    let out = audit(&[
        "show",
        "--data-dir",
        dd,
        "--trust-dir",
        td,
        "--user",
        "nobody",
    ]);
    assert!(!out.status.success());

    // reconcile: the sender sent everything; the receiver lost 100, 101, 250.
    let export = f.dir.path().join("sender.jsonl");
    f.sender_export(&export, &BTreeSet::new());
    let out = audit(&[
        "reconcile",
        "--data-dir",
        dd,
        "--sender-log",
        path(&export),
        "--signer",
        path(&f.trust_dir.join("sender-a.pub")),
        "--json",
    ]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sent_not_received_ranges"], "100-101, 250", "{r:#}");
    assert_eq!(r["received_not_sent_count"], 0);
    assert!(
        r["sender_log_problems"].as_array().unwrap().is_empty(),
        "{r:#}"
    );

    // A sender log that lacks frames the receiver has: received but never sent.
    let partial = f.dir.path().join("partial.jsonl");
    f.sender_export(&partial, &[100, 101, 250, 300].into_iter().collect());
    let out = audit(&[
        "reconcile",
        "--data-dir",
        dd,
        "--sender-log",
        path(&partial),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["received_not_sent_count"], 1, "{r:#}");
    assert_eq!(r["received_not_sent"][0]["seq"], 300);
    assert_eq!(r["sent_not_received_count"], 0);
    assert!(!out.status.success());
}
