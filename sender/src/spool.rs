//! The spool directory: how `submit` and `resend` hand work to a running `run`.
//!
//! sled lets one process open the outbox, so short-lived commands never touch it. They
//! write one file each, atomically (temporary file, fsync, rename, fsync of the directory):
//! a file either exists complete or not at all. `run` ingests batches into the outbox in
//! name order (names start with a timestamp) and deletes them after the outbox is flushed;
//! the batch id is recorded in the outbox, so a crash between the two never ingests twice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_protocol::message::Body;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const BATCH_EXT: &str = "batch";
const COMMAND_EXT: &str = "cmd";
/// A spool file larger than this is refused when read (a batch of records is far smaller).
pub const MAX_SPOOL_FILE: u64 = 512 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool directory {dir}: {error} (check data_dir in the config and its permissions)")]
    Dir { dir: PathBuf, error: std::io::Error },
    #[error("spool file {file}: {error}")]
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("spool file {file} is damaged: {error}; move it aside and resubmit its records")]
    Damaged { file: PathBuf, error: String },
}

/// One accepted record, ready to be sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolItem {
    /// Where it came from ("approvals.json#3"), kept in the outbound log as its origin.
    pub source: String,
    pub body: Body,
}

/// Everything one `submit` accepted: all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub items: Vec<SpoolItem>,
}

/// An operator command for the running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Re-encrypt and re-send the stored Sign1 of seqs `from..=to`.
    Resend { from: u64, to: u64 },
    /// Export the outbox into `<data_dir>/backup-staging/<command id>/` (`airlock-sender
    /// backup` waits for it and copies it out).
    Backup,
}

/// A file waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Batch { id: String, path: PathBuf },
    Command { id: String, path: PathBuf },
}

/// A new unique, time-ordered id.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut r = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut r);
    format!("{nanos:020}-{}", hex::encode(r))
}

/// Creates the spool directory (mode 0700) if missing. An existing directory keeps the
/// mode its owner gave it (e.g. 0770 for an operators' group that runs `submit`).
pub fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    let err = |error| SpoolError::Dir {
        dir: dir.to_path_buf(),
        error,
    };
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes a batch durably; returns its id.
pub fn write_batch(dir: &Path, items: Vec<SpoolItem>) -> Result<String, SpoolError> {
    let id = new_id();
    let batch = Batch {
        id: id.clone(),
        items,
    };
    let bytes = serde_json::to_vec(&batch).map_err(|e| SpoolError::Damaged {
        file: dir.to_path_buf(),
        error: e.to_string(),
    })?;
    write_atomic(dir, &id, BATCH_EXT, &bytes)?;
    Ok(id)
}

/// Writes a command durably; returns its id.
pub fn write_command(dir: &Path, command: &Command) -> Result<String, SpoolError> {
    let id = new_id();
    let bytes = serde_json::to_vec(command).map_err(|e| SpoolError::Damaged {
        file: dir.to_path_buf(),
        error: e.to_string(),
    })?;
    write_atomic(dir, &id, COMMAND_EXT, &bytes)?;
    Ok(id)
}

fn write_atomic(dir: &Path, id: &str, ext: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    ensure_dir(dir)?;
    let tmp = dir.join(format!(".tmp-{id}"));
    let dest = dir.join(format!("{id}.{ext}"));
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |error| SpoolError::Io { file, error }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    // The rename is durable only once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// Complete spool files, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Entry>, SpoolError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(SpoolError::Dir {
                dir: dir.to_path_buf(),
                error,
            });
        }
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let (id, ext) = name.rsplit_once('.')?;
            let path = dir.join(&name);
            let id = id.to_string();
            match ext {
                BATCH_EXT => Some(Entry::Batch { id, path }),
                COMMAND_EXT => Some(Entry::Command { id, path }),
                _ => None,
            }
        })
        .collect())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, SpoolError> {
    let io = |error| SpoolError::Io {
        file: path.to_path_buf(),
        error,
    };
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_SPOOL_FILE {
        return Err(SpoolError::Damaged {
            file: path.to_path_buf(),
            error: format!("{len} bytes is more than {MAX_SPOOL_FILE}"),
        });
    }
    fs::read(path).map_err(io)
}

pub fn read_batch(path: &Path) -> Result<Batch, SpoolError> {
    let bytes = read_bounded(path)?;
    serde_json::from_slice(&bytes).map_err(|e| SpoolError::Damaged {
        file: path.to_path_buf(),
        error: e.to_string(),
    })
}

pub fn read_command(path: &Path) -> Result<Command, SpoolError> {
    let bytes = read_bounded(path)?;
    serde_json::from_slice(&bytes).map_err(|e| SpoolError::Damaged {
        file: path.to_path_buf(),
        error: e.to_string(),
    })
}

/// Deletes a handled spool file (missing is fine: it was handled before a crash).
pub fn remove(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(SpoolError::Io {
            file: path.to_path_buf(),
            error,
        }),
    }
}

/// Moves a damaged file aside so it stops blocking the queue.
pub fn quarantine(path: &Path) -> Result<PathBuf, SpoolError> {
    let dest = path.with_extension("damaged");
    fs::rename(path, &dest).map_err(|error| SpoolError::Io {
        file: path.to_path_buf(),
        error,
    })?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_protocol::testkit;

    #[test]
    fn batches_roundtrip_in_order_and_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut ids = Vec::new();
        for body in testkit::bodies() {
            let item = SpoolItem {
                source: "t".into(),
                body,
            };
            ids.push(write_batch(&spool, vec![item]).unwrap());
        }
        let cmd = write_command(&spool, &Command::Resend { from: 1, to: 2 }).unwrap();
        std::fs::write(spool.join(".tmp-partial"), b"{").unwrap();
        let entries = list(&spool).unwrap();
        assert_eq!(entries.len(), ids.len() + 1);
        for (entry, (id, body)) in entries.iter().zip(ids.iter().zip(testkit::bodies())) {
            let Entry::Batch { id: got, path } = entry else {
                panic!("expected batch")
            };
            assert_eq!(got, id);
            assert_eq!(read_batch(path).unwrap().items[0].body, body);
        }
        let Some(Entry::Command { id, path }) = entries.last() else {
            panic!("expected command")
        };
        assert_eq!(id, &cmd);
        assert_eq!(
            read_command(path).unwrap(),
            Command::Resend { from: 1, to: 2 }
        );
    }

    #[test]
    fn damaged_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.batch");
        std::fs::write(&p, b"{not json").unwrap();
        assert!(matches!(read_batch(&p), Err(SpoolError::Damaged { .. })));
    }
}
