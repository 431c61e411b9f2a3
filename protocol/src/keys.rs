//! Key files a security team can handle on paper.
//!
//! - Signer private keys: Ed25519 as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), mode 0600.
//! - Signer public keys: SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
//! - Link keys: a small text file (see [`LinkKey::to_text`]) holding a kid and 256 bits, mode 0600.
//!
//! Every key has a SHA-256 fingerprint printed in groups of four hex digits, so two people
//! can read it aloud and compare it during a key ceremony.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// First line of a link key file.
const LINK_KEY_HEADER: &str = "AIRLOCK-LINK-KEY v1";

/// Reading, parsing or writing a key failed.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    /// A key file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error(
        "cannot write key file {path}: {source} (key files are never overwritten: move the old one away first)"
    )]
    /// A key file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    #[error("{what} is not a valid key: {detail}")]
    /// The text is not a key of the expected kind.
    Parse {
        /// What was being read ("signer private key (PKCS#8 PEM)", a file name, ...).
        what: String,
        /// The parser's complaint.
        detail: String,
    },
}

fn parse_err(what: impl Into<String>, detail: impl ToString) -> KeyError {
    KeyError::Parse {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })
}

/// SHA-256 over `bytes`, printed as `AB12 CD34 ...` for reading aloud.
pub fn fingerprint_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex = hex::encode_upper(digest);
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kid of a signer key: the first 8 bytes of SHA-256 over its SPKI DER, lowercase hex.
pub fn signer_kid(key: &VerifyingKey) -> String {
    let der = spki_der(key);
    hex::encode(&Sha256::digest(&der)[..8])
}

fn spki_der(key: &VerifyingKey) -> Vec<u8> {
    // Encoding a 32-byte Ed25519 key as SPKI cannot fail; fall back to the raw key so that
    // the function stays total without a panic path.
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_else(|_| key.to_bytes().to_vec())
}

/// An Ed25519 signing key of a sender.
pub struct SignerKey {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey(kid {})", self.kid)
    }
}

impl SignerKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut OsRng))
    }

    /// Wraps an Ed25519 key and derives its kid.
    pub fn from_signing_key(key: SigningKey) -> Self {
        let kid = signer_kid(&key.verifying_key());
        Self { key, kid }
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| parse_err("signer private key (PKCS#8 PEM)", e))?;
        Ok(Self::from_signing_key(key))
    }

    /// The key as PKCS#8 PEM (zeroized when dropped).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| parse_err("signer private key", e))
    }

    /// Reads a PKCS#8 PEM private key file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_text(path)?;
        Self::from_pkcs8_pem(&text).map_err(|e| with_path(e, path))
    }

    /// The key id: derived from the public key, carried in every frame's Sign1 header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The matching public key, to hand to receivers and auditors.
    pub fn public(&self) -> SignerPublicKey {
        SignerPublicKey {
            kid: self.kid.clone(),
            key: self.key.verifying_key(),
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// A sender's Ed25519 public key, as the receiver and auditors hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerPublicKey {
    /// The key id (derived from the key).
    pub kid: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl SignerPublicKey {
    /// From the 32 raw bytes of an Ed25519 public key (as in a `KeyAnnounce`).
    pub fn from_raw(raw: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(raw).map_err(|e| parse_err("Ed25519 public key", e))?;
        Self::from_verifying_key(key)
    }

    /// Refuses weak keys: a point of small order (the identity among them) lets anyone make
    /// a signature that verifies without any private key, so such a key is never trusted.
    pub fn from_verifying_key(key: VerifyingKey) -> Result<Self, KeyError> {
        if key.is_weak() {
            return Err(parse_err(
                "Ed25519 public key",
                format!(
                    "{} is a small-order (weak) point that anyone can sign for without a private key; \
                     generate a real key with `airlock-sender keygen` and install that one",
                    hex::encode(key.as_bytes())
                ),
            ));
        }
        Ok(Self {
            kid: signer_kid(&key),
            key,
        })
    }

    /// Reads an SPKI PEM public key.
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| parse_err("signer public key (SPKI PEM)", e))?;
        Self::from_verifying_key(key)
    }

    /// The key as SPKI PEM.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| parse_err("signer public key", e))
    }

    /// Reads an SPKI PEM public key file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_text(path)?;
        Self::from_spki_pem(&text).map_err(|e| with_path(e, path))
    }

    /// SHA-256 over the SPKI DER, grouped for reading aloud.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&spki_der(&self.key))
    }
}

/// A 256-bit ChaCha20-Poly1305 link key, identified by a small integer kid.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey {
    /// The key id, carried in every frame's Encrypt0 header.
    pub kid: u32,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkKey(kid {})", self.kid)
    }
}

impl LinkKey {
    /// A fresh key with id `kid` from the operating system's random source.
    pub fn generate(kid: u32) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(secret.as_mut());
        Self { kid, secret }
    }

    /// A key from its 32 secret bytes.
    pub fn from_bytes(kid: u32, bytes: [u8; 32]) -> Self {
        Self {
            kid,
            secret: Zeroizing::new(bytes),
        }
    }

    /// The secret bytes.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The file format:
    /// ```text
    /// AIRLOCK-LINK-KEY v1
    /// kid: 7
    /// key: <64 hex digits>
    /// ```
    /// Lines starting with `#` are comments.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{LINK_KEY_HEADER}\n# SECRET: install on the sender and the receiver only. Fingerprint: {}\nkid: {}\nkey: {}\n",
            self.fingerprint(),
            self.kid,
            hex::encode(self.secret.as_ref())
        ))
    }

    /// Parses the text format of [`LinkKey::to_text`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some(LINK_KEY_HEADER) {
            return Err(parse_err(
                "link key file",
                format!("the first line must be `{LINK_KEY_HEADER}`"),
            ));
        }
        let (mut kid, mut key) = (None, None);
        for line in lines {
            match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("kid", v)) => kid = Some(v.parse::<u32>().map_err(|e| parse_err("kid", e))?),
                Some(("key", v)) => key = Some(parse_secret(v)?),
                _ => {
                    return Err(parse_err(
                        "link key file",
                        format!("unexpected line `{line}`"),
                    ));
                }
            }
        }
        match (kid, key) {
            (Some(kid), Some(secret)) => Ok(Self { kid, secret }),
            _ => Err(parse_err(
                "link key file",
                "it needs both `kid:` and `key:` lines",
            )),
        }
    }

    /// Reads a link key file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_text(path)?;
        Self::parse(&text).map_err(|e| with_path(e, path))
    }

    /// SHA-256 over a domain label, the kid and the key: identifies the key without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut material = b"airlock-link-key-v1\0".to_vec();
        material.extend_from_slice(&self.kid.to_be_bytes());
        material.extend_from_slice(self.secret.as_ref());
        fingerprint_of(&material)
    }
}

fn parse_secret(hex_text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, secret.as_mut()).map_err(|_| {
        parse_err(
            "link key",
            "`key:` must be exactly 64 hex digits (256 bits)",
        )
    })?;
    Ok(secret)
}

fn with_path(err: KeyError, path: &Path) -> KeyError {
    match err {
        KeyError::Parse { what, detail } => KeyError::Parse {
            what: format!("{what} in {}", path.display()),
            detail,
        },
        other => other,
    }
}

/// Writes a secret key file with mode 0600; never overwrites an existing file.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    write_new_file(path, bytes, 0o600)
}

/// Writes a public key file with mode 0644; never overwrites an existing file.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    write_new_file(path, bytes, 0o644)
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_key_pem_round_trip_keeps_kid() {
        let key = SignerKey::generate();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SignerKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.kid(), key.kid());
        let public = key.public();
        let spki = public.to_spki_pem().unwrap();
        assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(SignerPublicKey::from_spki_pem(&spki).unwrap(), public);
        assert_eq!(public.kid.len(), 16);
        assert_eq!(public.fingerprint().split(' ').count(), 16);
    }

    /// The identity and the other small-order points: anyone can sign for them.
    fn weak_points() -> Vec<[u8; 32]> {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let order_four = [0u8; 32];
        let order_eight: [u8; 32] =
            hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
                .unwrap()
                .try_into()
                .unwrap();
        vec![identity, minus_one, order_four, order_eight]
    }

    #[test]
    fn weak_signer_keys_are_refused_raw_and_as_pem() {
        for raw in weak_points() {
            let point = VerifyingKey::from_bytes(&raw).unwrap();
            assert!(point.is_weak());
            let err = SignerPublicKey::from_raw(&raw).unwrap_err().to_string();
            assert!(err.contains("small-order (weak) point"), "{err}");
            let pem = point.to_public_key_pem(LineEnding::LF).unwrap();
            let err = SignerPublicKey::from_spki_pem(&pem)
                .unwrap_err()
                .to_string();
            assert!(err.contains("airlock-sender keygen"), "{err}");
        }
        let real = SignerKey::generate().public();
        assert!(SignerPublicKey::from_raw(real.key.as_bytes()).is_ok());
    }

    #[test]
    fn link_key_text_round_trip() {
        let key = LinkKey::generate(7);
        let back = LinkKey::parse(&key.to_text()).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.fingerprint(), key.fingerprint());
    }

    #[test]
    fn link_key_parse_errors_say_what_is_wrong() {
        let err = LinkKey::parse("nonsense").unwrap_err().to_string();
        assert!(err.contains("first line"), "{err}");
        let err = LinkKey::parse("AIRLOCK-LINK-KEY v1\nkid: 1\nkey: abcd\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        let err = LinkKey::parse("AIRLOCK-LINK-KEY v1\nkid: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("both"), "{err}");
    }

    #[test]
    fn secret_files_are_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        write_secret_file(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_secret_file(&path, b"y").is_err());
    }
}
