//! The embedded sled backend.

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
    UnabortableTransactionError,
};

use super::records::TicketRecord;
use super::{Row, StateTx, Store, StoreError, Table, TxError, decode_json, encode_json};

/// The sled database and one tree per [`Table`].
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    path: String,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SledStore({})", self.path)
    }
}

/// The page cache of a store opened without a setting (the CLI's short-lived commands, the
/// auditor) and the default of `[store] cache_mib`. sled's own default is 1 GiB, which a
/// receiver filled from a large log and never gave back. sled counts serialized page sizes
/// against it; in memory a cached page takes about 1.6 times that. Past 16 MiB the resident
/// memory under ingest grows with the cache (docs/performance.md, "Memory").
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Waits until no handle of this process still holds the store's file lock, up to `limit`.
///
/// Dropping the last [`SledStore`] does not release the lock at once: sled's background
/// threads hold the database file a moment longer. A command that closes a store and opens it
/// again in the same process (restore, then verify) calls this in between. The probe takes and
/// releases the same `flock` sled takes, on its own file handle, so it leaves nothing behind.
/// Returns false when the lock is still held at `limit` (another process has the store open).
pub fn wait_until_closed(path: &Path, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let free = match std::fs::File::open(path.join("db")) {
            Ok(f) => f.try_lock().is_ok(),
            // No database file: nothing holds it.
            Err(_) => true,
        };
        if free || std::time::Instant::now() >= deadline {
            return free;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledStore {
    /// Opens (creating if needed) the store at `path` with the default page cache
    /// ([`DEFAULT_CACHE_BYTES`]). Fails with [`StoreError::Locked`] when another process has
    /// it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of at most `cache_bytes` (the daemon's
    /// `[store] cache_mib`).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| {
                let detail = e.to_string();
                if detail.contains("could not acquire lock")
                    || detail.contains("WouldBlock")
                    || detail.contains("Resource temporarily unavailable")
                {
                    StoreError::Locked {
                        path: shown.clone(),
                    }
                } else {
                    StoreError::Open {
                        path: shown.clone(),
                        detail,
                    }
                }
            })?;
        let mut trees = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            trees.push(db.open_tree(t.name()).map_err(io)?);
        }
        Ok(Self {
            db,
            trees,
            path: shown,
        })
    }

    /// A throwaway store (tests, `audit replay` scratch space).
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(io)?;
        let mut trees = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            trees.push(db.open_tree(t.name()).map_err(io)?);
        }
        Ok(Self {
            db,
            trees,
            path: "(temporary)".into(),
        })
    }

    /// The database handle, shared with the OpenID provider (its trees are prefixed `oidc_`).
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    fn tree(&self, t: Table) -> Result<&sled::Tree, StoreError> {
        self.trees
            .get(t.position())
            .ok_or(StoreError::Io(format!("table {} not open", t.name())))
    }
}

struct SledTx<'a> {
    trees: &'a [TransactionalTree],
}

fn unabortable(e: UnabortableTransactionError) -> TxError {
    match e {
        UnabortableTransactionError::Conflict => TxError::Conflict,
        UnabortableTransactionError::Storage(e) => TxError::Store(io(e)),
    }
}

impl SledTx<'_> {
    fn tree(&self, t: Table) -> Result<&TransactionalTree, TxError> {
        self.trees
            .get(t.position())
            .ok_or(TxError::Store(StoreError::Io(format!(
                "table {} not in transaction",
                t.name()
            ))))
    }
}

impl StateTx for SledTx<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let v = self.tree(table)?.get(key).map_err(unabortable)?;
        Ok(v.map(|iv| iv.to_vec()))
    }

    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.tree(table)?.insert(key, value).map_err(unabortable)?;
        Ok(())
    }
}

impl Store for SledStore {
    fn transact<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: Fn(&dyn StateTx) -> Result<R, TxError>,
    {
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        let result = trees
            .as_slice()
            .transaction(|view: &Vec<TransactionalTree>| {
                let tx = SledTx {
                    trees: view.as_slice(),
                };
                f(&tx).map_err(|e| match e {
                    TxError::Conflict => ConflictableTransactionError::Conflict,
                    TxError::Store(s) => ConflictableTransactionError::Abort(s),
                })
            });
        match result {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(io(e)),
        }
    }

    fn durable_on_commit(&self) -> bool {
        false
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(table)?.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_from(
        &self,
        table: Table,
        from: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Row, StoreError>> + '_> {
        match self.tree(table) {
            Ok(tree) => Box::new(
                tree.range(from.to_vec()..)
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io)),
            ),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn len(&self, table: Table) -> usize {
        self.tree(table).map(|t| t.len()).unwrap_or(0)
    }

    fn last_row(&self, table: Table) -> Result<Option<Row>, StoreError> {
        Ok(self
            .tree(table)?
            .last()
            .map_err(io)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, StoreError> {
        let tickets = self.tree(Table::Tickets)?;
        let flipped = tickets.transaction(|tx| {
            let Some(bytes) = tx.get(locator)? else {
                return Ok(false);
            };
            let mut t: TicketRecord = decode_json(Table::Tickets, locator, &bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            if t.used {
                return Ok(false);
            }
            t.used = true;
            let bytes = encode_json(&t).map_err(ConflictableTransactionError::Abort)?;
            tx.insert(&locator[..], bytes)?;
            Ok(true)
        });
        let flipped = match flipped {
            Ok(f) => f,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(io(e)),
        };
        if flipped {
            // Durable before the provider acts on it: a crash must not make the ticket usable again.
            self.flush()?;
        }
        Ok(flipped)
    }
}
