//! The security event log: enrolments, removals, passkey sign-ins and refused attempts,
//! kept in the provider's store (shared by a cluster) and read by `airlock-receiver audit
//! events`.

use crate::oidc::error::OidcError;
use crate::oidc::provider::Provider;
use crate::oidc::store::SecurityEvent;

/// Builder of one [`SecurityEvent`].
pub struct Event(SecurityEvent);

impl Event {
    pub fn new(kind: &str, at: u64) -> Self {
        Event(SecurityEvent {
            id: 0,
            at,
            kind: kind.to_string(),
            sub: None,
            credential: None,
            detail: None,
            address: None,
        })
    }
    pub fn subject(mut self, s: &str) -> Self {
        self.0.sub = Some(s.to_string());
        self
    }
    pub fn credential(mut self, c: &str) -> Self {
        self.0.credential = Some(c.to_string());
        self
    }
    pub fn detail(mut self, d: &str) -> Self {
        self.0.detail = Some(d.to_string());
        self
    }
    pub fn address(mut self, a: &str) -> Self {
        self.0.address = Some(a.to_string());
        self
    }
}

/// Appends the event (durably, before the caller answers) and mirrors it in the log.
pub fn record(p: &Provider, e: Event) -> Result<u64, OidcError> {
    let id = p.store().append_event(&e.0)?;
    tracing::info!(event = %e.0.kind, id, sub = ?e.0.sub, credential = ?e.0.credential, detail = ?e.0.detail, "security event");
    Ok(id)
}

/// One event as a JSON line (the export format).
pub fn json_line(e: &SecurityEvent) -> String {
    serde_json::to_string(e).unwrap_or_default()
}
