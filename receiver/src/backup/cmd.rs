//! `airlock-receiver backup` and `restore`.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use airlock_daemon::backup_files::{
    HashedFile, absent_or_empty, create_private_dir, create_private_file, sha256_file,
};
use thiserror::Error;

use super::format::{
    self, FORMAT_VERSION, FileKind, MANIFEST, Manifest, ManifestFile, Section, SectionReader,
};
use crate::audit::{self, AuditError, KeyArgs, OutputArgs, SourceArgs};
use crate::config::{Config, ConfigError, StoreBackend};
use crate::store::{SledStore, Store, StoreError, Table, meta};
use crate::transparency::key::public_path;

/// Log entries between two progress lines on stderr.
const PROGRESS_EVERY: u64 = 50_000;

const PG_BACKUP: &str = "this receiver's store is PostgreSQL (store.backend = \"postgres\"): `backup` copies the embedded sled store only. \
Back the database up with `pg_dump --serializable-deferrable --format=custom` as a role that can read the receiver's schema \
(one consistent snapshot of the frame log, the tree, the checkpoints and the provider's state; the receivers keep running), \
and restore it with `pg_restore` into an empty database (docs/operations.md, \"Backup and restore\")";

#[derive(Debug, Error)]
pub enum BackupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Postgres(&'static str),
    #[error("cannot use {dir} as the backup directory: {detail}")]
    OutDir { dir: PathBuf, detail: String },
    #[error(
        "the backup directory {dir} is not empty: give a new or empty directory (a backup never overwrites another)"
    )]
    OutNotEmpty { dir: PathBuf },
    #[error(
        "no receiver store at {path}: check data_dir in {config} (a receiver that never ran has nothing to back up)"
    )]
    NoStore { path: PathBuf, config: PathBuf },
    #[error("cannot read the ops token {path}: {detail}")]
    Token { path: PathBuf, detail: String },
    #[error(
        "the receiver's ops listener at {addr} did not answer ({detail}): is `airlock-receiver run --config {config}` running? \
         Start it, or stop it for good: with the receiver stopped, `backup` reads its store itself"
    )]
    Unreachable {
        addr: String,
        config: String,
        detail: String,
    },
    #[error(
        "the running receiver refused the backup (HTTP {status} from its ops listener at {addr}): {body}"
    )]
    Refused {
        addr: String,
        status: u16,
        body: String,
    },
    #[error(
        "the backup stream from the receiver broke off: {detail}; the partial files were removed, run the backup again"
    )]
    Stream { detail: String },
    #[error(
        "cannot write {path}: {detail} (is the disk full or read-only?); the partial backup was removed and the receiver is untouched"
    )]
    Write { path: PathBuf, detail: String },
    #[error(
        "cannot read the checkpoint key {path}: {detail}: run the backup as the receiver's user, which can read it"
    )]
    CheckpointKey { path: PathBuf, detail: String },
    #[error("{path}: not a usable backup manifest: {detail}")]
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
        "{path}: {detail}: restore only into a new or empty data directory (move the existing one aside, or set data_dir to a new path)"
    )]
    TargetNotEmpty { path: PathBuf, detail: String },
    #[error("cannot restore into {path}: {detail}; the data directory was left as it was")]
    Target { path: PathBuf, detail: String },
    #[error(
        "the backup does not verify, nothing was restored: {detail} (the log, its tree or the state derived from it was altered or damaged; use another copy)"
    )]
    Verify { detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checking the backup failed: {0}")]
    Audit(#[from] AuditError),
}

/// A file of the backup being written: hashed and counted as it goes.
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

    fn finish(self, kind: FileKind, tree: Option<String>) -> Result<ManifestFile, BackupError> {
        let path = self.0.path().to_owned();
        let w = self.0.finish().map_err(|e| write_error(&path, e))?;
        Ok(ManifestFile {
            name: w.name,
            kind,
            tree,
            rows: w.rows,
            bytes: w.bytes,
            sha256: w.sha256,
        })
    }
}

/// `backup --config F --out DIR`.
pub fn backup(config: &Path, out: &Path) -> Result<String, BackupError> {
    let cfg = Config::load(config)?;
    if cfg.store.backend == StoreBackend::Postgres {
        return Err(BackupError::Postgres(PG_BACKUP));
    }
    let store_path = cfg.store_path();
    if !store_path.join("conf").is_file() {
        return Err(BackupError::NoStore {
            path: store_path,
            config: config.to_owned(),
        });
    }
    // A running daemon holds the store: ask it. A stopped receiver's store is read here.
    let source = match SledStore::open(&store_path) {
        Ok(store) => Source::Offline(store),
        Err(StoreError::Locked { .. }) => Source::Online(read_token(&cfg, config)?),
        Err(e) => return Err(e.into()),
    };
    // The checkpoint key is read before anything is written: a backup without it cannot be
    // restored into a receiver that goes on signing checkpoints under the same key.
    let key_files = if cfg.transparency.enabled {
        let key = cfg.checkpoint_key_file();
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| BackupError::CheckpointKey {
                path: p.to_owned(),
                detail: e.to_string(),
            })
        };
        Some((read(&key)?, read(&public_path(&key))?))
    } else {
        None
    };
    match absent_or_empty(out) {
        Ok(true) => {}
        Ok(false) => {
            return Err(BackupError::OutNotEmpty {
                dir: out.to_owned(),
            });
        }
        Err(e) => {
            return Err(BackupError::OutDir {
                dir: out.to_owned(),
                detail: e.to_string(),
            });
        }
    }
    let existed = out.exists();
    create_private_dir(out).map_err(|e| BackupError::OutDir {
        dir: out.to_owned(),
        detail: format!("{e} (is it on a read-only file system, or not yours?)"),
    })?;
    let offline = matches!(source, Source::Offline(_));
    let result = match source {
        Source::Online(token) => write_backup(&cfg, config, out, token.trim(), key_files),
        Source::Offline(store) => write_offline(store, out, key_files),
    };
    // The daemon records the backups it serves; a stopped receiver's is recorded here.
    if offline
        && result.is_ok()
        && let Err(e) =
            super::export::write_last_backup(&cfg.data_dir, crate::clock::now_ms() / 1000)
    {
        eprintln!(
            "note: cannot record the backup time in {}: {e}",
            cfg.data_dir.display()
        );
    }
    if result.is_err() {
        // Leave the directory as it was found: a half backup must not pass for one.
        if let Ok(entries) = std::fs::read_dir(out) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if !existed {
            let _ = std::fs::remove_dir(out);
        }
    }
    result
}

/// Where the export comes from.
enum Source {
    /// The running daemon's ops listener, with this token.
    Online(String),
    /// The store itself: the receiver is stopped.
    Offline(SledStore),
}

fn read_token(cfg: &Config, config: &Path) -> Result<String, BackupError> {
    let token_path = cfg.ops_token_file();
    std::fs::read_to_string(&token_path).map_err(|e| BackupError::Token {
        path: token_path.clone(),
        detail: match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "{e}: the daemon writes it at every start; is `airlock-receiver run --config {}` running?",
                config.display()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "{e}: only the receiver's user can read it (mode 0600); run the backup as that user, e.g. `sudo -u airlock-receiver airlock-receiver backup ...`"
            ),
            _ => e.to_string(),
        },
    })
}

/// The export of a stopped receiver's store, through the same stream and checks as online.
fn write_offline(
    store: SledStore,
    out: &Path,
    key_files: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<String, BackupError> {
    let src = super::export::BackupSource::new(
        store.db(),
        std::sync::Arc::new(super::IngestGate::new()),
        "",
    );
    let failed = |e: super::export::ExportError| BackupError::Stream {
        detail: e.to_string(),
    };
    let snap = super::export::snapshot(&src).map_err(failed)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let producer =
        std::thread::spawn(move || super::export::stream(&src, snap, |c| tx.send(c).is_ok()));
    let received = receive(
        out,
        ChunkReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        },
        key_files,
        false,
    );
    let produced = producer.join();
    drop(store);
    match (received, produced) {
        (Err(e), _) => Err(e),
        (Ok(text), Ok(Ok(_))) => Ok(text),
        (Ok(_), Ok(Err(e))) => Err(failed(e)),
        (Ok(_), Err(_)) => Err(BackupError::Stream {
            detail: "the export thread stopped".into(),
        }),
    }
}

/// Reads the chunks of an in-process export as one byte stream.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let rest = self.chunk.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.at += n;
        Ok(n)
    }
}

fn write_backup(
    cfg: &Config,
    config: &Path,
    out: &Path,
    token: &str,
    key_files: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<String, BackupError> {
    let addr = cfg.ops.listen;
    let (status, mut body) =
        crate::ops_client::get_stream(addr, "/backup", token).map_err(|e| {
            BackupError::Unreachable {
                addr: addr.to_string(),
                config: config.display().to_string(),
                detail: e.to_string(),
            }
        })?;
    if status != 200 {
        let mut text = String::new();
        let _ = body.by_ref().take(4096).read_to_string(&mut text);
        return Err(BackupError::Refused {
            addr: addr.to_string(),
            status,
            body: text.trim_end().to_owned(),
        });
    }
    receive(out, body, key_files, true)
}

/// Writes the stream's trees, the checkpoint key and the manifest into `out`.
fn receive(
    out: &Path,
    body: impl Read,
    key_files: Option<(Vec<u8>, Vec<u8>)>,
    online: bool,
) -> Result<String, BackupError> {
    let broke = |e: format::FormatError| BackupError::Stream {
        detail: e.to_string(),
    };
    let mut sections = SectionReader::new(body);
    let header = match sections.next_section().map_err(broke)? {
        Some(Section::Header(h)) if h.format == FORMAT_VERSION => h,
        Some(Section::Header(h)) => {
            return Err(BackupError::Stream {
                detail: format!(
                    "the daemon sends backup format {}, this command writes {FORMAT_VERSION}: use the airlock-receiver binary of the running version",
                    h.format
                ),
            });
        }
        _ => {
            return Err(BackupError::Stream {
                detail: "no header".into(),
            });
        }
    };
    eprintln!(
        "backup: snapshot of {} log entries (ingest held {} µs); receiving",
        header.log_length, header.ingest_pause_us
    );
    let mut files: Vec<ManifestFile> = Vec::new();
    let mut current: Option<(String, OutFile)> = None;
    let mut rows = 0u64;
    let mut log_rows = 0u64;
    let mut latest_checkpoint: Option<(u64, String)> = None;
    let mut row = Vec::new();
    loop {
        match sections.next_section().map_err(broke)? {
            Some(Section::Tree(name)) => {
                if let Some((tree, f)) = current.take() {
                    files.push(f.finish(FileKind::Tree, Some(tree))?);
                }
                if files.iter().any(|f| f.tree.as_deref() == Some(&name)) {
                    return Err(BackupError::Stream {
                        detail: format!("tree {name} sent twice"),
                    });
                }
                let f = OutFile::create(out.join(format::tree_file(&name)))?;
                current = Some((name, f));
            }
            Some(Section::Row(k, v)) => {
                let Some((tree, f)) = current.as_mut() else {
                    return Err(BackupError::Stream {
                        detail: "a row before any tree".into(),
                    });
                };
                row.clear();
                format::put_kv(&k, &v, &mut row);
                f.write(&row)?;
                f.0.count_row();
                rows += 1;
                if tree == Table::Log.name() {
                    log_rows += 1;
                    if log_rows.is_multiple_of(PROGRESS_EVERY) {
                        eprintln!(
                            "backup: {log_rows} of {} log entries exported",
                            header.log_length
                        );
                    }
                } else if tree == Table::Checkpoints.name()
                    && let Some(size) = crate::transparency::size_of_key(&k)
                {
                    latest_checkpoint = Some((size, String::from_utf8_lossy(&v).into_owned()));
                }
            }
            Some(Section::End { rows: sent }) => {
                if sent != rows {
                    return Err(BackupError::Stream {
                        detail: format!("the daemon sent {sent} rows, {rows} arrived"),
                    });
                }
                break;
            }
            Some(Section::Header(_)) => {
                return Err(BackupError::Stream {
                    detail: "a second header".into(),
                });
            }
            None => {
                return Err(BackupError::Stream {
                    detail: "no end section".into(),
                });
            }
        }
    }
    if let Some((tree, f)) = current.take() {
        files.push(f.finish(FileKind::Tree, Some(tree))?);
    }
    if log_rows != header.log_length {
        return Err(BackupError::Stream {
            detail: format!(
                "the snapshot has {} log entries but {log_rows} arrived",
                header.log_length
            ),
        });
    }
    if let Some((key, public)) = key_files {
        for (name, bytes, kind) in [
            ("checkpoint.key", key, FileKind::CheckpointKey),
            ("checkpoint.pub", public, FileKind::CheckpointPublicKey),
        ] {
            let mut f = OutFile::create(out.join(name))?;
            f.write(&bytes)?;
            files.push(f.finish(kind, None)?);
        }
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        receiver_version: header.receiver_version.clone(),
        created_unix_secs: header.created_unix_secs,
        log_length: header.log_length,
        head_hash: header.head_hash.clone(),
        latest_checkpoint_size: latest_checkpoint.as_ref().map(|(s, _)| *s),
        latest_checkpoint: latest_checkpoint.map(|(_, n)| n),
        ingest_pause_us: header.ingest_pause_us,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Write {
        path: out.join(MANIFEST),
        detail: e.to_string(),
    })?;
    let mut m = OutFile::create(out.join(MANIFEST))?;
    m.write(&json)?;
    m.write(b"\n")?;
    m.finish(FileKind::Tree, None)?;
    if let Ok(d) = File::open(out) {
        let _ = d.sync_all();
    }
    let trees = manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Tree)
        .count();
    Ok(format!(
        "backup written to {}: {} log entries, head {}, latest checkpoint {}; {rows} rows in {trees} trees{}; {}\n\
         keep it like the data directory itself: it holds the OpenID signing keys and the checkpoint key\n",
        out.display(),
        manifest.log_length,
        manifest.head_hash,
        manifest
            .latest_checkpoint_size
            .map_or_else(|| "none".to_owned(), |s| format!("of size {s}")),
        if manifest
            .files
            .iter()
            .any(|f| f.kind == FileKind::CheckpointKey)
        {
            ", checkpoint key"
        } else {
            ""
        },
        if online {
            format!("the ingest was held {} µs", manifest.ingest_pause_us)
        } else {
            "read from the store of the stopped receiver".to_owned()
        },
    ))
}

fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let bad = |detail: String| BackupError::Manifest {
        path: path.clone(),
        detail,
    };
    let text = std::fs::read(&path).map_err(|e| {
        bad(format!(
            "{e}: give the directory `airlock-receiver backup --out` wrote"
        ))
    })?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if m.format != FORMAT_VERSION {
        return Err(bad(format!(
            "backup format {}, this receiver restores format {FORMAT_VERSION}",
            m.format
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for f in &m.files {
        let tree_ok = match (&f.kind, &f.tree) {
            (FileKind::Tree, Some(t)) => format::valid_tree_name(t),
            (FileKind::Tree, None) => false,
            (_, t) => t.is_none(),
        };
        if !format::valid_file_name(&f.name) || f.name == MANIFEST || !tree_ok {
            return Err(bad(format!("an invalid file entry {:?}", f.name)));
        }
        if !names.insert(f.name.clone()) {
            return Err(bad(format!("file {} listed twice", f.name)));
        }
    }
    if !m
        .files
        .iter()
        .any(|f| f.tree.as_deref() == Some(Table::Log.name()))
    {
        return Err(bad("no frame log (tree `log`) in the backup".into()));
    }
    Ok(m)
}

/// Every file against its checksum; the first mismatch is named.
fn check_files(from: &Path, m: &Manifest) -> Result<(), BackupError> {
    for f in &m.files {
        let path = from.join(&f.name);
        let (sum, bytes) = sha256_file(&path).map_err(|e| BackupError::Manifest {
            path: path.clone(),
            detail: format!("listed in manifest.json but cannot be read: {e}"),
        })?;
        if sum != f.sha256 || bytes != f.bytes {
            return Err(BackupError::Checksum {
                path,
                expected: f.sha256.clone(),
                found: sum,
            });
        }
    }
    Ok(())
}

/// What a restore did.
struct Restored {
    trees: usize,
    rows: u64,
    entries: u64,
    head: String,
    signers: usize,
    missing_seqs: u64,
    checkpoints: usize,
    key_installed: bool,
}

/// `restore --config F --from DIR`.
pub fn restore(
    config: &Path,
    from: &Path,
    checkpoint_key: Option<&Path>,
) -> Result<String, BackupError> {
    let cfg = Config::load(config)?;
    if cfg.store.backend == StoreBackend::Postgres {
        return Err(BackupError::Postgres(PG_BACKUP));
    }
    let manifest = read_manifest(from)?;
    check_files(from, &manifest)?;
    let data_dir = cfg.data_dir.clone();
    match absent_or_empty(&data_dir) {
        Ok(true) => {}
        Ok(false) => {
            return Err(BackupError::TargetNotEmpty {
                path: data_dir,
                detail: "the data directory is not empty".into(),
            });
        }
        Err(e) => {
            return Err(BackupError::Target {
                path: data_dir,
                detail: e.to_string(),
            });
        }
    }
    // A checkpoint key configured outside the data directory: it must be the backup's.
    let key_target = cfg.checkpoint_key_file();
    let backup_key = manifest
        .files
        .iter()
        .find(|f| f.kind == FileKind::CheckpointKey)
        .map(|f| from.join(&f.name));
    if let (Some(bk), true) = (&backup_key, key_target.exists()) {
        let same = std::fs::read(bk).ok() == std::fs::read(&key_target).ok();
        if !same {
            return Err(BackupError::TargetNotEmpty {
                path: key_target,
                detail: "a different checkpoint key is already there".into(),
            });
        }
    }
    let existed = data_dir.exists();
    create_private_dir(&data_dir).map_err(|e| BackupError::Target {
        path: data_dir.clone(),
        detail: e.to_string(),
    })?;
    let staging = data_dir.join("store.sled.restoring");
    let result = restore_into(&cfg, from, &manifest, &staging, checkpoint_key);
    let result = result.and_then(|r| {
        std::fs::rename(&staging, cfg.store_path()).map_err(|e| BackupError::Target {
            path: cfg.store_path(),
            detail: e.to_string(),
        })?;
        Ok(r)
    });
    let result = result.and_then(|mut r| {
        if let Some(bk) = &backup_key
            && !key_target.exists()
        {
            install_key(bk, &key_target)?;
            let pub_src = bk.with_file_name("checkpoint.pub");
            install_key(&pub_src, &public_path(&key_target))?;
            r.key_installed = true;
        }
        Ok(r)
    });
    match result {
        Ok(r) => Ok(describe(&cfg, from, &manifest, &r)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            let _ = std::fs::remove_dir_all(cfg.store_path());
            if !existed {
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            Err(e)
        }
    }
}

fn install_key(from: &Path, to: &Path) -> Result<(), BackupError> {
    let err = |e: std::io::Error| BackupError::Target {
        path: to.to_owned(),
        detail: e.to_string(),
    };
    if let Some(dir) = to.parent() {
        create_private_dir(dir).map_err(err)?;
    }
    let bytes = std::fs::read(from).map_err(err)?;
    let mut f = create_private_file(to).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

fn import(db: &sled::Db, from: &Path, m: &Manifest) -> Result<(usize, u64), BackupError> {
    let mut rows = 0u64;
    let mut trees = 0;
    for f in m.files.iter().filter(|f| f.kind == FileKind::Tree) {
        let Some(name) = &f.tree else { continue };
        let tree = db
            .open_tree(name)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let path = from.join(&f.name);
        let mut r = BufReader::with_capacity(
            256 * 1024,
            File::open(&path).map_err(|e| BackupError::Manifest {
                path: path.clone(),
                detail: e.to_string(),
            })?,
        );
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let mut n = 0u64;
        while let Some((k, v)) = format::read_kv(&mut r).map_err(|e| BackupError::Manifest {
            path: path.clone(),
            detail: e.to_string(),
        })? {
            batch.insert(k, v);
            pending += 1;
            n += 1;
            if pending == 10_000 {
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| StoreError::Io(e.to_string()))?;
                pending = 0;
            }
        }
        tree.apply_batch(batch)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        if n != f.rows {
            return Err(BackupError::Manifest {
                path,
                detail: format!("holds {n} rows, the manifest says {}", f.rows),
            });
        }
        rows += n;
        trees += 1;
        if name == Table::Log.name() {
            eprintln!("restore: {n} log entries imported");
        }
    }
    db.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    Ok((trees, rows))
}

fn restore_into(
    cfg: &Config,
    from: &Path,
    m: &Manifest,
    staging: &Path,
    checkpoint_key: Option<&Path>,
) -> Result<Restored, BackupError> {
    let (trees, rows) = {
        let store = SledStore::open(staging)?;
        let imported = import(&store.db(), from, m)?;
        let head = store.get(Table::Meta, meta::HEAD)?;
        let (n, h) = head
            .as_deref()
            .map(crate::apply::decode_head)
            .transpose()?
            .unwrap_or((0, [0u8; 32]));
        if n != m.log_length || hex::encode(h) != m.head_hash {
            return Err(BackupError::Verify {
                detail: format!(
                    "the store's head record says {n} entries, head {}; the manifest says {} entries, head {}",
                    hex::encode(h),
                    m.log_length,
                    m.head_hash
                ),
            });
        }
        imported
        // The store is closed here: the checks below open it again.
    };
    crate::store::sled_store::wait_until_closed(staging, std::time::Duration::from_secs(10));
    let source = SourceArgs {
        data_dir: Some(staging.to_owned()),
        pg_url: None,
        pg_password_file: None,
        config: Some(cfg.source.clone()),
    };
    let keys = KeyArgs {
        trust_dir: None,
        signers: Vec::new(),
    };
    let output = OutputArgs { json: false };
    eprintln!("restore: audit verify (hash chain, signatures, head)");
    let v = audit::verify(&audit::VerifyArgs {
        source: source.clone(),
        keys: keys.clone(),
        output,
        // Seqs still missing at the backup are not tampering: they are reported below.
        allow_gaps: true,
        expect_head: (m.log_length > 0).then(|| m.head_hash.clone()),
        checkpoint: None,
        checkpoint_key: audit::transparency::CheckpointKeyArgs {
            checkpoint_key: None,
        },
    })?;
    if !v.ok {
        return Err(BackupError::Verify {
            detail: format!("audit verify: {}", audit::verify_failure_line(&v)),
        });
    }
    let public = checkpoint_key.map(Path::to_owned).or_else(|| {
        m.files
            .iter()
            .find(|f| f.kind == FileKind::CheckpointPublicKey)
            .map(|f| from.join(&f.name))
    });
    let mut checkpoints = 0;
    if let (Some(public), Some(_)) = (public, &m.latest_checkpoint) {
        eprintln!("restore: audit checkpoint verify (Merkle tree, signed checkpoints)");
        let c =
            audit::transparency::checkpoint_verify(&audit::transparency::CheckpointVerifyArgs {
                source: source.clone(),
                key: audit::transparency::CheckpointKeyArgs {
                    checkpoint_key: Some(public),
                },
                checkpoints: Vec::new(),
                output,
            })?;
        if !c.ok {
            return Err(BackupError::Verify {
                detail: format!(
                    "audit checkpoint verify: {}",
                    c.problems.first().cloned().unwrap_or_default()
                ),
            });
        }
        checkpoints = c.checkpoints.len();
    } else if cfg.transparency.enabled && m.latest_checkpoint.is_some() {
        return Err(BackupError::Verify {
            detail: "the backup has checkpoints but no checkpoint key to check them with: pass --checkpoint-key FILE (checkpoint.pub from the key ceremony)".into(),
        });
    }
    eprintln!("restore: audit replay (the state derived from the log)");
    let r = audit::replay(&audit::ReplayArgs {
        source,
        keys,
        output,
    })?;
    if !r.ok {
        let first = r
            .differences
            .first()
            .map(|d| format!("table {}, key {}: {}", d.table, d.key, d.what))
            .unwrap_or_default();
        return Err(BackupError::Verify {
            detail: format!(
                "audit replay: {} difference(s) between the restored state and the replay of its log, first: {first}",
                r.differences.len()
            ),
        });
    }
    Ok(Restored {
        trees,
        rows,
        entries: v.entries,
        head: v.head,
        signers: v.signers.len(),
        missing_seqs: v.missing_seqs,
        checkpoints,
        key_installed: false,
    })
}

fn describe(cfg: &Config, from: &Path, m: &Manifest, r: &Restored) -> String {
    let mut out = format!(
        "restored {} into {}\n\
         frame log:   {} entries, head {} (audit verify: ok; {} signer(s), {} seq(s) still missing)\n\
         checkpoints: {} verified{}\n\
         state:       {} rows in {} trees (audit replay: no differences)\n",
        from.display(),
        cfg.store_path().display(),
        r.entries,
        r.head,
        r.signers,
        r.missing_seqs,
        r.checkpoints,
        m.latest_checkpoint_size
            .map_or_else(String::new, |s| format!(", latest of size {s}")),
        r.rows,
        r.trees,
    );
    if r.key_installed {
        out.push_str(&format!(
            "checkpoint key installed at {}\n",
            cfg.checkpoint_key_file().display()
        ));
    }
    out.push_str(
        "start it with `airlock-receiver run`; never run it beside the receiver it was backed up from on the same diode (docs/operations.md, \"Backup and restore\")\n",
    );
    out
}
