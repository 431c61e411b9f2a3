//! Opening what the auditor was given: a copy of a data directory (never the live one:
//! sled locks it) and public signer keys (never a link key, never a private key).

use std::path::{Path, PathBuf};

use airlock_protocol::keys::SignerPublicKey;

use super::args::{KeyArgs, SourceArgs};
use super::error::AuditError;
use crate::config::Config;
use crate::store::{SledStore, StoreError};
use crate::trust_set::{BaseTrust, SIGNER_EXT, dir_files};

/// The store to audit, opened from `--data-dir` or the config's `data_dir`.
pub fn open_store(src: &SourceArgs) -> Result<SledStore, AuditError> {
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
                    "give --data-dir DIR (a copy of the receiver's data directory) or --config FILE"
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
