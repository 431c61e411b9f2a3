//! `airlock-receiver trust ...`: the inside half of the key ceremony.
//!
//! Keys are installed by copying them into the trust directory (`trust.dir`), after the
//! operator compared the printed fingerprint with the one read out at the sender.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_protocol::keys::{LinkKey, SignerPublicKey, write_public_file, write_secret_file};
use thiserror::Error;

use crate::config::Config;
use crate::store::records::KeySet;
use crate::trust_set::{BaseTrust, LINK_EXT, SIGNER_EXT, TrustError, dir_files};

#[derive(Debug, Error)]
pub enum TrustCmdError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Key(#[from] airlock_protocol::keys::KeyError),
    #[error(
        "config file {file}: `trust.dir` is not set: set it to the directory where installed keys are kept"
    )]
    NoDir { file: PathBuf },
    #[error("cannot create the trust directory {dir}: {source}")]
    MkDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is already trusted (file {file})")]
    AlreadyTrusted { what: String, file: PathBuf },
    #[error("{what} is not installed in the trust directory{hint}")]
    NotInstalled { what: String, hint: String },
    #[error("cannot remove {file}: {source}")]
    Remove {
        file: PathBuf,
        source: std::io::Error,
    },
}

fn trust_dir(cfg: &Config) -> Result<&Path, TrustCmdError> {
    cfg.trust
        .dir
        .as_deref()
        .ok_or_else(|| TrustCmdError::NoDir {
            file: cfg.source.clone(),
        })
}

/// Lists configured and installed keys with fingerprints, plus the key changes logged
/// (from the store when available).
pub fn list(cfg: &Config, logged: Option<&KeySet>) -> Result<String, TrustCmdError> {
    let base = BaseTrust::load(&cfg.trust)?;
    let mut out = String::new();
    let _ = writeln!(out, "signer keys (configured or installed):");
    for (path, k) in &base.signers {
        let retired = logged.is_some_and(|l| l.retired_signers.contains(&k.kid));
        let _ = writeln!(
            out,
            "  kid {}  fingerprint {}  {}{}",
            k.kid,
            k.fingerprint(),
            path.display(),
            if retired {
                "  [retired over the link]"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "link keys:");
    for (path, k) in &base.links {
        let retired = logged.is_some_and(|l| l.retired_links.contains(&k.kid));
        let _ = writeln!(
            out,
            "  kid {}  fingerprint {}  {}{}",
            k.kid,
            k.fingerprint(),
            path.display(),
            if retired {
                "  [retired over the link]"
            } else {
                ""
            }
        );
    }
    if let Some(l) = logged {
        if !l.signers.is_empty() {
            let _ = writeln!(out, "signer keys announced over the link:");
            for (kid, a) in &l.signers {
                let fp = hex::decode(&a.public_key)
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .and_then(|raw| SignerPublicKey::from_raw(&raw).ok())
                    .map_or_else(|| "?".to_owned(), |k| k.fingerprint());
                let _ = writeln!(
                    out,
                    "  kid {kid}  fingerprint {fp}  trusted from {}  announced by {} (log entry {})",
                    a.not_before, a.announced_by, a.log_index
                );
            }
        }
        for (kid, nb) in &l.link_activations {
            let _ = writeln!(out, "link key {kid} announced active from {nb}");
        }
    }
    Ok(out)
}

/// Installs a signer public key file into the trust directory.
pub fn add_signer(cfg: &Config, file: &Path) -> Result<String, TrustCmdError> {
    let key = SignerPublicKey::load(file)?;
    let dir = trust_dir(cfg)?;
    let base = BaseTrust::load(&cfg.trust)?;
    if let Some((p, _)) = base.signers.iter().find(|(_, k)| k.kid == key.kid) {
        return Err(TrustCmdError::AlreadyTrusted {
            what: format!("signer kid {}", key.kid),
            file: p.clone(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustCmdError::MkDir {
        dir: dir.to_owned(),
        source,
    })?;
    let dest = dir.join(format!("signer-{}.{SIGNER_EXT}", key.kid));
    write_public_file(&dest, key.to_spki_pem()?.as_bytes())?;
    Ok(format!(
        "installed signer kid {}\n  fingerprint {}\n  file {}\ncompare the fingerprint with the one read out at the sender; restart the receiver to use it\n",
        key.kid,
        key.fingerprint(),
        dest.display()
    ))
}

/// Installs a link key file (secret, mode 0600) into the trust directory.
pub fn add_link_key(cfg: &Config, file: &Path) -> Result<String, TrustCmdError> {
    let key = LinkKey::load(file)?;
    let dir = trust_dir(cfg)?;
    let base = BaseTrust::load(&cfg.trust)?;
    if let Some((p, _)) = base.links.iter().find(|(_, k)| k.kid == key.kid) {
        return Err(TrustCmdError::AlreadyTrusted {
            what: format!("link key kid {}", key.kid),
            file: p.clone(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustCmdError::MkDir {
        dir: dir.to_owned(),
        source,
    })?;
    let dest = dir.join(format!("link-{}.{LINK_EXT}", key.kid));
    write_secret_file(&dest, key.to_text().as_bytes())?;
    Ok(format!(
        "installed link key kid {}\n  fingerprint {}\n  file {} (mode 0600)\ncompare the fingerprint with the sender's; restart the receiver to use it\n",
        key.kid,
        key.fingerprint(),
        dest.display()
    ))
}

/// Which installed key to remove.
#[derive(Debug, Clone)]
pub enum RemoveTarget {
    Signer(String),
    Link(u32),
}

/// Removes an installed key from the trust directory (configured files stay: edit the config).
pub fn remove(cfg: &Config, target: &RemoveTarget) -> Result<String, TrustCmdError> {
    let dir = trust_dir(cfg)?;
    let (ext, what) = match target {
        RemoveTarget::Signer(kid) => (SIGNER_EXT, format!("signer kid {kid}")),
        RemoveTarget::Link(kid) => (LINK_EXT, format!("link key kid {kid}")),
    };
    for path in dir_files(dir, ext)? {
        let matches = match target {
            RemoveTarget::Signer(kid) => SignerPublicKey::load(&path).is_ok_and(|k| &k.kid == kid),
            RemoveTarget::Link(kid) => LinkKey::load(&path).is_ok_and(|k| k.kid == *kid),
        };
        if matches {
            std::fs::remove_file(&path).map_err(|source| TrustCmdError::Remove {
                file: path.clone(),
                source,
            })?;
            return Ok(format!(
                "removed {what} ({}); restart the receiver to stop trusting it\n",
                path.display()
            ));
        }
    }
    let configured = match target {
        RemoveTarget::Signer(kid) => BaseTrust::load(&cfg.trust)?
            .signers
            .iter()
            .any(|(_, k)| &k.kid == kid),
        RemoveTarget::Link(kid) => BaseTrust::load(&cfg.trust)?
            .links
            .iter()
            .any(|(_, k)| k.kid == *kid),
    };
    let hint = if configured {
        format!(
            ": it is listed in {}; remove it from [trust] there",
            cfg.source.display()
        )
    } else {
        String::new()
    };
    Err(TrustCmdError::NotInstalled { what, hint })
}
