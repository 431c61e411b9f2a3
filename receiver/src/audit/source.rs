//! Opening what the auditor was given: a copy of a data directory (never the live one:
//! sled locks it) or a PostgreSQL database (read-only: a replica or a read-only role), and
//! public signer keys (never a link key, never a private key).

use std::path::{Path, PathBuf};

use airlock_protocol::keys::SignerPublicKey;

use super::args::{KeyArgs, SourceArgs};
use super::error::AuditError;
use crate::config::{Config, StoreBackend};
use crate::store::postgres::PgStore;
use crate::store::postgres::settings::PostgresConfig;
use crate::store::{Row, SledStore, StateTx, Store, StoreError, Table, TxError};
use crate::trust_set::{BaseTrust, SIGNER_EXT, dir_files};

/// The store under audit: either backend, read through the [`Store`] trait.
pub enum AuditStore {
    /// A copy of a sled data directory.
    Sled(SledStore),
    /// The shared database of an HA deployment, opened read-only.
    Pg(PgStore),
}

fn no_writes() -> StoreError {
    StoreError::Io(
        "the audit never writes to the PostgreSQL store (internal error: a write was attempted)"
            .into(),
    )
}

impl Store for AuditStore {
    fn transact<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: Fn(&dyn StateTx) -> Result<R, TxError>,
    {
        match self {
            AuditStore::Sled(s) => s.transact(f),
            // The connections are read-only: a write would be refused by the database, and
            // the store would then wait for a writable primary. Refuse it here instead.
            AuditStore::Pg(_) => Err(no_writes()),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        match self {
            AuditStore::Sled(s) => s.flush(),
            AuditStore::Pg(_) => Ok(()),
        }
    }

    fn durable_on_commit(&self) -> bool {
        match self {
            AuditStore::Sled(s) => s.durable_on_commit(),
            AuditStore::Pg(p) => p.durable_on_commit(),
        }
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AuditStore::Sled(s) => s.get(table, key),
            AuditStore::Pg(p) => p.get(table, key),
        }
    }

    fn scan_from(
        &self,
        table: Table,
        from: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Row, StoreError>> + '_> {
        match self {
            AuditStore::Sled(s) => s.scan_from(table, from),
            AuditStore::Pg(p) => p.scan_from(table, from),
        }
    }

    fn len(&self, table: Table) -> usize {
        match self {
            AuditStore::Sled(s) => s.len(table),
            AuditStore::Pg(p) => p.len(table),
        }
    }

    fn last_row(&self, table: Table) -> Result<Option<Row>, StoreError> {
        match self {
            AuditStore::Sled(s) => s.last_row(table),
            AuditStore::Pg(p) => p.last_row(table),
        }
    }

    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, StoreError> {
        match self {
            AuditStore::Sled(s) => s.consume_ticket(locator),
            AuditStore::Pg(_) => Err(no_writes()),
        }
    }
}

/// The store to audit: `--pg-url`, `--data-dir`, or the config's store.
pub fn open_store(src: &SourceArgs) -> Result<AuditStore, AuditError> {
    if let Some(url) = &src.pg_url {
        if src.data_dir.is_some() {
            return Err(AuditError::Usage {
                arg: "--pg-url",
                detail: "give either --pg-url URL or --data-dir DIR, not both".into(),
            });
        }
        let has_password = url
            .parse::<postgres::Config>()
            .is_ok_and(|c| c.get_password().is_some());
        if has_password {
            return Err(AuditError::Usage {
                arg: "--pg-url",
                detail: "contains a password (every user of this host can read it in the process list): \
                         remove it, put it in a file (mode 0600) and pass --pg-password-file FILE"
                    .into(),
            });
        }
        let mut cfg = PostgresConfig::from_url(url);
        cfg.password_file = src.pg_password_file.clone();
        return open_pg(cfg);
    }
    if src.data_dir.is_none()
        && let Some(c) = &src.config
    {
        let cfg = Config::load(c)?;
        if cfg.store.backend == StoreBackend::Postgres {
            let pg = cfg.store.postgres.ok_or_else(|| AuditError::Usage {
                arg: "--config",
                detail: "store.backend is \"postgres\" but [store.postgres] is missing: add it, or pass --pg-url URL".into(),
            })?;
            return open_pg(pg);
        }
    }
    open_sled(src).map(AuditStore::Sled)
}

/// Read-only, one connection, one snapshot (see [`PgStore::open_read_only`]).
fn open_pg(cfg: PostgresConfig) -> Result<AuditStore, AuditError> {
    if let Err(p) = cfg.validate() {
        return Err(AuditError::Usage {
            arg: "--pg-url",
            detail: format!("{}: {}", p.key, p.problem),
        });
    }
    Ok(AuditStore::Pg(PgStore::open_read_only(&cfg)?))
}

fn open_sled(src: &SourceArgs) -> Result<SledStore, AuditError> {
    let path = store_path(src)?;
    match SledStore::open(&path) {
        Ok(s) => Ok(s),
        Err(StoreError::Locked { path }) => Err(AuditError::InUse { path }),
        Err(e) => Err(e.into()),
    }
}

/// Resolves the sled directory without creating anything: a wrong path must be an error,
/// not a fresh empty store that "verifies".
fn store_path(src: &SourceArgs) -> Result<PathBuf, AuditError> {
    let dir = match (&src.data_dir, &src.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => Config::load(c)?.data_dir,
        (None, None) => {
            return Err(AuditError::Usage {
                arg: "--data-dir",
                detail:
                    "give --data-dir DIR (a copy of the receiver's data directory), --pg-url URL (the PostgreSQL database of an HA deployment) or --config FILE"
                        .into(),
            });
        }
    };
    let nested = dir.join("store.sled");
    if is_sled_dir(&nested) {
        Ok(nested)
    } else if is_sled_dir(&dir) {
        Ok(dir)
    } else {
        Err(AuditError::NoStore { dir })
    }
}

fn is_sled_dir(p: &Path) -> bool {
    p.join("conf").is_file() && p.join("db").is_file()
}

/// The signer keys trusted from the start of the log.
pub fn load_keys(src: &SourceArgs, keys: &KeyArgs) -> Result<BaseTrust, AuditError> {
    let mut files: Vec<PathBuf> = keys.signers.clone();
    if let Some(dir) = &keys.trust_dir {
        if !dir.is_dir() {
            return Err(AuditError::TrustDir {
                dir: dir.clone(),
                detail: "is not a directory".into(),
            });
        }
        files.extend(dir_files(dir, SIGNER_EXT)?);
    }
    if files.is_empty()
        && let Some(cfg) = &src.config
    {
        let cfg = Config::load(cfg)?;
        files.extend(cfg.trust.signers.iter().cloned());
        if let Some(dir) = &cfg.trust.dir {
            files.extend(dir_files(dir, SIGNER_EXT)?);
        }
    }
    if files.is_empty() {
        return Err(AuditError::NoKeys);
    }
    let mut base = BaseTrust::default();
    for f in files {
        let k = SignerPublicKey::load(&f)?;
        base.signers.push((f, k));
    }
    Ok(base)
}
