//! The `[oidc.passkeys]` section: whether passkeys are offered and the policy they obey.

use airlock_daemon::config_check::{Key, KeyProblem};
use serde::Deserialize;

/// User verification asked of the authenticator (WebAuthn `userVerification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserVerification {
    /// PIN or biometric on every use (a passkey then stands alone as a sign-in).
    #[default]
    Required,
    /// Asked for, not enforced: the authenticator's presence test may be all there is.
    Preferred,
}

/// Attestation conveyance asked at enrolment. Attestation statements are checked for
/// form but no vendor list is enforced (the receiver has no metadata service inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttestationPreference {
    #[default]
    None,
    Indirect,
    Direct,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyConfig {
    /// Offer passkeys at all (off: the transfer code is the only method).
    pub enabled: bool,
    pub user_verification: UserVerification,
    pub attestation: AttestationPreference,
    /// Passkeys one person may have.
    pub max_per_user: u32,
    /// A passkey stops working this long after its enrolment at the latest.
    pub lifetime_cap_secs: u64,
    /// Whether a person known only from a LoginTicket (no Provision) may enrol.
    pub allow_ticket_only_users: bool,
    /// Lifetime of such a person's passkey (at most `lifetime_cap_secs`).
    pub ticket_only_lifetime_secs: u64,
    /// Enrolment is offered for this long after a transfer-code sign-in.
    pub enrol_window_secs: u64,
    /// Removing a passkey needs a sign-in no older than this.
    pub remove_requires_sign_in_within_secs: u64,
    /// Seconds the browser gives the person to touch the authenticator.
    pub ceremony_timeout_secs: u64,
    /// The relying-party name authenticators show.
    pub rp_name: String,
}

impl Default for PasskeyConfig {
    fn default() -> Self {
        PasskeyConfig {
            enabled: false,
            user_verification: UserVerification::Required,
            attestation: AttestationPreference::None,
            max_per_user: 5,
            lifetime_cap_secs: 180 * 86_400,
            allow_ticket_only_users: false,
            ticket_only_lifetime_secs: 8 * 3600,
            enrol_window_secs: 300,
            remove_requires_sign_in_within_secs: 300,
            ceremony_timeout_secs: 300,
            rp_name: "Airlock".into(),
        }
    }
}

/// A key of `[oidc.passkeys]` that cannot work (the caller prefixes `oidc.`).
fn bad(key: &str, problem: impl Into<String>) -> KeyProblem {
    KeyProblem::new(format!("passkeys.{key}"), problem)
}

impl PasskeyConfig {
    /// Checks every key; the error names the one at fault.
    pub fn validate(&self) -> Result<(), KeyProblem> {
        Key::new("passkeys.max_per_user").range(self.max_per_user, 1..=100)?;
        for (key, v, max) in [
            (
                "lifetime_cap_secs",
                self.lifetime_cap_secs,
                10 * 365 * 86_400,
            ),
            (
                "ticket_only_lifetime_secs",
                self.ticket_only_lifetime_secs,
                10 * 365 * 86_400,
            ),
            ("enrol_window_secs", self.enrol_window_secs, 3600),
            (
                "remove_requires_sign_in_within_secs",
                self.remove_requires_sign_in_within_secs,
                3600,
            ),
            ("ceremony_timeout_secs", self.ceremony_timeout_secs, 600),
        ] {
            Key::new(format!("passkeys.{key}"))
                .unit("seconds")
                .range(v, 1..=max)?;
        }
        Key::new("passkeys.ceremony_timeout_secs")
            .unit("seconds")
            .why("people need time to find and touch their authenticator")
            .at_least(self.ceremony_timeout_secs, 30)?;
        if self.ticket_only_lifetime_secs > self.lifetime_cap_secs {
            return Err(bad(
                "ticket_only_lifetime_secs",
                format!(
                    "must not exceed lifetime_cap_secs ({}), got {}",
                    self.lifetime_cap_secs, self.ticket_only_lifetime_secs
                ),
            ));
        }
        if self.rp_name.trim().is_empty() || self.rp_name.len() > 64 {
            return Err(bad("rp_name", "must be 1 to 64 characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<PasskeyConfig, String> {
        let c: PasskeyConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.validate()
            .map_err(|e| format!("oidc.{}: {}", e.key, e.problem))?;
        Ok(c)
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let c = parse("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.user_verification, UserVerification::Required);
        assert_eq!(c.attestation, AttestationPreference::None);
    }

    #[test]
    fn every_bad_key_is_named() {
        for (text, key) in [
            ("max_per_user = 0", "oidc.passkeys.max_per_user"),
            ("lifetime_cap_secs = 0", "oidc.passkeys.lifetime_cap_secs"),
            (
                "enrol_window_secs = 7200",
                "oidc.passkeys.enrol_window_secs",
            ),
            (
                "ceremony_timeout_secs = 5",
                "oidc.passkeys.ceremony_timeout_secs",
            ),
            (
                "lifetime_cap_secs = 100\nticket_only_lifetime_secs = 200",
                "oidc.passkeys.ticket_only_lifetime_secs",
            ),
            ("rp_name = \" \"", "oidc.passkeys.rp_name"),
            (
                "remove_requires_sign_in_within_secs = 0",
                "oidc.passkeys.remove_requires_sign_in_within_secs",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
        let e = parse("user_verification = \"sometimes\"").unwrap_err();
        assert!(e.contains("user_verification"), "{e}");
        let e = parse("colour = 1").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }
}
