//! The receiver's checkpoint key: an Ed25519 key of its own, used for nothing but signing
//! checkpoints of the frame log's Merkle tree.
//!
//! The private key file holds one line in the format of Go's `golang.org/x/mod/sumdb/note`
//! (so transparency tools can use it too):
//!
//! ```text
//! PRIVATE+KEY+<name>+<key hash, 8 hex>+<base64(0x01 || 32-byte seed)>
//! ```
//!
//! and the public file (what auditors and the sender side get) the verifier key:
//!
//! ```text
//! <name>+<key hash, 8 hex>+<base64(0x01 || 32-byte public key)>
//! ```
//!
//! The name is the log's origin: the first line of every checkpoint.

use std::path::{Path, PathBuf};

use airlock_protocol::checkpoint::{ED25519_TYPE, VerifierKey, check_key_name, key_hash};
use airlock_protocol::keys::{fingerprint_of, write_public_file, write_secret_file};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::TransparencyError;

const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// The checkpoint signing key and its name.
pub struct CheckpointKey {
    signing: SigningKey,
    verifier: VerifierKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", self.verifier)
    }
}

/// The public key file that goes with a private key file: `checkpoint.key` -> `checkpoint.pub`.
pub fn public_path(key_file: &Path) -> PathBuf {
    key_file.with_extension("pub")
}

/// The default log name for a new key: unique per key, so two logs never share an origin.
fn default_name(signing: &SigningKey) -> String {
    let d = Sha256::digest(signing.verifying_key().as_bytes());
    format!("airlock-receiver/{}", hex::encode(&d[..8]))
}

impl CheckpointKey {
    /// A new random key named `name` (or a name derived from the key).
    pub fn generate(name: Option<&str>) -> Result<Self, TransparencyError> {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let name = name.map_or_else(|| default_name(&signing), str::to_owned);
        Self::from_parts(&name, signing)
    }

    fn from_parts(name: &str, signing: SigningKey) -> Result<Self, TransparencyError> {
        check_key_name(name).map_err(TransparencyError::Checkpoint)?;
        let verifier = VerifierKey::new(name, signing.verifying_key())
            .map_err(TransparencyError::Checkpoint)?;
        Ok(Self { signing, verifier })
    }

    /// The log's name (the origin line of its checkpoints).
    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// SHA-256 of the raw public key, in groups of four hex digits (as the other keys'
    /// fingerprints are printed), to read aloud at a ceremony.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self.verifier.public.as_bytes())
    }

    /// The private key line.
    fn private_line(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(vec![ED25519_TYPE]);
        raw.extend_from_slice(self.signing.as_bytes());
        Zeroizing::new(format!(
            "{PRIVATE_PREFIX}{}+{}+{}\n",
            self.name(),
            hex::encode(key_hash(self.name(), &self.verifier.public)),
            B64.encode(&*raw)
        ))
    }

    /// Parses the private key line.
    pub fn parse(text: &str, file: &Path) -> Result<Self, TransparencyError> {
        let bad = |detail: &str| TransparencyError::KeyFile {
            path: file.to_owned(),
            detail: detail.to_owned(),
        };
        let line = text.trim();
        let rest = line
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+ (is this the .pub file?)"))?;
        // The base64 key may itself contain '+': only the first two separate fields.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<key hash>+<key>"));
        };
        let raw = Zeroizing::new(B64.decode(key).map_err(|_| bad("the key is not base64"))?);
        let (alg, seed) = raw.split_first().ok_or_else(|| bad("the key is empty"))?;
        if *alg != ED25519_TYPE {
            return Err(bad("not an Ed25519 key"));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("an Ed25519 private key is 32 bytes"))?;
        let signing = SigningKey::from_bytes(&seed);
        let k = Self::from_parts(name, signing)?;
        if hex::encode(k.verifier.key_hash) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(k)
    }

    /// Loads the key file.
    pub fn load(file: &Path) -> Result<Self, TransparencyError> {
        let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|source| {
            TransparencyError::Read {
                path: file.to_owned(),
                source,
            }
        })?);
        Self::parse(&text, file)
    }

    /// Writes the private file (mode 0600) and the public file next to it; never overwrites.
    pub fn write(&self, file: &Path) -> Result<(), TransparencyError> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TransparencyError::Read {
                path: dir.to_owned(),
                source,
            })?;
        }
        write_secret_file(file, self.private_line().as_bytes())?;
        let public = public_path(file);
        if public.exists() {
            // A stale public file of another key would mislead every auditor.
            let old = std::fs::read_to_string(&public).unwrap_or_default();
            if old.trim() != self.verifier.to_string() {
                return Err(TransparencyError::KeyFile {
                    path: public,
                    detail: "exists and holds another key: move it away".into(),
                });
            }
            return Ok(());
        }
        write_public_file(&public, format!("{}\n", self.verifier).as_bytes())?;
        Ok(())
    }

    /// Loads `file`, or generates and writes a key there when it does not exist.
    /// Returns the key and whether it was created now.
    pub fn load_or_create(
        file: &Path,
        name: Option<&str>,
    ) -> Result<(Self, bool), TransparencyError> {
        if file.exists() {
            let k = Self::load(file)?;
            if let Some(want) = name
                && want != k.name()
            {
                return Err(TransparencyError::KeyFile {
                    path: file.to_owned(),
                    detail: format!(
                        "is the key of the log {:?}, but transparency.origin is {want:?}: set origin to the key's name (a log keeps its name), or make a new key for a new log",
                        k.name()
                    ),
                });
            }
            return Ok((k, false));
        }
        let k = Self::generate(name)?;
        k.write(file)?;
        Ok((k, true))
    }
}

/// Reads a verifier key file (`checkpoint.pub`, or the line exported with a checkpoint).
pub fn load_verifier(file: &Path) -> Result<VerifierKey, TransparencyError> {
    let text = std::fs::read_to_string(file).map_err(|source| TransparencyError::Read {
        path: file.to_owned(),
        source,
    })?;
    // The first line that parses as a verifier key: an exported checkpoint file carries the
    // key on a line of its own after the note.
    let mut last_err = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let candidate = line.strip_prefix("verifier-key: ").unwrap_or(line);
        match VerifierKey::parse(candidate) {
            Ok(k) => return Ok(k),
            Err(e) => last_err = Some(e),
        }
    }
    Err(TransparencyError::KeyFile {
        path: file.to_owned(),
        detail: match last_err {
            Some(e) => format!("holds no verifier key (<name>+<key hash>+<key>): {e}"),
            None => "is empty".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's note package example private key (its base64 contains a '+').
    #[test]
    fn go_note_example_private_key_parses() {
        let k = CheckpointKey::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            Path::new("example"),
        )
        .unwrap();
        assert_eq!(
            k.verifier().to_string(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        assert_eq!(
            &*k.private_line(),
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n"
        );
    }

    #[test]
    fn key_file_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("checkpoint.key");
        let (k, created) = CheckpointKey::load_or_create(&file, None).unwrap();
        assert!(created);
        assert!(k.name().starts_with("airlock-receiver/"));
        let (again, created) = CheckpointKey::load_or_create(&file, None).unwrap();
        assert!(!created);
        assert_eq!(again.verifier(), k.verifier());
        assert_eq!(&load_verifier(&public_path(&file)).unwrap(), k.verifier());
        assert!(CheckpointKey::load_or_create(&file, Some("other.example/log")).is_err());
        // The public file is not a private key.
        assert!(CheckpointKey::load(&public_path(&file)).is_err());
        // A second key is never written over the first.
        assert!(CheckpointKey::generate(None).unwrap().write(&file).is_err());
    }
}
