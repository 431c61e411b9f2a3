//! `airlock-sender keys announce|retire`: signer key changes sent over the link.
//!
//! A key change is a frame like any other: checked by the policy
//! ([`crate::policy::admit_key_change`]), queued in the spool, sealed in order and signed by
//! the key the daemon signs with. The ceremony (docs/operations.md, "Rotation"): announce
//! the new key (signed by the current one), switch `[keys] signer` to the new key and
//! restart, then retire the old kid (signed by the new one).

use std::path::{Path, PathBuf};

use airlock_protocol::keys::{KeyError, SignerKey, SignerPublicKey};
use airlock_protocol::message::{Body, KeyAnnounce, KeyRetire};
use thiserror::Error;

use crate::config::Config;
use crate::policy::{self, Rejection};
use crate::spool::{self, SpoolError, SpoolItem};
use crate::status;

#[derive(Debug, Error)]
pub enum KeyChangeError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Refused(#[from] Rejection),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(
        "cannot tell which key the sender signs with: {signer} is unreadable ({detail}) and there is no status.json of a run yet; run this as the daemon's user"
    )]
    OwnKeyUnknown { signer: PathBuf, detail: String },
}

/// What was queued, for printing.
#[derive(Debug)]
pub struct Queued {
    pub batch_id: String,
    pub kid: String,
    /// The kid of the key the daemon signs with (the frame's signer).
    pub signed_by: String,
}

/// The kid the daemon signs with: from the configured key, or (when the operator running
/// the command cannot read it) from the daemon's last status.json.
fn own_kid(config: &Config) -> Result<String, KeyChangeError> {
    match SignerKey::load(&config.keys.signer) {
        Ok(k) => Ok(k.kid().to_string()),
        Err(e) => status::read(&config.status_file())
            .map(|s| s.signer_kid)
            .map_err(|_| KeyChangeError::OwnKeyUnknown {
                signer: config.keys.signer.clone(),
                detail: e.to_string(),
            }),
    }
}

/// Queues a KeyAnnounce of the signer public key in `file` (SPKI PEM), trusted by the
/// receiver from `not_before` (Unix seconds).
pub fn announce(config: &Config, file: &Path, not_before: u64) -> Result<Queued, KeyChangeError> {
    let key = SignerPublicKey::load(file)?;
    let body = Body::KeyAnnounce(KeyAnnounce::Signer {
        kid: key.kid.clone(),
        public_key: key.key.to_bytes(),
        not_before,
    });
    queue(
        config,
        body,
        &key.kid,
        format!("keys announce {}", file.display()),
    )
}

/// Queues a KeyRetire of signer `kid`.
pub fn retire(config: &Config, kid: &str) -> Result<Queued, KeyChangeError> {
    let body = Body::KeyRetire(KeyRetire::Signer {
        kid: kid.to_string(),
    });
    queue(config, body, kid, format!("keys retire {kid}"))
}

fn queue(config: &Config, body: Body, kid: &str, source: String) -> Result<Queued, KeyChangeError> {
    let signed_by = own_kid(config)?;
    policy::admit_key_change(&source, &body, &signed_by)?;
    let batch_id = spool::write_batch(&config.spool_dir(), vec![SpoolItem { source, body }])?;
    Ok(Queued {
        batch_id,
        kid: kid.to_string(),
        signed_by,
    })
}
