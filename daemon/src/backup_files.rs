//! The files of a backup, for both daemons: private directories and files, a file hashed and
//! counted as it is written, a file's SHA-256, plain names, and the row codec of a tree file
//! (`tree-NAME.kv`: each row a 4-byte big-endian length and the key, the same for the value).
//!
//! A backup holds every secret of the store it copies, so directories are made 0700 and files
//! 0600 and never overwrite one that exists; a name read from a manifest is used only when it
//! is a plain name.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The largest key or value a tree file may hold: more means the file is corrupt, and is
/// refused before anything that large is allocated.
pub const MAX_FIELD: usize = 256 << 20;

/// The file of a tree in a backup directory.
pub fn tree_file(tree: &str) -> String {
    format!("tree-{tree}.kv")
}

/// Whether a file name from a manifest is a plain name (no path, not hidden).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Appends a row as a tree file holds it.
pub fn put_kv(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the file ends inside a row: it was cut short",
    )
}

/// Fills `buf`; false at a clean end of input before the first byte.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(cut_short()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// One length-prefixed field; None at a clean end of input when it is a row's first.
fn field(r: &mut impl Read, first: bool) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    if !fill(r, &mut len)? {
        return if first { Ok(None) } else { Err(cut_short()) };
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FIELD {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a field of {len} bytes (at most {MAX_FIELD}): the file is corrupt"),
        ));
    }
    let mut v = vec![0u8; len];
    if !v.is_empty() && !fill(r, &mut v)? {
        return Err(cut_short());
    }
    Ok(Some(v))
}

/// The next row of a tree file; None at its end.
pub fn read_kv(r: &mut impl Read) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let Some(key) = field(r, true)? else {
        return Ok(None);
    };
    let value = field(r, false)?.unwrap_or_default();
    Ok(Some((key, value)))
}

/// Creates `dir` and its parents, the last one 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Creates a new file 0600; fails if it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// Whether `dir` is absent or an empty directory.
pub fn absent_or_empty(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// A file's SHA-256 (hex) and length.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(buf.get(..got).unwrap_or_default());
        n += got as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// What a [`HashedFile`] wrote, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file's name in its directory.
    pub name: String,
    /// Rows counted with [`HashedFile::count_row`] (or set with [`HashedFile::set_rows`]).
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
}

/// A new private file of a backup, hashed and counted as it is written and synced when
/// finished.
#[derive(Debug)]
pub struct HashedFile {
    path: PathBuf,
    w: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
    rows: u64,
}

impl HashedFile {
    /// Creates the file (0600; it must not exist).
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        let f = create_private_file(&path)?;
        Ok(Self {
            path,
            w: BufWriter::with_capacity(256 * 1024, f),
            hash: Sha256::new(),
            bytes: 0,
            rows: 0,
        })
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes.
    pub fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.w.write_all(b)
    }

    /// Counts one row for the manifest.
    pub fn count_row(&mut self) {
        self.rows += 1;
    }

    /// Sets the row count (a file copied whole, whose rows a manifest already names).
    pub fn set_rows(&mut self, rows: u64) {
        self.rows = rows;
    }

    /// Flushes and syncs the file; what it holds.
    pub fn finish(self) -> std::io::Result<Written> {
        let f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(Written {
            name: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: self.rows,
            bytes: self.bytes,
            sha256: hex::encode(self.hash.finalize()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_and_a_cut_file_is_refused() {
        let mut b = Vec::new();
        put_kv(b"k", b"value", &mut b);
        put_kv(b"", b"", &mut b);
        let mut r = &b[..];
        assert_eq!(
            read_kv(&mut r).unwrap(),
            Some((b"k".to_vec(), b"value".to_vec()))
        );
        assert_eq!(read_kv(&mut r).unwrap(), Some((vec![], vec![])));
        assert_eq!(read_kv(&mut r).unwrap(), None);
        // Cut anywhere inside the first row: an error, never a shorter row.
        for cut in 1..13 {
            let mut r = &b[..cut];
            let err = read_kv(&mut r).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "cut at {cut}"
            );
        }
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(b"x");
        let err = read_kv(&mut &huge[..]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn names_are_plain() {
        assert!(valid_file_name("tree-log.kv") && valid_file_name(&tree_file("oidc_sessions")));
        for bad in ["", "../x", ".x", "a/b", "a\\b", "a b"] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_hashed_file_is_private_new_and_summed() {
        let dir = std::env::temp_dir().join(format!("airlock-bf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_private_dir(&dir).unwrap();
        assert!(absent_or_empty(&dir).unwrap());
        let mut f = HashedFile::create(dir.join("a.kv")).unwrap();
        f.write(b"abc").unwrap();
        f.count_row();
        let w = f.finish().unwrap();
        assert_eq!(w.name, "a.kv");
        assert_eq!((w.rows, w.bytes), (1, 3));
        assert_eq!(
            w.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_file(&dir.join("a.kv")).unwrap(), (w.sha256, 3));
        assert!(!absent_or_empty(&dir).unwrap());
        // Never over an existing file.
        assert!(HashedFile::create(dir.join("a.kv")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("a.kv")), 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
