//! `airlock-receiver checkpoint ...`: the operator's side of the transparency log (the
//! checkpoint key ceremony, exporting checkpoints to removable media, listing them).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_protocol::checkpoint::{Checkpoint, VerifierKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::key::{CheckpointKey, load_verifier, public_path};
use super::{TIME_EXTENSION, TransparencyError, list_checkpoints};
use crate::config::{Config, StoreBackend};
use crate::store::postgres::PgStore;
use crate::store::{SledStore, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Write the latest signed checkpoint to FILE, and the log's public key with its
    /// fingerprint to FILE.pub, for removable media (the sender side records it with
    /// `airlock-sender witness record`).
    Export {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// Where to write the checkpoint (a C2SP signed note, byte for byte as signed).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// List the stored checkpoints (size, root, time) and check each signature.
    List {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Create the checkpoint key now (a key ceremony) instead of at first start; never
    /// overwrites one. Prints the public key and its fingerprint to write down.
    Keygen {
        /// The receiver's config file (receiver.toml): the key goes to
        /// `transparency.key_file` (default `<data_dir>/checkpoint.key`).
        #[arg(long)]
        config: PathBuf,
        /// The log's name (the origin line of its checkpoints), e.g.
        /// `airlock.example.org/receiver`; default `transparency.origin`, else one derived
        /// from the key.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print the checkpoint public key (verifier key) and its fingerprint.
    ShowKey {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// A stored checkpoint as listed (also the JSON of the ops listener's `/checkpoints`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub size: u64,
    pub root: String,
    pub time: Option<String>,
    pub note: String,
}

/// Every stored checkpoint, unverified (the reader checks signatures with its own key).
pub fn rows_from_store<S: Store>(store: &S) -> Result<Vec<CheckpointRow>, StoreError> {
    let list = list_checkpoints(store, None).map_err(|e| StoreError::Io(e.to_string()))?;
    let mut out = Vec::new();
    for r in list {
        match r {
            Ok(s) => out.push(CheckpointRow {
                size: s.checkpoint.size,
                root: B64.encode(s.checkpoint.root),
                time: s.checkpoint.extension(TIME_EXTENSION).map(str::to_owned),
                note: s.note,
            }),
            Err(e) => tracing::warn!(error = %e, "unreadable stored checkpoint"),
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointCmdError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transparency(#[from] TransparencyError),
    #[error(
        "the store is in use by the running receiver and its ops listener at {addr} did not answer: {detail}"
    )]
    Ops { addr: String, detail: String },
    #[error("no checkpoint signed yet: the log is empty, or [transparency] is disabled")]
    NoCheckpoint,
    #[error(
        "the latest stored checkpoint does not verify with {key}: {detail} (the store or the key file was changed: investigate before exporting)"
    )]
    BadStored { key: String, detail: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn ops_get(cfg: &Config, path: &str) -> Result<(u16, String), CheckpointCmdError> {
    let addr = cfg.ops.listen;
    crate::ops_client::get(addr, path).map_err(|e| CheckpointCmdError::Ops {
        addr: addr.to_string(),
        detail: e.to_string(),
    })
}

/// The stored checkpoints: from the store when it can be opened, else from the running
/// daemon's ops listener (sled is locked while it runs); PostgreSQL is read read-only.
fn rows(cfg: &Config) -> Result<Vec<CheckpointRow>, CheckpointCmdError> {
    if cfg.store.backend == StoreBackend::Postgres
        && let Some(pg) = &cfg.store.postgres
    {
        return Ok(rows_from_store(&PgStore::open_read_only(pg)?)?);
    }
    match SledStore::open(&cfg.store_path()) {
        Ok(s) => Ok(rows_from_store(&s)?),
        Err(StoreError::Locked { .. }) => {
            let (status, body) = ops_get(cfg, "/checkpoints")?;
            if status != 200 {
                return Err(CheckpointCmdError::Ops {
                    addr: cfg.ops.listen.to_string(),
                    detail: format!("HTTP {status}: {body}"),
                });
            }
            serde_json::from_str(&body).map_err(|e| CheckpointCmdError::Ops {
                addr: cfg.ops.listen.to_string(),
                detail: e.to_string(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn verifier_of(cfg: &Config) -> Result<VerifierKey, CheckpointCmdError> {
    Ok(load_verifier(&public_path(&cfg.checkpoint_key_file()))?)
}

fn key_lines(k: &VerifierKey) -> String {
    format!(
        "log (origin): {}\nverifier key: {k}\nfingerprint (SHA-256 of the public key): {}\n",
        k.name,
        airlock_protocol::keys::fingerprint_of(k.public.as_bytes())
    )
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointCmdError> {
    std::fs::write(path, bytes).map_err(|source| CheckpointCmdError::Write {
        path: path.to_owned(),
        source,
    })
}

pub fn run(cmd: CheckpointCommand) -> Result<String, CheckpointCmdError> {
    match cmd {
        CheckpointCommand::Export { config, out } => {
            let cfg = Config::load(&config)?;
            let key = verifier_of(&cfg)?;
            let latest = rows(&cfg)?.pop().ok_or(CheckpointCmdError::NoCheckpoint)?;
            let cp = Checkpoint::open(latest.note.as_bytes(), &key).map_err(|e| {
                CheckpointCmdError::BadStored {
                    key: key.to_string(),
                    detail: e.to_string(),
                }
            })?;
            write_file(&out, latest.note.as_bytes())?;
            let mut pub_path = out.clone().into_os_string();
            pub_path.push(".pub");
            let pub_path = PathBuf::from(pub_path);
            let fingerprint = airlock_protocol::keys::fingerprint_of(key.public.as_bytes());
            write_file(
                &pub_path,
                format!("# fingerprint: {fingerprint}\n{key}\n").as_bytes(),
            )?;
            let mut text = format!(
                "checkpoint: {} entries, root {}, signed {}\nwritten to {} (public key: {})\n",
                cp.size,
                B64.encode(cp.root),
                cp.extension(TIME_EXTENSION).unwrap_or("-"),
                out.display(),
                pub_path.display()
            );
            text.push_str(&key_lines(&key));
            text.push_str("compare the fingerprint with the one recorded at the key ceremony\n");
            Ok(text)
        }
        CheckpointCommand::List { config, json } => {
            let cfg = Config::load(&config)?;
            let key = verifier_of(&cfg)?;
            let rows = rows(&cfg)?;
            if json {
                return Ok(serde_json::to_string_pretty(&rows)
                    .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n"));
            }
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:>12}  {:44}  {:20}  signature",
                "entries", "root", "signed"
            );
            for r in &rows {
                let sig = match Checkpoint::open(r.note.as_bytes(), &key) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("BAD: {e}"),
                };
                let _ = writeln!(
                    out,
                    "{:>12}  {:44}  {:20}  {sig}",
                    r.size,
                    r.root,
                    r.time.as_deref().unwrap_or("-")
                );
            }
            let _ = writeln!(out, "{} checkpoint(s) of {}", rows.len(), key.name);
            Ok(out)
        }
        CheckpointCommand::Keygen { config, origin } => {
            let cfg = Config::load(&config)?;
            let file = cfg.checkpoint_key_file();
            if file.exists() {
                return Err(TransparencyError::KeyFile {
                    path: file,
                    detail:
                        "exists already: a log keeps its key (move it away only to start a new log)"
                            .into(),
                }
                .into());
            }
            let name = origin.or_else(|| cfg.transparency.origin.clone());
            let key = CheckpointKey::generate(name.as_deref())?;
            key.write(&file)?;
            let mut out = format!(
                "checkpoint key written to {} (public: {})\n",
                file.display(),
                public_path(&file).display()
            );
            out.push_str(&key_lines(key.verifier()));
            if cfg
                .transparency
                .origin
                .as_deref()
                .is_some_and(|o| o != key.name())
            {
                let _ = writeln!(
                    out,
                    "set transparency.origin = \"{}\" in {} (or remove it)",
                    key.name(),
                    config.display()
                );
            }
            Ok(out)
        }
        CheckpointCommand::ShowKey { config } => {
            let cfg = Config::load(&config)?;
            Ok(key_lines(&verifier_of(&cfg)?))
        }
    }
}
