//! Online backup and restore (`airlock-receiver backup` / `restore`): a backup taken from the
//! running daemon while frames arrive over UDP restores into a new data directory; the
//! restored receiver's log verifies, its checkpoints verify, and its replay window is the
//! one at the backup: every frame from before the backup is refused again, every frame after
//! it is accepted. Damaged or altered backups, a used target, a wrong token, a stopped daemon
//! and a PostgreSQL store are refused with a message that says what to do.

use std::path::{Path, PathBuf};

use airlock_tests::mountns::{self, Mount};
use sha2::{Digest, Sha256};

use crate::common;

use common::*;

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A second installation with the first one's keys: its own data directory and ports.
fn twin(of: &Setup) -> Setup {
    let t = Setup::new(LinkKind::Udp);
    for f in ["signer.pub", "link.key"] {
        std::fs::copy(of.path().join(f), t.path().join(f)).unwrap();
    }
    t
}

fn backup_to(setup: &Setup, out: &Path) -> (bool, String, String) {
    setup.cli(&["backup", "--out", out.to_str().unwrap()])
}

fn restore_from(setup: &Setup, from: &Path) -> (bool, String, String) {
    setup.cli(&["restore", "--from", from.to_str().unwrap()])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_backup_under_ingest_restores_a_receiver_that_verifies_and_keeps_its_replay_window() {
    let setup = Setup::with_extra(LinkKind::Udp, "[transparency]\nevery_entries = 200\n");
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    const BEFORE: usize = 1_000;
    const TOTAL: usize = 6_000;
    let frames: Vec<Vec<u8>> = (1..=TOTAL as u64)
        .map(|i| tx.next(provision(i)).sealed)
        .collect();
    send_windowed(&rx, setup.udp_port, &mut tx, &frames[..BEFORE], 2_000);
    let out = setup.path().join("backup");
    // The rest arrives while the backup runs.
    let (backup, accepted_at_backup_start) = std::thread::scope(|s| {
        let rest = s.spawn(|| {
            let mut tx2 = TestSender::new(&setup.signer, &setup.link);
            send_windowed(&rx, setup.udp_port, &mut tx2, &frames[BEFORE..], 2_000);
        });
        // Wait until the second burst is flowing, then back up.
        let m = rx.wait_for("ingest under way", |m| m.accepted() > BEFORE as u64);
        let b = backup_to(&setup, &out);
        rest.join().unwrap();
        (b, m.accepted())
    });
    let (ok, stdout, stderr) = backup;
    assert!(ok, "backup failed: {stderr}\n{stdout}");
    assert!(stdout.contains("backup written to"), "{stdout}");
    assert!(stderr.contains("backup: snapshot of"), "{stderr}");
    let m = manifest(&out);
    let at_backup = m["log_length"].as_u64().unwrap() as usize;
    assert!(
        at_backup >= accepted_at_backup_start as usize && at_backup <= TOTAL,
        "backup of {at_backup} entries, {accepted_at_backup_start} accepted when it started"
    );
    assert!(m["latest_checkpoint"].as_str().is_some(), "{m}");
    for f in m["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            f["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    let names: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "tree-log.kv",
        "tree-seqs.kv",
        "tree-meta.kv",
        "tree-users.kv",
        "tree-checkpoints.kv",
        "checkpoint.key",
        "checkpoint.pub",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let metrics = rx.metrics();
    assert_eq!(
        metrics.get("airlock_backups_served_total"),
        1,
        "{}",
        metrics.raw
    );
    assert!(metrics.get("airlock_backup_last_timestamp_seconds") > 0);
    let log = std::fs::read_to_string(&rx.log).unwrap();
    let served = log.lines().find(|l| l.contains("backup served")).unwrap();
    assert!(served.contains("ingest_pause_us"), "{served}");
    eprintln!("daemon: {served}");
    let backed_up_at = metrics.get("airlock_backup_last_timestamp_seconds");
    drop(rx);
    // The time of the last backup survives a restart: the "no recent backup" alert reads it.
    let rx = setup.start();
    let metrics = rx.metrics();
    assert_eq!(
        metrics.get("airlock_backup_last_timestamp_seconds"),
        backed_up_at,
        "{}",
        metrics.raw
    );
    drop(rx);

    let restored = twin(&setup);
    let (ok, stdout, stderr) = restore_from(&restored, &out);
    assert!(ok, "restore failed: {stderr}\n{stdout}");
    assert!(stdout.contains("audit verify: ok"), "{stdout}");
    assert!(
        stdout.contains(&format!("frame log:   {at_backup} entries")),
        "{stdout}"
    );
    assert!(stdout.contains("audit replay: no differences"), "{stdout}");
    let (ok, out_v, err_v) = restored.cli(&["audit", "verify"]);
    assert!(ok, "audit verify of the restored store: {err_v}\n{out_v}");
    let (ok, out_c, err_c) = restored.cli(&["audit", "checkpoint", "verify"]);
    assert!(
        ok,
        "checkpoint verify of the restored store: {err_c}\n{out_c}"
    );

    let rx2 = restored.start();
    let mut tx3 = TestSender::new(&setup.signer, &setup.link);
    // Every frame again: those in the backup are duplicates, the rest are new to it.
    let (_, m2) = send_windowed(&rx2, restored.udp_port, &mut tx3, &frames, 2_000);
    assert_eq!(m2.accepted(), (TOTAL - at_backup) as u64, "{}", m2.raw);
    assert_eq!(m2.duplicates(), at_backup as u64, "{}", m2.raw);
    // Another frame under a seq from before the backup: a replay, refused.
    let env = tx.envelope(1, provision(999_999), now());
    let forged = tx.chain.sealer.seal(&env).unwrap().sealed;
    tx3.send_udp(restored.udp_port, &[forged]);
    let m3 = rx2.wait_for("the replayed seq refused", |m| m.rejected_total() >= 1);
    assert_eq!(
        m3.rejected("replay") + m3.rejected("seq_conflict"),
        1,
        "{}",
        m3.raw
    );
    assert_eq!(m3.accepted(), (TOTAL - at_backup) as u64);
    let (status, _) = airlock_receiver::ops_client::get(rx2.ops, "/checkpoint").unwrap();
    assert_eq!(status, 200);
    let mut rx2 = rx2;
    rx2.stop();
    let (ok, out_v, err_v) = restored.cli(&["audit", "verify"]);
    assert!(
        ok,
        "audit verify after the restored receiver ran: {err_v}\n{out_v}"
    );
    let (ok, out_c, err_c) = restored.cli(&["audit", "checkpoint", "verify"]);
    assert!(
        ok,
        "checkpoint verify after the restored receiver ran: {err_c}\n{out_c}"
    );
}

/// The rows of a tree file.
fn rows(bytes: &[u8]) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0;
    let len = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    while at < bytes.len() {
        let k = len(at);
        let key = at + 4..at + 4 + k;
        let v = len(key.end);
        let value = key.end + 4..key.end + 4 + v;
        at = value.end;
        out.push((key, value));
    }
    out
}

/// Rewrites one file of a backup and its manifest entry consistently.
fn rewrite(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
    let mut m = manifest(dir);
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == name {
            f["sha256"] = hex::encode(Sha256::digest(bytes)).into();
            f["bytes"] = (bytes.len() as u64).into();
        }
    }
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}

#[test]
fn restore_refuses_damaged_or_altered_backups_and_used_targets_and_backup_needs_the_token() {
    let setup = Setup::new(LinkKind::Udp);
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<Vec<u8>> = (1..=300u64).map(|i| tx.next(provision(i)).sealed).collect();
    send_windowed(&rx, setup.udp_port, &mut tx, &frames, 2_000);

    // A wrong token: refused, nothing left behind.
    let token_file = setup.path().join("data/ops.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    }
    std::fs::write(&token_file, "not-the-token\n").unwrap();
    let wrong = setup.path().join("wrong");
    let (ok, _, err) = backup_to(&setup, &wrong);
    assert!(!ok);
    assert!(
        err.contains("HTTP 401") && err.contains("token is missing or wrong"),
        "{err}"
    );
    assert!(!wrong.exists(), "a refused backup left {}", wrong.display());
    std::fs::write(&token_file, &token).unwrap();

    // A backup target that is a file, not a directory.
    let file = setup.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (ok, _, err) = backup_to(&setup, &file);
    assert!(
        !ok && err.contains("cannot use") && err.contains("as the backup directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

    // A backup directory that is not empty.
    let used = setup.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("x"), "x").unwrap();
    let (ok, _, err) = backup_to(&setup, &used);
    assert!(!ok && err.contains("is not empty"), "{err}");

    let good = setup.path().join("good");
    let (ok, out, err) = backup_to(&setup, &good);
    assert!(ok, "{err}\n{out}");
    rx.stop();

    // The store held by a process that does not answer on the ops listener: it says so.
    {
        let _held = airlock_receiver::store::SledStore::open(&setup.path().join("data/store.sled"))
            .unwrap();
        let (ok, _, err) = backup_to(&setup, &setup.path().join("late"));
        assert!(!ok);
        assert!(
            err.contains("did not answer") && err.contains("is `airlock-receiver run"),
            "{err}"
        );
        assert!(!setup.path().join("late").exists());
    }
    // The receiver stopped: the backup reads the store itself, with the same manifest.
    let offline = setup.path().join("offline");
    let (ok, out, err) = backup_to(&setup, &offline);
    assert!(ok, "{err}\n{out}");
    assert!(
        out.contains("read from the store of the stopped receiver"),
        "{out}"
    );
    assert_eq!(
        manifest(&offline)["log_length"],
        manifest(&good)["log_length"]
    );
    assert_eq!(
        manifest(&offline)["head_hash"],
        manifest(&good)["head_hash"]
    );

    let target = twin(&setup);
    let data = target.path().join("data");

    // One byte changed in a file: the checksum names it.
    let damaged = setup.path().join("damaged");
    copy_dir(&good, &damaged);
    let mut log = std::fs::read(damaged.join("tree-log.kv")).unwrap();
    let mid = log.len() / 2;
    log[mid] ^= 0x01;
    std::fs::write(damaged.join("tree-log.kv"), &log).unwrap();
    let (ok, _, err) = restore_from(&target, &damaged);
    assert!(!ok);
    assert!(
        err.contains("tree-log.kv") && err.contains("does not match its SHA-256"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a refused restore created {}",
        data.display()
    );

    // A log entry altered and the manifest rewritten to match: the audit refuses.
    let altered = setup.path().join("altered");
    copy_dir(&good, &altered);
    let mut log = std::fs::read(altered.join("tree-log.kv")).unwrap();
    let (_, value) = rows(&log)[100].clone();
    log[value.start + value.len() / 2] ^= 0x01;
    rewrite(&altered, "tree-log.kv", &log);
    let (ok, _, err) = restore_from(&target, &altered);
    assert!(!ok);
    assert!(
        err.contains("the backup does not verify") && err.contains("audit verify"),
        "{err}"
    );
    assert!(!data.exists(), "a refused restore left {}", data.display());

    // A replay-window row dropped (as if to accept that frame again): the replay refuses.
    let trimmed = setup.path().join("trimmed");
    copy_dir(&good, &trimmed);
    let seqs = std::fs::read(trimmed.join("tree-seqs.kv")).unwrap();
    let (k, v) = rows(&seqs)[5].clone();
    let mut cut = seqs[..k.start - 4].to_vec();
    cut.extend_from_slice(&seqs[v.end..]);
    rewrite(&trimmed, "tree-seqs.kv", &cut);
    let mut m = manifest(&trimmed);
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == "tree-seqs.kv" {
            f["rows"] = (f["rows"].as_u64().unwrap() - 1).into();
        }
    }
    std::fs::write(
        trimmed.join("manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let (ok, _, err) = restore_from(&target, &trimmed);
    assert!(!ok);
    assert!(
        err.contains("the backup does not verify") && err.contains("seqs"),
        "{err}"
    );
    assert!(!data.exists());

    // A data directory in use: refused, untouched.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("keep"), "live").unwrap();
    let (ok, _, err) = restore_from(&target, &good);
    assert!(!ok);
    assert!(
        err.contains("is not empty") && err.contains("new or empty data directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(data.join("keep")).unwrap(), "live");
    std::fs::remove_dir_all(&data).unwrap();

    // The good one restores, and so does the offline one.
    let (ok, out, err) = restore_from(&target, &good);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("frame log:   300 entries"), "{out}");
    let other = twin(&setup);
    let (ok, out, err) = restore_from(&other, &offline);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("frame log:   300 entries"), "{out}");
}

#[test]
fn backup_of_a_postgresql_store_refuses_with_the_pg_dump_guidance() {
    let setup = Setup::with_extra(
        LinkKind::Udp,
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"postgres://airlock@127.0.0.1:1/airlock\"\n",
    );
    let out: PathBuf = setup.path().join("b");
    let (ok, _, err) = backup_to(&setup, &out);
    assert!(!ok);
    assert!(
        err.contains("pg_dump --serializable-deferrable") && err.contains("pg_restore"),
        "{err}"
    );
    assert!(!out.exists());
    let (ok, _, err) = restore_from(&setup, &out);
    assert!(!ok && err.contains("pg_dump"), "{err}");
}

#[test]
fn a_backup_to_a_full_or_read_only_file_system_fails_cleanly_and_the_receiver_goes_on() {
    let setup = Setup::new(LinkKind::Udp);
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<Vec<u8>> = (1..=300u64).map(|i| tx.next(provision(i)).sealed).collect();
    send_windowed(&rx, setup.udp_port, &mut tx, &frames, 2_000);
    let full = setup.path().join("full");
    std::fs::create_dir(&full).unwrap();
    // 16 KiB: the stream of 300 users does not fit.
    let all = mountns::run(
        Mount::Full,
        &full,
        r#""$2" backup --config "$3" --out "$1/b"; echo "rc=$?"; echo "left:[$(ls -A "$1")]""#,
        &[Path::new(BIN), &setup.config],
    );
    assert!(all.contains("rc=1"), "{all}");
    assert!(all.contains("No space left on device"), "{all}");
    assert!(all.contains("left:[]"), "{all}");
    let ro = setup.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let all = mountns::run(
        Mount::ReadOnly,
        &ro,
        r#""$2" backup --config "$3" --out "$1/b"; echo "rc=$?""#,
        &[Path::new(BIN), &setup.config],
    );
    assert!(all.contains("rc=1"), "{all}");
    assert!(all.contains("Read-only file system"), "{all}");
    // The daemon is untouched: it goes on accepting, and a backup to a good place works.
    let more: Vec<Vec<u8>> = (301..=310u64)
        .map(|i| tx.next(provision(i)).sealed)
        .collect();
    send_windowed(&rx, setup.udp_port, &mut tx, &more, 2_000);
    rx.wait_for("310 frames", |m| m.accepted() == 310);
    let (ok, _, err) = backup_to(&setup, &setup.path().join("good"));
    assert!(ok, "{err}");
    rx.stop();
}
