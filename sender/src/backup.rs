//! Backup and restore of the outbox.
//!
//! sled lets one process open the outbox, so while `run` holds it the daemon exports it
//! itself: `airlock-sender backup` drops a `backup` command into the spool, the engine
//! writes the outbox's trees into `<data_dir>/backup-staging/<id>/` on a thread of its own
//! ([`serve`]), and the command copies them into `--out`, checking every file against the
//! daemon's SHA-256 sums. With the daemon stopped, `backup` reads the outbox itself.
//!
//! Consistency: the trees the writers overwrite (meta, pending, ingested, state journal,
//! state) are copied while every writer of the outbox is held ([`Outbox::backup_view`]);
//! the log, which only grows, is then read without the hold, cut at the next seq read under
//! it. The hold is short (the pending queue and the state, not the log).
//!
//! Layout: one file per tree, `tree-<name>.kv`, rows as `u32 BE key length | key | u32 BE
//! value length | value` (the same rows as the receiver's backup files), and
//! `manifest.json` ([`Manifest`]) written last: a directory without it is incomplete.
//!
//! Restore writes only into an absent or empty outbox path, checks the sums first, and
//! refuses an outbox older than what a recorded witness checkpoint says the receiver has
//! accepted ([`crate::witness::check_outbox`]): its chain would reuse seqs.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_daemon::backup_files::{
    HashedFile, absent_or_empty, create_private_dir, create_private_file, put_kv, read_kv,
    sha256_file, tree_file, valid_file_name,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Config;
use crate::outbox::{Outbox, OutboxError, TREES};
use crate::spool::{self, Command, SpoolError};
use crate::witness::{self, WitnessError};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The version of the layout and the manifest.
pub const FORMAT_VERSION: u32 = 1;
/// What a manifest says it is (a receiver's backup directory is refused by name).
pub const KIND: &str = "airlock-sender-outbox";
/// The file in the data directory that remembers the last backup (survives restarts).
pub const LAST_BACKUP_FILE: &str = "last-backup.json";
/// A manifest larger than this is refused.
const MAX_MANIFEST: u64 = 1 << 20;
/// Rows between two progress lines on stderr.
const PROGRESS_EVERY: u64 = 50_000;
/// How long `backup` waits for a running daemon to export.
const DAEMON_WAIT: Duration = Duration::from_secs(1800);

#[derive(Debug, Error)]
pub enum BackupError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Witness(#[from] WitnessError),
    #[error(
        "the backup directory {dir} is not empty: give a new or empty directory (a backup never overwrites another)"
    )]
    OutNotEmpty { dir: PathBuf },
    #[error(
        "cannot write {path}: {detail} (is the disk full or read-only?); the partial backup was removed and the outbox is untouched"
    )]
    Write { path: PathBuf, detail: String },
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error(
        "no outbox at {path}: check data_dir in the config (a sender that never ran has nothing to back up)"
    )]
    NoOutbox { path: PathBuf },
    #[error(
        "the running daemon did not finish the backup within {secs} s (is it still running? see its log); nothing was written to {out}"
    )]
    DaemonTimeout { secs: u64, out: PathBuf },
    #[error(
        "the running daemon could not export the outbox: {detail}; nothing was written to {out}"
    )]
    DaemonFailed { detail: String, out: PathBuf },
    #[error("{path}: not a usable sender backup manifest: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error(
        "backup file {path} does not match its SHA-256 in manifest.json (expected {expected}, found {found}): the backup is damaged or was altered; nothing was restored, use another copy"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "{path} holds an outbox already: restore only into an absent or empty outbox path (stop `airlock-sender run`, move {path} aside, then restore)"
    )]
    TargetNotEmpty { path: PathBuf },
    #[error(
        "the backup does not import cleanly, nothing was restored: {detail} (use another copy)"
    )]
    Verify { detail: String },
    #[error(
        "refusing the outbox: its chain of signer {kid} ends at seq {outbox_seq}, but a witness checkpoint recorded here says the receiver has accepted seq {seen_seq} of that signer. \
         Sealing on it would reuse seqs {first}..={seen_seq}, which the receiver refuses (seq_conflict). \
         Restore a newer backup (its last seq must be at least {seen_seq}); if there is none, start with an empty outbox instead \
         (the new chain starts above every seq used before; resubmit what was pending). \
         `run --allow-stale-outbox` overrides this check (dangerous, see sender/README.md)",
        first = outbox_seq + 1
    )]
    Stale {
        kid: String,
        outbox_seq: u64,
        seen_seq: u64,
    },
}

impl From<witness::Stale> for BackupError {
    fn from(s: witness::Stale) -> Self {
        BackupError::Stale {
            kid: s.kid,
            outbox_seq: s.outbox_seq,
            seen_seq: s.seen_seq,
        }
    }
}

/// What a backup directory holds: `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Always [`KIND`].
    pub kind: String,
    /// The version of the sender that wrote the backup.
    pub sender_version: String,
    pub created_unix_secs: u64,
    /// The signer kid the outbox's chain belongs to (empty for an outbox that never sealed).
    pub chain_kid: String,
    /// The next seq the chain would use; the last one sealed is one below.
    pub next_seq: u64,
    /// Hash of the last frame of the chain (hex).
    pub chain_head: String,
    /// Highest seq whose first transmission had left.
    pub sent_through: u64,
    /// How long the writers were held for the snapshot (microseconds).
    pub pause_us: u64,
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The last seq the chain sealed (0 for none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Bytes in the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// One file of the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the backup directory.
    pub name: String,
    /// The outbox tree it holds.
    pub tree: String,
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The last backup, as `<data_dir>/last-backup.json` keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastBackup {
    pub unix_secs: u64,
    pub dir: String,
    pub last_seq: u64,
    pub bytes: u64,
}

/// Reads `<data_dir>/last-backup.json`; None when there is none (or it is unreadable: the
/// gauge then says "never", which alerts, the safe side).
pub fn last_backup(data_dir: &Path) -> Option<LastBackup> {
    let bytes = std::fs::read(data_dir.join(LAST_BACKUP_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn record_last_backup(data_dir: &Path, out: &Path, m: &Manifest) -> Result<(), BackupError> {
    let rec = LastBackup {
        unix_secs: crate::clock::unix_now(),
        dir: out.display().to_string(),
        last_seq: m.last_seq(),
        bytes: m.bytes(),
    };
    let path = data_dir.join(LAST_BACKUP_FILE);
    let tmp = data_dir.join(format!(".{LAST_BACKUP_FILE}.tmp"));
    let err = |e: std::io::Error| BackupError::Write {
        path: path.clone(),
        detail: e.to_string(),
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, json).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// A tree file of the backup being written: hashed and counted as it goes.
struct OutFile(HashedFile);

fn write_error(path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Write {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

impl OutFile {
    fn create(path: PathBuf) -> Result<Self, BackupError> {
        HashedFile::create(path.clone())
            .map(Self)
            .map_err(|e| write_error(&path, e))
    }

    fn write(&mut self, b: &[u8]) -> Result<(), BackupError> {
        self.0.write(b).map_err(|e| write_error(self.0.path(), e))
    }

    fn finish(self, tree: &str) -> Result<ManifestFile, BackupError> {
        let path = self.0.path().to_owned();
        let w = self.0.finish().map_err(|e| write_error(&path, e))?;
        Ok(ManifestFile {
            name: w.name,
            tree: tree.to_owned(),
            rows: w.rows,
            bytes: w.bytes,
            sha256: w.sha256,
        })
    }
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), BackupError> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    let err = |e: std::io::Error| BackupError::Write {
        path: path.clone(),
        detail: e.to_string(),
    };
    let json = serde_json::to_vec_pretty(m).map_err(|e| err(std::io::Error::other(e)))?;
    let mut f = create_private_file(&tmp).map_err(err)?;
    f.write_all(&json).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(err)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes every tree of `outbox` into the existing empty directory `dir`, manifest last.
/// `progress` gets the rows written so far.
pub fn write_trees(
    outbox: &Outbox,
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Manifest, BackupError> {
    let view = outbox.backup_view()?;
    let mut files = Vec::with_capacity(TREES.len());
    let mut rows_done = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut row = |f: &mut OutFile, k: &[u8], v: &[u8]| -> Result<(), BackupError> {
        buf.clear();
        put_kv(k, v, &mut buf);
        f.write(&buf)?;
        f.0.count_row();
        rows_done += 1;
        if rows_done.is_multiple_of(PROGRESS_EVERY) {
            progress(rows_done);
        }
        Ok(())
    };
    for (name, rows) in &view.gated {
        let mut f = OutFile::create(dir.join(tree_file(name)))?;
        for (k, v) in rows {
            row(&mut f, k, v)?;
        }
        files.push(f.finish(name)?);
    }
    let mut f = OutFile::create(dir.join(tree_file("log")))?;
    for kv in view.log_rows() {
        let (k, v) = kv?;
        row(&mut f, &k, &v)?;
    }
    files.push(f.finish("log")?);
    let m = Manifest {
        format: FORMAT_VERSION,
        kind: KIND.to_owned(),
        sender_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_unix_secs: crate::clock::unix_now(),
        chain_kid: view.chain_kid.clone(),
        next_seq: view.next_seq,
        chain_head: hex::encode(view.head),
        sent_through: view.sent_through,
        pause_us: view.pause_us,
        files,
    };
    write_manifest(dir, &m)?;
    Ok(m)
}

/// Removes what a failed backup wrote into `dir` (and `dir` itself when this run made it).
fn remove_partial(dir: &Path, made_it: bool) {
    if made_it {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(it) = std::fs::read_dir(dir) {
        for e in it.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Makes `out` ready: absent (created, 0700) or empty. Returns whether it was created.
fn prepare_out(out: &Path) -> Result<bool, BackupError> {
    let existed = out.exists();
    if !absent_or_empty(out).map_err(|e| BackupError::Write {
        path: out.to_path_buf(),
        detail: e.to_string(),
    })? {
        return Err(BackupError::OutNotEmpty {
            dir: out.to_path_buf(),
        });
    }
    create_private_dir(out).map_err(|e| BackupError::Write {
        path: out.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(!existed)
}

fn progress_line(what: &str) -> impl FnMut(u64) + '_ {
    move |rows| eprintln!("{what}: {rows} rows")
}

/// Where the running daemon stages the export of command `id`.
pub fn staging_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("backup-staging").join(id)
}

fn error_file(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("backup-staging").join(format!("{id}.error"))
}

/// The daemon's half: exports the outbox into the staging directory of command `id`, on a
/// thread of its own so sealing goes on (it waits only for the short hold). A failure is
/// written next to it as `<id>.error` for the waiting command.
pub fn serve(outbox: Arc<Outbox>, data_dir: PathBuf, id: String) {
    let spawned = std::thread::Builder::new()
        .name("airlock-backup".into())
        .spawn(move || {
            let dir = staging_dir(&data_dir, &id);
            let result = create_private_dir(&dir)
                .map_err(|e| BackupError::Write {
                    path: dir.clone(),
                    detail: e.to_string(),
                })
                .and_then(|()| write_trees(&outbox, &dir, |_| {}));
            match result {
                Ok(m) => tracing::info!(
                    command = id,
                    last_seq = m.last_seq(),
                    bytes = m.bytes(),
                    pause_us = m.pause_us,
                    "outbox exported for a backup"
                ),
                Err(e) => {
                    tracing::warn!(command = id, error = %e, "outbox export for a backup failed");
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::write(error_file(&data_dir, &id), e.to_string());
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the backup thread");
    }
}

/// What `backup` did.
#[derive(Debug, Clone)]
pub struct Done {
    pub manifest: Manifest,
    /// Whether the running daemon exported it.
    pub online: bool,
    pub took: Duration,
}

/// `airlock-sender backup`: through the running daemon when it runs, else directly.
pub fn backup(config: &Config, out: &Path, daemon_running: bool) -> Result<Done, BackupError> {
    let started = Instant::now();
    if !daemon_running {
        match backup_direct(config, out) {
            // A daemon that started meanwhile (or whose status file is stale) holds it.
            Err(BackupError::Outbox(OutboxError::Locked { .. })) => {}
            other => {
                return other.map(|manifest| Done {
                    manifest,
                    online: false,
                    took: started.elapsed(),
                });
            }
        }
    }
    let manifest = backup_through_daemon(config, out)?;
    Ok(Done {
        manifest,
        online: true,
        took: started.elapsed(),
    })
}

fn backup_direct(config: &Config, out: &Path) -> Result<Manifest, BackupError> {
    let db = config.db_dir();
    if !db.join("db").exists() && !db.join("conf").exists() {
        return Err(BackupError::NoOutbox { path: db });
    }
    let outbox = Outbox::open(&db)?;
    let made = prepare_out(out)?;
    eprintln!("backing up the outbox {} (daemon stopped)", db.display());
    match write_trees(&outbox, out, progress_line("written")) {
        Ok(m) => {
            record_last_backup(&config.data_dir, out, &m)?;
            Ok(m)
        }
        Err(e) => {
            remove_partial(out, made);
            Err(e)
        }
    }
}

fn backup_through_daemon(config: &Config, out: &Path) -> Result<Manifest, BackupError> {
    let made = prepare_out(out)?;
    let result = (|| {
        let id = spool::write_command(&config.spool_dir(), &Command::Backup)?;
        eprintln!("asked the running daemon to export the outbox (command {id})");
        let staged = staging_dir(&config.data_dir, &id);
        let error = error_file(&config.data_dir, &id);
        let deadline = Instant::now() + DAEMON_WAIT;
        let mut next_line = Instant::now() + Duration::from_secs(2);
        let manifest_path = staged.join(MANIFEST);
        let result = loop {
            if manifest_path.exists() {
                break copy_staged(&staged, out);
            }
            if let Ok(detail) = std::fs::read_to_string(&error) {
                let _ = std::fs::remove_file(&error);
                break Err(BackupError::DaemonFailed {
                    detail,
                    out: out.to_path_buf(),
                });
            }
            if Instant::now() >= deadline {
                break Err(BackupError::DaemonTimeout {
                    secs: DAEMON_WAIT.as_secs(),
                    out: out.to_path_buf(),
                });
            }
            if Instant::now() >= next_line {
                eprintln!(
                    "waiting for the daemon: {} bytes exported so far",
                    dir_bytes(&staged)
                );
                next_line = Instant::now() + Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = std::fs::remove_dir_all(&staged);
        result
    })();
    match result {
        Ok(m) => {
            record_last_backup(&config.data_dir, out, &m)?;
            Ok(m)
        }
        Err(e) => {
            remove_partial(out, made);
            Err(e)
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let bad = |detail: String| BackupError::Manifest {
        path: path.clone(),
        detail,
    };
    let f = File::open(&path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(bad("larger than 1 MiB".into()));
    }
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if m.kind != KIND {
        return Err(bad(format!(
            "kind {:?}, expected {KIND:?} (a receiver backup is restored with airlock-receiver restore)",
            m.kind
        )));
    }
    if m.format != FORMAT_VERSION {
        return Err(bad(format!(
            "format {} (this sender reads {FORMAT_VERSION})",
            m.format
        )));
    }
    for f in &m.files {
        if !valid_file_name(&f.name) || !TREES.contains(&f.tree.as_str()) {
            return Err(bad(format!("an invalid file entry {:?}", f.name)));
        }
    }
    Ok(m)
}

/// Copies the daemon's staged export into `out`, checking each file against the staged
/// manifest while copying; the manifest goes last.
fn copy_staged(staged: &Path, out: &Path) -> Result<Manifest, BackupError> {
    let m = read_manifest(staged)?;
    for f in &m.files {
        let from = staged.join(&f.name);
        let mut r = BufReader::with_capacity(
            256 * 1024,
            File::open(&from).map_err(|e| BackupError::Read {
                path: from.clone(),
                detail: e.to_string(),
            })?,
        );
        let mut w = OutFile::create(out.join(&f.name))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf).map_err(|e| BackupError::Read {
                path: from.clone(),
                detail: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            w.write(buf.get(..n).unwrap_or_default())?;
        }
        w.0.set_rows(f.rows);
        let written = w.finish(&f.tree)?;
        if written.sha256 != f.sha256 {
            return Err(BackupError::Checksum {
                path: from,
                expected: f.sha256.clone(),
                found: written.sha256,
            });
        }
        eprintln!("copied {} ({} rows, {} bytes)", f.name, f.rows, f.bytes);
    }
    write_manifest(out, &m)?;
    Ok(m)
}

/// Checks a backup directory: the manifest, every file's size and SHA-256, and the
/// witness (an outbox older than the receiver has seen is refused).
pub fn check(config: &Config, from: &Path) -> Result<Manifest, BackupError> {
    let m = read_manifest(from)?;
    for f in &m.files {
        let path = from.join(&f.name);
        let (sum, bytes) = sha256_file(&path).map_err(|e| BackupError::Read {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if sum != f.sha256 || bytes != f.bytes {
            return Err(BackupError::Checksum {
                path,
                expected: f.sha256.clone(),
                found: sum,
            });
        }
    }
    if let Some(stale) = witness::check_outbox(&config.data_dir, &m.chain_kid, m.last_seq())? {
        return Err(stale.into());
    }
    Ok(m)
}

/// Opens an outbox again in this process: sled's background threads let go of the file
/// lock a moment after the last handle drops.
fn reopen(path: &Path) -> Result<Outbox, BackupError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Outbox::open(path) {
            Err(OutboxError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(BackupError::from),
        }
    }
}

/// `airlock-sender restore`: checks the backup, imports it into a staging outbox beside the
/// outbox path, compares it with the manifest, then moves it into place.
pub fn restore(config: &Config, from: &Path) -> Result<Manifest, BackupError> {
    let target = config.db_dir();
    let not_empty = || BackupError::TargetNotEmpty {
        path: target.clone(),
    };
    if !absent_or_empty(&target).map_err(|_| not_empty())? {
        return Err(not_empty());
    }
    eprintln!("checking {} ...", from.display());
    let m = check(config, from)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| BackupError::Write {
        path: config.data_dir.clone(),
        detail: e.to_string(),
    })?;
    let staging = config.data_dir.join("outbox.sled.restoring");
    // Left by a restore that was killed: it never was the outbox.
    let _ = std::fs::remove_dir_all(&staging);
    let result = import(&staging, from, &m);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Only an empty directory can be in the way (checked above).
    let _ = std::fs::remove_dir(&target);
    if let Err(e) = std::fs::rename(&staging, &target) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(BackupError::Write {
            path: target,
            detail: e.to_string(),
        });
    }
    Ok(m)
}

fn import(staging: &Path, from: &Path, m: &Manifest) -> Result<(), BackupError> {
    let ob = Outbox::open(staging)?;
    if !ob.is_empty() {
        return Err(BackupError::TargetNotEmpty {
            path: staging.to_path_buf(),
        });
    }
    let mut done = 0u64;
    for f in &m.files {
        let path = from.join(&f.name);
        let mut r = BufReader::with_capacity(
            256 * 1024,
            File::open(&path).map_err(|e| BackupError::Read {
                path: path.clone(),
                detail: e.to_string(),
            })?,
        );
        let mut rows = 0u64;
        while let Some((k, v)) = read_kv(&mut r).map_err(|e| BackupError::Verify {
            detail: format!("{}: {e}", f.name),
        })? {
            ob.import_row(&f.tree, &k, &v)?;
            rows += 1;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                eprintln!("imported: {done} rows");
            }
        }
        if rows != f.rows {
            return Err(BackupError::Verify {
                detail: format!("{} holds {rows} rows, the manifest says {}", f.name, f.rows),
            });
        }
    }
    ob.flush()?;
    drop(ob);
    // What the engine will read at start must be what the manifest says.
    let ob = reopen(staging)?;
    let chain = ob.chain()?;
    let kid = ob.chain_kid()?;
    if (chain.next_seq, hex::encode(chain.head), kid.as_str())
        != (m.next_seq, m.chain_head.clone(), m.chain_kid.as_str())
    {
        return Err(BackupError::Verify {
            detail: format!(
                "the imported chain is at seq {} of signer {kid:?}, the manifest says {} of {:?}",
                chain.next_seq, m.next_seq, m.chain_kid
            ),
        });
    }
    if let Some(last) = ob.log_bounds()?.map(|(_, hi)| hi)
        && last + 1 > m.next_seq
    {
        return Err(BackupError::Verify {
            detail: format!(
                "the log holds seq {last}, beyond the chain's next seq {}",
                m.next_seq
            ),
        });
    }
    // The rename that follows does not disturb sled's background threads (they hold open
    // files, not the path), and the lock goes with this process: `run` starts afterwards.
    drop(ob);
    Ok(())
}
