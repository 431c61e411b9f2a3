//! `audit checkpoint verify`, `audit consistency`, `audit inclusion`, and the tree check of
//! `audit verify --checkpoint`: the Merkle tree recomputed from the log itself, held to
//! checkpoints signed by the receiver's checkpoint key.
//!
//! The auditor trusts a checkpoint it holds (carried out on removable media, recorded by
//! the sender side, written down). The log passes when the tree of its first `size` entries
//! has that checkpoint's root. When it does not, the signed checkpoints the store still
//! holds (a store writer can delete them but not forge them) narrow down where the log was
//! changed: the first differing entry lies after the largest one that still matches and
//! before the smallest one that does not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_protocol::checkpoint::{Checkpoint, VerifierKey};
use airlock_protocol::merkle::{self, Frontier, Hash};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::args::{OutputArgs, SourceArgs};
use super::error::AuditError;
use super::progress;
use super::source::{AuditStore, open_store};
use super::timefmt::format_ms;
use super::walk::expected_len;
use crate::config::Config;
use crate::frame_log::{decode, tree_leaf};
use crate::store::{Store, Table, meta};
use crate::transparency::{self, key::load_verifier};

/// The checkpoint public key the auditor trusts.
#[derive(Debug, Clone, Args)]
pub struct CheckpointKeyArgs {
    /// The log's checkpoint public key: the `checkpoint.pub` the receiver wrote (or the
    /// `.pub` file `checkpoint export` wrote beside a checkpoint), obtained at the key
    /// ceremony — never from the store under audit. Default: the one named by --config.
    #[arg(long, value_name = "FILE")]
    pub checkpoint_key: Option<PathBuf>,
}

/// The key: --checkpoint-key, or the public file of the config's key file.
pub fn verifier(keys: &CheckpointKeyArgs, src: &SourceArgs) -> Result<VerifierKey, AuditError> {
    let file = match (&keys.checkpoint_key, &src.config) {
        (Some(f), _) => f.clone(),
        (None, Some(c)) => transparency::key::public_path(&Config::load(c)?.checkpoint_key_file()),
        (None, None) => {
            return Err(AuditError::Usage {
                arg: "--checkpoint-key",
                detail: "give --checkpoint-key FILE: the receiver's checkpoint public key (checkpoint.pub) from the key ceremony".into(),
            });
        }
    };
    Ok(load_verifier(&file)?)
}

/// Reads and verifies a checkpoint file.
pub fn load_checkpoint(path: &Path, key: &VerifierKey) -> Result<Checkpoint, AuditError> {
    let bytes = std::fs::read(path).map_err(|source| AuditError::Read {
        path: path.to_owned(),
        source,
    })?;
    Checkpoint::open(&bytes, key).map_err(|e| AuditError::CheckpointFile {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The log's leaves in scan order, and the stored key of each (to name entries).
pub struct LogLeaves {
    pub leaves: Vec<Hash>,
    keys: Vec<Vec<u8>>,
    /// Positions whose entry could not be decoded (their leaf is a hash of the raw bytes).
    pub undecodable: Vec<u64>,
}

/// Reads the whole log: each leaf from its entry's content (the stored hash is never used).
pub fn read_leaves<S: Store>(store: &S, label: &str) -> Result<LogLeaves, AuditError> {
    let bar = progress::bar(expected_len(store), label);
    let mut out = LogLeaves {
        leaves: Vec::new(),
        keys: Vec::new(),
        undecodable: Vec::new(),
    };
    for (pos, row) in store.scan_from(Table::Log, &[]).enumerate() {
        let (k, v) = row?;
        out.leaves
            .push(leaf_of(&v, pos as u64, &mut out.undecodable));
        out.keys.push(k);
        if pos.is_multiple_of(4096) {
            bar.set_position(pos as u64);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

fn leaf_of(value: &[u8], pos: u64, undecodable: &mut Vec<u64>) -> Hash {
    match decode(value, pos)
        .ok()
        .and_then(|s| s.entry.entry_hash().ok())
    {
        Some(h) => tree_leaf(&h),
        None => {
            undecodable.push(pos);
            tree_leaf(&Sha256::digest(value).into())
        }
    }
}

impl LogLeaves {
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Entry at `pos`, for people: index, signer, seq, receive time.
    pub fn describe<S: Store>(&self, store: &S, pos: u64) -> String {
        let Some(k) = self.keys.get(pos as usize) else {
            return format!("entry {pos} (beyond the end of the log: it was removed)");
        };
        match store
            .get(Table::Log, k)
            .ok()
            .flatten()
            .map(|v| decode(&v, pos))
        {
            Some(Ok(s)) => format!(
                "entry {pos} (index {}, signer {} seq {}, received {})",
                s.entry.index,
                s.entry.signer_kid,
                s.entry.seq,
                format_ms(s.entry.received_at_ms)
            ),
            _ => format!("entry {pos} (undecodable)"),
        }
    }
}

/// Roots of the log's tree at each of `sizes` (any order; sizes beyond the log are left out).
pub fn roots_at(leaves: &[Hash], sizes: &[u64]) -> Vec<(u64, Hash)> {
    let mut sorted: Vec<u64> = sizes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut tree = Frontier::new();
    let mut it = sorted.into_iter().peekable();
    while it.peek() == Some(&0) {
        out.push((0, tree.root()));
        it.next();
    }
    for l in leaves {
        tree.append_leaf_hash(*l);
        while it.peek() == Some(&tree.size()) {
            out.push((tree.size(), tree.root()));
            it.next();
        }
    }
    out
}

/// Where the log departs from its checkpoints: the first differing entry is in `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub from: u64,
    pub to: u64,
}

/// Holds the log to `anchors` (trusted or signed checkpoints); None when all match.
pub fn locate(leaves: &[Hash], anchors: &[Checkpoint]) -> Option<Divergence> {
    let sizes: Vec<u64> = anchors.iter().map(|c| c.size).collect();
    let roots = roots_at(leaves, &sizes);
    let matches = |c: &Checkpoint| roots.iter().any(|(s, r)| *s == c.size && *r == c.root);
    let bad = anchors
        .iter()
        .filter(|c| !matches(c))
        .map(|c| c.size)
        .min()?;
    let good = anchors
        .iter()
        .filter(|c| c.size < bad && matches(c))
        .map(|c| c.size)
        .max()
        .unwrap_or(0);
    let len = leaves.len() as u64;
    Some(Divergence {
        from: good,
        to: (bad.saturating_sub(1)).min(len).max(good),
    })
}

/// "entry 17 (...)" or "an entry between 10 (...) and 19 (...)".
pub fn describe_divergence<S: Store>(d: &Divergence, log: &LogLeaves, store: &S) -> String {
    if d.from == d.to {
        format!(
            "the first differing entry is {}",
            log.describe(store, d.from)
        )
    } else {
        format!(
            "the first differing entry is between {} and {} (no signed checkpoint in between narrows it further)",
            log.describe(store, d.from),
            log.describe(store, d.to)
        )
    }
}

/// Signed checkpoints in the store that verify under `key` (the others are returned as
/// problems, saying why: a store writer cannot make one).
pub fn stored_anchors<S: Store>(
    store: &S,
    key: &VerifierKey,
) -> Result<(Vec<Checkpoint>, Vec<String>), AuditError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in transparency::list_checkpoints(store, Some(key))? {
        match r {
            Ok(s) => good.push(s.checkpoint),
            Err(e @ transparency::TransparencyError::StoredCheckpointOtherKey { .. }) => bad.push(format!(
                "{e} (not a checkpoint of this log's key: made by a store writer with a key of its own, or by a second receiver of the store that signed with a key of its own before receivers refused that, docs/operations.md \"The checkpoint key\")"
            )),
            Err(e) => bad.push(format!(
                "{e} (a store writer cannot sign: the stored checkpoint was altered or forged)"
            )),
        }
    }
    Ok((good, bad))
}

fn b64(h: &Hash) -> String {
    B64.encode(h)
}

// ---------------------------------------------------------------- checkpoint verify

#[derive(Debug, Clone, Args)]
pub struct CheckpointVerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub key: CheckpointKeyArgs,
    /// A checkpoint the auditor holds (from `checkpoint export`, the sender's witness
    /// records, an earlier audit); repeat for several. Without it, the checkpoints stored
    /// in the log are checked.
    #[arg(long = "checkpoint", value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedCheckpoint {
    /// Where it came from: a file, or "store".
    pub source: String,
    pub size: u64,
    pub root: String,
    pub time: Option<String>,
    /// "matches", "differs", or "beyond the log".
    pub result: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointVerifyReport {
    pub ok: bool,
    pub log: String,
    pub entries: u64,
    pub root: String,
    pub checkpoints: Vec<CheckedCheckpoint>,
    pub problems: Vec<String>,
    pub divergence: Option<Divergence>,
    pub seconds: f64,
}

pub fn checkpoint_verify(a: &CheckpointVerifyArgs) -> Result<CheckpointVerifyReport, AuditError> {
    let started = std::time::Instant::now();
    let key = verifier(&a.key, &a.source)?;
    let mut held = Vec::new();
    for f in &a.checkpoints {
        held.push((f.display().to_string(), load_checkpoint(f, &key)?));
    }
    let store = open_store(&a.source)?;
    let (stored, bad_stored) = stored_anchors(&store, &key)?;
    let mut problems: Vec<String> = bad_stored;
    let log = read_leaves(&store, "tree")?;
    for p in &log.undecodable {
        problems.push(format!("entry {p} cannot be decoded"));
    }
    let mut checked: Vec<(String, Checkpoint)> = held.clone();
    if held.is_empty() {
        checked.extend(stored.iter().cloned().map(|c| ("store".to_owned(), c)));
    }
    let sizes: Vec<u64> = checked.iter().map(|(_, c)| c.size).collect();
    let roots = roots_at(&log.leaves, &sizes);
    let mut rows = Vec::new();
    for (source, c) in &checked {
        let result = match roots.iter().find(|(s, _)| *s == c.size) {
            None => "beyond the log",
            Some((_, r)) if *r == c.root => "matches",
            Some(_) => "differs",
        };
        if result != "matches" {
            problems.push(format!(
                "checkpoint of {} entries ({source}): {}",
                c.size,
                if result == "differs" {
                    "the log's tree at that size has another root: the log is not an extension of it"
                } else {
                    "the log has fewer entries than the checkpoint: entries were removed"
                }
            ));
        }
        rows.push(CheckedCheckpoint {
            source: source.clone(),
            size: c.size,
            root: b64(&c.root),
            time: c.extension(transparency::TIME_EXTENSION).map(str::to_owned),
            result,
        });
    }
    // The store's own incremental tree must be the tree of its log.
    let whole = Frontier::from_leaf_hashes(&log.leaves);
    if let Some(v) = store.get(Table::Meta, meta::TREE)?
        && Frontier::from_bytes(&v).ok().as_ref() != Some(&whole)
    {
        problems.push(
            "the store's Merkle tree record (meta tree_frontier) is not the tree of its log: the log or the record was edited".into(),
        );
    }
    let mut anchors: Vec<Checkpoint> = checked.iter().map(|(_, c)| c.clone()).collect();
    anchors.extend(stored.iter().cloned());
    let divergence = locate(&log.leaves, &anchors);
    if let Some(d) = &divergence {
        problems.push(describe_divergence(d, &log, &store));
    }
    if checked.is_empty() {
        problems.push(
            "no checkpoint to hold the log to: none given (--checkpoint FILE) and none stored"
                .into(),
        );
    }
    Ok(CheckpointVerifyReport {
        ok: problems.is_empty(),
        log: key.name.clone(),
        entries: log.len(),
        root: b64(&whole.root()),
        checkpoints: rows,
        problems,
        divergence,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn render_checkpoint_verify(r: &CheckpointVerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "log {}: {} entries, root {}", r.log, r.entries, r.root);
    for c in &r.checkpoints {
        let _ = writeln!(
            out,
            "  checkpoint {:>10} entries  {}  {}  {}  ({})",
            c.size,
            c.root,
            c.time.as_deref().unwrap_or("-"),
            c.result,
            c.source
        );
    }
    for p in &r.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    let _ = writeln!(
        out,
        "{} ({:.1} s)",
        if r.ok {
            "OK: the log is an extension of every checkpoint checked"
        } else {
            "FAILED"
        },
        r.seconds
    );
    out
}

// ---------------------------------------------------------------- consistency

#[derive(Debug, Clone, Args)]
pub struct ConsistencyArgs {
    /// The older tree: a tree size, or a checkpoint file.
    #[arg(value_name = "OLD")]
    pub old: String,
    /// The newer tree: a tree size, a checkpoint file, or `latest` (the whole log).
    #[arg(value_name = "NEW")]
    pub new: String,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub key: CheckpointKeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyReport {
    pub ok: bool,
    pub log: Option<String>,
    pub old_size: u64,
    pub new_size: u64,
    /// The roots of the log's own tree at the two sizes.
    pub old_root: String,
    pub new_root: String,
    /// The RFC 9162 §2.1.4 consistency proof, base64 hashes in order.
    pub proof: Vec<String>,
    pub problems: Vec<String>,
    pub entries: u64,
    pub seconds: f64,
}

enum Side {
    Size(u64),
    Latest,
    File(PathBuf),
}

fn side(s: &str) -> Side {
    if s == "latest" {
        Side::Latest
    } else if let Ok(n) = s.parse::<u64>() {
        Side::Size(n)
    } else {
        Side::File(PathBuf::from(s))
    }
}

pub fn consistency(a: &ConsistencyArgs) -> Result<ConsistencyReport, AuditError> {
    let started = std::time::Instant::now();
    let (old, new) = (side(&a.old), side(&a.new));
    let needs_key = matches!(old, Side::File(_)) || matches!(new, Side::File(_));
    let key = if needs_key {
        Some(verifier(&a.key, &a.source)?)
    } else {
        None
    };
    let held = |s: &Side| -> Result<Option<Checkpoint>, AuditError> {
        match (s, &key) {
            (Side::File(f), Some(k)) => Ok(Some(load_checkpoint(f, k)?)),
            _ => Ok(None),
        }
    };
    let (old_cp, new_cp) = (held(&old)?, held(&new)?);
    let store = open_store(&a.source)?;
    let log = read_leaves(&store, "tree")?;
    let size = |s: &Side, cp: &Option<Checkpoint>| match (s, cp) {
        (Side::Size(n), _) => *n,
        (_, Some(c)) => c.size,
        _ => log.len(),
    };
    let (old_size, new_size) = (size(&old, &old_cp), size(&new, &new_cp));
    if old_size > new_size {
        return Err(AuditError::Usage {
            arg: "OLD",
            detail: format!(
                "the old tree ({old_size} entries) is larger than the new one ({new_size})"
            ),
        });
    }
    if new_size > log.len() {
        return Err(AuditError::Usage {
            arg: "NEW",
            detail: format!(
                "a tree of {new_size} entries, but the log has {} entries: no proof can be made from this store (entries were removed, or this copy is older than the checkpoint)",
                log.len()
            ),
        });
    }
    let roots = roots_at(&log.leaves, &[old_size, new_size]);
    let root = |n: u64| {
        roots
            .iter()
            .find(|(s, _)| *s == n)
            .map(|(_, r)| *r)
            .unwrap_or_else(merkle::empty_root)
    };
    let (old_root, new_root) = (root(old_size), root(new_size));
    let bar = progress::bar(new_size, "proof");
    let proof = merkle::consistency_proof(&log.leaves, old_size, new_size)?;
    bar.finish_and_clear();
    let mut problems = Vec::new();
    let mut anchors = Vec::new();
    for (name, cp) in [("OLD", &old_cp), ("NEW", &new_cp)] {
        if let Some(c) = cp {
            anchors.push(c.clone());
            let ours = if name == "OLD" { old_root } else { new_root };
            if ours != c.root {
                problems.push(format!(
                    "the {name} checkpoint's root is not the root of the log's first {} entries: the log is not an extension of it",
                    c.size
                ));
            }
        }
    }
    // The proof, checked as any third party would: from the two roots alone.
    let (vo, vn) = (
        old_cp.as_ref().map_or(old_root, |c| c.root),
        new_cp.as_ref().map_or(new_root, |c| c.root),
    );
    if let Err(e) = merkle::verify_consistency(old_size, new_size, &vo, &vn, &proof) {
        problems.push(format!("the consistency proof does not verify: {e}"));
    }
    if !problems.is_empty()
        && let Some(k) = &key
    {
        let (stored, _) = stored_anchors(&store, k)?;
        anchors.extend(stored);
        if let Some(d) = locate(&log.leaves, &anchors) {
            problems.push(describe_divergence(&d, &log, &store));
        }
    }
    Ok(ConsistencyReport {
        ok: problems.is_empty(),
        log: key.map(|k| k.name),
        old_size,
        new_size,
        old_root: b64(&vo),
        new_root: b64(&vn),
        proof: proof.iter().map(b64).collect(),
        problems,
        entries: log.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn render_consistency(r: &ConsistencyReport) -> String {
    let mut out = String::new();
    if let Some(l) = &r.log {
        let _ = writeln!(out, "log: {l}");
    }
    let _ = writeln!(out, "old tree: {} entries, root {}", r.old_size, r.old_root);
    let _ = writeln!(out, "new tree: {} entries, root {}", r.new_size, r.new_root);
    let _ = writeln!(
        out,
        "consistency proof (RFC 9162 section 2.1.4, SHA-256, base64), {} hashes:",
        r.proof.len()
    );
    for p in &r.proof {
        let _ = writeln!(out, "  {p}");
    }
    for p in &r.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    let _ = writeln!(
        out,
        "{}",
        if r.ok {
            "OK: the log at the old size is a prefix of the log at the new size (the proof verifies from the two roots alone)"
        } else {
            "FAILED"
        }
    );
    out
}

// ---------------------------------------------------------------- inclusion

#[derive(Debug, Clone, Args)]
pub struct InclusionArgs {
    /// The frame: its sender seq (with --signer when several signers used it), or its log
    /// index with --index.
    #[arg(value_name = "SEQ")]
    pub seq: u64,
    /// The signer kid of the frame (16 hex digits).
    #[arg(long, value_name = "KID")]
    pub signer: Option<String>,
    /// SEQ is a log index, not a sender seq.
    #[arg(long)]
    pub index: bool,
    /// The checkpoint to prove inclusion under.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub key: CheckpointKeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct InclusionReport {
    pub ok: bool,
    pub log: String,
    pub entry: String,
    pub index: u64,
    /// The entry's hash (hex) and its leaf hash (base64).
    pub entry_hash: String,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    /// The RFC 9162 §2.1.3 inclusion proof, base64 hashes bottom up.
    pub proof: Vec<String>,
    pub problems: Vec<String>,
}

fn find_entry<S: Store>(store: &S, a: &InclusionArgs) -> Result<(u64, [u8; 32]), AuditError> {
    let mut found: Vec<(u64, String, [u8; 32])> = Vec::new();
    for (pos, row) in store.scan_from(Table::Log, &[]).enumerate() {
        let (_, v) = row?;
        let Ok(s) = decode(&v, pos as u64) else {
            continue;
        };
        let hit = if a.index {
            pos as u64 == a.seq
        } else {
            s.entry.seq == a.seq && a.signer.as_ref().is_none_or(|k| *k == s.entry.signer_kid)
        };
        if hit {
            let h = s.entry.entry_hash()?;
            found.push((pos as u64, s.entry.signer_kid.clone(), h));
        }
    }
    match found.as_slice() {
        [(pos, _, h)] => Ok((*pos, *h)),
        [] => Err(AuditError::Usage {
            arg: "SEQ",
            detail: if a.index {
                format!("the log has no entry {}", a.seq)
            } else {
                format!(
                    "no frame with seq {} in the log{}",
                    a.seq,
                    a.signer
                        .as_ref()
                        .map(|k| format!(" from signer {k}"))
                        .unwrap_or_default()
                )
            },
        }),
        many => Err(AuditError::Usage {
            arg: "--signer",
            detail: format!(
                "seq {} is in the log {} times (signers {}): pass --signer KID, or --index with the log index",
                a.seq,
                many.len(),
                many.iter()
                    .map(|(_, k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

pub fn inclusion(a: &InclusionArgs) -> Result<InclusionReport, AuditError> {
    let key = verifier(&a.key, &a.source)?;
    let cp = load_checkpoint(&a.checkpoint, &key)?;
    let store = open_store(&a.source)?;
    let (pos, entry_hash) = find_entry(&store, a)?;
    let log = read_leaves(&store, "tree")?;
    let mut problems = Vec::new();
    if pos >= cp.size {
        return Err(AuditError::Usage {
            arg: "--checkpoint",
            detail: format!(
                "entry {pos} was logged after this checkpoint (it covers entries 0..{}): use a later checkpoint",
                cp.size
            ),
        });
    }
    if cp.size > log.len() {
        return Err(AuditError::Usage {
            arg: "--checkpoint",
            detail: format!(
                "the checkpoint covers {} entries but the log has {}: entries were removed, or this copy is older than the checkpoint",
                cp.size,
                log.len()
            ),
        });
    }
    let proof = merkle::inclusion_proof(&log.leaves, pos, cp.size)?;
    let leaf = tree_leaf(&entry_hash);
    if let Err(e) = merkle::verify_inclusion(&leaf, pos, cp.size, &proof, &cp.root) {
        problems.push(format!(
            "the entry is not in the log under this checkpoint: {e}"
        ));
        let (stored, _) = stored_anchors(&store, &key)?;
        let mut anchors = vec![cp.clone()];
        anchors.extend(stored);
        if let Some(d) = locate(&log.leaves, &anchors) {
            problems.push(describe_divergence(&d, &log, &store));
        }
    }
    Ok(InclusionReport {
        ok: problems.is_empty(),
        log: key.name.clone(),
        entry: log.describe(&store, pos),
        index: pos,
        entry_hash: hex::encode(entry_hash),
        leaf_hash: b64(&leaf),
        tree_size: cp.size,
        root: b64(&cp.root),
        proof: proof.iter().map(b64).collect(),
        problems,
    })
}

pub fn render_inclusion(r: &InclusionReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "log: {}", r.log);
    let _ = writeln!(out, "{}", r.entry);
    let _ = writeln!(out, "entry hash: {}", r.entry_hash);
    let _ = writeln!(
        out,
        "leaf hash: {} (SHA-256 of 0x00 || entry hash)",
        r.leaf_hash
    );
    let _ = writeln!(out, "checkpoint: {} entries, root {}", r.tree_size, r.root);
    let _ = writeln!(
        out,
        "inclusion proof (RFC 9162 section 2.1.3, leaf index {}), {} hashes:",
        r.index,
        r.proof.len()
    );
    for p in &r.proof {
        let _ = writeln!(out, "  {p}");
    }
    for p in &r.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    let _ = writeln!(
        out,
        "{}",
        if r.ok {
            "OK: the entry is in the log under this checkpoint"
        } else {
            "FAILED"
        }
    );
    out
}

/// For `audit verify --checkpoint`: holds the walked log to a trusted checkpoint.
pub struct TreeCheck {
    pub key: VerifierKey,
    pub checkpoint: Checkpoint,
    pub file: PathBuf,
    pub leaves: Vec<Hash>,
}

impl TreeCheck {
    pub fn new(
        file: &Path,
        keys: &CheckpointKeyArgs,
        src: &SourceArgs,
    ) -> Result<Self, AuditError> {
        let key = verifier(keys, src)?;
        let checkpoint = load_checkpoint(file, &key)?;
        Ok(Self {
            key,
            checkpoint,
            file: file.to_owned(),
            leaves: Vec::new(),
        })
    }

    /// The leaf of a walked entry (from its content; an undecodable one from its bytes).
    pub fn push(&mut self, entry: Option<&crate::frame_log::LogEntry>, raw_hash: Option<[u8; 32]>) {
        let leaf = entry
            .and_then(|e| e.entry_hash().ok())
            .or(raw_hash)
            .map_or_else(|| tree_leaf(&[0xff; 32]), |h| tree_leaf(&h));
        self.leaves.push(leaf);
    }

    /// None when the log extends the checkpoint; else the first differing position and why.
    pub fn finish(&self, store: &AuditStore) -> Result<Option<(u64, String)>, AuditError> {
        let (stored, _) = stored_anchors(store, &self.key)?;
        let mut anchors = vec![self.checkpoint.clone()];
        anchors.extend(stored);
        let trusted = roots_at(&self.leaves, &[self.checkpoint.size]);
        if trusted.first().map(|(_, r)| *r) == Some(self.checkpoint.root) {
            return Ok(None);
        }
        let d = locate(&self.leaves, &anchors).unwrap_or(Divergence { from: 0, to: 0 });
        let log = LogLeaves {
            leaves: self.leaves.clone(),
            keys: store
                .scan_from(Table::Log, &[])
                .filter_map(Result::ok)
                .map(|(k, _)| k)
                .collect(),
            undecodable: Vec::new(),
        };
        let why = if (self.leaves.len() as u64) < self.checkpoint.size {
            format!(
                "the log has {} entries but the trusted checkpoint {} covers {}: the log is not an extension of it (entries were removed); {}",
                self.leaves.len(),
                self.file.display(),
                self.checkpoint.size,
                describe_divergence(&d, &log, store)
            )
        } else {
            format!(
                "the log's first {} entries do not have the root of the trusted checkpoint {}: the log is not an extension of it (entries were deleted, reordered, inserted or altered and the chain rebuilt); {}",
                self.checkpoint.size,
                self.file.display(),
                describe_divergence(&d, &log, store)
            )
        };
        Ok(Some((d.from, why)))
    }
}
