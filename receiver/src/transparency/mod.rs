//! The transparency log: an RFC 9162 Merkle tree over the frame log, and signed checkpoints
//! (tree heads) of it.
//!
//! - The tree is kept incrementally by the state machine ([`crate::apply`]): its frontier
//!   (`meta::TREE`, O(log n) hashes) is updated in the same store transaction as the log
//!   entries it covers, on every backend. Leaf `i` is `SHA-256(0x00 || entry_hash(i))`
//!   ([`crate::frame_log::tree_leaf`]).
//! - The ingest signs a checkpoint ([`Checkpointer`]) every `every_entries` entries and, when
//!   the tree grew, every `every_secs` seconds, with the receiver's checkpoint key
//!   ([`key::CheckpointKey`]); checkpoints are stored in `Table::Checkpoints` by tree size.
//! - Auditors recompute the tree from the log (`audit checkpoint verify`, `audit
//!   consistency`, `audit inclusion`, `audit verify --checkpoint`).

pub mod cmd;
pub mod key;

use std::path::{Path, PathBuf};

use airlock_protocol::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use airlock_protocol::merkle::{Frontier, Hash, MerkleError};
use thiserror::Error;

use crate::apply::decode_head;
use crate::audit::timefmt::format_secs;
use crate::frame_log::{ChainVerifier, LogError, tree_leaf};
use crate::store::{Store, StoreError, Table, TxError, meta};

pub use key::CheckpointKey;

/// The extension line of a checkpoint that says when it was signed.
pub const TIME_EXTENSION: &str = "time";

#[derive(Debug, Error)]
pub enum TransparencyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(CheckpointError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Key(#[from] airlock_protocol::keys::KeyError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint key file {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    #[error("stored checkpoint for tree size {size}: {detail}")]
    StoredCheckpoint { size: u64, detail: String },
    #[error("stored checkpoint for tree size {size} is not signed by the key given: {detail}")]
    StoredCheckpointOtherKey { size: u64, detail: String },
    #[error(
        "the log is not an extension of the receiver's own checkpoint of {size} entries (the store was rewritten while the receiver was down?): it refuses to sign a tree that forks from what it signed; run `airlock-receiver audit checkpoint verify` on a copy of the data directory and see docs/audit.md"
    )]
    Fork { size: u64 },
    #[error(
        "the checkpoints of this store are signed with {expected}, but this receiver's checkpoint key file {path} {found}: all receivers of one store sign one log with one key. Stop this receiver, copy checkpoint.key and checkpoint.pub from the first receiver (its transparency.key_file, default <data_dir>/checkpoint.key) to {path} (mode 0600), and start it again; see docs/operations.md, \"The checkpoint key\""
    )]
    KeyMismatch {
        path: PathBuf,
        /// The key the store's checkpoints are signed with, for people.
        expected: String,
        /// What this receiver's key file holds, for people.
        found: String,
    },
}

impl From<CheckpointError> for TransparencyError {
    fn from(e: CheckpointError) -> Self {
        TransparencyError::Checkpoint(e)
    }
}

/// The key of a checkpoint in `Table::Checkpoints`.
pub fn checkpoint_key(size: u64) -> [u8; 8] {
    size.to_be_bytes()
}

/// The tree size of a `Table::Checkpoints` key.
pub fn size_of_key(k: &[u8]) -> Option<u64> {
    k.try_into().ok().map(u64::from_be_bytes)
}

/// Builds the tree of the log as stored: every entry's hash recomputed from its content
/// (chain checked), `progress` called every 4096 entries. Returns the frontier and, for each
/// size in `snapshots` (ascending) up to the log's length, the root at that size.
pub fn tree_of_log<S: Store>(
    store: &S,
    snapshots: &[u64],
    mut progress: impl FnMut(u64),
) -> Result<(Frontier, Vec<(u64, Hash)>), TransparencyError> {
    let mut tree = Frontier::new();
    let mut chain = ChainVerifier::new();
    let mut roots = Vec::new();
    let mut wanted = snapshots.iter().copied().peekable();
    while wanted.peek() == Some(&0) {
        roots.push((0, tree.root()));
        wanted.next();
    }
    for row in store.scan_from(Table::Log, &[]) {
        let (_, value) = row?;
        chain.push(&value)?;
        tree.append_leaf_hash(tree_leaf(&chain.summary().head));
        while wanted.peek() == Some(&tree.size()) {
            roots.push((tree.size(), tree.root()));
            wanted.next();
        }
        if tree.size().is_multiple_of(4096) {
            progress(tree.size());
        }
    }
    progress(tree.size());
    Ok((tree, roots))
}

/// Makes sure the store keeps a tree that covers the whole log: an empty store starts one;
/// a store from before the tree (or kept with the tree off) gets it rebuilt from its log.
/// With `check`, the stored tree is rebuilt from the log anyway and compared, and the
/// latest stored checkpoint must be a prefix of the log. Returns the entries covered.
pub fn ensure_tree<S: Store>(
    store: &S,
    verifier: Option<&VerifierKey>,
    check: bool,
) -> Result<u64, TransparencyError> {
    // Another receiver of a shared store may append while this one reads the log: a few
    // rounds, each ending in one transaction that sees the log and the tree together.
    const ROUNDS: u32 = 5;
    for _ in 0..ROUNDS {
        let entries = match store.get(Table::Meta, meta::HEAD)? {
            Some(v) => decode_head(&v)?.0,
            None => 0,
        };
        let current = match store.get(Table::Meta, meta::TREE)? {
            Some(v) => crate::apply::decode_tree(&v, entries).ok(),
            None => None,
        };
        if current.is_some() && !check {
            return Ok(entries);
        }
        // The latest checkpoint first, then the log: the log only grows past it.
        let latest = match verifier {
            Some(k) => latest_checkpoint(store, k)?,
            None => None,
        };
        let snapshots: Vec<u64> = latest.iter().map(|(c, _)| c.size).collect();
        if entries > 0 {
            tracing::info!(
                entries,
                "building the Merkle tree of the frame log from its entries"
            );
        }
        let (rebuilt, roots) = tree_of_log(store, &snapshots, |_| {})?;
        if let Some((cp, _)) = &latest {
            let root = roots.iter().find(|(s, _)| *s == cp.size).map(|(_, r)| *r);
            if root != Some(cp.root) {
                return Err(TransparencyError::Fork { size: cp.size });
            }
        }
        let bytes = rebuilt.to_bytes();
        let size = rebuilt.size();
        let settled = store.transact(|tx| {
            let next = match tx.get(Table::Meta, meta::HEAD)? {
                Some(v) => decode_head(&v).map_err(TxError::Store)?.0,
                None => 0,
            };
            let stored = tx.get(Table::Meta, meta::TREE)?;
            match stored {
                // Appended since the scan: the stored tree moved on with it (or is stale,
                // and the next round rebuilds).
                _ if next != size => Ok(stored
                    .as_deref()
                    .and_then(|v| crate::apply::decode_tree(v, next).ok())
                    .map(|_| next)),
                Some(v) if v == bytes => Ok(Some(size)),
                Some(v) if crate::apply::decode_tree(&v, next).is_ok() => {
                    Err(TxError::Store(StoreError::Corrupt {
                        table: "meta",
                        key: "tree_frontier".into(),
                        detail: "the stored Merkle tree is not the tree of the log: the log or the tree record was edited outside the receiver; run `airlock-receiver audit checkpoint verify` on a copy (docs/audit.md)".into(),
                    }))
                }
                _ => {
                    tx.put(Table::Meta, meta::TREE, &bytes)?;
                    Ok(Some(size))
                }
            }
        })?;
        if let Some(n) = settled {
            return Ok(n);
        }
    }
    Err(TransparencyError::StoredCheckpoint {
        size: 0,
        detail: format!(
            "the log kept growing while the Merkle tree was rebuilt ({ROUNDS} rounds): start this receiver while the others of the cluster are stopped, once, to build the tree"
        ),
    })
}

/// The key the store says signs its checkpoints: the one pinned in `meta::CHECKPOINT_KEY`,
/// else (a store kept before the key was pinned) the signer named in the latest stored
/// checkpoint.
#[derive(Debug)]
enum StoreKey {
    Pinned(VerifierKey),
    LatestSigner {
        size: u64,
        signers: Vec<(String, [u8; 4])>,
    },
}

impl StoreKey {
    fn is(&self, key: &VerifierKey) -> bool {
        match self {
            StoreKey::Pinned(k) => k == key,
            StoreKey::LatestSigner { signers, .. } => signers
                .iter()
                .any(|(name, hash)| *name == key.name && *hash == key.key_hash),
        }
    }

    fn describe(&self) -> String {
        match self {
            StoreKey::Pinned(k) => format!(
                "the checkpoint key {k} (fingerprint {})",
                airlock_protocol::keys::fingerprint_of(k.public.as_bytes())
            ),
            StoreKey::LatestSigner { size, signers } => format!(
                "the checkpoint key {} (named by the signature of the latest stored checkpoint, of {size} entries)",
                signers
                    .iter()
                    .map(|(name, hash)| format!("{name} key hash {}", hex::encode(hash)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn pinned_key(v: &[u8]) -> Result<VerifierKey, StoreError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|t| VerifierKey::parse(t.trim()).ok())
        .ok_or_else(|| StoreError::Corrupt {
            table: "meta",
            key: "checkpoint_key".into(),
            detail: "not a checkpoint verifier key (<name>+<key hash>+<key>)".into(),
        })
}

/// The signers of the latest stored checkpoint (None when there is none, or it cannot be
/// parsed: the start's check of the tree reports that).
fn latest_signers<S: Store>(store: &S) -> Result<Option<StoreKey>, StoreError> {
    let Some((_, v)) = store.last_row(Table::Checkpoints)? else {
        return Ok(None);
    };
    Ok(Checkpoint::parse_unverified(&v)
        .ok()
        .map(|(cp, sigs)| StoreKey::LatestSigner {
            size: cp.size,
            signers: sigs.into_iter().map(|s| (s.name, s.key_hash)).collect(),
        }))
}

fn store_key<S: Store>(store: &S) -> Result<Option<StoreKey>, StoreError> {
    match store.get(Table::Meta, meta::CHECKPOINT_KEY)? {
        Some(v) => Ok(Some(StoreKey::Pinned(pinned_key(&v)?))),
        None => latest_signers(store),
    }
}

/// Before a receiver makes a checkpoint key of its own at first start: refuses when the
/// store's checkpoints are already signed by a key (another receiver of the store made it),
/// so that the operator copies that key instead of starting a second log in one store.
pub fn refuse_new_key<S: Store>(store: &S, key_file: &Path) -> Result<(), TransparencyError> {
    if key_file.exists() {
        return Ok(());
    }
    match store_key(store)? {
        None => Ok(()),
        Some(k) => Err(TransparencyError::KeyMismatch {
            path: key_file.to_owned(),
            expected: k.describe(),
            found: "does not exist".into(),
        }),
    }
}

/// Holds the store to one checkpoint key: the first receiver to start pins its key in
/// `meta::CHECKPOINT_KEY` (in one transaction, so two receivers starting together on an
/// empty store cannot both win); a receiver whose key is not the pinned one, or on a store
/// from before the pin not the signer of the latest stored checkpoint, refuses to start.
/// Two keys in one store would make two logs under one tree: each receiver would refuse the
/// other's latest checkpoint at its next start, and an auditor holding one key would see the
/// other's checkpoints as forged.
pub fn claim_log<S: Store>(
    store: &S,
    key: &CheckpointKey,
    key_file: &Path,
) -> Result<(), TransparencyError> {
    let mine = key.verifier().to_string();
    let legacy = latest_signers(store)?.filter(|k| !k.is(key.verifier()));
    let pinned = store.transact(|tx| {
        if let Some(v) = tx.get(Table::Meta, meta::CHECKPOINT_KEY)? {
            return Ok(Some(v));
        }
        if legacy.is_none() {
            tx.put(Table::Meta, meta::CHECKPOINT_KEY, mine.as_bytes())?;
        }
        Ok(None)
    })?;
    let expected = match pinned {
        Some(v) => Some(StoreKey::Pinned(pinned_key(&v)?)).filter(|k| !k.is(key.verifier())),
        None => legacy,
    };
    match expected {
        None => Ok(()),
        Some(k) => Err(TransparencyError::KeyMismatch {
            path: key_file.to_owned(),
            expected: k.describe(),
            found: format!(
                "holds the key {} (fingerprint {})",
                key.verifier(),
                key.fingerprint()
            ),
        }),
    }
}

/// A stored checkpoint, parsed and verified.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// Every stored checkpoint, by size; each is checked against `key` when given (a stored
/// checkpoint that fails is reported as an error naming its size).
pub fn list_checkpoints<S: Store>(
    store: &S,
    key: Option<&VerifierKey>,
) -> Result<Vec<Result<StoredCheckpoint, TransparencyError>>, TransparencyError> {
    let mut out = Vec::new();
    for row in store.scan_from(Table::Checkpoints, &[]) {
        let (k, v) = row?;
        out.push(parse_stored(&k, &v, key));
    }
    Ok(out)
}

fn parse_stored(
    k: &[u8],
    v: &[u8],
    key: Option<&VerifierKey>,
) -> Result<StoredCheckpoint, TransparencyError> {
    let size = size_of_key(k).unwrap_or(u64::MAX);
    let bad = |detail: String| TransparencyError::StoredCheckpoint { size, detail };
    let checkpoint = match key {
        Some(key) => Checkpoint::open(v, key).map_err(|e| match e {
            CheckpointError::NotSignedByKey { .. } | CheckpointError::OriginMismatch { .. } => {
                TransparencyError::StoredCheckpointOtherKey {
                    size,
                    detail: e.to_string(),
                }
            }
            e => bad(e.to_string()),
        })?,
        None => {
            Checkpoint::parse_unverified(v)
                .map_err(|e| bad(e.to_string()))?
                .0
        }
    };
    if checkpoint.size != size {
        return Err(bad(format!(
            "stored under size {size} but says {}",
            checkpoint.size
        )));
    }
    let note = String::from_utf8_lossy(v).into_owned();
    Ok(StoredCheckpoint { checkpoint, note })
}

/// The checkpoint with the largest tree size, verified against `key`.
pub fn latest_checkpoint<S: Store>(
    store: &S,
    key: &VerifierKey,
) -> Result<Option<(Checkpoint, String)>, TransparencyError> {
    match store.last_row(Table::Checkpoints)? {
        None => Ok(None),
        Some((k, v)) => {
            let s = parse_stored(&k, &v, Some(key))?;
            Ok(Some((s.checkpoint, s.note)))
        }
    }
}

/// The latest stored checkpoint note, unverified (the ops listener serves it as it is).
pub fn latest_note<S: Store>(store: &S) -> Result<Option<String>, StoreError> {
    Ok(store
        .last_row(Table::Checkpoints)?
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
}

/// The signed-checkpoint text of `tree` at `now_secs`.
/// `seen` is the highest accepted seq per signer kid: one `seq` extension line each
/// ([`airlock_protocol::checkpoint::SEQ_EXTENSION`]), which the sender's witness records
/// to refuse an outbox older than what this receiver has accepted.
pub fn sign(
    key: &CheckpointKey,
    tree: &Frontier,
    now_secs: u64,
    seen: &[(String, u64)],
) -> Result<String, TransparencyError> {
    let mut extensions = vec![format!("{TIME_EXTENSION} {}", format_secs(now_secs))];
    extensions.extend(
        seen.iter()
            .filter(|(kid, seq)| *seq > 0 && !kid.is_empty() && !kid.contains(' '))
            .map(|(kid, seq)| airlock_protocol::checkpoint::seq_extension(kid, *seq)),
    );
    let cp = Checkpoint {
        origin: key.name().to_owned(),
        size: tree.size(),
        root: tree.root(),
        extensions,
    };
    Ok(cp.sign(key.signing())?)
}

/// The highest accepted seq per signer, from the stored replay state (read after the
/// commit the checkpoint covers, so at least as high as at its tree size).
pub fn seen_seqs<S: Store>(store: &S) -> Result<Vec<(String, u64)>, StoreError> {
    let Some(v) = store.get(Table::Meta, meta::REPLAY)? else {
        return Ok(Vec::new());
    };
    let state =
        airlock_protocol::replay::ReplayState::from_bytes(&v).map_err(|e| StoreError::Corrupt {
            table: "meta",
            key: "replay_state".into(),
            detail: e.to_string(),
        })?;
    Ok(state
        .kids()
        .map(|k| (k.to_owned(), state.highest(k)))
        .collect())
}

/// When to sign.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub every_entries: u64,
    pub every_ms: u64,
}

/// Signs and stores checkpoints as the log grows (owned by the ingest thread).
pub struct Checkpointer {
    key: CheckpointKey,
    policy: Policy,
    last_size: u64,
    last_ms: u64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Checkpointer {
    pub fn new<S: Store>(
        store: &S,
        key: CheckpointKey,
        policy: Policy,
        now_ms: u64,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, TransparencyError> {
        let last_size = latest_checkpoint(store, key.verifier())?.map_or(0, |(c, _)| c.size);
        metrics
            .checkpoint_size
            .store(last_size, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            key,
            policy,
            last_size,
            last_ms: now_ms,
            metrics,
        })
    }

    pub fn key(&self) -> &CheckpointKey {
        &self.key
    }

    fn due(&self, size: u64, now_ms: u64) -> bool {
        size > self.last_size
            && (size - self.last_size >= self.policy.every_entries
                || now_ms.saturating_sub(self.last_ms) >= self.policy.every_ms)
    }

    /// After a commit: signs when due. Returns the size signed, if any.
    pub fn after_commit<S: Store>(
        &mut self,
        store: &S,
        tree: &Frontier,
        now_ms: u64,
    ) -> Result<Option<u64>, TransparencyError> {
        if !self.due(tree.size(), now_ms) {
            return Ok(None);
        }
        self.sign_and_store(store, tree, now_ms).map(Some)
    }

    /// From a timer: signs the stored tree when the time rule says so (entries that arrived
    /// since the last checkpoint, possibly through another receiver of a shared store).
    pub fn tick<S: Store>(
        &mut self,
        store: &S,
        now_ms: u64,
    ) -> Result<Option<u64>, TransparencyError> {
        if now_ms.saturating_sub(self.last_ms) < self.policy.every_ms {
            return Ok(None);
        }
        let Some(v) = store.get(Table::Meta, meta::TREE)? else {
            return Ok(None);
        };
        let tree = Frontier::from_bytes(&v).map_err(|e| StoreError::Corrupt {
            table: "meta",
            key: "tree_frontier".into(),
            detail: e.to_string(),
        })?;
        self.after_commit(store, &tree, now_ms)
    }

    /// Signs `tree` now and stores it (a checkpoint already stored for that size, by another
    /// receiver of a shared store, is kept).
    pub fn sign_and_store<S: Store>(
        &mut self,
        store: &S,
        tree: &Frontier,
        now_ms: u64,
    ) -> Result<u64, TransparencyError> {
        let note = sign(&self.key, tree, now_ms / 1000, &seen_seqs(store)?)?;
        let k = checkpoint_key(tree.size());
        store.transact(|tx| {
            if tx.get(Table::Checkpoints, &k)?.is_none() {
                tx.put(Table::Checkpoints, &k, note.as_bytes())?;
            }
            Ok(())
        })?;
        self.last_size = tree.size();
        self.last_ms = now_ms;
        self.metrics
            .checkpoints_signed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .checkpoint_size
            .store(tree.size(), std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(size = tree.size(), "checkpoint signed");
        Ok(tree.size())
    }
}
