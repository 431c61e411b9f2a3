//! Signed tree heads in the C2SP formats, so existing transparency tools read them:
//! a [`Checkpoint`] (c2sp.org/tlog-checkpoint) is the text of a signed note
//! (c2sp.org/signed-note), signed with Ed25519.
//!
//! ```text
//! <origin>                      the log's name, e.g. airlock.example/receiver
//! <tree size>                   decimal, no leading zeros
//! <root hash>                   standard base64 of the 32-byte RFC 9162 root
//! [<extension line>]...         optional, non-empty
//!                               (blank line)
//! — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! The signature covers the text up to and including its last newline (not the blank
//! line). The key hash is the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 ||
//! public key)`; a verifier key is written `<name>+<hex key hash>+<base64(0x01 || public
//! key)>` (the format of Go's `golang.org/x/mod/sumdb/note`).
//!
//! Parsing is strict: anything the formats do not allow is a [`CheckpointError`] naming
//! what is wrong, never a panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in signed notes.
pub const ED25519_TYPE: u8 = 0x01;
/// The prefix of a signature line: an em dash (U+2014) and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";
/// Largest note this parser reads; a checkpoint is a few hundred bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines a note may carry (Go's note package stops at the same number).
pub const MAX_SIGNATURES: usize = 100;

/// What is wrong with a note, a checkpoint or a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The note is longer than [`MAX_NOTE_BYTES`].
    #[error("the note is {len} bytes; a checkpoint is at most {MAX_NOTE_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The note is not UTF-8, or has a control character other than newline.
    #[error("the note is not a signed note: {0}")]
    NotText(&'static str),
    /// No blank line between the text and the signatures, or no signature line.
    #[error(
        "the note has no signature block (a blank line, then lines starting with \u{2014}); is this a checkpoint file?"
    )]
    NoSignatureBlock,
    /// A line of the signature block is not `— <name> <base64>`.
    #[error("signature line {line} is malformed: {what}")]
    MalformedSignature {
        /// 1-based line number within the signature block.
        line: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// The text is not a checkpoint.
    #[error("checkpoint line {line} is malformed: {what}")]
    MalformedBody {
        /// 1-based line number of the text.
        line: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A key name that the signed-note format does not allow.
    #[error("invalid key name {name:?}: {what}")]
    BadKeyName {
        /// The name.
        name: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A verifier key string that is not `<name>+<hex key hash>+<base64 key>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// None of the note's signatures is by the key it was checked against.
    #[error(
        "the checkpoint is not signed by {name} (key hash {key_hash}); it is signed by: {found} — a checkpoint of another log, or the wrong public key"
    )]
    NotSignedByKey {
        /// The expected key name.
        name: String,
        /// The expected key hash, hex.
        key_hash: String,
        /// The signers named in the note (`name/keyhash`), comma separated.
        found: String,
    },
    /// A signature by the expected key that does not verify.
    #[error("the signature by {name} does not verify: the checkpoint was altered or forged")]
    BadSignature {
        /// The key name.
        name: String,
    },
    /// The checkpoint names another log than the key's.
    #[error("the checkpoint is for the log {found:?}, not {expected:?}")]
    OriginMismatch {
        /// The log the key belongs to.
        expected: String,
        /// The origin line of the checkpoint.
        found: String,
    },
}

/// Checks a signed-note key name: non-empty, no white space, no `+`.
pub fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    let bad = |what| {
        Err(CheckpointError::BadKeyName {
            name: name.to_owned(),
            what,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("it contains white space");
    }
    if name.contains('+') {
        return bad("it contains '+'");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    Ok(())
}

/// The key hash of an Ed25519 key under `name`: the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A public key that checks signatures of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name (for a log: its origin).
    pub name: String,
    /// The 4-byte key hash.
    pub key_hash: [u8; 4],
    /// The Ed25519 public key.
    pub public: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key of `public` under `name`.
    pub fn new(name: &str, public: VerifyingKey) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_hash: key_hash(name, &public),
            public,
        })
    }

    /// Parses `<name>+<hex key hash>+<base64(0x01 || public key)>`, checking the hash.
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let s = s.trim();
        // The base64 key may itself contain '+': only the first two separate fields.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::MalformedVerifierKey(
                "expected three parts <name>+<key hash>+<key>",
            ));
        };
        check_key_name(name)?;
        if hash_hex.len() != 8 {
            return Err(CheckpointError::MalformedVerifierKey(
                "the key hash is not 8 hex digits",
            ));
        }
        let hash: [u8; 4] = hex::decode(hash_hex)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CheckpointError::MalformedVerifierKey(
                "the key hash is not 8 hex digits",
            ))?;
        let key = B64
            .decode(key_b64)
            .map_err(|_| CheckpointError::MalformedVerifierKey("the key is not base64"))?;
        let (alg, raw) = key
            .split_first()
            .ok_or(CheckpointError::MalformedVerifierKey("the key is empty"))?;
        if *alg != ED25519_TYPE {
            return Err(CheckpointError::MalformedVerifierKey(
                "not an Ed25519 key (type byte is not 0x01)",
            ));
        }
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| CheckpointError::MalformedVerifierKey("an Ed25519 key is 32 bytes"))?;
        let public = VerifyingKey::from_bytes(&raw)
            .map_err(|_| CheckpointError::MalformedVerifierKey("not a valid Ed25519 public key"))?;
        let vk = Self::new(name, public)?;
        if vk.key_hash != hash {
            return Err(CheckpointError::MalformedVerifierKey(
                "the key hash does not match the name and key",
            ));
        }
        Ok(vk)
    }

    /// The key hash as 8 hex digits.
    pub fn key_hash_hex(&self) -> String {
        hex::encode(self.key_hash)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(self.public.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash),
            B64.encode(key)
        )
    }
}

/// Signs `text` (non-empty, ending with a newline, no blank line) as a note by `key`
/// under `name`: the text, a blank line and one signature line.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    check_key_name(name)?;
    if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") {
        return Err(CheckpointError::NotText(
            "a note's text is non-empty, ends with a newline and has no blank line",
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CheckpointError::NotText(
            "a note's text has no control character other than newline",
        ));
    }
    let signature = key.sign(text.as_bytes());
    let mut raw = key_hash(name, &key.verifying_key()).to_vec();
    raw.extend_from_slice(&signature.to_bytes());
    Ok(format!("{text}\n{SIG_PREFIX}{name} {}\n", B64.encode(raw)))
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The 4-byte key hash.
    pub key_hash: [u8; 4],
    /// The signature bytes after the key hash.
    pub signature: Vec<u8>,
}

/// A note split into its signed text and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a note strictly (the rules of the signed-note format).
    pub fn parse(note: &[u8]) -> Result<Self, CheckpointError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::TooLarge { len: note.len() });
        }
        let note =
            std::str::from_utf8(note).map_err(|_| CheckpointError::NotText("it is not UTF-8"))?;
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CheckpointError::NotText(
                "it contains a control character other than newline (a CR of a DOS line end?)",
            ));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(CheckpointError::NoSignatureBlock)?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(CheckpointError::NoSignatureBlock);
        }
        let mut signatures = Vec::new();
        for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
            let line_no = i + 1;
            let bad = |what| CheckpointError::MalformedSignature {
                line: line_no,
                what,
            };
            if signatures.len() >= MAX_SIGNATURES {
                return Err(CheckpointError::TooManySignatures);
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(bad("it does not start with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(bad("expected <name> <base64 signature>"))?;
            check_key_name(name).map_err(|_| bad("the key name is not a valid name"))?;
            if b64.is_empty() || b64.contains(' ') {
                return Err(bad("expected one base64 signature after the name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("the signature is not base64"))?;
            if raw.len() < 5 {
                return Err(bad("the signature is shorter than a key hash and a byte"));
            }
            let mut key_hash = [0u8; 4];
            key_hash.copy_from_slice(&raw[..4]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hash,
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Checks the signature by `key` and returns the text. Signatures by other keys are
    /// ignored (a note may carry cosignatures); a bad signature by `key` refuses the note.
    pub fn verify(&self, key: &VerifierKey) -> Result<&str, CheckpointError> {
        let Some(sig) = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.key_hash == key.key_hash)
        else {
            let found = self
                .signatures
                .iter()
                .map(|s| format!("{}/{}", s.name, hex::encode(s.key_hash)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CheckpointError::NotSignedByKey {
                name: key.name.clone(),
                key_hash: key.key_hash_hex(),
                found,
            });
        };
        let bad = || CheckpointError::BadSignature {
            name: key.name.clone(),
        };
        let signature = Signature::from_slice(&sig.signature).map_err(|_| bad())?;
        key.public
            .verify_strict(self.text.as_bytes(), &signature)
            .map_err(|_| bad())?;
        Ok(&self.text)
    }
}

/// A signed tree head: the log, its size and the root of its Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (its key's name).
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 9162 root of the tree.
    pub root: Hash,
    /// Extension lines after the root, in order.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size, root, extensions, each ending with a newline.
    pub fn text(&self) -> Result<String, CheckpointError> {
        check_origin(&self.origin, 1)?;
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for (i, e) in self.extensions.iter().enumerate() {
            check_extension(e, i + 4)?;
            out.push_str(e);
            out.push('\n');
        }
        Ok(out)
    }

    /// Parses a checkpoint text (the signed part of the note).
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MalformedBody {
                line: 1,
                what: "the text does not end with a newline",
            })?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        check_origin(origin, 1)?;
        let size_line = lines.next().ok_or(CheckpointError::MalformedBody {
            line: 2,
            what: "missing the tree size",
        })?;
        let size = parse_size(size_line)?;
        let root_line = lines.next().ok_or(CheckpointError::MalformedBody {
            line: 3,
            what: "missing the root hash",
        })?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CheckpointError::MalformedBody {
                line: 3,
                what: "the root hash is not base64 of 32 bytes",
            })?;
        let mut extensions = Vec::new();
        for (i, e) in lines.enumerate() {
            check_extension(e, i + 4)?;
            extensions.push(e.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The whole signed note, signed by `key` under the name of the origin.
    pub fn sign(&self, key: &SigningKey) -> Result<String, CheckpointError> {
        sign_note(&self.text()?, &self.origin, key)
    }

    /// Parses and verifies a signed checkpoint note: the signature by `key`, and that the
    /// checkpoint is for `key`'s log.
    pub fn open(note: &[u8], key: &VerifierKey) -> Result<Self, CheckpointError> {
        let parsed = Note::parse(note)?;
        let text = parsed.verify(key)?;
        let cp = Self::parse_text(text)?;
        if cp.origin != key.name {
            return Err(CheckpointError::OriginMismatch {
                expected: key.name.clone(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }

    /// Parses a signed checkpoint without checking any signature (to show what a file
    /// claims before its key is at hand). Never trust the result.
    pub fn parse_unverified(note: &[u8]) -> Result<(Self, Vec<NoteSignature>), CheckpointError> {
        let parsed = Note::parse(note)?;
        let cp = Self::parse_text(&parsed.text)?;
        Ok((cp, parsed.signatures))
    }

    /// The value of the first extension line starting with `key` and a space.
    pub fn extension(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
    }

    /// The highest seq the receiver had accepted per signer kid when it signed this
    /// checkpoint ([`SEQ_EXTENSION`] lines; malformed ones are skipped). The signature
    /// covers these lines, so the sender can trust them as far as it trusts the key.
    pub fn seen_seqs(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for e in &self.extensions {
            let Some(rest) = e
                .strip_prefix(SEQ_EXTENSION)
                .and_then(|r| r.strip_prefix(' '))
            else {
                continue;
            };
            let mut parts = rest.split(' ');
            if let (Some(kid), Some(Ok(seq)), None) = (
                parts.next(),
                parts.next().map(str::parse::<u64>),
                parts.next(),
            ) && !kid.is_empty()
            {
                let v = out.entry(kid.to_owned()).or_insert(0);
                *v = (*v).max(seq);
            }
        }
        out
    }
}

/// The extension line `seq <kid> <highest accepted seq>`: one per signer the receiver has
/// accepted frames from, so a person carrying the checkpoint out tells the sender which
/// seqs it must never use again (the sender refuses an outbox older than that).
pub const SEQ_EXTENSION: &str = "seq";

/// The [`SEQ_EXTENSION`] line of signer `kid` (kids are hex and hold no spaces).
pub fn seq_extension(kid: &str, seq: u64) -> String {
    format!("{SEQ_EXTENSION} {kid} {seq}")
}

fn check_origin(origin: &str, line: usize) -> Result<(), CheckpointError> {
    if origin.is_empty() {
        return Err(CheckpointError::MalformedBody {
            line,
            what: "the origin line is empty",
        });
    }
    if origin.contains('\n') {
        return Err(CheckpointError::MalformedBody {
            line,
            what: "the origin contains a newline",
        });
    }
    Ok(())
}

fn check_extension(e: &str, line: usize) -> Result<(), CheckpointError> {
    if e.is_empty() {
        return Err(CheckpointError::MalformedBody {
            line,
            what: "an extension line is empty",
        });
    }
    if e.contains('\n') || e.chars().any(char::is_control) {
        return Err(CheckpointError::MalformedBody {
            line,
            what: "an extension line contains a control character",
        });
    }
    Ok(())
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let bad = |what| CheckpointError::MalformedBody { line: 2, what };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the tree size is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad("the tree size has a leading zero"));
    }
    s.parse()
        .map_err(|_| bad("the tree size does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "airlock.example/receiver".into(),
            size: 42,
            root: [7u8; 32],
            extensions: vec!["time 2026-12-03T09:00:00Z".into()],
        }
    }

    #[test]
    fn seq_lines_are_signed_and_read_back_per_signer() {
        let k = key(1);
        let mut cp = sample();
        cp.extensions.push(seq_extension("00aa", 10));
        cp.extensions.push(seq_extension("00bb", 7));
        cp.extensions.push(seq_extension("00aa", 12));
        cp.extensions.push("seq broken".into());
        cp.extensions.push("seq 00cc x".into());
        let note = cp.sign(&k).unwrap();
        let vk = VerifierKey::new(&cp.origin, k.verifying_key()).unwrap();
        let seen = Checkpoint::open(note.as_bytes(), &vk).unwrap().seen_seqs();
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![("00aa".to_owned(), 12), ("00bb".to_owned(), 7)]
        );
        // A seq line changed after signing breaks the signature.
        let altered = note.replacen("seq 00bb 7", "seq 00bb 9", 1);
        assert!(Checkpoint::open(altered.as_bytes(), &vk).is_err());
    }

    #[test]
    fn sign_then_open_round_trips() {
        let k = key(1);
        let cp = sample();
        let note = cp.sign(&k).unwrap();
        assert!(note.starts_with("airlock.example/receiver\n42\n"));
        assert!(note.contains("\n\n\u{2014} airlock.example/receiver "));
        let vk = VerifierKey::new(&cp.origin, k.verifying_key()).unwrap();
        let back = Checkpoint::open(note.as_bytes(), &vk).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.extension("time"), Some("2026-12-03T09:00:00Z"));
        let vk2 = VerifierKey::parse(&vk.to_string()).unwrap();
        assert_eq!(vk2, vk);
    }

    /// The Go note package's documented example key: name PeterNeumann, its verifier key.
    #[test]
    fn go_note_example_verifier_key_parses_and_hashes() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let vk = VerifierKey::parse(vkey).unwrap();
        assert_eq!(vk.name, "PeterNeumann");
        assert_eq!(vk.key_hash_hex(), "c74f20a3");
        assert_eq!(vk.to_string(), vkey);
        // The example note of that package, signed by that key.
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        // Signing with its private key (Go's `PRIVATE+KEY+PeterNeumann+c74f20a3+...`, whose
        // last part is base64 of 0x01 || seed) gives that very note: Ed25519 is deterministic.
        let skey = B64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let seed: [u8; 32] = skey[1..].try_into().unwrap();
        let signer = SigningKey::from_bytes(&seed);
        assert_eq!(signer.verifying_key(), vk.public);
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        assert_eq!(sign_note(text, "PeterNeumann", &signer).unwrap(), note);
        let parsed = Note::parse(note.as_bytes()).unwrap();
        assert_eq!(
            parsed.verify(&vk).unwrap(),
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
        );
    }

    #[test]
    fn forged_altered_and_foreign_checkpoints_are_refused() {
        let k = key(1);
        let cp = sample();
        let note = cp.sign(&k).unwrap();
        let vk = VerifierKey::new(&cp.origin, k.verifying_key()).unwrap();

        // Altered size: the signature no longer covers the text.
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            Checkpoint::open(altered.as_bytes(), &vk),
            Err(CheckpointError::BadSignature {
                name: cp.origin.clone()
            })
        );
        // Signed by another key under the same name: the key hash differs.
        let forged = cp.sign(&key(2)).unwrap();
        assert!(matches!(
            Checkpoint::open(forged.as_bytes(), &vk),
            Err(CheckpointError::NotSignedByKey { .. })
        ));
        // Another log's checkpoint, verified with this log's key.
        let other = Checkpoint {
            origin: "other.example/log".into(),
            ..cp.clone()
        };
        let other_note = other.sign(&k).unwrap();
        assert!(matches!(
            Checkpoint::open(other_note.as_bytes(), &vk),
            Err(CheckpointError::NotSignedByKey { .. })
        ));
        // Another log's key name over this log's text would not name this origin.
        let other_vk = VerifierKey::new("other.example/log", k.verifying_key()).unwrap();
        let mislabelled = {
            let text = cp.text().unwrap();
            let sig = k.sign(text.as_bytes());
            let mut raw = key_hash("other.example/log", &k.verifying_key()).to_vec();
            raw.extend_from_slice(&sig.to_bytes());
            format!("{text}\n\u{2014} other.example/log {}\n", B64.encode(raw))
        };
        assert_eq!(
            Checkpoint::open(mislabelled.as_bytes(), &other_vk),
            Err(CheckpointError::OriginMismatch {
                expected: "other.example/log".into(),
                found: cp.origin.clone()
            })
        );
        // A signature with a flipped bit.
        let sig_line = note.lines().last().unwrap().to_owned();
        let b64 = sig_line.rsplit(' ').next().unwrap();
        let mut raw = B64.decode(b64).unwrap();
        raw[10] ^= 1;
        let flipped = note.replace(b64, &B64.encode(raw));
        assert!(matches!(
            Checkpoint::open(flipped.as_bytes(), &vk),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_give_typed_errors() {
        let k = key(1);
        let vk = VerifierKey::new("airlock.example/receiver", k.verifying_key()).unwrap();
        let good = sample().sign(&k).unwrap();
        type Check = fn(&CheckpointError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (b"".to_vec(), |e| {
                matches!(e, CheckpointError::NoSignatureBlock)
            }),
            (b"origin\n1\nAAAA\n".to_vec(), |e| {
                matches!(e, CheckpointError::NoSignatureBlock)
            }),
            (vec![0xff, 0xfe, b'\n', b'\n'], |e| {
                matches!(e, CheckpointError::NotText(_))
            }),
            (good.replace('\n', "\r\n").into_bytes(), |e| {
                matches!(e, CheckpointError::NotText(_))
            }),
            (good.replace('\u{2014}', "--").into_bytes(), |e| {
                matches!(e, CheckpointError::MalformedSignature { line: 1, .. })
            }),
            (good.trim_end().to_owned().into_bytes(), |e| {
                matches!(e, CheckpointError::NoSignatureBlock)
            }),
            (format!("{good}\u{2014} x !!!\n").into_bytes(), |e| {
                matches!(e, CheckpointError::MalformedSignature { line: 2, .. })
            }),
            (vec![b'a'; MAX_NOTE_BYTES + 1], |e| {
                matches!(e, CheckpointError::TooLarge { .. })
            }),
        ];
        for (note, want) in cases {
            let err = Checkpoint::open(&note, &vk).unwrap_err();
            assert!(want(&err), "{:?}: {err}", String::from_utf8_lossy(&note));
        }
    }

    #[test]
    fn malformed_checkpoint_texts_are_refused() {
        for (text, line) in [
            ("\n1\nAAAA\n", 1),
            ("o\n", 2),
            ("o\n01\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", 2),
            ("o\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", 2),
            (
                "o\n99999999999999999999\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
                2,
            ),
            ("o\n1\n", 3),
            ("o\n1\nAAAA\n", 3),
            ("o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", 1),
        ] {
            match Checkpoint::parse_text(text) {
                Err(CheckpointError::MalformedBody { line: l, .. }) => {
                    assert_eq!(l, line, "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let ok =
            Checkpoint::parse_text("o\n0\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
        assert_eq!(ok.size, 0);
        assert_eq!(ok.root, [7u8; 32]);
    }

    #[test]
    fn keys_whose_base64_has_a_plus_parse() {
        // Seeds until the verifier key's base64 contains '+' (about one in two).
        for seed in 0..64u8 {
            let vk = VerifierKey::new("log.example/a", key(seed).verifying_key()).unwrap();
            let text = vk.to_string();
            assert_eq!(VerifierKey::parse(&text).unwrap(), vk, "{text}");
        }
    }

    #[test]
    fn bad_verifier_keys_and_names() {
        for s in [
            "",
            "a+b",
            "name+0000000+AQ==",
            "name+zzzzzzzz+AQ==",
            "name+00000000+!!",
            "name+00000000+AgAA",
            "na me+00000000+AQ==",
            "a+b+c+d",
        ] {
            assert!(VerifierKey::parse(s).is_err(), "{s:?}");
        }
        // A valid key with its hash changed.
        let vk = VerifierKey::new("x", key(3).verifying_key())
            .unwrap()
            .to_string();
        let tampered = vk.replacen(&vk[2..10], "00000000", 1);
        assert_eq!(
            VerifierKey::parse(&tampered),
            Err(CheckpointError::MalformedVerifierKey(
                "the key hash does not match the name and key"
            ))
        );
        for name in ["", "a b", "a+b", "tab\there"] {
            assert!(check_key_name(name).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let k = key(1);
        let vk = VerifierKey::new("o", k.verifying_key()).unwrap();
        let good = Checkpoint {
            origin: "o".into(),
            size: 3,
            root: [1; 32],
            extensions: vec![],
        }
        .sign(&k)
        .unwrap()
        .into_bytes();
        for cut in 0..good.len() {
            let _ = Checkpoint::open(&good[..cut], &vk);
            let mut flipped = good.clone();
            flipped[cut] ^= 0x41;
            let _ = Checkpoint::open(&flipped, &vk);
            let _ = Checkpoint::parse_unverified(&flipped);
        }
    }
}
