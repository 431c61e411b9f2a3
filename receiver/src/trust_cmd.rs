//! `airlock-receiver trust ...`: the inside half of the key ceremony.
//!
//! Keys are installed by copying them into the trust directory (`trust.dir`), after the
//! operator compared the printed fingerprint with the one read out at the sender.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_protocol::keys::{LinkKey, SignerPublicKey, write_public_file, write_secret_file};
use thiserror::Error;

use crate::config::Config;
use crate::status_page::SignerRow;
use crate::store::records::KeySet;
use crate::store::records::Provenance;
use crate::trust_set::{
    BaseTrust, LINK_EXT, REINSTATED_EXT, REMOVED_EXT, SIGNER_EXT, TrustError, dir_files,
};

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
    #[error("cannot write {file}: {source}")]
    Marker {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} was retired over the link ({why}); if the key ceremony re-approved this key, install it again with `--reinstate`"
    )]
    Retired { what: String, why: String },
}

fn retirement(p: Option<&Provenance>) -> String {
    p.map_or_else(
        || "KeyRetire frame".to_owned(),
        |p| {
            format!(
                "KeyRetire seq {} from signer {}, log entry {}",
                p.seq, p.signer_kid, p.log_index
            )
        },
    )
}

fn write_marker(path: &Path, text: &str) -> Result<(), TrustCmdError> {
    std::fs::write(path, text).map_err(|source| TrustCmdError::Marker {
        file: path.to_owned(),
        source,
    })
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
        let _ = writeln!(
            out,
            "  kid {}  fingerprint {}  {}{}",
            k.kid,
            k.fingerprint(),
            path.display(),
            signer_status(&base, logged, &k.kid)
        );
    }
    let _ = writeln!(out, "link keys:");
    for (path, k) in &base.links {
        let _ = writeln!(
            out,
            "  kid {}  fingerprint {}  {}{}",
            k.kid,
            k.fingerprint(),
            path.display(),
            link_status(&base, logged, k.kid)
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
                let status = if base.announcement_rooted(kid, l) {
                    signer_status(&base, logged, kid)
                } else {
                    "  [not trusted: it, or a key on its announcement chain, was removed by the operator]".to_owned()
                };
                let _ = writeln!(
                    out,
                    "  kid {kid}  fingerprint {fp}  trusted from {}  announced by {} (log entry {}){status}",
                    a.not_before, a.announced_by, a.log_index
                );
            }
        }
        if !l.retired_signers.is_empty() {
            let _ = writeln!(out, "signer kids retired over the link:");
            for kid in &l.retired_signers {
                let _ = writeln!(
                    out,
                    "  kid {kid}  by {}{}",
                    retirement(l.signer_retired_by.get(kid)),
                    if base.signer_retired(kid, l) {
                        ""
                    } else {
                        "  [lifted: reinstated by the operator]"
                    }
                );
            }
        }
        for kid in &l.retired_links {
            let _ = writeln!(
                out,
                "link key {kid} retired by {}{}",
                retirement(l.link_retired_by.get(kid)),
                if base.link_retired(*kid, l) {
                    ""
                } else {
                    "  [lifted: reinstated by the operator]"
                }
            );
        }
        for (kid, nb) in &l.link_activations {
            let _ = writeln!(out, "link key {kid} announced active from {nb}");
        }
    }
    Ok(out)
}

/// The status a listed signer kid gets: retired (and by what), removed, or nothing.
/// The frame-signing key schedule the status page shows: every configured signer, every
/// signer announced over the link, and retired kids, with from when and until when each is
/// trusted.
pub fn signer_schedule(base: &BaseTrust, logged: &KeySet) -> Vec<SignerRow> {
    let until = |kid: &str| -> (String, bool) {
        if base.removed_signers.contains(kid) {
            ("removed by the operator".to_owned(), false)
        } else if base.signer_retired(kid, logged) {
            (
                format!(
                    "retired by {}",
                    retirement(logged.signer_retired_by.get(kid))
                ),
                false,
            )
        } else if logged.retired_signers.contains(kid) {
            (
                "until retired (an earlier retirement was lifted by the operator)".to_owned(),
                true,
            )
        } else {
            ("until retired (no end date)".to_owned(), true)
        }
    };
    let mut rows = Vec::new();
    for (path, k) in &base.signers {
        let (u, trusted) = until(&k.kid);
        rows.push(SignerRow {
            kid: k.kid.clone(),
            fingerprint: k.fingerprint(),
            source: format!("configured ({})", path.display()),
            from: "the start of the log".to_owned(),
            until: u,
            trusted,
        });
    }
    for (kid, a) in &logged.signers {
        let fingerprint = hex::decode(&a.public_key)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .and_then(|raw| SignerPublicKey::from_raw(&raw).ok())
            .map_or_else(|| "?".to_owned(), |k| k.fingerprint());
        let (mut u, mut trusted) = until(kid);
        if !base.announcement_rooted(kid, logged) {
            u = "not trusted: it, or a key on its announcement chain, was removed by the operator"
                .to_owned();
            trusted = false;
        }
        rows.push(SignerRow {
            kid: kid.clone(),
            fingerprint,
            source: format!(
                "announced by {} (log entry {})",
                a.announced_by, a.log_index
            ),
            from: if a.not_before == 0 {
                "its announcement".to_owned()
            } else {
                crate::audit::timefmt::format_secs(a.not_before)
            },
            until: u,
            trusted,
        });
    }
    for kid in &logged.retired_signers {
        if rows.iter().any(|r| &r.kid == kid) {
            continue;
        }
        let (u, _) = until(kid);
        rows.push(SignerRow {
            kid: kid.clone(),
            fingerprint: "?".to_owned(),
            source: "not installed".to_owned(),
            from: "-".to_owned(),
            until: u,
            trusted: false,
        });
    }
    rows
}

fn signer_status(base: &BaseTrust, logged: Option<&KeySet>, kid: &str) -> String {
    if base.removed_signers.contains(kid) {
        return "  [removed by the operator]".to_owned();
    }
    match logged {
        Some(l) if base.signer_retired(kid, l) => format!(
            "  [retired over the link by {}]",
            retirement(l.signer_retired_by.get(kid))
        ),
        Some(l) if l.retired_signers.contains(kid) => {
            "  [retirement lifted by the operator]".to_owned()
        }
        _ => String::new(),
    }
}

/// The status a listed link kid gets: retired (and by what), lifted, or nothing.
fn link_status(base: &BaseTrust, logged: Option<&KeySet>, kid: u32) -> String {
    match logged {
        Some(l) if base.link_retired(kid, l) => format!(
            "  [retired over the link by {}]",
            retirement(l.link_retired_by.get(&kid))
        ),
        Some(l) if l.retired_links.contains(&kid) => {
            "  [retirement lifted by the operator]".to_owned()
        }
        _ => String::new(),
    }
}

/// Installs a signer public key file into the trust directory. A kid retired over the link
/// is refused unless `reinstate` is set: then the install lifts that retirement (a later
/// KeyRetire bans it again). An operator removal marker of the kid is cleared.
pub fn add_signer(
    cfg: &Config,
    file: &Path,
    logged: Option<&KeySet>,
    reinstate: bool,
) -> Result<String, TrustCmdError> {
    let key = SignerPublicKey::load(file)?;
    let dir = trust_dir(cfg)?;
    let base = BaseTrust::load(&cfg.trust)?;
    let retired = logged.filter(|l| base.signer_retired(&key.kid, l));
    if let (Some(l), false) = (retired, reinstate) {
        return Err(TrustCmdError::Retired {
            what: format!("signer kid {}", key.kid),
            why: retirement(l.signer_retired_by.get(&key.kid)),
        });
    }
    let installed = base.signers.iter().find(|(_, k)| k.kid == key.kid);
    if let (Some((p, _)), None) = (installed, retired) {
        return Err(TrustCmdError::AlreadyTrusted {
            what: format!("signer kid {}", key.kid),
            file: p.clone(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustCmdError::MkDir {
        dir: dir.to_owned(),
        source,
    })?;
    let dest = match installed {
        Some((p, _)) => p.clone(),
        None => {
            let dest = dir.join(format!("signer-{}.{SIGNER_EXT}", key.kid));
            write_public_file(&dest, key.to_spki_pem()?.as_bytes())?;
            dest
        }
    };
    let mut lifted = String::new();
    if let Some(l) = retired {
        let at = l.signer_retired_by.get(&key.kid).map_or(0, |p| p.log_index);
        write_marker(
            &dir.join(format!("signer-{}.{REINSTATED_EXT}", key.kid)),
            &format!("{at}\n"),
        )?;
        lifted = format!(
            "  lifts the retirement by {}\n",
            retirement(l.signer_retired_by.get(&key.kid))
        );
    }
    let removed = dir.join(format!("signer-{}.{REMOVED_EXT}", key.kid));
    if removed.exists() {
        std::fs::remove_file(&removed).map_err(|source| TrustCmdError::Remove {
            file: removed.clone(),
            source,
        })?;
    }
    Ok(format!(
        "installed signer kid {}\n  fingerprint {}\n  file {}\n{lifted}compare the fingerprint with the one read out at the sender; restart the receiver to use it\n",
        key.kid,
        key.fingerprint(),
        dest.display()
    ))
}

/// Installs a link key file (secret, mode 0600) into the trust directory. Like
/// [`add_signer`]: a kid retired over the link is refused unless `reinstate` is set, which
/// lifts that retirement (marker `link-KID.reinstated`; a later KeyRetire bans it again).
pub fn add_link_key(
    cfg: &Config,
    file: &Path,
    logged: Option<&KeySet>,
    reinstate: bool,
) -> Result<String, TrustCmdError> {
    let key = LinkKey::load(file)?;
    let dir = trust_dir(cfg)?;
    let base = BaseTrust::load(&cfg.trust)?;
    let retired = logged.filter(|l| base.link_retired(key.kid, l));
    if let (Some(l), false) = (retired, reinstate) {
        return Err(TrustCmdError::Retired {
            what: format!("link key kid {}", key.kid),
            why: retirement(l.link_retired_by.get(&key.kid)),
        });
    }
    let installed = base.links.iter().find(|(_, k)| k.kid == key.kid);
    if let (Some((p, _)), None) = (installed, retired) {
        return Err(TrustCmdError::AlreadyTrusted {
            what: format!("link key kid {}", key.kid),
            file: p.clone(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustCmdError::MkDir {
        dir: dir.to_owned(),
        source,
    })?;
    let dest = match installed {
        Some((p, _)) => p.clone(),
        None => {
            let dest = dir.join(format!("link-{}.{LINK_EXT}", key.kid));
            write_secret_file(&dest, key.to_text().as_bytes())?;
            dest
        }
    };
    let mut lifted = String::new();
    if let Some(l) = retired {
        let at = l.link_retired_by.get(&key.kid).map_or(0, |p| p.log_index);
        write_marker(
            &dir.join(format!("link-{}.{REINSTATED_EXT}", key.kid)),
            &format!("{at}\n"),
        )?;
        lifted = format!(
            "  lifts the retirement by {}\n",
            retirement(l.link_retired_by.get(&key.kid))
        );
    }
    Ok(format!(
        "installed link key kid {}\n  fingerprint {}\n  file {} (mode 0600)\n{lifted}compare the fingerprint with the sender's; restart the receiver to use it\n",
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
/// A signer kid, installed or announced over the link, also gets a removal marker: it is
/// not trusted again through an announcement, and neither is any key it announced.
pub fn remove(
    cfg: &Config,
    target: &RemoveTarget,
    logged: Option<&KeySet>,
) -> Result<String, TrustCmdError> {
    let dir = trust_dir(cfg)?;
    if let RemoveTarget::Signer(kid) = target {
        let base = BaseTrust::load(&cfg.trust)?;
        let configured = cfg
            .trust
            .signers
            .iter()
            .zip(&base.signers)
            .find(|(_, (_, k))| &k.kid == kid);
        if let Some((path, _)) = configured {
            return Err(TrustCmdError::NotInstalled {
                what: format!("signer kid {kid}"),
                hint: format!(
                    ": it is listed in {} ({}); remove it from [trust] there",
                    cfg.source.display(),
                    path.display()
                ),
            });
        }
        let installed = base
            .signers
            .iter()
            .find(|(_, k)| &k.kid == kid)
            .map(|(p, _)| p.clone());
        // Without the store (a running receiver holds it) the kid cannot be confirmed as
        // announced: the marker is written anyway; it does no harm for an unknown kid.
        let unknown = logged.is_some_and(|l| !l.signers.contains_key(kid));
        if installed.is_none() && unknown {
            return Err(TrustCmdError::NotInstalled {
                what: format!("signer kid {kid}"),
                hint: " nor announced over the link (`trust list` shows every kid)".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| TrustCmdError::MkDir {
            dir: dir.to_owned(),
            source,
        })?;
        write_marker(
            &dir.join(format!("signer-{kid}.{REMOVED_EXT}")),
            "removed by the operator\n",
        )?;
        let mut what = String::new();
        if let Some(path) = installed {
            std::fs::remove_file(&path).map_err(|source| TrustCmdError::Remove {
                file: path.clone(),
                source,
            })?;
            what = format!(" ({})", path.display());
        }
        return Ok(format!(
            "removed signer kid {kid}{what}; keys it announced are no longer trusted either; restart the receiver to stop trusting them\n"
        ));
    }
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
