//! The transparency log: the Merkle tree over the frame log and its signed checkpoints.
//!
//! The attack the unkeyed hash chain allows — delete, reorder or insert entries in a copy
//! of the store and recompute every hash (chain, head record, even the store's tree
//! record) — passes the chain checks, and a checkpoint taken before the change catches it
//! and names the first differing entry. Bad checkpoints (malformed, forged, of another log,
//! beyond the log) give clear errors.

use crate::audit_support;
use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_protocol::checkpoint::{Checkpoint, VerifierKey};
use airlock_receiver::metrics::Metrics;
use airlock_receiver::store::Store;
use airlock_receiver::transparency::key::public_path;
use airlock_receiver::transparency::{self, CheckpointKey, Checkpointer, Policy};
use audit_support::*;

const FRAMES: u64 = 120;
const ORIGIN: &str = "test.example/airlock";

struct Log {
    f: Fixture,
    /// The checkpoint key's public file (what the auditor got at the key ceremony).
    key_pub: PathBuf,
    /// The latest checkpoint, carried out before any tampering.
    trusted: PathBuf,
    verifier: VerifierKey,
}

/// A log of `FRAMES` frames committed `batch` at a time, with a checkpoint signed every
/// `every` entries, and its latest checkpoint exported to a file.
fn log_with_checkpoints(batch: usize, every: u64) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let trust_dir = dir.path().join("trust");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&trust_dir).unwrap();
    let key_file = dir.path().join("checkpoint.key");
    let key = CheckpointKey::generate(Some(ORIGIN)).unwrap();
    key.write(&key_file).unwrap();
    let verifier = key.verifier().clone();
    let store = open_sled(&data_dir.join("store.sled"));
    let policy = Policy {
        every_entries: every,
        every_ms: u64::MAX,
    };
    let mut cp = Checkpointer::new(&store, key, policy, 0, Arc::new(Metrics::new())).unwrap();
    let mut last_tree = None;
    let (sent_a, entries) = build_into_with(
        &store,
        &trust_dir,
        FRAMES,
        &BTreeSet::new(),
        true,
        batch,
        &mut |ledger| {
            cp.after_commit(&store, ledger.tree.as_ref().unwrap(), 1_800_000_000_000)
                .unwrap();
            last_tree = ledger.tree.clone();
        },
    );
    // The time rule's checkpoint of the last few entries.
    let last_tree = last_tree.unwrap();
    if transparency::latest_checkpoint(&store, &verifier)
        .unwrap()
        .unwrap()
        .0
        .size
        != entries
    {
        cp.sign_and_store(&store, &last_tree, 1_800_000_060_000)
            .unwrap();
    }
    let (latest, note) = transparency::latest_checkpoint(&store, &verifier)
        .unwrap()
        .unwrap();
    assert_eq!(latest.size, entries, "the last commit was checkpointed");
    drop(store);
    let trusted = dir.path().join("trusted.checkpoint");
    std::fs::write(&trusted, note).unwrap();
    Log {
        f: Fixture {
            dir,
            data_dir,
            trust_dir,
            sent_a,
            entries,
            untrusted: airlock_protocol::keys::SignerKey::generate(),
        },
        key_pub: public_path(&key_file),
        trusted,
        verifier,
    }
}

impl Log {
    /// `audit verify --checkpoint` on `data`: (exit ok, report).
    fn verify_against(&self, data: &Path, checkpoint: &Path) -> (bool, serde_json::Value) {
        let out = audit(&[
            "verify",
            "--data-dir",
            path(data),
            "--trust-dir",
            path(&self.f.trust_dir),
            "--checkpoint",
            path(checkpoint),
            "--checkpoint-key",
            path(&self.key_pub),
            "--allow-gaps",
            "--json",
        ]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON ({e}): {} / {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), r)
    }

    /// The checkpoint of tree size `size` stored in the data dir `data` (a copy of the log).
    fn stored_checkpoint(&self, data: &Path, size: u64) -> transparency::StoredCheckpoint {
        let store = open_sled(&data.join("store.sled"));
        let stored = transparency::list_checkpoints(&store, Some(&self.verifier)).unwrap();
        stored
            .into_iter()
            .find_map(|c| c.ok().filter(|c| c.checkpoint.size == size))
            .unwrap()
    }

    /// `audit consistency <old> <trusted> --json` on `data`.
    fn consistency_json_args<'a>(&'a self, old: &'a Path, data: &'a Path) -> Vec<&'a str> {
        vec![
            "consistency",
            path(old),
            path(&self.trusted),
            "--data-dir",
            path(data),
            "--checkpoint-key",
            path(&self.key_pub),
            "--json",
        ]
    }

    /// `audit inclusion <index> --index --checkpoint <trusted> --json` on `data`.
    fn inclusion_json_args<'a>(&'a self, index: &'a str, data: &'a Path) -> Vec<&'a str> {
        vec![
            "inclusion",
            index,
            "--index",
            "--checkpoint",
            path(&self.trusted),
            "--data-dir",
            path(data),
            "--checkpoint-key",
            path(&self.key_pub),
            "--json",
        ]
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let (ok, o, e) = audit_text(args);
        assert!(!e.contains("panicked"), "{e}");
        (ok, o, e)
    }
}

/// Deleting, reordering and inserting entries, then recomputing every unkeyed hash.
fn attacks(
    entries: &[airlock_receiver::frame_log::LogEntry],
) -> Vec<(
    &'static str,
    u64,
    Vec<airlock_receiver::frame_log::LogEntry>,
)> {
    let mut deleted = entries.to_vec();
    deleted.remove(37);
    let mut reordered = entries.to_vec();
    reordered.swap(52, 53);
    let mut inserted = entries.to_vec();
    // A frame the writer holds (a copy of a real, sender-signed one) slipped in.
    inserted.insert(71, entries[10].clone());
    vec![
        ("deleted", 37, deleted),
        ("reordered", 52, reordered),
        ("inserted", 71, inserted),
    ]
}

#[test]
fn a_rebuilt_chain_passes_the_chain_checks_but_not_an_earlier_checkpoint() {
    let log = log_with_checkpoints(1, 1);
    let clean = log.f.copy("clean");
    let (ok, r) = log.verify_against(&clean, &log.trusted);
    assert!(ok, "the untouched log extends its checkpoint: {r:#}");

    let original = LogTree::open(&clean).all();
    for (what, at, forged) in attacks(&original) {
        let data = log.f.copy(what);
        LogTree::open(&data).rebuild(forged);

        // The unkeyed chain and the head record are consistent again: without a checkpoint
        // nothing in the chain itself is wrong.
        let (_, plain) = verify(&data, &log.f.trust_dir);
        let chain_faults = plain["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                [
                    "altered_entry",
                    "broken_link",
                    "index_sequence",
                    "head_mismatch",
                ]
                .contains(&p["kind"].as_str().unwrap())
            })
            .count();
        assert_eq!(
            chain_faults, 0,
            "{what}: the rebuilt chain is consistent: {plain:#}"
        );

        // The checkpoint taken before: refused, at the first differing entry.
        let (ok, r) = log.verify_against(&data, &log.trusted);
        assert!(!ok, "{what}: must fail");
        let first = &r["first_problem"];
        assert_eq!(
            first["kind"], "not_an_extension_of_checkpoint",
            "{what}: {r:#}"
        );
        assert_eq!(first["index"].as_u64(), Some(at), "{what}: {r:#}");
        let detail = first["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("the first differing entry is entry {at} ")),
            "{what}: {detail}"
        );

        // `audit checkpoint verify` finds the stored checkpoints after `at` differ too.
        let (ok, out, _) = log.run(&[
            "checkpoint",
            "verify",
            "--data-dir",
            path(&data),
            "--checkpoint-key",
            path(&log.key_pub),
            "--json",
        ]);
        assert!(!ok, "{what}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["divergence"]["from"].as_u64(), Some(at), "{what}: {r:#}");
        assert_eq!(r["divergence"]["to"].as_u64(), Some(at), "{what}: {r:#}");
    }
}

#[test]
fn a_writer_who_also_deletes_the_stored_checkpoints_is_still_caught() {
    // Checkpoints every 10 entries; the writer removes every stored checkpoint from the
    // change on, so only the auditor's own checkpoint and the earlier stored ones remain.
    let log = log_with_checkpoints(5, 10);
    let clean = log.f.copy("clean");
    let original = LogTree::open(&clean).all();
    for (what, at, forged) in attacks(&original) {
        let data = log.f.copy(what);
        let t = LogTree::open(&data);
        t.rebuild(forged);
        t.drop_checkpoints_from(at + 1);
        drop(t);
        let (ok, r) = log.verify_against(&data, &log.trusted);
        assert!(!ok, "{what}");
        let first = &r["first_problem"];
        assert_eq!(
            first["kind"], "not_an_extension_of_checkpoint",
            "{what}: {r:#}"
        );
        // Named as a range: after the last stored checkpoint that still matches.
        let from = first["index"].as_u64().unwrap();
        assert!(from <= at && at - from < 10, "{what}: {r:#}");
        let detail = first["detail"].as_str().unwrap();
        assert!(detail.contains("between entry"), "{what}: {detail}");
    }
}

#[test]
fn consistency_and_inclusion_proofs_from_the_stored_log() {
    let log = log_with_checkpoints(7, 20);
    let data = log.f.copy("audit");
    let key = path(&log.key_pub);

    // Between two sizes, printable, verified from the roots alone.
    let (ok, out, err) = log.run(&["consistency", "20", "100", "--data-dir", path(&data)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("old tree: 20 entries"), "{out}");
    assert!(out.contains("consistency proof (RFC 9162"), "{out}");
    assert!(
        out.contains("OK: the log at the old size is a prefix"),
        "{out}"
    );

    // Between a checkpoint the auditor holds and the whole log.
    let old = tempfile::NamedTempFile::new().unwrap();
    let early = log.stored_checkpoint(&data, 42);
    std::fs::write(old.path(), &early.note).unwrap();
    let (ok, out, err) = log.run(&log.consistency_json_args(old.path(), &data));
    assert!(ok, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["old_size"], 42);
    assert_eq!(r["new_size"], log.f.entries);
    // A third party checks it with the protocol crate alone.
    let b64 = |s: &serde_json::Value| -> [u8; 32] {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let proof: Vec<[u8; 32]> = r["proof"].as_array().unwrap().iter().map(b64).collect();
    let trusted = Checkpoint::open(&std::fs::read(&log.trusted).unwrap(), &log.verifier).unwrap();
    airlock_protocol::merkle::verify_consistency(
        42,
        trusted.size,
        &early.checkpoint.root,
        &trusted.root,
        &proof,
    )
    .unwrap();

    // Inclusion of a frame by its seq (two signers used seq 5: say which), and by its
    // log index.
    let by_seq = |extra: &[&str]| {
        let mut args = vec![
            "inclusion",
            "5",
            "--checkpoint",
            path(&log.trusted),
            "--data-dir",
            path(&data),
            "--checkpoint-key",
            key,
        ];
        args.extend_from_slice(extra);
        log.run(&args)
    };
    let (ok, _, err) = by_seq(&[]);
    assert!(!ok);
    assert!(err.contains("pass --signer KID"), "{err}");
    let kid = log.f.sent_a[0].env.sender_kid.clone();
    let (ok, out, err) = by_seq(&["--signer", &kid]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("OK: the entry is in the log under this checkpoint"),
        "{out}"
    );
    let (ok, out, err) = log.run(&log.inclusion_json_args("77", &data));
    assert!(ok, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let proof: Vec<[u8; 32]> = r["proof"].as_array().unwrap().iter().map(b64).collect();
    airlock_protocol::merkle::verify_inclusion(
        &b64(&r["leaf_hash"]),
        77,
        trusted.size,
        &proof,
        &trusted.root,
    )
    .unwrap();

    // An entry after the checkpoint, and sizes beyond the log: clear errors.
    let (ok, _, err) = log.run(&[
        "inclusion",
        "50",
        "--index",
        "--checkpoint",
        path(old.path()),
        "--data-dir",
        path(&data),
        "--checkpoint-key",
        key,
    ]);
    assert!(!ok);
    assert!(err.contains("logged after this checkpoint"), "{err}");
    let (ok, _, err) = log.run(&["consistency", "10", "100000", "--data-dir", path(&data)]);
    assert!(!ok);
    assert!(err.contains("the log has 120 entries"), "{err}");
    let (ok, _, err) = log.run(&["consistency", "100", "10", "--data-dir", path(&data)]);
    assert!(!ok);
    assert!(err.contains("larger than the new one"), "{err}");
}

#[test]
fn malformed_forged_and_foreign_checkpoints_are_refused_clearly() {
    let log = log_with_checkpoints(30, 30);
    let data = log.f.copy("audit");
    let note = std::fs::read_to_string(&log.trusted).unwrap();
    let dir = log.f.dir.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let other_key = CheckpointKey::generate(Some(ORIGIN)).unwrap();
    let cp = Checkpoint::open(note.as_bytes(), &log.verifier).unwrap();
    let forged = write("forged", &cp.sign(other_key.signing()).unwrap());
    let altered = write(
        "altered",
        &note.replacen(
            &format!("\n{}\n", cp.size),
            &format!("\n{}\n", cp.size - 1),
            1,
        ),
    );
    let foreign_key = CheckpointKey::generate(Some("other.example/log")).unwrap();
    let foreign = write(
        "foreign",
        &Checkpoint {
            origin: "other.example/log".into(),
            ..cp.clone()
        }
        .sign(foreign_key.signing())
        .unwrap(),
    );
    let garbage = write("garbage", "this is not a checkpoint\n");
    let beyond = write(
        "beyond",
        &Checkpoint {
            size: 1_000_000,
            ..cp.clone()
        }
        .sign(
            &CheckpointKey::parse(
                &std::fs::read_to_string(dir.join("checkpoint.key")).unwrap(),
                Path::new("k"),
            )
            .unwrap()
            .signing()
            .clone(),
        )
        .unwrap(),
    );
    for (file, want) in [
        (&forged, "is not signed by test.example/airlock"),
        (
            &altered,
            "does not verify: the checkpoint was altered or forged",
        ),
        (&foreign, "a checkpoint of another log"),
        (&garbage, "no signature block"),
    ] {
        let (ok, out, err) = log.run(&[
            "verify",
            "--data-dir",
            path(&data),
            "--trust-dir",
            path(&log.f.trust_dir),
            "--checkpoint",
            path(file),
            "--checkpoint-key",
            path(&log.key_pub),
        ]);
        assert!(!ok, "{}: {out}", file.display());
        assert!(err.contains(want), "{}: {err}", file.display());
    }
    // A genuine checkpoint of more entries than the log holds: entries were removed.
    let (ok, r) = log.verify_against(&data, &beyond);
    assert!(!ok);
    let detail = r["first_problem"]["detail"].as_str().unwrap();
    assert!(detail.contains("covers 1000000"), "{detail}");
    // No key at all: says what to pass.
    let (ok, _, err) = log.run(&["checkpoint", "verify", "--data-dir", path(&data)]);
    assert!(!ok);
    assert!(err.contains("--checkpoint-key"), "{err}");
    // A private key file given as the public key: refused, not used.
    let (ok, _, err) = log.run(&[
        "checkpoint",
        "verify",
        "--data-dir",
        path(&data),
        "--checkpoint-key",
        path(&dir.join("checkpoint.key")),
    ]);
    assert!(!ok);
    assert!(err.contains("holds no verifier key"), "{err}");
}

#[test]
fn the_daemon_signs_serves_and_exports_checkpoints() {
    use common::*;
    let setup = Setup::with_extra(
        LinkKind::Udp,
        "[transparency]\norigin = \"rx.test.example/log\"\nevery_entries = 10\nevery_secs = 1\n",
    );
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<Vec<u8>> = (1..=25u64).map(|i| tx.next(provision(i)).sealed).collect();
    tx.send_udp(setup.udp_port, &frames);
    rx.wait_for("25 frames", |m| m.accepted() == 25);
    // Every 10 entries, and the time rule signs the rest within a second or so (a wait,
    // not a timing check).
    let m = rx.wait_for("a checkpoint of all 25", |m| {
        m.get("airlock_checkpoint_tree_size") == 25
    });
    assert!(m.get("airlock_checkpoints_signed_total") >= 1, "{}", m.raw);
    let (status, note) = airlock_receiver::ops_client::get(rx.ops, "/checkpoint").unwrap();
    assert_eq!(status, 200);
    let key_pub = setup.path().join("data/checkpoint.pub");
    let vk = airlock_receiver::transparency::key::load_verifier(&key_pub).unwrap();
    assert_eq!(vk.name, "rx.test.example/log");
    let cp = Checkpoint::open(note.as_bytes(), &vk).unwrap();
    assert_eq!(cp.size, 25);
    assert!(cp.extension("time").is_some());
    // The highest seq accepted per signer, signed with the tree head: what the sender's
    // witness uses to refuse an outbox older than this.
    let seen = cp.seen_seqs();
    assert_eq!(seen.len(), 1, "{note}");
    assert_eq!(seen.values().next().copied(), Some(tx.chain.seq), "{note}");

    // Exported while the daemon holds the store (through the ops listener).
    let out_file = setup.path().join("usb/latest.checkpoint");
    std::fs::create_dir_all(out_file.parent().unwrap()).unwrap();
    let (ok, text, err) = setup.cli(&["checkpoint", "export", "--out", out_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(text.contains("fingerprint"), "{text}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), note);
    let exported_key = airlock_receiver::transparency::key::load_verifier(&PathBuf::from(format!(
        "{}.pub",
        out_file.display()
    )))
    .unwrap();
    assert_eq!(exported_key, vk);
    let (ok, text, err) = setup.cli(&["checkpoint", "list"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("checkpoint(s) of rx.test.example/log"),
        "{text}"
    );
    assert!(!text.contains("BAD"), "{text}");
    rx.stop();

    // Stopped: the same commands read the store directly, and a restart keeps the key,
    // checks the tree against its own latest checkpoint and goes on.
    let (ok, text, _) = setup.cli(&["checkpoint", "list", "--json"]);
    assert!(ok);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.last().unwrap()["size"], 25);
    let mut rx = setup.start();
    let more: Vec<Vec<u8>> = (26..=40u64).map(|i| tx.next(provision(i)).sealed).collect();
    tx.send_udp(setup.udp_port, &more);
    rx.wait_for("a checkpoint of all 40", |m| {
        m.get("airlock_checkpoint_tree_size") == 40
    });
    rx.stop();
    let data = setup.path().join("data");
    let out = audit(&[
        "verify",
        "--data-dir",
        path(&data),
        "--trust-dir",
        path(setup.path()),
        "--checkpoint",
        path(&out_file),
        "--checkpoint-key",
        path(&key_pub),
    ]);
    // trust dir holds signer.pub? The Setup writes signer.pub in the setup dir.
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same on PostgreSQL: the tree kept by the state machine in the append's transaction,
/// checkpoints stored in `store_checkpoints`, the audits read-only over `--pg-url`, and a
/// database administrator's rewrite (delete one row, renumber, recompute every hash in SQL
/// reach) caught by the checkpoint held outside.
#[test]
fn tree_and_checkpoints_on_postgres() {
    use airlock_receiver::store::postgres::PgStore;
    let Some(url) = common::pg_url("transparency") else {
        return;
    };
    let _pg = common::pg_shared();
    let (schema, db) = common::fresh_pg_schema(&url, "transparency");
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let key_file = dir.path().join("checkpoint.key");
    let key = CheckpointKey::generate(Some(ORIGIN)).unwrap();
    key.write(&key_file).unwrap();
    let verifier = key.verifier().clone();
    let store = PgStore::open_url(&db).unwrap();
    let policy = Policy {
        every_entries: 1,
        every_ms: u64::MAX,
    };
    let mut cp = Checkpointer::new(&store, key, policy, 0, Arc::new(Metrics::new())).unwrap();
    let (_, entries) = build_into_with(&store, &trust, 80, &BTreeSet::new(), false, 1, &mut |l| {
        cp.after_commit(&store, l.tree.as_ref().unwrap(), 1_800_000_000_000)
            .unwrap();
    });
    let (latest, note) = transparency::latest_checkpoint(&store, &verifier)
        .unwrap()
        .unwrap();
    assert_eq!(latest.size, entries);
    let trusted = dir.path().join("trusted.checkpoint");
    std::fs::write(&trusted, &note).unwrap();
    let key_pub = public_path(&key_file);
    let run = audit_text;
    let (ok, out, err) = run(&[
        "checkpoint",
        "verify",
        "--pg-url",
        &db,
        "--checkpoint-key",
        path(&key_pub),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("{entries} entries")), "{out}");
    let (ok, out, err) = run(&["consistency", "17", "latest", "--pg-url", &db]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&[
        "inclusion",
        "40",
        "--index",
        "--checkpoint",
        path(&trusted),
        "--pg-url",
        &db,
        "--checkpoint-key",
        path(&key_pub),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("OK: the entry is in the log under this checkpoint"),
        "{out}"
    );

    // The administrator's rewrite: entry 23 deleted, the rest renumbered and re-hashed.
    let mut all: Vec<airlock_receiver::frame_log::LogEntry> = store
        .scan_from(airlock_receiver::store::Table::Log, &[])
        .enumerate()
        .map(|(i, r)| {
            airlock_receiver::frame_log::decode(&r.unwrap().1, i as u64)
                .unwrap()
                .entry
        })
        .collect();
    all.remove(23);
    let r = rebuilt(all);
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute(&format!(
        "SET search_path = {schema}; DELETE FROM store_log"
    ))
    .unwrap();
    for (k, v) in &r.rows {
        tx.execute("INSERT INTO store_log (k, v) VALUES ($1, $2)", &[k, v])
            .unwrap();
    }
    let mut head = (r.rows.len() as u64).to_be_bytes().to_vec();
    head.extend_from_slice(&r.head);
    tx.execute(
        "UPDATE store_meta SET v = $1 WHERE k = 'log_head'::bytea",
        &[&head],
    )
    .unwrap();
    tx.execute(
        "UPDATE store_meta SET v = $1 WHERE k = 'tree_frontier'::bytea",
        &[&r.tree],
    )
    .unwrap();
    tx.commit().unwrap();

    let out = audit(&[
        "verify",
        "--pg-url",
        &db,
        "--trust-dir",
        path(&trust),
        "--checkpoint",
        path(&trusted),
        "--checkpoint-key",
        path(&key_pub),
        "--allow-gaps",
        "--json",
    ]);
    assert!(!out.status.success());
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rep["first_problem"]["kind"], "not_an_extension_of_checkpoint",
        "{rep:#}"
    );
    assert_eq!(rep["first_problem"]["index"], 23, "{rep:#}");
    drop(store);
    let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// The key ceremony from the CLI: `checkpoint keygen` writes the key (mode 0600) and its
/// public file and prints the verifier key and fingerprint; `checkpoint show-key` prints the
/// same; a second keygen is refused and leaves the key alone; the daemon signs with it. An
/// origin other than the config's is pointed out, and the daemon refuses the mismatch.
#[test]
fn the_key_ceremony_commands_write_print_and_never_replace_the_key() {
    use airlock_receiver::transparency::key::load_verifier;
    use common::*;
    use std::os::unix::fs::PermissionsExt as _;
    let setup = Setup::with_extra(
        LinkKind::Udp,
        "[transparency]\norigin = \"rx.test.example/log\"\n",
    );
    let key_file = setup.path().join("data/checkpoint.key");
    let (ok, out, err) = setup.cli(&["checkpoint", "keygen"]);
    assert!(ok, "{out}{err}");
    let vk = load_verifier(&public_path(&key_file)).unwrap();
    assert_eq!(vk.name, "rx.test.example/log");
    assert_eq!(CheckpointKey::load(&key_file).unwrap().verifier(), &vk);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    let fingerprint = airlock_protocol::keys::fingerprint_of(vk.public.as_bytes());
    for want in [
        format!("checkpoint key written to {}", key_file.display()),
        format!("verifier key: {vk}"),
        format!("fingerprint (SHA-256 of the public key): {fingerprint}"),
    ] {
        assert!(out.contains(&want), "{want:?} not in: {out}");
    }
    let (ok, shown, err) = setup.cli(&["checkpoint", "show-key"]);
    assert!(ok, "{err}");
    assert!(shown.contains(&format!("verifier key: {vk}")), "{shown}");
    assert!(shown.contains(&fingerprint), "{shown}");

    let before = std::fs::read(&key_file).unwrap();
    let (ok, out, err) = setup.cli(&["checkpoint", "keygen"]);
    assert!(!ok, "a second key: {out}");
    assert!(err.contains("exists already: a log keeps its key"), "{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);

    // The daemon uses the ceremony's key, and says which.
    let mut rx = setup.start();
    rx.stop();
    let log = std::fs::read_to_string(&rx.log).unwrap();
    assert!(log.contains(&fingerprint), "{log}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);

    // A key made for another log name than the config's: said at once, refused at start.
    let other = Setup::with_extra(
        LinkKind::Udp,
        "[transparency]\norigin = \"rx.test.example/log\"\n",
    );
    let (ok, out, err) = other.cli(&["checkpoint", "keygen", "--origin", "other.example/log"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("set transparency.origin = \"other.example/log\""),
        "{out}"
    );
    let refused = other.start_refused();
    assert!(
        refused.contains("but transparency.origin is \"rx.test.example/log\""),
        "{refused}"
    );
}

/// A store writer rewrites the log while the daemon is down (an entry deleted, every hash
/// and the tree record recomputed): at start the daemon rebuilds the tree, finds the log is
/// not an extension of its own latest checkpoint, refuses to sign on, and names the command
/// that finds the entry.
#[test]
fn a_daemon_restarted_on_a_rewritten_log_refuses_to_run() {
    use common::*;
    let setup = Setup::with_extra(
        LinkKind::Udp,
        "[transparency]\nevery_entries = 10\nevery_secs = 1\n",
    );
    let mut rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    // Two bursts, each checkpointed: 10 entries, then 30.
    for (from, to) in [(1, 10), (11, 30)] {
        let frames: Vec<Vec<u8>> = (from..=to).map(|i| tx.next(provision(i)).sealed).collect();
        tx.send_udp(setup.udp_port, &frames);
        rx.wait_for(&format!("a checkpoint of all {to}"), |m| {
            m.get("airlock_checkpoint_tree_size") == to
        });
    }
    rx.stop();
    let data = setup.path().join("data");
    let t = LogTree::open(&data);
    let mut entries = t.all();
    entries.remove(12);
    t.rebuild(entries);
    drop(t);

    let refused = setup.start_refused();
    for want in [
        "the log is not an extension of the receiver's own checkpoint of 30 entries",
        "refuses to sign a tree that forks",
        "airlock-receiver audit checkpoint verify",
    ] {
        assert!(refused.contains(want), "{want:?} not in: {refused}");
    }
    // The command it names, on a copy: the change lies after the checkpoint of 10, which
    // still matches.
    let copy = setup.path().join("copy");
    copy_dir(&data, &copy);
    let out = audit(&[
        "checkpoint",
        "verify",
        "--data-dir",
        path(&copy),
        "--checkpoint-key",
        path(&data.join("checkpoint.pub")),
        "--json",
    ]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (from, to) = (
        r["divergence"]["from"].as_u64().unwrap(),
        r["divergence"]["to"].as_u64().unwrap(),
    );
    assert!(from == 10 && 12 <= to, "{r:#}");
}

/// The stored checkpoint of `size` in the sled store under `data`, replaced by `note`.
fn replace_stored_checkpoint(data: &Path, size: u64, note: &[u8]) {
    let store = open_sled(&data.join("store.sled"));
    let k = transparency::checkpoint_key(size);
    store
        .transact(|tx| tx.put(airlock_receiver::store::Table::Checkpoints, &k, note))
        .unwrap();
    store.flush().unwrap();
}

/// One changed byte in a stored checkpoint (a store writer cannot re-sign it): `audit
/// checkpoint verify` reports that checkpoint by size and fails; one signed with another
/// key is reported as such.
#[test]
fn a_changed_byte_in_a_stored_checkpoint_is_reported() {
    let log = log_with_checkpoints(10, 10);
    let data = log.f.copy("altered-checkpoint");
    let note = log.stored_checkpoint(&data, 40).note;
    // The root line is the third: change its first character.
    let root_at = note.match_indices('\n').nth(1).unwrap().0 + 1;
    let mut bytes = note.into_bytes();
    bytes[root_at] = if bytes[root_at] == b'A' { b'B' } else { b'A' };
    replace_stored_checkpoint(&data, 40, &bytes);
    // And the one of 50 re-signed with a key of the writer's own: said apart.
    let fifty = log.stored_checkpoint(&data, 50).checkpoint;
    let other = CheckpointKey::generate(Some(ORIGIN)).unwrap();
    replace_stored_checkpoint(&data, 50, fifty.sign(other.signing()).unwrap().as_bytes());
    let (ok, out, err) = log.run(&[
        "checkpoint",
        "verify",
        "--data-dir",
        path(&data),
        "--checkpoint-key",
        path(&log.key_pub),
        "--json",
    ]);
    assert!(!ok, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let problems = r["problems"].to_string();
    assert!(
        problems.contains("stored checkpoint for tree size 40")
            && problems.contains("the stored checkpoint was altered or forged"),
        "{r:#}"
    );
    assert!(
        problems.contains("stored checkpoint for tree size 50 is not signed by the key given")
            && problems.contains("not a checkpoint of this log's key"),
        "{r:#}"
    );
}

/// The store's tree record changed alone (the log untouched): `audit checkpoint verify`
/// says the record is not the tree of its log.
#[test]
fn a_changed_tree_record_is_reported() {
    use airlock_protocol::merkle::Frontier;
    let log = log_with_checkpoints(10, 10);
    let data = log.f.copy("altered-tree");
    let other = Frontier::from_leaf_hashes(&vec![[7u8; 32]; log.f.entries as usize]);
    {
        let store = open_sled(&data.join("store.sled"));
        store
            .transact(|tx| {
                tx.put(
                    airlock_receiver::store::Table::Meta,
                    airlock_receiver::store::meta::TREE,
                    &other.to_bytes(),
                )
            })
            .unwrap();
        store.flush().unwrap();
    }
    let (ok, out, err) = log.run(&[
        "checkpoint",
        "verify",
        "--data-dir",
        path(&data),
        "--checkpoint-key",
        path(&log.key_pub),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains(
            "PROBLEM: the store's Merkle tree record (meta tree_frontier) is not the tree of its log"
        ),
        "{out}"
    );
}

/// `audit consistency OLD latest` with OLD a checkpoint carried out before an entry was
/// deleted (and every hash recomputed): fails, and names the deleted entry.
#[test]
fn consistency_from_a_checkpoint_taken_before_a_rewrite_fails_and_names_the_entry() {
    let log = log_with_checkpoints(1, 1);
    let clean = log.f.copy("clean");
    let old = log.f.dir.path().join("old.checkpoint");
    std::fs::write(&old, log.stored_checkpoint(&clean, 60).note).unwrap();
    let data = log.f.copy("deleted");
    let t = LogTree::open(&data);
    let mut entries = t.all();
    entries.remove(37);
    t.rebuild(entries);
    drop(t);
    let (ok, out, err) = log.run(&[
        "consistency",
        path(&old),
        "latest",
        "--data-dir",
        path(&data),
        "--checkpoint-key",
        path(&log.key_pub),
    ]);
    assert!(!ok, "{out}{err}");
    for want in [
        "PROBLEM: the OLD checkpoint's root is not the root of the log's first 60 entries",
        "the first differing entry is entry 37 ",
        "FAILED",
    ] {
        assert!(out.contains(want), "{want:?} not in: {out}");
    }
}

/// `audit inclusion` under a checkpoint of more entries than the log holds (entries were
/// removed after it was carried out): refused, saying so, before any proof.
#[test]
fn inclusion_under_a_checkpoint_larger_than_the_log_is_refused() {
    let log = log_with_checkpoints(30, 30);
    let data = log.f.copy("shortened");
    let t = LogTree::open(&data);
    let mut entries = t.all();
    entries.truncate(100);
    t.rebuild(entries);
    drop(t);
    let (ok, out, err) = log.run(&log.inclusion_json_args("5", &data));
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "no proof: {out}");
    assert!(
        err.contains("the checkpoint covers 120 entries but the log has 100: entries were removed"),
        "{err}"
    );
}

/// Receivers of one store (an HA cluster on one PostgreSQL) share one frame log, one tree
/// and one table of checkpoints keyed by size: they are one log, signed with one key. A
/// second receiver that would make a key of its own refuses to start and says which key
/// to copy from where; with the copied key it signs beside the first, restarts after the
/// other signed last, and every stored checkpoint verifies under the one key. A store from
/// before the key was pinned is held to the signer of its latest checkpoint.
#[test]
fn receivers_of_one_store_sign_one_log_with_one_key() {
    use airlock_receiver::transparency::key::load_verifier;
    use common::*;
    let Some(url) = common::pg_url("transparency") else {
        return;
    };
    let _pg = common::pg_shared();
    let (schema, db) = common::fresh_pg_schema(&url, "transparency_ha");
    let extra = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{db}\"\npool_size = 4\n\
         [transparency]\nevery_entries = 5\nevery_secs = 1\n"
    );
    let a = Setup::with_extra(LinkKind::Udp, &extra);
    let b = Setup::with_extra(LinkKind::Udp, &extra);
    for f in ["signer.pub", "link.key"] {
        std::fs::copy(a.path().join(f), b.path().join(f)).unwrap();
    }
    let mut rx_a = a.start();
    let key_a = a.path().join("data/checkpoint.key");
    let vk_a = load_verifier(&public_path(&key_a)).unwrap();
    let fingerprint_a = airlock_protocol::keys::fingerprint_of(vk_a.public.as_bytes());
    let key_b = b.path().join("data/checkpoint.key");

    // B would make a key of its own at first start (a second log in one tree): refused,
    // before anything is signed, naming the key to copy and where from.
    let refused = b.start_refused();
    for want in [
        vk_a.to_string().as_str(),
        fingerprint_a.as_str(),
        "copy checkpoint.key",
        "from the first receiver",
        key_b.to_str().unwrap(),
    ] {
        assert!(refused.contains(want), "{want:?} not in: {refused}");
    }
    assert!(!key_b.exists(), "no key of its own was made");

    // Done as it says: B signs with A's key.
    std::fs::create_dir_all(key_b.parent().unwrap()).unwrap();
    std::fs::copy(&key_a, &key_b).unwrap();
    std::fs::copy(public_path(&key_a), public_path(&key_b)).unwrap();
    let mut rx_b = b.start();
    let mut sender = TestSender::new(&a.signer, &a.link);
    let mut frames = |from: u64, to: u64| -> Vec<Vec<u8>> {
        (from..=to)
            .map(|i| sender.next(provision(i)).sealed)
            .collect()
    };
    let (first, second, third) = (frames(1, 12), frames(13, 20), frames(21, 25));
    let size = |n: u64| move |m: &Metrics| m.get("airlock_checkpoint_tree_size") == n;
    // B alone receives 1..12 and signs; then B stops and A alone receives 13..20 and signs
    // last; B restarts on a store whose latest checkpoint A signed.
    sender.send_udp(b.udp_port, &first);
    rx_b.wait_for("B to sign 12", size(12));
    rx_b.stop();
    sender.send_udp(a.udp_port, &second);
    rx_a.wait_for("A to sign 20", size(20));
    let mut rx_b = b.start();
    for port in [a.udp_port, b.udp_port] {
        sender.send_udp(port, &third);
    }
    rx_b.wait_for("B to sign 25", size(25));
    rx_a.stop();
    rx_b.stop();

    // Every stored checkpoint, whichever receiver signed it, verifies under the one key.
    let run = audit_text;
    let (ok, out, err) = run(&[
        "checkpoint",
        "verify",
        "--pg-url",
        &db,
        "--checkpoint-key",
        path(&public_path(&key_a)),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sizes: Vec<u64> = r["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    for s in [12, 20, 25] {
        assert!(sizes.contains(&s), "{r:#}");
    }

    // A store kept before the key was pinned: B with a new key of its own is held to the
    // signer of the latest stored checkpoint.
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let removed = admin
        .execute(
            &format!("DELETE FROM {schema}.store_meta WHERE k = 'checkpoint_key'::bytea"),
            &[],
        )
        .unwrap();
    assert_eq!(removed, 1, "the first receiver pinned its key");
    std::fs::remove_file(&key_b).unwrap();
    std::fs::remove_file(public_path(&key_b)).unwrap();
    let (ok, out, err) = b.cli(&["checkpoint", "keygen"]);
    assert!(ok, "{out}{err}");
    let refused = b.start_refused();
    for want in [
        vk_a.name.as_str(),
        vk_a.key_hash_hex().as_str(),
        "latest stored checkpoint, of 25 entries",
        "copy checkpoint.key",
    ] {
        assert!(refused.contains(want), "{want:?} not in: {refused}");
    }
    // A, with the key that signed, starts and pins it again.
    let mut rx_a = a.start();
    rx_a.stop();
    let pinned: Vec<u8> = admin
        .query_one(
            &format!("SELECT v FROM {schema}.store_meta WHERE k = 'checkpoint_key'::bytea"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(String::from_utf8(pinned).unwrap(), vk_a.to_string());
    let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// The python interpreter with the third-party library (scripts/install-test-deps makes
/// `tests/transparency-interop/.venv`), or `AIRLOCK_INTEROP_PYTHON`.
fn interop_python() -> PathBuf {
    if let Ok(p) = std::env::var("AIRLOCK_INTEROP_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/transparency-interop/.venv/bin/python")
}

/// What the receiver writes — checkpoints, their verifier key, consistency and inclusion
/// proofs — verified by an independent implementation (aics-tlog from PyPI), which also
/// refuses forged and altered checkpoints. Run by scripts/test after install-test-deps.
#[test]
#[ignore = "interop: needs tests/transparency-interop/.venv (scripts/install-test-deps); run with --ignored"]
fn a_third_party_signed_note_library_verifies_our_checkpoints_and_proofs() {
    let python = interop_python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps (it installs tests/transparency-interop/requirements.txt)",
        python.display()
    );
    let log = log_with_checkpoints(7, 20);
    let data = log.f.copy("interop");
    let dir = log.f.dir.path();
    let old = dir.join("old.checkpoint");
    std::fs::write(&old, log.stored_checkpoint(&data, 42).note).unwrap();
    let json = |args: &[&str], name: &str| {
        let out = audit(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = dir.join(name);
        std::fs::write(&p, &out.stdout).unwrap();
        p
    };
    let consistency = json(&log.consistency_json_args(&old, &data), "consistency.json");
    let inclusion = json(&log.inclusion_json_args("77", &data), "inclusion.json");
    let note = std::fs::read_to_string(&log.trusted).unwrap();
    let cp = Checkpoint::open(note.as_bytes(), &log.verifier).unwrap();
    let altered = dir.join("altered.checkpoint");
    std::fs::write(
        &altered,
        note.replacen(&format!("\n{}\n", cp.size), "\n7\n", 1),
    )
    .unwrap();
    let forged = dir.join("forged.checkpoint");
    let other = CheckpointKey::generate(Some(ORIGIN)).unwrap();
    std::fs::write(&forged, cp.sign(other.signing()).unwrap()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/transparency-interop/verify.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&log.trusted)
        .arg(&log.key_pub)
        .arg("--consistency")
        .arg(&consistency)
        .arg(&old)
        .arg("--inclusion")
        .arg(&inclusion)
        .arg("--must-fail")
        .arg(&altered)
        .arg("--must-fail")
        .arg(&forged)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("6 passed, 0 failed"), "{text}");
}
