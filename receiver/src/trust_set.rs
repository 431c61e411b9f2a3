//! The keys in force: configured files and the trust directory, plus key changes that
//! arrived over the link (KeyAnnounce / KeyRetire, held in the store's [`KeySet`]).
//!
//! The rules (docs/operations.md, "Key life cycle"):
//! - A configured or installed key is trusted from time 0 unless a KeyRetire retired it;
//!   an operator's reinstatement (`trust add-signer --reinstate` or
//!   `trust add-link-key --reinstate`, a marker file in the trust directory naming the
//!   retirement it lifts) lifts that retirement, and a later KeyRetire bans the kid again.
//! - An announced key is trusted from its `not_before` while the key that announced it is
//!   still known: configured, or itself announced and known. A KeyRetire of the announcer
//!   (a planned rotation) keeps the keys it announced; removing the announcer by hand
//!   (`trust remove`, the compromise procedure) drops them, and every key they announced.
//! - `trust remove --signer KID` works for any kid: it deletes an installed file and leaves
//!   a removal marker, so the kid is not trusted again through an announcement.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use airlock_protocol::keys::{KeyError, LinkKey, SignerPublicKey};
use airlock_protocol::trust::TrustStore;
use thiserror::Error;

use crate::config::TrustConfig;
use crate::store::records::KeySet;

/// File name endings in the trust directory.
pub const SIGNER_EXT: &str = "pub";
pub const LINK_EXT: &str = "linkkey";
/// `signer-KID.removed`: the operator removed signer KID (configured, installed or announced).
pub const REMOVED_EXT: &str = "removed";
/// `signer-KID.reinstated` / `link-KID.reinstated`, holding the log index of the KeyRetire
/// the operator lifted.
pub const REINSTATED_EXT: &str = "reinstated";

#[derive(Debug, Error)]
pub enum TrustError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read the trust directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("announced signer {kid}: stored public key is not valid hex of 32 bytes")]
    Announced { kid: String },
    #[error(
        "marker file {file} is malformed: it must hold one log index (a number); remove it and run the trust command again"
    )]
    Marker { file: PathBuf },
}

/// The keys from configuration (files and the trust directory), trusted from time 0, and
/// the operator's removal and reinstatement markers.
#[derive(Debug, Clone, Default)]
pub struct BaseTrust {
    pub signers: Vec<(PathBuf, SignerPublicKey)>,
    pub links: Vec<(PathBuf, LinkKey)>,
    pub removed_signers: BTreeSet<String>,
    /// Signer kid -> log index of the KeyRetire an operator lifted.
    pub reinstated_signers: BTreeMap<String, u64>,
    pub reinstated_links: BTreeMap<u32, u64>,
}

impl BaseTrust {
    pub fn load(cfg: &TrustConfig) -> Result<Self, TrustError> {
        let mut base = BaseTrust::default();
        for p in &cfg.signers {
            base.signers.push((p.clone(), SignerPublicKey::load(p)?));
        }
        for p in &cfg.link_keys {
            base.links.push((p.clone(), LinkKey::load(p)?));
        }
        if let Some(dir) = &cfg.dir {
            for p in dir_files(dir, SIGNER_EXT)? {
                let k = SignerPublicKey::load(&p)?;
                base.signers.push((p, k));
            }
            for p in dir_files(dir, LINK_EXT)? {
                let k = LinkKey::load(&p)?;
                base.links.push((p, k));
            }
            for p in dir_files(dir, REMOVED_EXT)? {
                if let Some(kid) = marker_kid(&p, "signer-") {
                    base.removed_signers.insert(kid);
                }
            }
            for p in dir_files(dir, REINSTATED_EXT)? {
                let at = read_marker(&p)?;
                if let Some(kid) = marker_kid(&p, "signer-") {
                    base.reinstated_signers.insert(kid, at);
                } else if let Some(kid) = marker_kid(&p, "link-").and_then(|k| k.parse().ok()) {
                    base.reinstated_links.insert(kid, at);
                }
            }
        }
        Ok(base)
    }

    /// Whether signer `kid` is retired: a KeyRetire arrived and no reinstatement lifted it.
    pub fn signer_retired(&self, kid: &str, keys: &KeySet) -> bool {
        keys.retired_signers.contains(kid)
            && !self.reinstated_signers.get(kid).is_some_and(|&lifted| {
                lifted >= keys.signer_retired_by.get(kid).map_or(0, |p| p.log_index)
            })
    }

    pub fn link_retired(&self, kid: u32, keys: &KeySet) -> bool {
        keys.retired_links.contains(&kid)
            && !self.reinstated_links.get(&kid).is_some_and(|&lifted| {
                lifted >= keys.link_retired_by.get(&kid).map_or(0, |p| p.log_index)
            })
    }

    /// Whether announced signer `kid` still has a known announcer chain back to a
    /// configured key, with nothing on it removed by the operator.
    pub fn announcement_rooted(&self, kid: &str, keys: &KeySet) -> bool {
        let mut current = kid.to_owned();
        let mut seen = BTreeSet::new();
        loop {
            if self.removed_signers.contains(&current) || !seen.insert(current.clone()) {
                return false;
            }
            let Some(a) = keys.signers.get(&current) else {
                return false;
            };
            let by = &a.announced_by;
            if self.removed_signers.contains(by) {
                return false;
            }
            if self.signers.iter().any(|(_, k)| &k.kid == by) {
                return true;
            }
            current = by.clone();
        }
    }

    /// Trust in force given the key changes logged so far.
    pub fn effective(&self, keys: &KeySet) -> Result<TrustStore, TrustError> {
        let mut t = TrustStore::new();
        for (_, k) in &self.links {
            if !self.link_retired(k.kid, keys) {
                t.add_link_key(k.clone());
            }
        }
        for (_, k) in &self.signers {
            if !self.signer_retired(&k.kid, keys) && !self.removed_signers.contains(&k.kid) {
                t.add_signer(k.clone(), 0);
            }
        }
        for (kid, a) in &keys.signers {
            let raw: [u8; 32] = hex::decode(&a.public_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(TrustError::Announced { kid: kid.clone() })?;
            let k = SignerPublicKey::from_raw(&raw)?;
            if self.signer_retired(&k.kid, keys) || !self.announcement_rooted(kid, keys) {
                continue;
            }
            // A configured key stays trusted from time 0 even if it is re-announced.
            if t.signer(&k.kid).is_none() {
                t.add_signer(k, a.not_before);
            }
        }
        Ok(t)
    }
}

/// `signer-KID.ext` -> KID.
fn marker_kid(path: &Path, prefix: &str) -> Option<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix(prefix))
        .map(str::to_owned)
}

fn read_marker(path: &Path) -> Result<u64, TrustError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| TrustError::Marker {
            file: path.to_owned(),
        })
}

/// Files in `dir` ending in `.ext`, sorted; a missing directory is empty.
pub fn dir_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, TrustError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TrustError::Dir {
                dir: dir.to_owned(),
                source,
            });
        }
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{AnnouncedSigner, Provenance};
    use airlock_protocol::keys::SignerKey;

    fn announced(key: &SignerPublicKey, by: &str, log_index: u64) -> AnnouncedSigner {
        AnnouncedSigner {
            public_key: hex::encode(key.key.as_bytes()),
            not_before: 10,
            announced_by: by.to_owned(),
            log_index,
        }
    }

    fn retired_at(kid: &str, log_index: u64) -> (String, Provenance) {
        (
            kid.to_owned(),
            Provenance {
                signer_kid: kid.to_owned(),
                seq: 1,
                issued_at: 1,
                log_index,
            },
        )
    }

    /// A configured, B announced by A, C announced by B.
    fn chain() -> (BaseTrust, KeySet, [String; 3]) {
        let [a, b, c] = [(); 3].map(|()| SignerKey::generate().public());
        let base = BaseTrust {
            signers: vec![(PathBuf::from("a.pub"), a.clone())],
            ..BaseTrust::default()
        };
        let mut keys = KeySet::default();
        keys.signers.insert(b.kid.clone(), announced(&b, &a.kid, 1));
        keys.signers.insert(c.kid.clone(), announced(&c, &b.kid, 2));
        (base, keys, [a.kid, b.kid, c.kid])
    }

    #[test]
    fn keys_announced_by_a_removed_key_are_dropped_with_it() {
        let (mut base, keys, [a, b, c]) = chain();
        let t = base.effective(&keys).unwrap();
        assert!(t.signer(&a).is_some() && t.signer(&b).is_some() && t.signer(&c).is_some());
        // The operator removes A (its file goes, a marker stays): B and C go with it.
        base.signers.clear();
        base.removed_signers.insert(a.clone());
        let t = base.effective(&keys).unwrap();
        assert!(t.signer(&b).is_none() && t.signer(&c).is_none());
    }

    #[test]
    fn any_announced_kid_can_be_removed_and_takes_what_it_announced() {
        let (mut base, keys, [a, b, c]) = chain();
        base.removed_signers.insert(b.clone());
        let t = base.effective(&keys).unwrap();
        assert!(t.signer(&a).is_some());
        assert!(t.signer(&b).is_none() && t.signer(&c).is_none());
    }

    #[test]
    fn a_retired_announcer_keeps_the_keys_it_announced() {
        let (base, mut keys, [a, b, c]) = chain();
        keys.retired_signers.insert(a.clone());
        let t = base.effective(&keys).unwrap();
        assert!(t.signer(&a).is_none());
        assert!(t.signer(&b).is_some() && t.signer(&c).is_some());
    }

    #[test]
    fn an_operator_reinstatement_lifts_a_retirement_and_a_later_one_bans_again() {
        let (mut base, mut keys, [a, ..]) = chain();
        keys.retired_signers.insert(a.clone());
        keys.signer_retired_by.extend([retired_at(&a, 5)]);
        assert!(base.effective(&keys).unwrap().signer(&a).is_none());
        base.reinstated_signers.insert(a.clone(), 5);
        assert!(base.effective(&keys).unwrap().signer(&a).is_some());
        keys.signer_retired_by.extend([retired_at(&a, 9)]);
        assert!(base.effective(&keys).unwrap().signer(&a).is_none());
    }
}
