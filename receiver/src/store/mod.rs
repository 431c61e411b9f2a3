//! The identity store contract: a few key-value tables committed together.
//!
//! The state machine ([`crate::apply`]) is written once against [`StateTx`], so every
//! backend (sled, or PostgreSQL for several receivers) applies frames identically; a
//! backend only has to provide atomic multi-table transactions, a flush, and ordered scans.

pub mod postgres;
pub mod records;
pub mod sled_store;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use sled_store::SledStore;

/// The tables. Keys and values are bytes; the encodings are documented per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// index u64 BE -> frame_log entry (see `frame_log.rs`).
    Log,
    /// kid_len u8 | kid | seq u64 BE -> log index u64 BE | frame hash (32 bytes), see
    /// [`SeqRecord`]. The hash tells a repetition of a logged frame (same bytes: a duplicate)
    /// from another frame under a logged seq (a replay); a frame's hash covers its kid and
    /// seq, so no second index by hash is needed.
    Seqs,
    /// local sub (UTF-8) -> UserRecord JSON.
    Users,
    /// locator (16 bytes) -> TicketRecord JSON.
    Tickets,
    /// log index u64 BE -> RevocationRecord JSON.
    Revocations,
    /// issuer (UTF-8) -> MirrorRecord JSON.
    Mirrors,
    /// named singletons, see [`meta`].
    Meta,
    /// tree size u64 BE -> signed checkpoint (C2SP signed note, UTF-8), see
    /// `crate::transparency`. Not derived from the log (each is signed at a moment, with the
    /// receiver's checkpoint key), so a replay does not rebuild it.
    Checkpoints,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Log,
        Table::Seqs,
        Table::Users,
        Table::Tickets,
        Table::Revocations,
        Table::Mirrors,
        Table::Meta,
        Table::Checkpoints,
    ];

    /// Whether a replay of the log rebuilds this table (everything but the checkpoints).
    pub fn derived_from_log(self) -> bool {
        self != Table::Checkpoints
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Log => "log",
            Table::Seqs => "seqs",
            Table::Users => "users",
            Table::Tickets => "tickets",
            Table::Revocations => "revocations",
            Table::Mirrors => "mirrors",
            Table::Meta => "meta",
            Table::Checkpoints => "checkpoints",
        }
    }

    pub fn position(self) -> usize {
        match self {
            Table::Log => 0,
            Table::Seqs => 1,
            Table::Users => 2,
            Table::Tickets => 3,
            Table::Revocations => 4,
            Table::Mirrors => 5,
            Table::Meta => 6,
            Table::Checkpoints => 7,
        }
    }
}

/// Keys of the Meta table.
pub mod meta {
    /// next index u64 BE | head entry hash (32 bytes).
    pub const HEAD: &[u8] = b"log_head";
    /// `ReplayState::to_bytes()`.
    pub const REPLAY: &[u8] = b"replay_state";
    /// KeySet JSON.
    pub const KEYS: &[u8] = b"key_set";
    /// GapState JSON.
    pub const GAPS: &[u8] = b"gaps";
    /// Prefix of `heartbeat/<kid>` -> HeartbeatRecord JSON.
    pub const HEARTBEAT_PREFIX: &[u8] = b"heartbeat/";
    /// The Merkle tree over the log, `airlock_protocol::merkle::Frontier::to_bytes()`.
    /// Present when the receiver keeps the tree (`[transparency]`); then every log append
    /// updates it in the same transaction.
    pub const TREE: &[u8] = b"tree_frontier";
    /// The verifier key (text, `<name>+<key hash>+<key>`) of the checkpoint key that signs
    /// this store's checkpoints: written by the first receiver that starts on the store
    /// with the transparency log on. Every receiver of a shared store signs with that key;
    /// one with another key refuses to start.
    pub const CHECKPOINT_KEY: &[u8] = b"checkpoint_key";
}

/// Key of the Seqs table.
pub fn seq_key(kid: &str, seq: u64) -> Vec<u8> {
    let kid = kid.as_bytes();
    let kid = kid.get(..kid.len().min(255)).unwrap_or(kid);
    let mut k = Vec::with_capacity(1 + kid.len() + 8);
    k.push(kid.len() as u8);
    k.extend_from_slice(kid);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A value of the Seqs table: where a (signer, seq) was logged and the hash of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRecord {
    pub index: u64,
    pub frame_hash: [u8; 32],
}

impl SeqRecord {
    pub fn encode(&self) -> [u8; 40] {
        let mut v = [0u8; 40];
        v[..8].copy_from_slice(&self.index.to_be_bytes());
        v[8..].copy_from_slice(&self.frame_hash);
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt {
            table: "seqs",
            key: String::new(),
            detail: format!("expected 40 bytes (index, frame hash), found {}", v.len()),
        };
        let index = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        let frame_hash = v
            .get(8..40)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        if v.len() != 40 {
            return Err(corrupt());
        }
        Ok(Self {
            index: u64::from_be_bytes(index),
            frame_hash,
        })
    }
}

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (is `airlock-receiver run` running? stop it, or query it through its ops listener)"
    )]
    Locked { path: String },
    #[error("cannot open the store at {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store table {table}, key {key}: corrupt value: {detail}")]
    Corrupt {
        table: &'static str,
        key: String,
        detail: String,
    },
    #[error("applying a frame failed: {0}")]
    Apply(String),
}

/// An error inside a transaction: conflicts are retried by the backend.
#[derive(Debug)]
pub enum TxError {
    Conflict,
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// Reads and writes inside one atomic transaction.
pub trait StateTx {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError>;

    /// Reads `keys` of `table` ahead, all in one round trip where the backend has round
    /// trips (PostgreSQL); a later `get` of any of them is answered from what was read.
    /// A hint only: the answer of `get` is the same with or without it, and sled, whose
    /// reads are lookups in its own memory, ignores it.
    fn prefetch(&self, _table: Table, _keys: &[Vec<u8>]) -> Result<(), TxError> {
        Ok(())
    }
}

/// Typed helpers over any transaction.
pub trait StateTxExt: StateTx {
    fn get_json<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>, TxError> {
        match self.get(table, key)? {
            None => Ok(None),
            Some(bytes) => decode_json(table, key, &bytes)
                .map(Some)
                .map_err(TxError::Store),
        }
    }

    fn put_json<T: Serialize>(&self, table: Table, key: &[u8], value: &T) -> Result<(), TxError> {
        let bytes = encode_json(value)?;
        self.put(table, key, &bytes)
    }

    fn contains(&self, table: Table, key: &[u8]) -> Result<bool, TxError> {
        Ok(self.get(table, key)?.is_some())
    }
}

impl<T: StateTx + ?Sized> StateTxExt for T {}

pub fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Apply(format!("cannot encode a record: {e}")))
}

pub fn decode_json<T: DeserializeOwned>(
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: table.name(),
        key: printable_key(key),
        detail: e.to_string(),
    })
}

/// A key for messages: UTF-8 when printable, hex otherwise.
pub fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => hex::encode(key),
    }
}

/// One (key, value) of a scan.
pub type Row = (Vec<u8>, Vec<u8>);

/// A backend of the identity store.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in one atomic transaction over all tables; `f` may be re-run on conflict,
    /// so it must not have side effects outside the transaction.
    fn transact<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: Fn(&dyn StateTx) -> Result<R, TxError>;

    /// Makes every committed transaction durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Whether a committed transaction is durable without [`Store::flush`] (a database
    /// with synchronous commit). When false, readers of ingest state must not see a
    /// frame's effect before the ingest flushed (see `identity_directory`).
    fn durable_on_commit(&self) -> bool {
        true
    }

    /// One value, outside any transaction.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// All rows with `key >= from`, in key order.
    fn scan_from(
        &self,
        table: Table,
        from: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Row, StoreError>> + '_>;

    /// Rows of a table, counted.
    fn len(&self, table: Table) -> usize;

    /// Whether a table is empty.
    fn is_empty(&self, table: Table) -> bool {
        self.len(table) == 0
    }

    /// The row with the largest key, if any.
    fn last_row(&self, table: Table) -> Result<Option<Row>, StoreError> {
        let mut last = None;
        for row in self.scan_from(table, &[]) {
            last = Some(row?);
        }
        Ok(last)
    }

    /// Sets `used` on an unused ticket and makes that durable; true only for the call that
    /// flipped it. Lives here (not in the state machine) because the provider, not a frame,
    /// consumes tickets.
    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, StoreError>;
}
