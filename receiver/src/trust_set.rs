//! The keys in force: configured files and the trust directory, plus key changes that
//! arrived over the link (KeyAnnounce / KeyRetire, held in the store's [`KeySet`]).

use std::path::{Path, PathBuf};

use airlock_protocol::keys::{KeyError, LinkKey, SignerPublicKey};
use airlock_protocol::trust::TrustStore;
use thiserror::Error;

use crate::config::TrustConfig;
use crate::store::records::KeySet;

/// File name endings in the trust directory.
pub const SIGNER_EXT: &str = "pub";
pub const LINK_EXT: &str = "linkkey";

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
}

/// The keys from configuration (files and the trust directory), trusted from time 0.
#[derive(Debug, Clone, Default)]
pub struct BaseTrust {
    pub signers: Vec<(PathBuf, SignerPublicKey)>,
    pub links: Vec<(PathBuf, LinkKey)>,
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
        }
        Ok(base)
    }

    /// Trust in force given the key changes logged so far.
    pub fn effective(&self, keys: &KeySet) -> Result<TrustStore, TrustError> {
        let mut t = TrustStore::new();
        for (_, k) in &self.links {
            if !keys.retired_links.contains(&k.kid) {
                t.add_link_key(k.clone());
            }
        }
        for (_, k) in &self.signers {
            if !keys.retired_signers.contains(&k.kid) {
                t.add_signer(k.clone(), 0);
            }
        }
        for (kid, a) in &keys.signers {
            let raw: [u8; 32] = hex::decode(&a.public_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(TrustError::Announced { kid: kid.clone() })?;
            let k = SignerPublicKey::from_raw(&raw)?;
            // A configured key stays trusted from time 0 even if it is re-announced.
            if t.signer(&k.kid).is_none() {
                t.add_signer(k, a.not_before);
            }
        }
        Ok(t)
    }
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
