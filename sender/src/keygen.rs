//! `airlock-sender keygen`: a signer key pair and a link key, written for a key ceremony.

use std::path::{Path, PathBuf};

use airlock_protocol::keys::{KeyError, LinkKey, SignerKey, write_public_file, write_secret_file};

/// What keygen wrote, for printing.
#[derive(Debug)]
pub struct Generated {
    pub signer_file: PathBuf,
    pub public_file: PathBuf,
    pub link_file: PathBuf,
    pub signer_kid: String,
    pub signer_fingerprint: String,
    pub link_kid: u32,
    pub link_fingerprint: String,
}

pub const SIGNER_FILE: &str = "signer.pem";
pub const PUBLIC_FILE: &str = "signer.pub.pem";
pub const LINK_FILE: &str = "link.key";

/// Writes `signer.pem` (PKCS#8, 0600), `signer.pub.pem` (SPKI) and `link.key` (0600) into `dir`.
/// Never overwrites a file.
pub fn keygen(dir: &Path, link_kid: u32) -> Result<Generated, KeyError> {
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let signer = SignerKey::generate();
    let public = signer.public();
    let link = LinkKey::generate(link_kid);
    let g = Generated {
        signer_file: dir.join(SIGNER_FILE),
        public_file: dir.join(PUBLIC_FILE),
        link_file: dir.join(LINK_FILE),
        signer_kid: signer.kid().to_string(),
        signer_fingerprint: public.fingerprint(),
        link_kid,
        link_fingerprint: link.fingerprint(),
    };
    // Check all three first so that a refusal leaves no half-written key set.
    for f in [&g.signer_file, &g.public_file, &g.link_file] {
        if f.exists() {
            return Err(KeyError::Write {
                path: f.clone(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "file exists"),
            });
        }
    }
    write_secret_file(&g.signer_file, signer.to_pkcs8_pem()?.as_bytes())?;
    write_public_file(&g.public_file, public.to_spki_pem()?.as_bytes())?;
    write_secret_file(&g.link_file, link.to_text().as_bytes())?;
    Ok(g)
}
