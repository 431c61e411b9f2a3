//! IdpMirror: every `refresh_secs` the portal fetches each IdP's discovery document and JWKS
//! again; when either changed, or `mirror_secs` passed since the last mirror (and once at
//! start), it queues an `IdpMirror` frame carrying both byte for byte as fetched, through
//! the spool like any other record. Inside, the receiver serves them read-only, so inside
//! software that validates outside tokens never calls out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_protocol::limits::MAX_DOCUMENT;
use airlock_protocol::message::{Body, IdpMirror};
use sha2::{Digest, Sha256};

use super::idp::Documents;
use super::state::Portal;
use crate::policy::check_body_size;
use crate::spool::{self, SpoolItem};

/// What was last mirrored for one IdP.
struct Mirrored {
    digest: [u8; 32],
    at: Instant,
}

fn digest(docs: &Documents) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((docs.discovery.len() as u64).to_be_bytes());
    h.update(&docs.discovery);
    h.update(&docs.jwks);
    h.finalize().into()
}

/// The IdpMirror of one fetch, if it fits the protocol's limits.
pub fn mirror_body(issuer: &str, docs: &Documents) -> Result<Body, String> {
    for (what, len) in [
        ("discovery document", docs.discovery.len()),
        ("JWKS", docs.jwks.len()),
    ] {
        if len > MAX_DOCUMENT {
            return Err(format!(
                "its {what} is {len} bytes; an IdpMirror carries at most {MAX_DOCUMENT}"
            ));
        }
    }
    let body = Body::IdpMirror(IdpMirror {
        issuer: issuer.to_string(),
        discovery: docs.discovery.clone(),
        jwks: docs.jwks.clone(),
        fetched_at: docs.fetched_at,
    });
    check_body_size(body.clone())?;
    Ok(body)
}

/// Runs forever (the portal aborts it on shutdown).
pub async fn run(portal: Arc<Portal>) {
    let refresh = Duration::from_secs(portal.settings.refresh_secs);
    let every = Duration::from_secs(portal.settings.mirror_secs);
    let mut last: Vec<Option<Mirrored>> = portal.idps.iter().map(|_| None).collect();
    let mut tick = tokio::time::interval(refresh);
    loop {
        tick.tick().await;
        for (idp, last) in portal.idps.iter().zip(last.iter_mut()) {
            let docs = match idp.refresh(&portal.http).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "IdP metadata refresh failed; keeping the cached copy");
                    continue;
                }
            };
            if !idp.config.mirror {
                continue;
            }
            let d = digest(&docs);
            let due = match last {
                None => true,
                Some(m) => m.digest != d || m.at.elapsed() >= every,
            };
            if !due {
                continue;
            }
            match queue(&portal, &idp.config.name, &idp.config.issuer, &docs).await {
                Ok(batch) => {
                    tracing::info!(idp = %idp.config.name, batch, "queued IdpMirror");
                    *last = Some(Mirrored {
                        digest: d,
                        at: Instant::now(),
                    });
                }
                Err(e) => {
                    tracing::error!(idp = %idp.config.name, error = %e, "cannot mirror this IdP")
                }
            }
        }
    }
}

async fn queue(
    portal: &Portal,
    name: &str,
    issuer: &str,
    docs: &Documents,
) -> Result<String, String> {
    let body = mirror_body(issuer, docs)?;
    let dir = portal.config.spool_dir();
    let item = SpoolItem {
        source: format!("portal:{name}:idp-mirror"),
        body,
    };
    tokio::task::spawn_blocking(move || spool::write_batch(&dir, vec![item]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
