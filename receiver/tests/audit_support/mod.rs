//! Shared by the audit_* tests: builds a real frame log (signed frames applied through the
//! ingest's own state machine, `apply_batch`, exactly as the daemon commits them), then
//! offers tampering helpers that work on a copy of the data directory.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::message::{
    Approval, Body, Claims, Envelope, Heartbeat, KeyAnnounce, KeyRetire, LoginTicket, Provision,
    Revoke,
};
use airlock_protocol::seal::Sealer;
use airlock_receiver::apply::{AcceptedFrame, Ledger, apply_batch};
use airlock_receiver::frame_log::{GENESIS, LogEntry, decode, tree_leaf};
use airlock_receiver::store::{SledStore, Store};
use base64::Engine as _;

pub const T0: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://login.example.org";

/// A frame as the sender made it (for the sender export of reconcile tests).
#[derive(Clone)]
pub struct Sent {
    pub env: Envelope,
    pub sign1: Vec<u8>,
    pub hash: [u8; 32],
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The original data directory (holds store.sled).
    pub data_dir: PathBuf,
    /// Public keys the auditor starts from: signer A only.
    pub trust_dir: PathBuf,
    /// Every frame signer A sent, in seq order.
    pub sent_a: Vec<Sent>,
    pub entries: u64,
    pub untrusted: SignerKey,
}

/// The test kit's [`airlock_tests::peer::Chain`], frames issued one second apart.
struct Chain {
    chain: airlock_tests::peer::Chain,
    /// issued_at of seq 0.
    epoch: u64,
}

impl Chain {
    fn new(key: SignerKey, epoch: u64) -> Self {
        Self {
            chain: airlock_tests::peer::Chain::new(Sealer::new(key, LinkKey::generate(1))),
            epoch,
        }
    }

    fn next(&mut self, body: Body) -> Sent {
        let issued_at = self.epoch + self.chain.seq + 1;
        let (env, signed) = self.chain.sign_next(body, issued_at).unwrap();
        Sent {
            env,
            sign1: signed.sign1,
            hash: signed.hash,
        }
    }
}

pub fn approval(i: u64) -> Approval {
    Approval {
        approver: format!("approver{}@example.org", i % 7),
        approved_at: T0 - 600,
        ticket_ref: format!("CHG-{i}"),
    }
}

pub fn claims(i: u64) -> Claims {
    Claims {
        email: Some(format!("user{i}@example.org")),
        name: Some(format!("User {i}")),
        groups: vec!["staff".into()],
        ..Default::default()
    }
}

/// The body of frame `i`: mostly Provisions of 300 users, some Revokes, tickets, heartbeats.
pub fn body(i: u64) -> Body {
    let user = i % 300;
    match i % 100 {
        37 => Body::Revoke(Revoke {
            issuer: ISSUER.into(),
            subject: format!("user{user}"),
            approval: approval(i),
            reason: "left".into(),
        }),
        53 => Body::LoginTicket(LoginTicket {
            locator: {
                let mut l = [0u8; 16];
                l[..8].copy_from_slice(&i.to_be_bytes());
                l
            },
            code_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            issuer: ISSUER.into(),
            subject: format!("jit{i}"),
            claims: claims(i),
            approval: approval(i),
            expires_at: T0 + 300,
        }),
        99 => Body::Heartbeat(Heartbeat {
            session_id: 7,
            interval_secs: 10,
        }),
        _ => Body::Provision(Provision {
            issuer: ISSUER.into(),
            subject: format!("user{user}"),
            claims: claims(i),
            approval: approval(i),
            valid_until: T0 + 90 * 86_400,
        }),
    }
}

/// Builds a log of `n` frames: signer A sends the first half, announces signer B (signed by
/// A), B sends the rest and finally retires A. `skip` = seqs of A that never arrive.
pub fn build(n: u64, skip: &BTreeSet<u64>) -> Fixture {
    build_with(n, skip, true)
}

/// As [`build`]; `keep_sent` keeps signer A's frames for a sender export (memory!).
pub fn build_with(n: u64, skip: &BTreeSet<u64>, keep_sent: bool) -> Fixture {
    build_in(&std::env::temp_dir(), n, skip, keep_sent)
}

/// A fixture shared by all tests of one test binary (in a static, so never dropped): it
/// lives under `target/tmp/<name>`, which is emptied first so runs do not accumulate.
pub fn build_shared(name: &str, n: u64) -> Fixture {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&parent).unwrap();
    build_in(&parent, n, &BTreeSet::new(), true)
}

fn build_in(parent: &Path, n: u64, skip: &BTreeSet<u64>, keep_sent: bool) -> Fixture {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let data_dir = dir.path().join("data");
    let trust_dir = dir.path().join("trust");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&trust_dir).unwrap();
    let store = open_sled(&data_dir.join("store.sled"));
    let (sent_a, entries) = build_into(&store, &trust_dir, n, skip, keep_sent);
    drop(store);
    Fixture {
        dir,
        data_dir,
        trust_dir,
        sent_a,
        entries,
        untrusted: SignerKey::generate(),
    }
}

/// Builds the log of [`build`] into any store (sled, PostgreSQL) and writes signer A's
/// public key into `trust_dir`; returns signer A's frames (if kept) and the entries logged.
pub fn build_into<S: Store>(
    store: &S,
    trust_dir: &Path,
    n: u64,
    skip: &BTreeSet<u64>,
    keep_sent: bool,
) -> (Vec<Sent>, u64) {
    build_into_with(store, trust_dir, n, skip, keep_sent, 256, &mut |_| {})
}

/// As [`build_into`], committing `batch` frames per transaction and calling `after` with
/// the ledger after each commit (the transparency tests sign checkpoints there). The store
/// keeps the Merkle tree, as a receiver with `[transparency]` on does.
pub fn build_into_with<S: Store>(
    store: &S,
    trust_dir: &Path,
    n: u64,
    skip: &BTreeSet<u64>,
    keep_sent: bool,
    batch_size: usize,
    after: &mut dyn FnMut(&Ledger),
) -> (Vec<Sent>, u64) {
    airlock_receiver::transparency::ensure_tree(store, None, false).unwrap();
    let a = SignerKey::generate();
    let b = SignerKey::generate();
    std::fs::write(
        trust_dir.join("sender-a.pub"),
        a.public().to_spki_pem().unwrap(),
    )
    .unwrap();
    let b_raw = b.public().key.to_bytes();
    let b_kid = b.kid().to_owned();
    let a_kid = a.kid().to_owned();
    let half = n / 2;
    let mut ca = Chain::new(a, T0);
    let mut cb = Chain::new(b, T0 + half + 10);
    let mut pending: Vec<Sent> = Vec::with_capacity(256);
    let mut sent_a = Vec::new();
    let mut entries = 0u64;
    let mut commit = |pending: &mut Vec<Sent>, force: bool| {
        if pending.is_empty() || (!force && pending.len() < batch_size) {
            return;
        }
        let batch: Vec<AcceptedFrame> = pending
            .drain(..)
            .map(|s| {
                let at = s.env_issued_ms();
                AcceptedFrame::new(s.env, s.sign1, at)
            })
            .collect();
        entries += batch.len() as u64;
        let (_, ledger) = store.transact(|tx| apply_batch(tx, &batch)).unwrap();
        after(&ledger);
    };
    for i in 1..=half {
        let s = if i == half {
            ca.next(Body::KeyAnnounce(KeyAnnounce::Signer {
                kid: b_kid.clone(),
                public_key: b_raw,
                not_before: T0,
            }))
        } else {
            ca.next(body(i))
        };
        if keep_sent {
            sent_a.push(s.clone());
        }
        if !skip.contains(&s.env.seq) {
            pending.push(s);
        }
        commit(&mut pending, false);
    }
    for i in half + 1..=n {
        let s = if i == n {
            cb.next(Body::KeyRetire(KeyRetire::Signer { kid: a_kid.clone() }))
        } else {
            cb.next(body(i))
        };
        pending.push(s);
        commit(&mut pending, false);
    }
    commit(&mut pending, true);
    store.flush().unwrap();
    (sent_a, entries)
}

impl Sent {
    /// The receive time the fixture logs: a quarter second after issue.
    fn env_issued_ms(&self) -> u64 {
        self.env.issued_at * 1000 + 250
    }
}

/// Copies a directory tree (what the auditor does before auditing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// A fresh copy of the data directory.
    pub fn copy(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        copy_dir(&self.data_dir, &to);
        to
    }

    /// A signed frame from a key the auditor does not trust.
    pub fn untrusted_sign1(&self, seq: u64) -> Vec<u8> {
        let mut c = Chain::new(
            SignerKey::from_pkcs8_pem(&self.untrusted.to_pkcs8_pem().unwrap()).unwrap(),
            T0,
        );
        c.chain.seq = seq - 1;
        c.next(body(seq)).sign1
    }

    /// The sender export of signer A (`airlock-sender export-log` format).
    pub fn sender_export(&self, path: &Path, drop_seqs: &BTreeSet<u64>) {
        write_sender_export(&self.sent_a, path, drop_seqs);
    }
}

/// Writes `sent` as `airlock-sender export-log` would, leaving out `drop_seqs`.
pub fn write_sender_export(sent: &[Sent], path: &Path, drop_seqs: &BTreeSet<u64>) {
    let mut out = String::new();
    for s in sent {
        if drop_seqs.contains(&s.env.seq) {
            continue;
        }
        let line = serde_json::json!({
            "seq": s.env.seq,
            "hash": hex::encode(s.hash),
            "prev": hex::encode(s.env.prev),
            "kind": s.env.body.kind(),
            "issued_at": s.env.issued_at,
            "origin": "test.json#1",
            "sign1": base64::engine::general_purpose::STANDARD.encode(&s.sign1),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// A log rewritten as a store writer who knows the format would: entries renumbered, the
/// unkeyed hash chain, the head hash and the Merkle tree record all recomputed.
pub struct Rebuilt {
    /// (key, stored value) of each entry.
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    pub head: [u8; 32],
    /// `Frontier::to_bytes()` of the rewritten log.
    pub tree: Vec<u8>,
}

pub fn rebuilt(mut entries: Vec<LogEntry>) -> Rebuilt {
    let mut prev = GENESIS;
    let mut tree = airlock_protocol::merkle::Frontier::new();
    let mut rows = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        e.index = i as u64;
        e.prev_entry_hash = prev;
        let (v, h) = e.encode().unwrap();
        prev = h;
        tree.append_leaf_hash(tree_leaf(&prev));
        rows.push((LogEntry::key(e.index).to_vec(), v));
    }
    Rebuilt {
        rows,
        head: prev,
        tree: tree.to_bytes(),
    }
}

/// Direct access to a copy's log tree.
pub struct LogTree {
    db: sled::Db,
    pub log: sled::Tree,
}

impl LogTree {
    pub fn open(data_dir: &Path) -> Self {
        let store = open_sled(&data_dir.join("store.sled"));
        let db = store.db();
        let log = db.open_tree("log").unwrap();
        Self { db, log }
    }

    pub fn get(&self, index: u64) -> LogEntry {
        let v = self.log.get(index.to_be_bytes()).unwrap().unwrap();
        decode(&v, index).unwrap().entry
    }

    pub fn put_raw(&self, index: u64, value: &[u8]) {
        self.log.insert(index.to_be_bytes(), value).unwrap();
    }

    pub fn put(&self, e: &LogEntry) {
        let (v, _) = e.encode().unwrap();
        self.put_raw(e.index, &v);
    }

    /// Re-links every entry from `from` on, as an attacker who recomputes the unkeyed hash
    /// chain would; returns the new head hash.
    pub fn relink_from(&self, from: u64) -> [u8; 32] {
        let mut prev = if from == 0 {
            [0; 32]
        } else {
            self.get(from - 1).entry_hash().unwrap()
        };
        let mut i = from;
        while self.log.get(i.to_be_bytes()).unwrap().is_some() {
            let mut e = self.get(i);
            e.prev_entry_hash = prev;
            prev = e.entry_hash().unwrap();
            self.put(&e);
            i += 1;
        }
        prev
    }

    pub fn remove(&self, index: u64) {
        self.log.remove(index.to_be_bytes()).unwrap();
    }

    /// Every entry in log order.
    pub fn all(&self) -> Vec<LogEntry> {
        self.log
            .iter()
            .enumerate()
            .map(|(i, r)| decode(&r.unwrap().1, i as u64).unwrap().entry)
            .collect()
    }

    /// What a store writer who knows the format does after deleting, reordering or
    /// inserting entries: renumbers them, recomputes the whole unkeyed hash chain, the head
    /// record and the store's Merkle tree record. Only a signature can tell.
    pub fn rebuild(&self, entries: Vec<LogEntry>) {
        self.log.clear().unwrap();
        let r = rebuilt(entries);
        for (k, v) in &r.rows {
            self.log.insert(k, v.as_slice()).unwrap();
        }
        self.set_head(r.rows.len() as u64, r.head);
        let meta = self.db.open_tree("meta").unwrap();
        meta.insert("tree_frontier", r.tree).unwrap();
    }

    /// Deletes the stored checkpoints of `from` entries and more (they cannot be re-signed).
    pub fn drop_checkpoints_from(&self, from: u64) {
        let cps = self.db.open_tree("checkpoints").unwrap();
        for k in cps.range(from.to_be_bytes()..) {
            cps.remove(k.unwrap().0).unwrap();
        }
    }
}

impl Drop for LogTree {
    fn drop(&mut self) {
        let _ = self.db.flush();
    }
}

/// Opens the sled store at `path` in this process, first waiting (up to 10 s) until the
/// file lock of a handle this process dropped a moment ago is released: sled lets go of it
/// from a background thread, so an open right after a drop can find it still held.
pub fn open_sled(path: &Path) -> SledStore {
    airlock_receiver::store::sled_store::wait_until_closed(
        path,
        std::time::Duration::from_secs(10),
    );
    SledStore::open(path).unwrap()
}

/// Runs `airlock-receiver audit ARGS...`.
///
/// sled releases a database's file lock from a background thread shortly after the last
/// handle is dropped, so right after a test tampered with a copy the binary may still find
/// it locked: retry that case (and only that case) for a few seconds.
pub fn audit(args: &[&str]) -> Output {
    let mut tries = 0;
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_airlock-receiver"))
            .arg("audit")
            .args(args)
            .output()
            .unwrap();
        let locked = String::from_utf8_lossy(&out.stderr).contains("is open in a running receiver");
        if !locked || tries >= 100 {
            return out;
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// [`audit`], answering whether it succeeded, its stdout and its stderr as text.
pub fn audit_text(args: &[&str]) -> (bool, String, String) {
    let out = audit(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `audit verify --json` on a data dir: (exit ok, report).
pub fn verify(data_dir: &Path, trust_dir: &Path) -> (bool, serde_json::Value) {
    let out = audit(&[
        "verify",
        "--data-dir",
        path(data_dir),
        "--trust-dir",
        path(trust_dir),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

impl LogTree {
    /// Rewrites the store's head record (what a careful attacker would also do).
    pub fn set_head(&self, next_index: u64, head: [u8; 32]) {
        let meta = self.db.open_tree("meta").unwrap();
        let mut v = next_index.to_be_bytes().to_vec();
        v.extend_from_slice(&head);
        meta.insert("log_head", v).unwrap();
    }
}
