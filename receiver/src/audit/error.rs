//! The audit layer's one error enum. Findings (a broken link, a difference) are not errors:
//! they are reported, and [`AuditError::Findings`] carries the exit status.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;
use crate::replay::ReplayLogError;
use crate::store::StoreError;
use crate::trust_set::TrustError;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Key(#[from] airlock_protocol::keys::KeyError),
    #[error(transparent)]
    Replay(#[from] ReplayLogError),
    #[error(
        "the store at {path} is open in a running receiver: copy the data directory (`cp -a DATA_DIR /tmp/audit-copy`, see docs/audit.md) and audit the copy"
    )]
    InUse { path: String },
    #[error(
        "no receiver store under {dir}: expected {dir}/store.sled (a copy of the receiver's data_dir) or a sled directory"
    )]
    NoStore { dir: PathBuf },
    #[error(
        "no signer public keys: pass --trust-dir DIR (the `*.pub` files of the trust directory) or --signer FILE (the sender's public key from the key ceremony), or --config FILE"
    )]
    NoKeys,
    #[error("--trust-dir {dir}: {detail}")]
    TrustDir { dir: PathBuf, detail: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
    #[error("{arg}: {detail}")]
    Usage { arg: &'static str, detail: String },
    #[error("{path}, line {line}: {detail}")]
    SenderLog {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("the OpenID provider's store cannot be read: {0}")]
    Oidc(String),
    #[error(transparent)]
    Transparency(#[from] crate::transparency::TransparencyError),
    #[error(transparent)]
    Merkle(#[from] airlock_protocol::merkle::MerkleError),
    #[error(transparent)]
    Log(#[from] crate::frame_log::LogError),
    #[error(
        "checkpoint {path}: {detail} (check that the file is a checkpoint of this log and --checkpoint-key is the receiver's checkpoint.pub from the key ceremony)"
    )]
    CheckpointFile { path: PathBuf, detail: String },
    /// The audit ran and found problems; the report was printed.
    #[error("{0}")]
    Findings(String),
}
