//! Counters of the provider, rendered in the Prometheus text format for the ops
//! listener's `/metrics` (the daemon appends [`crate::oidc::Provider::metrics_text`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// `airlock_oidc_<name>_total{reason="<label>"}` counters.
#[derive(Default)]
pub struct OidcMetrics {
    counts: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// Series exported from start-up at 0, before anything happened: a counter that appears
/// only at its first increment hides that first event from `rate()` and `increase()`, and
/// the alert rules (packaging/prometheus) watch these. The login failure labels are
/// `LoginFailure::reason` and the CSRF refusal of the login form.
pub const ALWAYS_EXPORTED: &[(&str, &[&str])] = &[
    ("logins", &["transfer_code", "passkey"]),
    (
        "login_failures",
        &[
            "malformed",
            "wrong",
            "expired",
            "used",
            "locked_code",
            "locked_address",
            "revoked",
            "other_user",
            "csrf",
        ],
    ),
    (
        "backchannel_logouts",
        &["delivered", "retried", "failed", "dropped"],
    ),
    (
        "backchannel_logout_failures",
        crate::oidc::backchannel::DeliveryError::REASONS,
    ),
    (
        "device_grants",
        &["issued", "approved", "denied", "expired", "redeemed"],
    ),
    (
        "device_refusals",
        &[
            "invalid_request",
            "invalid_client",
            "unauthorized_client",
            "invalid_scope",
            "temporarily_unavailable",
            "slow_down",
            "invalid_grant",
            "reused",
        ],
    ),
    (
        "device_user_code_failures",
        &["malformed", "wrong", "locked", "expired", "used", "csrf"],
    ),
];

impl OidcMetrics {
    /// Counters with every [`ALWAYS_EXPORTED`] series present at 0.
    pub fn new() -> Self {
        let m = Self::default();
        if let Ok(mut c) = m.counts.lock() {
            for (name, reasons) in ALWAYS_EXPORTED {
                for reason in *reasons {
                    c.insert((*name, (*reason).to_string()), 0);
                }
            }
        }
        m
    }

    /// Adds one to counter `name` with label `reason`.
    pub fn inc(&self, name: &'static str, reason: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((name, reason.to_string())).or_insert(0) += 1;
        }
    }

    pub fn get(&self, name: &'static str, reason: &str) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(&(name, reason.to_string())).copied())
            .unwrap_or(0)
    }

    /// Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(c) = self.counts.lock() else {
            return out;
        };
        let mut last = "";
        for ((name, reason), v) in c.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE airlock_oidc_{name}_total counter");
                last = name;
            }
            // Labels are our own static reasons and OAuth error codes: no escaping needed,
            // but never trust that blindly.
            let reason: String = reason
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let _ = writeln!(out, "airlock_oidc_{name}_total{{reason=\"{reason}\"}} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = OidcMetrics::default();
        m.inc("logins", "transfer_code");
        m.inc("login_failures", "wrong");
        m.inc("login_failures", "wrong");
        let t = m.render();
        assert!(t.contains("airlock_oidc_login_failures_total{reason=\"wrong\"} 2"));
        assert!(t.contains("# TYPE airlock_oidc_logins_total counter"));
    }

    #[test]
    fn watched_series_are_exported_before_their_first_event() {
        let t = OidcMetrics::new().render();
        assert!(t.contains("airlock_oidc_backchannel_logouts_total{reason=\"failed\"} 0\n"));
        assert!(t.contains("airlock_oidc_login_failures_total{reason=\"wrong\"} 0\n"));
        assert!(t.contains(
            "airlock_oidc_backchannel_logout_failures_total{reason=\"tls_untrusted\"} 0\n"
        ));
        assert!(t.contains("airlock_oidc_backchannel_logouts_total{reason=\"dropped\"} 0\n"));
        assert!(t.contains("airlock_oidc_logins_total{reason=\"passkey\"} 0\n"));
    }
}
