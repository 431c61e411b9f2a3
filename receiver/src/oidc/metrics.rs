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

impl OidcMetrics {
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
}
