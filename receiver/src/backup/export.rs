//! The daemon's half: the token file, the snapshot under the ingest gate, the stream.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::IngestGate;
use super::format::{self, FORMAT_VERSION, MAGIC, StreamHeader};
use crate::apply::decode_head;
use crate::store::{Row, SeqRecord, StoreError, Table, meta};

/// Tables the ingest overwrites: copied while the ingest is held.
const GATED: [Table; 4] = [Table::Meta, Table::Users, Table::Tickets, Table::Mirrors];

/// Bytes per chunk handed to the HTTP body.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store read failed: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error("the client closed the connection")]
    ClientGone,
}

/// The file in the data directory that keeps the time of the last backup (Unix seconds,
/// text), so `airlock_backup_last_timestamp_seconds` survives a restart.
pub const LAST_BACKUP_FILE: &str = "last-backup";

/// The time of the last backup recorded in `data_dir` (0: none, or unreadable: the alert
/// then fires, the safe side).
pub fn read_last_backup(data_dir: &Path) -> u64 {
    std::fs::read_to_string(data_dir.join(LAST_BACKUP_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records a finished backup at `unix_secs` (write, then rename: never half a number).
pub fn write_last_backup(data_dir: &Path, unix_secs: u64) -> std::io::Result<()> {
    let path = data_dir.join(LAST_BACKUP_FILE);
    let tmp = data_dir.join(format!(".{LAST_BACKUP_FILE}.tmp"));
    std::fs::write(&tmp, format!("{unix_secs}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// What the ops listener needs to serve `GET /backup`.
pub struct BackupSource {
    db: sled::Db,
    gate: Arc<IngestGate>,
    token_digest: [u8; 32],
    /// Where a finished backup is recorded ([`LAST_BACKUP_FILE`]).
    record_dir: Option<std::path::PathBuf>,
}

impl BackupSource {
    pub fn new(db: sled::Db, gate: Arc<IngestGate>, token: &str) -> Self {
        Self {
            db,
            gate,
            token_digest: Sha256::digest(token.trim().as_bytes()).into(),
            record_dir: None,
        }
    }

    /// Records each finished backup in `data_dir` ([`LAST_BACKUP_FILE`]).
    pub fn record_in(mut self, data_dir: std::path::PathBuf) -> Self {
        self.record_dir = Some(data_dir);
        self
    }

    /// Records a backup streamed to the end at `unix_secs` (a failure is logged: the gauge
    /// in memory is still right until the next restart).
    pub fn record_done(&self, unix_secs: u64) {
        if let Some(dir) = &self.record_dir
            && let Err(e) = write_last_backup(dir, unix_secs)
        {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot record the backup time");
        }
    }

    /// Whether `presented` is the token. Digests are compared, so the time taken tells
    /// nothing about the token's bytes.
    pub fn authorized(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        d == self.token_digest
    }
}

/// Writes a fresh random token to `path` (mode 0600, replacing an older one) and returns it.
/// Whoever can read the file can take a backup, which holds every private key of the store.
pub fn write_token(path: &Path) -> std::io::Result<String> {
    let token = crate::oidc::util::random_token(32);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("token-new");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

/// The tables the ingest overwrites, copied at a batch boundary, and where the log was cut.
pub struct Snapshot {
    pub header: StreamHeader,
    gated: Vec<(String, Vec<Row>)>,
}

fn tree_rows(tree: &sled::Tree) -> Result<Vec<Row>, sled::Error> {
    tree.iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// Holds the ingest, copies the tables it overwrites and reads the log's length and head.
pub fn snapshot(src: &BackupSource) -> Result<Snapshot, ExportError> {
    let started = Instant::now();
    let guard = src.gate.hold();
    let waited = started.elapsed();
    let mut gated = Vec::with_capacity(GATED.len());
    for t in GATED {
        gated.push((
            t.name().to_owned(),
            tree_rows(&src.db.open_tree(t.name())?)?,
        ));
    }
    drop(guard);
    let pause = started.elapsed().saturating_sub(waited);
    let (log_length, head) = gated
        .iter()
        .find(|(n, _)| n == Table::Meta.name())
        .and_then(|(_, rows)| rows.iter().find(|(k, _)| k == meta::HEAD))
        .map(|(_, v)| decode_head(v))
        .transpose()?
        .unwrap_or((0, [0u8; 32]));
    Ok(Snapshot {
        header: StreamHeader {
            format: FORMAT_VERSION,
            receiver_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_unix_secs: crate::clock::now_ms() / 1000,
            log_length,
            head_hash: hex::encode(head),
            ingest_pause_us: u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
        },
        gated,
    })
}

/// What one backup sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportSummary {
    pub trees: u64,
    pub rows: u64,
    pub bytes: u64,
}

struct Sink<F: FnMut(Vec<u8>) -> bool> {
    buf: Vec<u8>,
    send: F,
    summary: ExportSummary,
}

impl<F: FnMut(Vec<u8>) -> bool> Sink<F> {
    fn flush_if_full(&mut self, force: bool) -> Result<(), ExportError> {
        if self.buf.len() >= CHUNK || (force && !self.buf.is_empty()) {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 1024));
            self.summary.bytes += chunk.len() as u64;
            if !(self.send)(chunk) {
                return Err(ExportError::ClientGone);
            }
        }
        Ok(())
    }

    fn tree(&mut self, name: &str) -> Result<(), ExportError> {
        format::put_tree(name, &mut self.buf);
        self.summary.trees += 1;
        self.flush_if_full(false)
    }

    fn row(&mut self, k: &[u8], v: &[u8]) -> Result<(), ExportError> {
        format::put_row(k, v, &mut self.buf);
        self.summary.rows += 1;
        self.flush_if_full(false)
    }
}

/// Whether a row of an append-only table belongs to a snapshot whose log has `n` entries:
/// rows the ingest appended after the snapshot are left out.
fn in_snapshot(table: Table, key: &[u8], value: &[u8], n: u64) -> bool {
    let be = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes);
    match table {
        Table::Log | Table::Revocations => be(key).is_none_or(|i| i < n),
        // A checkpoint of size n signed after the snapshot is of the same tree.
        Table::Checkpoints => be(key).is_none_or(|s| s <= n),
        Table::Seqs => SeqRecord::decode(value).map_or(true, |r| r.index < n),
        _ => true,
    }
}

/// Streams the snapshot: the magic, the header, the copied tables, then every other tree
/// (the append-only tables cut at the snapshot's log length; the OpenID provider's trees as
/// they are while read), then the end. `send` returns false when the client left.
pub fn stream(
    src: &BackupSource,
    snap: Snapshot,
    send: impl FnMut(Vec<u8>) -> bool,
) -> Result<ExportSummary, ExportError> {
    let mut sink = Sink {
        buf: Vec::with_capacity(CHUNK + 1024),
        send,
        summary: ExportSummary::default(),
    };
    sink.buf.extend_from_slice(MAGIC);
    format::put_header(&snap.header, &mut sink.buf)?;
    let n = snap.header.log_length;
    let mut done: Vec<String> = Vec::new();
    for (name, rows) in &snap.gated {
        sink.tree(name)?;
        for (k, v) in rows {
            sink.row(k, v)?;
        }
        done.push(name.clone());
    }
    drop(snap);
    for raw in src.db.tree_names() {
        let Ok(name) = String::from_utf8(raw.to_vec()) else {
            continue;
        };
        // sled's default tree: the receiver keeps nothing there.
        if name == "__sled__default" || done.contains(&name) || !format::valid_tree_name(&name) {
            continue;
        }
        let table = Table::ALL.into_iter().find(|t| t.name() == name);
        let tree = src.db.open_tree(&raw)?;
        sink.tree(&name)?;
        let rows: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match table {
            Some(Table::Log) => Box::new(tree.range(..n.to_be_bytes())),
            _ => Box::new(tree.iter()),
        };
        for r in rows {
            let (k, v) = r?;
            if table.is_none_or(|t| in_snapshot(t, &k, &v, n)) {
                sink.row(&k, &v)?;
            }
        }
    }
    format::put_end(sink.summary.rows, &mut sink.buf);
    sink.flush_if_full(true)?;
    Ok(sink.summary)
}
