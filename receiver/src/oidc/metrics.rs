//! Counters of the provider, rendered in the Prometheus text format for the ops
//! listener's `/metrics` (the daemon appends [`crate::oidc::Provider::metrics_text`]).
//!
//! Every counter is `airlock_oidc_<name>_total{reason="<label>"}`. The families are the
//! variants of [`Counter`]; the ones the alert rules and the dashboard watch have a reason
//! enum of their own ([`LoginRefusal`], [`BackchannelOutcome`], [`DeviceGrantEvent`],
//! [`UserCodeFailure`], and [`DeliveryError`] for back-channel failures) and are counted
//! only through it, so a misspelt label does not compile.

use std::collections::BTreeMap;
use std::sync::Mutex;

use airlock_daemon::metrics_text::{Exposition, Family, Kind};
use axum::response::{IntoResponse, Response};

use crate::oidc::backchannel::DeliveryError;
use crate::oidc::http::OAuthError;
use crate::oidc::login::{LoginFailure, LoginMethod};

/// A family of provider counters, `airlock_oidc_<name>_total`, whose label is an OAuth
/// error code or the family's own word. The families with a reason enum are not here:
/// they are counted through their own methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    AuthorizeErrors,
    ClientAuth,
    ClientCredentialsGrants,
    ClientCredentialsRefusals,
    DeviceRefusals,
    KeyRotations,
    ListenerLimits,
    ParErrors,
    ParRequests,
    PasskeyEnrolments,
    PasskeyRefusals,
    PasskeyRemovals,
    PasskeySignIns,
    PasskeysDisabled,
    ReuseDetected,
    TokenErrors,
    TokenResponses,
}

impl Counter {
    /// The `<name>` of `airlock_oidc_<name>_total`.
    pub fn name(self) -> &'static str {
        match self {
            Counter::AuthorizeErrors => "authorize_errors",
            Counter::ClientAuth => "client_auth",
            Counter::ClientCredentialsGrants => "client_credentials_grants",
            Counter::ClientCredentialsRefusals => "client_credentials_refusals",
            Counter::DeviceRefusals => "device_refusals",
            Counter::KeyRotations => "key_rotations",
            Counter::ListenerLimits => "listener_limits",
            Counter::ParErrors => "par_errors",
            Counter::ParRequests => "par_requests",
            Counter::PasskeyEnrolments => "passkey_enrolments",
            Counter::PasskeyRefusals => "passkey_refusals",
            Counter::PasskeyRemovals => "passkey_removals",
            Counter::PasskeySignIns => "passkey_sign_ins",
            Counter::PasskeysDisabled => "passkeys_disabled",
            Counter::ReuseDetected => "reuse_detected",
            Counter::TokenErrors => "token_errors",
            Counter::TokenResponses => "token_responses",
        }
    }
}

/// Why a sign-in at the login form was refused: `login_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    Malformed,
    Wrong,
    Expired,
    Used,
    LockedCode,
    LockedAddress,
    Revoked,
    OtherUser,
    /// The form's CSRF token did not match.
    Csrf,
}

impl LoginRefusal {
    pub const ALL: [LoginRefusal; 9] = [
        LoginRefusal::Malformed,
        LoginRefusal::Wrong,
        LoginRefusal::Expired,
        LoginRefusal::Used,
        LoginRefusal::LockedCode,
        LoginRefusal::LockedAddress,
        LoginRefusal::Revoked,
        LoginRefusal::OtherUser,
        LoginRefusal::Csrf,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoginRefusal::Malformed => "malformed",
            LoginRefusal::Wrong => "wrong",
            LoginRefusal::Expired => "expired",
            LoginRefusal::Used => "used",
            LoginRefusal::LockedCode => "locked_code",
            LoginRefusal::LockedAddress => "locked_address",
            LoginRefusal::Revoked => "revoked",
            LoginRefusal::OtherUser => "other_user",
            LoginRefusal::Csrf => "csrf",
        }
    }
}

impl From<&LoginFailure> for LoginRefusal {
    fn from(f: &LoginFailure) -> Self {
        match f {
            LoginFailure::Malformed(_) => LoginRefusal::Malformed,
            LoginFailure::Wrong => LoginRefusal::Wrong,
            LoginFailure::Expired => LoginRefusal::Expired,
            LoginFailure::Used => LoginRefusal::Used,
            LoginFailure::LockedCode { .. } => LoginRefusal::LockedCode,
            LoginFailure::LockedAddress { .. } => LoginRefusal::LockedAddress,
            LoginFailure::UserRevoked => LoginRefusal::Revoked,
            LoginFailure::OtherUser => LoginRefusal::OtherUser,
        }
    }
}

/// What became of a back-channel logout: `backchannel_logouts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackchannelOutcome {
    Delivered,
    /// A delivery attempt after the first.
    Retried,
    /// Given up on (no retries left, or not retryable).
    Failed,
    /// Not queued: the outbox was full.
    Dropped,
}

impl BackchannelOutcome {
    pub const ALL: [BackchannelOutcome; 4] = [
        BackchannelOutcome::Delivered,
        BackchannelOutcome::Retried,
        BackchannelOutcome::Failed,
        BackchannelOutcome::Dropped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BackchannelOutcome::Delivered => "delivered",
            BackchannelOutcome::Retried => "retried",
            BackchannelOutcome::Failed => "failed",
            BackchannelOutcome::Dropped => "dropped",
        }
    }
}

/// A step of a device grant: `device_grants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceGrantEvent {
    Issued,
    Approved,
    Denied,
    Expired,
    Redeemed,
}

impl DeviceGrantEvent {
    pub const ALL: [DeviceGrantEvent; 5] = [
        DeviceGrantEvent::Issued,
        DeviceGrantEvent::Approved,
        DeviceGrantEvent::Denied,
        DeviceGrantEvent::Expired,
        DeviceGrantEvent::Redeemed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DeviceGrantEvent::Issued => "issued",
            DeviceGrantEvent::Approved => "approved",
            DeviceGrantEvent::Denied => "denied",
            DeviceGrantEvent::Expired => "expired",
            DeviceGrantEvent::Redeemed => "redeemed",
        }
    }
}

/// Why a user code typed at the device page was refused: `device_user_code_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCodeFailure {
    Malformed,
    Wrong,
    Locked,
    Expired,
    Used,
    Csrf,
}

impl UserCodeFailure {
    pub const ALL: [UserCodeFailure; 6] = [
        UserCodeFailure::Malformed,
        UserCodeFailure::Wrong,
        UserCodeFailure::Locked,
        UserCodeFailure::Expired,
        UserCodeFailure::Used,
        UserCodeFailure::Csrf,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UserCodeFailure::Malformed => "malformed",
            UserCodeFailure::Wrong => "wrong",
            UserCodeFailure::Locked => "locked",
            UserCodeFailure::Expired => "expired",
            UserCodeFailure::Used => "used",
            UserCodeFailure::Csrf => "csrf",
        }
    }
}

/// The `device_refusals` labels exported from start-up (the OAuth error codes the device
/// endpoints answer with, and `reused`).
const DEVICE_REFUSALS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "temporarily_unavailable",
    "slow_down",
    "invalid_grant",
    "reused",
];

const LOGINS: &str = "logins";
const LOGIN_FAILURES: &str = "login_failures";
const BACKCHANNEL_LOGOUTS: &str = "backchannel_logouts";
const BACKCHANNEL_LOGOUT_FAILURES: &str = "backchannel_logout_failures";
const DEVICE_GRANTS: &str = "device_grants";
const DEVICE_USER_CODE_FAILURES: &str = "device_user_code_failures";

/// `airlock_oidc_<name>_total{reason="<label>"}` counters.
#[derive(Default)]
pub struct OidcMetrics {
    counts: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// Series exported from start-up at 0, before anything happened: a counter that appears
/// only at its first increment hides that first event from `rate()` and `increase()`, and
/// the alert rules (packaging/prometheus) watch these.
pub fn always_exported() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            LOGINS,
            vec![
                LoginMethod::TransferCode.label(),
                LoginMethod::Passkey { verified: true }.label(),
            ],
        ),
        (
            LOGIN_FAILURES,
            LoginRefusal::ALL.map(LoginRefusal::label).to_vec(),
        ),
        (
            BACKCHANNEL_LOGOUTS,
            BackchannelOutcome::ALL
                .map(BackchannelOutcome::label)
                .to_vec(),
        ),
        (BACKCHANNEL_LOGOUT_FAILURES, DeliveryError::REASONS.to_vec()),
        (
            DEVICE_GRANTS,
            DeviceGrantEvent::ALL.map(DeviceGrantEvent::label).to_vec(),
        ),
        (Counter::DeviceRefusals.name(), DEVICE_REFUSALS.to_vec()),
        (
            DEVICE_USER_CODE_FAILURES,
            UserCodeFailure::ALL.map(UserCodeFailure::label).to_vec(),
        ),
    ]
}

impl OidcMetrics {
    /// Counters with every [`always_exported`] series present at 0.
    pub fn new() -> Self {
        let m = Self::default();
        if let Ok(mut c) = m.counts.lock() {
            for (name, reasons) in always_exported() {
                for reason in reasons {
                    c.insert((name, reason.to_string()), 0);
                }
            }
        }
        m
    }

    /// Adds one to `counter` with label `reason` (an OAuth error code or the family's own
    /// word). The families with a reason enum are counted through their own methods.
    pub fn inc(&self, counter: Counter, reason: &str) {
        self.add(counter.name(), reason);
    }

    /// The answer of an endpoint counted in two families: a success under `ok` (label
    /// `ok`), a refusal under `refused` by its OAuth error code.
    pub fn answer(
        &self,
        ok: Counter,
        refused: Counter,
        result: Result<Response, OAuthError>,
    ) -> Response {
        match result {
            Ok(r) => {
                self.inc(ok, "ok");
                r
            }
            Err(e) => {
                self.inc(refused, e.error);
                e.into_response()
            }
        }
    }

    /// A successful sign-in, by method.
    pub fn login(&self, method: LoginMethod) {
        self.add(LOGINS, method.label());
    }

    /// A refused sign-in at the login form.
    pub fn login_refused(&self, why: LoginRefusal) {
        self.add(LOGIN_FAILURES, why.label());
    }

    /// What became of a back-channel logout.
    pub fn backchannel(&self, outcome: BackchannelOutcome) {
        self.add(BACKCHANNEL_LOGOUTS, outcome.label());
    }

    /// Why one back-channel delivery attempt failed.
    pub fn backchannel_failure(&self, e: &DeliveryError) {
        self.add(BACKCHANNEL_LOGOUT_FAILURES, e.reason());
    }

    /// A step of a device grant.
    pub fn device_grant(&self, event: DeviceGrantEvent) {
        self.add(DEVICE_GRANTS, event.label());
    }

    /// A refused user code at the device page.
    pub fn user_code_refused(&self, why: UserCodeFailure) {
        self.add(DEVICE_USER_CODE_FAILURES, why.label());
    }

    fn add(&self, name: &'static str, reason: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((name, reason.to_string())).or_insert(0) += 1;
        }
    }

    /// The value of `airlock_oidc_<name>_total{reason="<reason>"}` (0 if never counted).
    pub fn get(&self, name: &str, reason: &str) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| {
                c.iter()
                    .find(|((n, r), _)| *n == name && r == reason)
                    .map(|(_, v)| *v)
            })
            .unwrap_or(0)
    }

    /// Prometheus exposition text: the families in the order of their names, each with
    /// its labels in order.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        let Ok(c) = self.counts.lock() else {
            return out.finish();
        };
        let mut rest = c.iter().peekable();
        while let Some(((name, _), _)) = rest.peek() {
            let name = *name;
            let full = format!("airlock_oidc_{name}_total");
            let family = Family {
                name: &full,
                kind: Kind::Counter,
                help: None,
                label: "reason",
            };
            let mut samples = Vec::new();
            while let Some(((_, r), v)) = rest.next_if(|((n, _), _)| *n == name) {
                samples.push((r.as_str(), *v));
            }
            out.family(&family, samples);
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = OidcMetrics::default();
        m.login(LoginMethod::TransferCode);
        m.login_refused(LoginRefusal::Wrong);
        m.login_refused(LoginRefusal::Wrong);
        m.inc(Counter::AuthorizeErrors, "par_required");
        let t = m.render();
        assert!(t.contains("airlock_oidc_login_failures_total{reason=\"wrong\"} 2"));
        assert!(t.contains("# TYPE airlock_oidc_logins_total counter"));
        assert!(t.contains("airlock_oidc_authorize_errors_total{reason=\"par_required\"} 1\n"));
        assert_eq!(m.get("login_failures", "wrong"), 2);
        assert_eq!(m.get("login_failures", "used"), 0);
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
