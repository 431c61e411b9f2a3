//! The backup's formats: the stream `GET /backup` sends, the per-tree files `backup` writes,
//! and the manifest.
//!
//! Stream: [`MAGIC`], then sections, each a tag byte: `H` u32 length + JSON
//! [`StreamHeader`]; `T` u16 length + tree name; `R` u32 length + key, u32 length + value
//! (a row of the current tree); `E` u64 rows sent (the end: a stream cut short has none).
//! Integers are big-endian. A tree file is the rows of one tree as `R` sections without the tag.

use std::io::Read;

// The tree files' row codec and names are the sender's too: one implementation for both.
pub use airlock_daemon::backup_files::{MAX_FIELD, put_kv, tree_file, valid_file_name};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The first bytes of the stream.
pub const MAGIC: &[u8; 16] = b"airlock-backup\x00\x01";
/// The version of the stream, the file layout and the manifest.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name in the backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The header, at most.
const MAX_HEADER: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the data ends inside a {0}: it was cut short")]
    Truncated(&'static str),
    #[error("{0}")]
    Bad(String),
}

/// What the daemon says about the snapshot before the rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamHeader {
    pub format: u32,
    /// The daemon's version.
    pub receiver_version: String,
    /// When the snapshot was taken (Unix seconds).
    pub created_unix_secs: u64,
    /// Log entries in the snapshot (the log is cut there).
    pub log_length: u64,
    /// Hash of the last entry (hex; all zeros for an empty log).
    pub head_hash: String,
    /// How long the ingest was held for the snapshot (microseconds).
    pub ingest_pause_us: u64,
}

/// One section of the stream.
#[derive(Debug)]
pub enum Section {
    Header(StreamHeader),
    Tree(String),
    Row(Vec<u8>, Vec<u8>),
    End { rows: u64 },
}

/// Tree names are sled tree names the receiver makes (`log`, `oidc_sessions`, ...); anything
/// else in a stream or a manifest is refused rather than used as a file name.
pub fn valid_tree_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn put_header(h: &StreamHeader, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let json = serde_json::to_vec(h).map_err(|e| FormatError::Bad(e.to_string()))?;
    out.push(b'H');
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(())
}

pub fn put_tree(name: &str, out: &mut Vec<u8>) {
    out.push(b'T');
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
}

pub fn put_row(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(b'R');
    put_kv(key, value, out);
}

pub fn put_end(rows: u64, out: &mut Vec<u8>) {
    out.push(b'E');
    out.extend_from_slice(&rows.to_be_bytes());
}

/// Fills `buf`; false at a clean end of input before the first byte.
fn fill(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<bool, FormatError> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FormatError::Truncated(what)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn exact(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), FormatError> {
    if buf.is_empty() || fill(r, buf, what)? {
        Ok(())
    } else {
        Err(FormatError::Truncated(what))
    }
}

fn field(r: &mut impl Read, what: &'static str) -> Result<Vec<u8>, FormatError> {
    let mut len = [0u8; 4];
    exact(r, &mut len, what)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FIELD {
        return Err(FormatError::Bad(format!(
            "a {what} of {len} bytes (at most {MAX_FIELD}): the data is corrupt"
        )));
    }
    let mut v = vec![0u8; len];
    exact(r, &mut v, what)?;
    Ok(v)
}

/// The next row of a tree file; None at its end.
pub fn read_kv(r: &mut impl Read) -> Result<Option<crate::store::Row>, FormatError> {
    let mut len = [0u8; 4];
    if !fill(r, &mut len, "row")? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FIELD {
        return Err(FormatError::Bad(format!(
            "a key of {len} bytes (at most {MAX_FIELD}): the data is corrupt"
        )));
    }
    let mut key = vec![0u8; len];
    exact(r, &mut key, "row")?;
    let value = field(r, "row")?;
    Ok(Some((key, value)))
}

/// Reads the stream section by section.
pub struct SectionReader<R: Read> {
    r: R,
    started: bool,
    ended: bool,
}

impl<R: Read> SectionReader<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            started: false,
            ended: false,
        }
    }

    /// The next section; None after the end section.
    pub fn next_section(&mut self) -> Result<Option<Section>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        if !self.started {
            let mut magic = [0u8; 16];
            exact(&mut self.r, &mut magic, "stream start")?;
            if &magic != MAGIC {
                return Err(FormatError::Bad(
                    "not a backup stream of this receiver version (wrong magic bytes)".into(),
                ));
            }
            self.started = true;
        }
        let mut tag = [0u8; 1];
        exact(&mut self.r, &mut tag, "section")?;
        match tag[0] {
            b'H' => {
                let json = field(&mut self.r, "header")?;
                if json.len() > MAX_HEADER {
                    return Err(FormatError::Bad("the header is too large".into()));
                }
                let h = serde_json::from_slice(&json)
                    .map_err(|e| FormatError::Bad(format!("unreadable header: {e}")))?;
                Ok(Some(Section::Header(h)))
            }
            b'T' => {
                let mut len = [0u8; 2];
                exact(&mut self.r, &mut len, "tree name")?;
                let mut name = vec![0u8; u16::from_be_bytes(len) as usize];
                exact(&mut self.r, &mut name, "tree name")?;
                let name = String::from_utf8(name)
                    .ok()
                    .filter(|n| valid_tree_name(n))
                    .ok_or_else(|| FormatError::Bad("an invalid tree name".into()))?;
                Ok(Some(Section::Tree(name)))
            }
            b'R' => match read_kv(&mut self.r)? {
                Some((k, v)) => Ok(Some(Section::Row(k, v))),
                None => Err(FormatError::Truncated("row")),
            },
            b'E' => {
                let mut rows = [0u8; 8];
                exact(&mut self.r, &mut rows, "end")?;
                self.ended = true;
                Ok(Some(Section::End {
                    rows: u64::from_be_bytes(rows),
                }))
            }
            t => Err(FormatError::Bad(format!("unknown section tag {t:#04x}"))),
        }
    }
}

/// What a backup directory holds: `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The version of the daemon that served the snapshot.
    pub receiver_version: String,
    pub created_unix_secs: u64,
    /// Log entries in the backup.
    pub log_length: u64,
    /// Hash of the last log entry (hex).
    pub head_hash: String,
    /// The latest signed checkpoint in the backup (C2SP signed note), if any.
    pub latest_checkpoint: Option<String>,
    /// Its tree size.
    pub latest_checkpoint_size: Option<u64>,
    /// How long the daemon held its ingest for the snapshot (microseconds).
    pub ingest_pause_us: u64,
    pub files: Vec<ManifestFile>,
}

/// One file of the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the backup directory.
    pub name: String,
    pub kind: FileKind,
    /// The sled tree (kind `tree`).
    #[serde(default)]
    pub tree: Option<String>,
    /// Rows (kind `tree`).
    #[serde(default)]
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The rows of one sled tree.
    Tree,
    /// The checkpoint private key (`[transparency] key_file`).
    CheckpointKey,
    /// Its public half.
    CheckpointPublicKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_reads_back_and_a_cut_one_is_refused() {
        let mut s = MAGIC.to_vec();
        put_header(
            &StreamHeader {
                format: FORMAT_VERSION,
                receiver_version: "x".into(),
                created_unix_secs: 1,
                log_length: 2,
                head_hash: "00".into(),
                ingest_pause_us: 3,
            },
            &mut s,
        )
        .unwrap();
        put_tree("log", &mut s);
        put_row(b"k", b"value", &mut s);
        put_end(1, &mut s);
        let mut r = SectionReader::new(&s[..]);
        assert!(matches!(r.next_section().unwrap(), Some(Section::Header(h)) if h.log_length == 2));
        assert!(matches!(r.next_section().unwrap(), Some(Section::Tree(t)) if t == "log"));
        assert!(
            matches!(r.next_section().unwrap(), Some(Section::Row(k, v)) if k == b"k" && v == b"value")
        );
        assert!(matches!(
            r.next_section().unwrap(),
            Some(Section::End { rows: 1 })
        ));
        assert!(r.next_section().unwrap().is_none());
        for cut in 1..s.len() - 1 {
            let mut r = SectionReader::new(&s[..cut]);
            let mut failed = false;
            for _ in 0..5 {
                match r.next_section() {
                    Err(_) => {
                        failed = true;
                        break;
                    }
                    Ok(Some(Section::End { .. })) | Ok(None) => break,
                    Ok(_) => {}
                }
            }
            assert!(failed, "a stream cut at {cut} bytes was taken as whole");
        }
    }

    #[test]
    fn names_from_outside_are_plain() {
        assert!(valid_tree_name("oidc_sessions"));
        assert!(!valid_tree_name("../x") && !valid_tree_name(""));
        assert!(valid_file_name("tree-log.kv"));
        assert!(
            !valid_file_name("../etc") && !valid_file_name(".hidden") && !valid_file_name("a/b")
        );
    }
}
