//! The back-channel logout outbox: an ended session becomes one stored
//! [`LogoutDelivery`] per app that registered a `backchannel_logout_uri`; a worker per
//! receiver claims due deliveries, signs a fresh logout token for each attempt and POSTs
//! it ([`crate::oidc::backchannel::Transport`]).
//!
//! The deliveries live in the store, so a restart (or, with PostgreSQL, another receiver
//! of the cluster) resumes them: a claim ([`LEASE`]) lets one receiver at a time try a
//! delivery, and runs out if that receiver dies mid-attempt. A delivery that takes longer
//! than its claim may reach the app twice; a logout token is idempotent for the app
//! (the session is gone after the first).
//!
//! Times in the outbox are the receivers' wall clocks in milliseconds: a cluster keeps its
//! clocks in step already (tokens carry times), and a claim of 30 s tolerates seconds of
//! skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_daemon::metrics_text::{Exposition, Metric};

use crate::oidc::backchannel::LEASE;
use crate::oidc::error::OidcError;
use crate::oidc::metrics::BackchannelOutcome;
use crate::oidc::provider::Provider;
use crate::oidc::store::{LogoutDelivery, Session};
use crate::oidc::tokens;

/// Without a wake-up, the worker looks at the outbox this often: for deliveries another
/// receiver of a cluster queued or rescheduled, and claims that ran out.
pub const POLL: Duration = Duration::from_secs(1);

/// The outbox gauge is recounted at least this often (and after every wake-up).
pub const RECOUNT: Duration = Duration::from_secs(10);

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Provider {
    /// Queues one delivery per client of the ended session that registered a URI. A full
    /// outbox (`backchannel_outbox_max`) refuses it: counted as `dropped`, logged; that
    /// app keeps the session until it expires there.
    pub(crate) fn enqueue_logouts(&self, session: &Session) -> Result<(), OidcError> {
        let max = self.config().backchannel_outbox_max as usize;
        let now = now_ms();
        for client_id in &session.clients {
            let Some(uri) = self
                .config()
                .client(client_id)
                .and_then(|c| c.backchannel_logout_uri.clone())
            else {
                continue;
            };
            let d = LogoutDelivery {
                id: crate::oidc::util::random_token(16),
                client_id: client_id.clone(),
                uri,
                sub: session.sub.clone(),
                sid: session.sid.clone(),
                attempts: 0,
                next_attempt_ms: now,
                created_ms: now,
            };
            if self.store().enqueue_logout(&d, max)? {
                tracing::debug!(client = %client_id, sid = %session.sid, id = %d.id, "back-channel logout queued");
            } else {
                self.metrics().backchannel(BackchannelOutcome::Dropped);
                tracing::error!(
                    client = %client_id,
                    sid = %session.sid,
                    max,
                    "back-channel logout outbox full (oidc.backchannel_outbox_max): this logout is not sent; the app keeps the session until it expires there"
                );
            }
        }
        Ok(())
    }

    /// The back-channel logouts waiting for delivery, oldest first.
    pub fn pending_logouts(&self) -> Result<Vec<LogoutDelivery>, OidcError> {
        self.store().pending_logouts()
    }

    /// Starts the outbox worker on the current runtime (with the maintenance tick).
    pub(crate) fn spawn_logout_outbox(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime: back-channel logouts wait in the outbox");
            return;
        };
        for c in &self.config().clients {
            if let Some(u) = &c.backchannel_logout_uri
                && u.starts_with("http://")
                && !is_loopback(u)
            {
                tracing::warn!(client = %c.client_id, uri = %u, "back-channel logout over plain HTTP: the logout token crosses the network unencrypted and the app is not authenticated; use https:// with oidc.backchannel_ca_file");
            }
        }
        let p = self.clone();
        rt.spawn(async move { p.run_outbox().await });
    }

    /// The outbox gauges, for `/metrics` (no store access: the worker counts).
    pub(crate) fn outbox_metrics_text(&self) -> String {
        use std::sync::atomic::Ordering;
        let gauge = |name, value| Metric {
            help: None,
            ..Metric::gauge(name, "", value)
        };
        let mut out = Exposition::default();
        out.metrics(&[
            gauge(
                "airlock_oidc_backchannel_outbox_deliveries",
                self.outbox().depth.load(Ordering::Relaxed),
            ),
            gauge(
                "airlock_oidc_backchannel_outbox_max",
                u64::from(self.config().backchannel_outbox_max),
            ),
        ]);
        out.finish()
    }

    async fn run_outbox(self) {
        let outbox = self.outbox();
        let mut recount_at = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= recount_at {
                match self.off(|p| p.store().count_logouts()).await {
                    Ok(n) => outbox.depth.store(
                        u64::try_from(n).unwrap_or(u64::MAX),
                        std::sync::atomic::Ordering::Relaxed,
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "back-channel logout outbox: cannot count it")
                    }
                }
                recount_at = tokio::time::Instant::now() + RECOUNT;
            }
            let free = outbox.slots.available_permits();
            if free > 0 {
                let owner = outbox.owner.clone();
                let now = now_ms();
                let until = now.saturating_add(ms(LEASE));
                match self
                    .off(move |p| p.store().claim_logouts(&owner, now, until, free))
                    .await
                {
                    Ok(claimed) => {
                        for d in claimed {
                            let Ok(permit) = outbox.slots.clone().acquire_owned().await else {
                                return;
                            };
                            let p = self.clone();
                            tokio::spawn(async move {
                                p.attempt_logout(d).await;
                                drop(permit);
                                p.outbox().wake.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "back-channel logout outbox: cannot claim deliveries; trying again")
                    }
                }
            }
            tokio::select! {
                _ = outbox.wake.notified() => {
                    // Something was queued, finished or is due: the count moved.
                    recount_at = tokio::time::Instant::now();
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Runs a store call off the async workers.
    async fn off<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Provider) -> Result<R, OidcError> + Send + 'static,
    ) -> Result<R, OidcError> {
        let p = self.clone();
        tokio::task::spawn_blocking(move || f(&p))
            .await
            .map_err(|e| OidcError::Store(format!("outbox task: {e}")))?
    }

    /// The delivery is over (delivered or given up): out of the outbox.
    async fn finish_logout(&self, d: &LogoutDelivery) {
        let id = d.id.clone();
        let gone = self.off(move |p| {
            p.store().finish_logout(&id)?;
            p.store().flush()
        });
        if let Err(e) = gone.await {
            tracing::warn!(id = %d.id, error = %e, "cannot remove a finished back-channel logout from the outbox; it may be sent again");
        }
    }

    /// One attempt of one claimed delivery, with a freshly signed token; then delivered,
    /// rescheduled, or given up.
    async fn attempt_logout(&self, d: LogoutDelivery) {
        let schedule = self.config().backchannel_retries();
        let attempt = d.attempts.saturating_add(1);
        if attempt > 1 {
            self.metrics().backchannel(BackchannelOutcome::Retried);
        }
        let Some((client, uri)) = self
            .config()
            .client(&d.client_id)
            .and_then(|c| c.backchannel_logout_uri.clone().map(|u| (c.clone(), u)))
        else {
            self.metrics().backchannel(BackchannelOutcome::Failed);
            tracing::warn!(client = %d.client_id, sid = %d.sid, "back-channel logout given up: the client no longer has a backchannel_logout_uri in the config");
            self.finish_logout(&d).await;
            return;
        };
        if uri != d.uri {
            tracing::info!(client = %d.client_id, queued = %d.uri, configured = %uri, "back-channel logout URI changed since the logout; using the configured one");
        }
        let token = match tokens::logout_token(
            self.keys(),
            &self.config().issuer,
            &client,
            &d.sub,
            &d.sid,
            self.now(),
        ) {
            Ok(t) => t,
            Err(e) => {
                self.metrics().backchannel(BackchannelOutcome::Failed);
                tracing::warn!(client = %d.client_id, error = %e, "back-channel logout given up: cannot sign the logout token");
                self.finish_logout(&d).await;
                return;
            }
        };
        let e = match self.outbox().transport.deliver(&uri, &token).await {
            Ok(()) => {
                self.metrics().backchannel(BackchannelOutcome::Delivered);
                tracing::info!(client = %d.client_id, sid = %d.sid, %uri, attempt, "back-channel logout delivered");
                self.finish_logout(&d).await;
                return;
            }
            Err(e) => e,
        };
        let reason = e.reason();
        self.metrics().backchannel_failure(&e);
        let wait = match e.is_transient() {
            true => schedule.delay_before(attempt.saturating_add(1)),
            false => None,
        };
        let Some(wait) = wait else {
            self.metrics().backchannel(BackchannelOutcome::Failed);
            let why = if e.is_transient() {
                "no attempts left"
            } else {
                "not retried"
            };
            tracing::warn!(client = %d.client_id, sid = %d.sid, %uri, attempt, reason, error = %e, "back-channel logout given up ({why}): the app keeps this session until it expires there");
            self.finish_logout(&d).await;
            return;
        };
        tracing::info!(client = %d.client_id, sid = %d.sid, %uri, attempt, reason, error = %e, retry_in_ms = ms(wait), "back-channel logout failed; will retry");
        let (id, owner) = (d.id.clone(), self.outbox().owner.clone());
        let next = now_ms().saturating_add(ms(wait));
        match self
            .off(move |p| {
                // Durable before the next attempt: a receiver killed now resumes with
                // this count, so restarts do not stretch the schedule.
                let held = p.store().reschedule_logout(&id, &owner, attempt, next)?;
                p.store().flush()?;
                Ok(held)
            })
            .await
        {
            Ok(true) => {
                let wake = self.outbox().wake.clone();
                tokio::spawn(async move {
                    // A few ms late: the wall clock it is due by and this timer differ.
                    tokio::time::sleep(wait + Duration::from_millis(5)).await;
                    wake.notify_one();
                });
            }
            Ok(false) => {
                tracing::info!(id = %d.id, "back-channel logout: the claim ran out during the attempt; another receiver has it now")
            }
            Err(e) => {
                tracing::warn!(id = %d.id, error = %e, "cannot reschedule a back-channel logout; it is tried again when its claim runs out")
            }
        }
    }
}

/// Whether an `http://` URI names a loopback host (plain HTTP that never leaves the host).
fn is_loopback(uri: &str) -> bool {
    match url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:8080/bc"));
        assert!(is_loopback("http://[::1]/bc"));
        assert!(is_loopback("http://localhost/bc"));
        assert!(!is_loopback("http://app.inside.example/bc"));
        assert!(!is_loopback("http://10.0.0.5/bc"));
    }
}
