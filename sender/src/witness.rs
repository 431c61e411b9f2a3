//! Witnessing the receiver's transparency log without a network: a person carries a
//! checkpoint (`airlock-receiver checkpoint export`) out of the inside domain, and
//! `airlock-sender witness record` keeps it here, so both domains hold the same tree heads.
//!
//! Each record is the signed note as carried, in `<data_dir>/witness/<size>.checkpoint`;
//! the receiver's checkpoint public key is pinned in `<data_dir>/witness/log.pub` at the
//! first record and every later checkpoint must verify under it.
//!
//! What this side can check: the signature (the receiver's key signed it, for its log),
//! and that no two checkpoints of the same size have different roots (a fork). What it
//! cannot: that a later checkpoint extends an earlier one — that needs the log's entries
//! (a consistency proof); the auditor proves it inside with `audit consistency OLD NEW`,
//! OLD being a checkpoint recorded here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_protocol::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WitnessError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no checkpoint key: pass --key FILE (the receiver's checkpoint.pub, or the .pub file written beside the exported checkpoint) the first time"
    )]
    NoKey,
    #[error("{path}: holds no verifier key (<name>+<key hash>+<key>): {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error(
        "the key given ({given}) is not the receiver's checkpoint key pinned at the first record ({pinned}): a new log, or a substituted key; confirm it at a key ceremony, then move {dir} away to start over"
    )]
    KeyChanged {
        given: String,
        pinned: String,
        dir: PathBuf,
    },
    #[error("{path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: CheckpointError,
    },
    #[error(
        "{path}: a checkpoint of {size} entries with root {new_root} was recorded before with root {old_root}: the receiver's log forked (two different histories under one key); keep both files and report it, see docs/audit.md"
    )]
    Fork {
        path: PathBuf,
        size: u64,
        old_root: String,
        new_root: String,
    },
}

/// One recorded checkpoint.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub file: PathBuf,
    pub checkpoint: Checkpoint,
}

/// What `record` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Recorded(PathBuf),
    AlreadyRecorded(PathBuf),
}

fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("witness")
}

fn pin_file(data_dir: &Path) -> PathBuf {
    dir_of(data_dir).join("log.pub")
}

fn read(path: &Path) -> Result<String, WitnessError> {
    std::fs::read_to_string(path).map_err(|source| WitnessError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The first line of `path` that is a verifier key (comment lines are skipped).
pub fn load_key(path: &Path) -> Result<VerifierKey, WitnessError> {
    let text = read(path)?;
    let mut last = "the file is empty".to_owned();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match VerifierKey::parse(line) {
            Ok(k) => return Ok(k),
            Err(e) => last = e.to_string(),
        }
    }
    Err(WitnessError::BadKey {
        path: path.to_owned(),
        detail: last,
    })
}

/// The pinned key, pinning `given` at the first record.
fn key_for(data_dir: &Path, given: Option<&Path>) -> Result<VerifierKey, WitnessError> {
    let pin = pin_file(data_dir);
    let pinned = if pin.exists() {
        Some(load_key(&pin)?)
    } else {
        None
    };
    let given = given.map(load_key).transpose()?;
    match (pinned, given) {
        (Some(p), Some(g)) if p != g => Err(WitnessError::KeyChanged {
            given: g.to_string(),
            pinned: p.to_string(),
            dir: dir_of(data_dir),
        }),
        (Some(p), _) => Ok(p),
        (None, Some(g)) => {
            let dir = dir_of(data_dir);
            std::fs::create_dir_all(&dir).map_err(|source| WitnessError::Write {
                path: dir.clone(),
                source,
            })?;
            std::fs::write(&pin, format!("{g}\n")).map_err(|source| WitnessError::Write {
                path: pin.clone(),
                source,
            })?;
            Ok(g)
        }
        (None, None) => Err(WitnessError::NoKey),
    }
}

/// Every recorded checkpoint, by size, each verified under `key`.
fn recorded(data_dir: &Path, key: &VerifierKey) -> Result<Vec<Recorded>, WitnessError> {
    let dir = dir_of(data_dir);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(WitnessError::Read { path: dir, source }),
    };
    for e in entries {
        let e = e.map_err(|source| WitnessError::Read {
            path: dir.clone(),
            source,
        })?;
        let file = e.path();
        if file.extension().is_none_or(|x| x != "checkpoint") {
            continue;
        }
        let note = read(&file)?;
        let checkpoint =
            Checkpoint::open(note.as_bytes(), key).map_err(|source| WitnessError::Checkpoint {
                path: file.clone(),
                source,
            })?;
        out.push(Recorded { file, checkpoint });
    }
    out.sort_by_key(|r| r.checkpoint.size);
    Ok(out)
}

/// Verifies the checkpoint in `file` and records it.
pub fn record(
    data_dir: &Path,
    file: &Path,
    key_file: Option<&Path>,
) -> Result<(Outcome, Checkpoint), WitnessError> {
    let key = key_for(data_dir, key_file)?;
    let note = read(file)?;
    let cp =
        Checkpoint::open(note.as_bytes(), &key).map_err(|source| WitnessError::Checkpoint {
            path: file.to_owned(),
            source,
        })?;
    for r in recorded(data_dir, &key)? {
        if r.checkpoint.size == cp.size {
            if r.checkpoint.root != cp.root {
                return Err(WitnessError::Fork {
                    path: file.to_owned(),
                    size: cp.size,
                    old_root: B64.encode(r.checkpoint.root),
                    new_root: B64.encode(cp.root),
                });
            }
            return Ok((Outcome::AlreadyRecorded(r.file), cp));
        }
    }
    let target = dir_of(data_dir).join(format!("{:020}.checkpoint", cp.size));
    std::fs::write(&target, note.as_bytes()).map_err(|source| WitnessError::Write {
        path: target.clone(),
        source,
    })?;
    Ok((Outcome::Recorded(target), cp))
}

/// The highest seq the receiver had accepted per signer kid, over every recorded
/// checkpoint (each verified under the pinned key: the `seq` lines are signed). Empty when
/// nothing was recorded.
pub fn seen_seqs(data_dir: &Path) -> Result<BTreeMap<String, u64>, WitnessError> {
    let pin = pin_file(data_dir);
    if !pin.exists() {
        return Ok(BTreeMap::new());
    }
    let key = load_key(&pin)?;
    let mut out = BTreeMap::new();
    for r in recorded(data_dir, &key)? {
        for (kid, seq) in r.checkpoint.seen_seqs() {
            let v = out.entry(kid).or_insert(0);
            *v = (*v).max(seq);
        }
    }
    Ok(out)
}

/// An outbox whose chain is behind what the receiver has accepted: sealing on it would reuse
/// seqs, which the receiver refuses (`seq_conflict`) until the chain passes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub kid: String,
    /// The outbox's last seq of that signer.
    pub outbox_seq: u64,
    /// The highest seq of that signer in a recorded checkpoint.
    pub seen_seq: u64,
}

/// Whether an outbox whose chain belongs to `kid` and whose last seq is `last_seq` is older
/// than the recorded checkpoints say the receiver has seen.
pub fn check_outbox(
    data_dir: &Path,
    kid: &str,
    last_seq: u64,
) -> Result<Option<Stale>, WitnessError> {
    if kid.is_empty() {
        return Ok(None);
    }
    Ok(seen_seqs(data_dir)?
        .get(kid)
        .filter(|&&seen| seen > last_seq)
        .map(|&seen_seq| Stale {
            kid: kid.to_owned(),
            outbox_seq: last_seq,
            seen_seq,
        }))
}

/// The recorded checkpoints, for people.
pub fn list(data_dir: &Path) -> Result<String, WitnessError> {
    let pin = pin_file(data_dir);
    if !pin.exists() {
        return Ok(
            "no checkpoint recorded yet (airlock-sender witness record FILE --key FILE)\n".into(),
        );
    }
    let key = load_key(&pin)?;
    let rows = recorded(data_dir, &key)?;
    let mut out = format!("log {} (key {})\n", key.name, key.key_hash_hex());
    for r in &rows {
        let _ = writeln!(
            out,
            "{:>12} entries  root {}  signed {}  {}",
            r.checkpoint.size,
            B64.encode(r.checkpoint.root),
            r.checkpoint.extension("time").unwrap_or("-"),
            r.file.display()
        );
        for (kid, seq) in r.checkpoint.seen_seqs() {
            let _ = writeln!(
                out,
                "{:>12} signer {kid}: receiver had accepted seq {seq}",
                ""
            );
        }
    }
    let _ = writeln!(
        out,
        "{} checkpoint(s); that each extends the one before is proved inside with `airlock-receiver audit consistency OLD NEW`",
        rows.len()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn note(key: &SigningKey, size: u64, root: u8) -> String {
        Checkpoint {
            origin: "rx.example/log".into(),
            size,
            root: [root; 32],
            extensions: vec!["time 2026-12-03T10:00:00Z".into()],
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn records_verifies_pins_the_key_and_refuses_forks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let k = SigningKey::from_bytes(&[9; 32]);
        let vk = VerifierKey::new("rx.example/log", k.verifying_key()).unwrap();
        let key_file = dir.path().join("checkpoint.pub");
        std::fs::write(&key_file, format!("# fingerprint: x\n{vk}\n")).unwrap();
        let f = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = f("a", &note(&k, 10, 1));
        assert!(matches!(record(&data, &a, None), Err(WitnessError::NoKey)));
        let (o, cp) = record(&data, &a, Some(&key_file)).unwrap();
        assert!(matches!(o, Outcome::Recorded(_)));
        assert_eq!(cp.size, 10);
        // Again: nothing new; the key is pinned now.
        assert!(matches!(
            record(&data, &a, None).unwrap().0,
            Outcome::AlreadyRecorded(_)
        ));
        let b = f("b", &note(&k, 20, 2));
        assert!(matches!(
            record(&data, &b, None).unwrap().0,
            Outcome::Recorded(_)
        ));
        // Same size, another root: a fork.
        let fork = f("fork", &note(&k, 10, 3));
        assert!(matches!(
            record(&data, &fork, None),
            Err(WitnessError::Fork { size: 10, .. })
        ));
        // Signed by another key, altered, garbage.
        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = f("forged", &note(&other, 30, 4));
        assert!(matches!(
            record(&data, &forged, None),
            Err(WitnessError::Checkpoint { .. })
        ));
        let altered = f("altered", &note(&k, 40, 5).replacen("\n40\n", "\n41\n", 1));
        assert!(matches!(
            record(&data, &altered, None),
            Err(WitnessError::Checkpoint {
                source: CheckpointError::BadSignature { .. },
                ..
            })
        ));
        let garbage = f("garbage", "hello\n");
        assert!(record(&data, &garbage, None).is_err());
        // Another key than the pinned one: refused, naming both.
        let other_vk = VerifierKey::new("rx.example/log", other.verifying_key()).unwrap();
        let other_file = f("other.pub", &format!("{other_vk}\n"));
        assert!(matches!(
            record(&data, &b, Some(&other_file)),
            Err(WitnessError::KeyChanged { .. })
        ));
        let listed = list(&data).unwrap();
        assert!(listed.contains("2 checkpoint(s)"), "{listed}");
        assert!(listed.contains("10 entries"), "{listed}");
    }
}
