//! After a login: the sender's one policy filter decides, and an approved login becomes a
//! LoginTicket by the same steps as `submit`'s login_ticket records (policy -> ticket::issue
//! -> size check -> spool batch). The code is returned only once the engine has ingested the
//! batch into the outbox (its spool file is removed only after the outbox is flushed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock_protocol::message::{Approval, Body};
use thiserror::Error;

use super::login::VerifiedLogin;
use crate::config::Config;
use crate::intake::{Candidate, Request};
use crate::policy::{Accepted, Policy, Rejection, check_body_size};
use crate::spool::{self, SpoolError, SpoolItem};
use crate::ticket::{self, TicketError};

/// The approver recorded in tickets of portal logins: the person vouched for by their IdP,
/// admitted by the policy, not by a named approver.
pub const PORTAL_APPROVER: &str = "airlock-portal";

const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Error)]
pub enum GrantError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the ticket is too large to send: {0}")]
    Size(String),
    #[error(
        "the ticket was queued but the sender did not store it in its outbox within {0} s; is the daemon healthy?"
    )]
    NotDurable(u64),
    #[error("internal: {0}")]
    Internal(String),
}

/// What the person is told.
#[derive(Debug)]
pub enum Outcome {
    Issued {
        /// Grouped for display ("7KQ2M-X4HDN-..."); shown once, never stored or logged.
        code: String,
        expires_at: u64,
        dropped_claims: Vec<String>,
    },
    Refused(Rejection),
}

/// Policy, ticket, spool, durability: in that order.
pub async fn grant(
    config: &Config,
    idp_name: &str,
    login: VerifiedLogin,
    now: u64,
    durable_timeout: Duration,
) -> Result<Outcome, GrantError> {
    let source = format!("portal:{idp_name}");
    let candidate = Candidate {
        source: source.clone(),
        request: Request::LoginTicket {
            approval: Approval {
                approver: PORTAL_APPROVER.to_string(),
                approved_at: now,
                ticket_ref: login.jti.clone().unwrap_or_default(),
            },
            issuer: login.issuer,
            subject: login.subject,
            claims: login.claims,
        },
    };
    let admitted = match Policy::new(config.policy.clone()).admit(candidate, now) {
        Ok(a) => a,
        Err(rejection) => return Ok(Outcome::Refused(rejection)),
    };
    let Accepted::Ticket(request) = admitted.accepted else {
        return Err(GrantError::Internal(
            "a login ticket request came out of policy as another kind".into(),
        ));
    };
    // argon2id (19 MiB) and fsync are blocking work.
    let spool_dir = config.spool_dir();
    let (batch_id, code, expires_at) = tokio::task::spawn_blocking(move || {
        let issued = ticket::issue(request)?;
        let expires_at = issued.ticket.expires_at;
        let body = Body::LoginTicket(issued.ticket);
        check_body_size(body.clone()).map_err(GrantError::Size)?;
        let id = spool::write_batch(&spool_dir, vec![SpoolItem { source, body }])?;
        Ok::<_, GrantError>((id, issued.code.display(), expires_at))
    })
    .await
    .map_err(|e| GrantError::Internal(e.to_string()))??;
    wait_ingested(&config.spool_dir(), &batch_id, durable_timeout).await?;
    Ok(Outcome::Issued {
        code,
        expires_at,
        dropped_claims: admitted.dropped_claims,
    })
}

/// The spool file of `batch_id` as `spool::write_batch` names it.
fn batch_path(dir: &Path, batch_id: &str) -> PathBuf {
    dir.join(format!("{batch_id}.batch"))
}

/// Waits until the engine has ingested the batch into the outbox (and flushed it).
async fn wait_ingested(dir: &Path, batch_id: &str, timeout: Duration) -> Result<(), GrantError> {
    let path = batch_path(dir, batch_id);
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::fs::try_exists(&path).await {
            // Gone: ingested, unless the engine found it damaged and moved it aside.
            Ok(false) if path.with_extension("damaged").exists() => {
                return Err(GrantError::Internal(format!(
                    "spool batch {batch_id} was moved aside as damaged"
                )));
            }
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(error) => return Err(SpoolError::Io { file: path, error }.into()),
        }
        if Instant::now() >= deadline {
            tracing::error!(
                batch = batch_id,
                "portal ticket not ingested in time; no code shown"
            );
            return Err(GrantError::NotDurable(timeout.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_that_nobody_ingests_is_not_durable_and_one_removed_is() {
        let dir = tempfile::tempdir().unwrap();
        let id = spool::write_batch(dir.path(), vec![]).unwrap();
        assert!(
            batch_path(dir.path(), &id).exists(),
            "the naming matches the spool's"
        );
        let e = wait_ingested(dir.path(), &id, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, GrantError::NotDurable(_)));
        spool::remove(&batch_path(dir.path(), &id)).unwrap();
        wait_ingested(dir.path(), &id, Duration::from_millis(50))
            .await
            .unwrap();
    }
}
