//! The `[oidc]` section of the receiver config: the provider and its static clients.

use std::net::SocketAddr;
use std::path::PathBuf;

use airlock_daemon::config_check::{Key, KeyProblem};
use serde::Deserialize;

use crate::oidc::http::client_addr::Cidr;

/// ID-token signature algorithms a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
pub enum SigningAlg {
    #[default]
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

/// The OpenID provider's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL inside apps configure, e.g. `https://login.inside.example`. No trailing slash.
    pub issuer: String,
    /// Address the provider listens on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key` the provider serves HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8) for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP without TLS (loopback tests, the demo). Must be set explicitly.
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default = "defaults::session")]
    pub session_lifetime_secs: u64,
    #[serde(default = "defaults::code")]
    pub code_lifetime_secs: u64,
    #[serde(default = "defaults::access")]
    pub access_token_lifetime_secs: u64,
    #[serde(default = "defaults::access")]
    pub id_token_lifetime_secs: u64,
    #[serde(default = "defaults::refresh")]
    pub refresh_token_lifetime_secs: u64,
    /// Seconds between a new signing key appearing in the JWKS and its first use.
    #[serde(default = "defaults::rotation_delay")]
    pub key_rotation_delay_secs: u64,
    /// Rotate the signing keys on their own when the newest is this many days old
    /// (0: only by `airlock-receiver keys rotate`).
    #[serde(default)]
    pub key_rotation_interval_days: u32,
    /// Wrong transfer codes allowed per locator before it locks.
    #[serde(default = "defaults::per_locator")]
    pub max_attempts_per_locator: u32,
    /// Failed logins allowed per client address within `lockout_secs` before it locks.
    #[serde(default = "defaults::per_address")]
    pub max_attempts_per_address: u32,
    /// Wrong client secrets allowed per client within `lockout_secs` before it locks.
    #[serde(default = "defaults::client_auth_per_client")]
    pub max_client_auth_failures_per_client: u32,
    /// Wrong client secrets (known or unknown client) per client address within
    /// `lockout_secs` before the address locks.
    #[serde(default = "defaults::client_auth_per_address")]
    pub max_client_auth_failures_per_address: u32,
    /// How long a lock-out lasts (and the window attempts are counted in).
    #[serde(default = "defaults::lockout")]
    pub lockout_secs: u64,
    /// Back-channel logout deliveries tried per app and session, the first included.
    #[serde(default = "defaults::backchannel_attempts")]
    pub backchannel_logout_attempts: u32,
    /// Wait before the first retry; it doubles per retry, up to 60 s.
    #[serde(default = "defaults::backchannel_retry")]
    pub backchannel_logout_first_retry_ms: u64,
    /// PEM bundle of the inside CA(s) whose certificates `https://` back-channel logout
    /// URIs must present (the system's roots are never used). Required when any client
    /// has an `https://` `backchannel_logout_uri`.
    #[serde(default)]
    pub backchannel_ca_file: Option<PathBuf>,
    /// Back-channel logouts that may wait for delivery at once (in the store, shared by
    /// an HA cluster); a logout beyond it is not sent, and counted as `dropped`.
    #[serde(default = "defaults::backchannel_outbox")]
    pub backchannel_outbox_max: u32,
    /// Reverse proxies in front of the provider (addresses or CIDR blocks). Only from
    /// these peers is the client address taken from `Forwarded` / `X-Forwarded-For`;
    /// empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Authorization requests waiting for their login page per client address (the
    /// client behind `trusted_proxies`, IPv6 by /64); more get `temporarily_unavailable`.
    #[serde(default = "defaults::pending_per_address")]
    pub max_pending_per_address: u32,
    /// Authorization requests waiting for their login page on this receiver in all.
    #[serde(default = "defaults::pending_total")]
    pub max_pending_total: u32,
    /// Codes one session may be issued within `code_lifetime_secs` without signing in
    /// again (a signed-in browser looping on `/authorize`).
    #[serde(default = "defaults::codes_per_session")]
    pub max_codes_per_session: u32,
    /// Connections served at once; more wait in the kernel's backlog until one ends.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// A connection must send a request head within this many seconds (also between
    /// keep-alive requests), or it is closed.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// A request (its body included) must be answered within this many seconds, or it
    /// gets 408 and the connection is closed.
    #[serde(default = "defaults::request_timeout")]
    pub request_timeout_secs: u64,
    /// Every client must push its authorization requests (RFC 9126) before `/authorize`;
    /// discovery then says `require_pushed_authorization_requests: true`.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Confidential clients must use PKCE (S256) too; public clients always must. A
    /// config without the key keeps the old behaviour (off): see docs/decisions.md.
    #[serde(default)]
    pub require_pkce: bool,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// `[oidc.passkeys]`: inside credentials bound to the outside approval.
    #[serde(default)]
    pub passkeys: crate::oidc::passkey::config::PasskeyConfig,
    /// `[oidc.device]`: the device authorization grant (RFC 8628).
    #[serde(default)]
    pub device: crate::oidc::device::DeviceConfig,
}

/// One static relying party.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// Argon2id PHC string of the client secret (confidential client). Absent: set `public = true`.
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    /// A public client (no secret; PKCE required).
    #[serde(default)]
    pub public: bool,
    /// Required when the client may use `authorization_code`.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes the client may request; `openid` is always allowed.
    #[serde(default = "defaults::scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub id_token_signed_response_alg: SigningAlg,
    /// Inside URI receiving back-channel logout tokens.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// This client must push its authorization requests (RFC 9126); plain `/authorize`
    /// requests are refused. The global key of the same name applies to every client.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Overrides `[oidc] require_pkce` for this client (a public client needs PKCE anyway).
    #[serde(default)]
    pub require_pkce: Option<bool>,
    /// Scopes a confidential client may be granted with `client_credentials` (service
    /// scopes such as `orders.read`, no user scopes); needs `client_credentials` in
    /// `grant_types`.
    #[serde(default)]
    pub client_credentials_scopes: Vec<String>,
    /// `aud` of its client-credentials access tokens: the resource servers they are for.
    /// A request may name one with `resource` (RFC 8707); otherwise all are used.
    #[serde(default)]
    pub client_credentials_audience: Vec<String>,
    /// Grant types the client may use (RFC 7591 `grant_types`), from [`GRANT_TYPES`];
    /// others are refused with `unauthorized_client`. Without `refresh_token` it gets no
    /// refresh tokens.
    #[serde(default = "defaults::grant_types")]
    pub grant_types: Vec<String>,
}

/// Grant types a client may be allowed (`grant_types`).
pub const GRANT_TYPES: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    crate::oidc::device::GRANT_TYPE,
    CLIENT_CREDENTIALS,
];

/// The client credentials grant type; a client lists it in `grant_types` and sets
/// `client_credentials_scopes` and `client_credentials_audience`.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Scopes the provider knows.
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

mod defaults {
    pub fn max_connections() -> u32 {
        1024
    }
    pub fn header_read_timeout() -> u64 {
        10
    }
    pub fn request_timeout() -> u64 {
        30
    }
    pub fn pending_per_address() -> u32 {
        30
    }
    pub fn pending_total() -> u32 {
        10_000
    }
    pub fn codes_per_session() -> u32 {
        30
    }
    pub fn client_auth_per_client() -> u32 {
        10
    }
    pub fn client_auth_per_address() -> u32 {
        30
    }
    pub fn session() -> u64 {
        8 * 3600
    }
    pub fn code() -> u64 {
        60
    }
    pub fn access() -> u64 {
        600
    }
    pub fn refresh() -> u64 {
        24 * 3600
    }
    pub fn rotation_delay() -> u64 {
        3600
    }
    pub fn per_locator() -> u32 {
        5
    }
    pub fn per_address() -> u32 {
        20
    }
    pub fn lockout() -> u64 {
        900
    }
    /// 0, 1, 2, 4, 8, 16, 32, 60 s: the last try about two minutes after the first.
    pub fn backchannel_attempts() -> u32 {
        8
    }
    pub fn backchannel_retry() -> u64 {
        1000
    }
    pub fn grant_types() -> Vec<String> {
        vec!["authorization_code".into(), "refresh_token".into()]
    }
    pub fn backchannel_outbox() -> u32 {
        10_000
    }
    pub fn scopes() -> Vec<String> {
        super::SUPPORTED_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl OidcConfig {
    /// How long an old signing key stays published after its successor starts signing:
    /// until every token it signed has expired, plus five minutes of clock skew.
    pub fn key_overlap_secs(&self) -> u64 {
        self.id_token_lifetime_secs
            .max(self.access_token_lifetime_secs)
            .saturating_add(300)
    }

    /// Whether the provider is served over TLS (cookies then get `Secure`).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Checks everything serde cannot: URLs, pairs of settings, duplicate clients.
    pub fn validate(&self) -> Result<(), KeyProblem> {
        check_url("issuer", &self.issuer)?;
        let authority = self
            .issuer
            .split_once("://")
            .map(|(_, a)| a)
            .unwrap_or_default();
        if authority.contains('/') || authority.contains('?') || authority.contains('#') {
            return Err(KeyProblem::new(
                "issuer",
                "must be scheme://host[:port] with no path, query or fragment",
            ));
        }
        if self.tls_cert.is_some() && !self.issuer.starts_with("https://") {
            return Err(KeyProblem::new(
                "issuer",
                "must start with https:// when tls_cert is set",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(KeyProblem::new(
                    "tls_cert",
                    "set both tls_cert and tls_key, or neither",
                ));
            }
            (None, None) if !self.allow_plain_http => {
                return Err(KeyProblem::new(
                    "tls_cert",
                    "no TLS certificate configured: set tls_cert and tls_key, or allow_plain_http = true for loopback tests",
                ));
            }
            _ => {}
        }
        for (key, v) in [
            ("session_lifetime_secs", self.session_lifetime_secs),
            ("code_lifetime_secs", self.code_lifetime_secs),
            (
                "access_token_lifetime_secs",
                self.access_token_lifetime_secs,
            ),
            ("id_token_lifetime_secs", self.id_token_lifetime_secs),
            (
                "refresh_token_lifetime_secs",
                self.refresh_token_lifetime_secs,
            ),
            ("lockout_secs", self.lockout_secs),
        ] {
            Key::new(key).unit("seconds").at_least(v, 1)?;
        }
        Key::new("code_lifetime_secs")
            .unit("seconds")
            .why("authorization codes are short-lived")
            .at_most(self.code_lifetime_secs, 600)?;
        for (key, v) in [
            (
                "max_client_auth_failures_per_client",
                self.max_client_auth_failures_per_client,
            ),
            (
                "max_client_auth_failures_per_address",
                self.max_client_auth_failures_per_address,
            ),
            ("max_attempts_per_locator", self.max_attempts_per_locator),
            ("max_attempts_per_address", self.max_attempts_per_address),
        ] {
            Key::new(key).at_least(v, 1)?;
        }
        for (key, v) in [
            ("max_pending_per_address", self.max_pending_per_address),
            ("max_pending_total", self.max_pending_total),
            ("max_codes_per_session", self.max_codes_per_session),
            ("max_connections", self.max_connections),
        ] {
            Key::new(key).at_least(v, 1)?;
        }
        for (key, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ] {
            Key::new(key).unit("seconds").range(v, 1..=600)?;
        }
        let interval = u64::from(self.key_rotation_interval_days).saturating_mul(86_400);
        let cycle = self
            .key_rotation_delay_secs
            .saturating_add(self.key_overlap_secs());
        if self.key_rotation_interval_days > 0 && interval <= cycle {
            return Err(KeyProblem::new(
                "key_rotation_interval_days",
                format!(
                    "must be longer than key_rotation_delay_secs plus the longest token lifetime ({cycle} s), or 0 for no scheduled rotation"
                ),
            ));
        }
        Key::new("backchannel_logout_attempts")
            .why("1 is no retries")
            .range(self.backchannel_logout_attempts, 1..=20)?;
        Key::new("backchannel_logout_first_retry_ms")
            .unit("ms")
            .range(self.backchannel_logout_first_retry_ms, 10..=60_000)?;
        Key::new("backchannel_outbox_max").range(self.backchannel_outbox_max, 1..=1_000_000)?;
        for (i, t) in self.trusted_proxies.iter().enumerate() {
            if let Err(e) = Cidr::parse(t) {
                return Err(KeyProblem::new(format!("trusted_proxies[{i}]"), e));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            if !seen.insert(c.client_id.as_str()) {
                return Err(KeyProblem::new(
                    format!("clients[{i}].client_id"),
                    format!("duplicate client_id {:?}", c.client_id),
                ));
            }
            c.validate(i)?;
            if c.backchannel_logout_uri
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
                && self.backchannel_ca_file.is_none()
            {
                return Err(KeyProblem::new(
                    "backchannel_ca_file",
                    format!(
                        "clients[{i}].backchannel_logout_uri is https://: set backchannel_ca_file to the PEM bundle \
                         of the inside CA that issues the apps' certificates (the system's roots are not used)"
                    ),
                ));
            }
        }
        self.passkeys.validate()?;
        self.device.validate()?;
        Ok(())
    }

    /// `trusted_proxies`, parsed (validated at start-up).
    pub fn trusted_proxy_blocks(&self) -> Vec<Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|t| Cidr::parse(t).ok())
            .collect()
    }

    /// The listener's bounds against slow and idle clients.
    pub fn listener_limits(&self) -> crate::oidc::listener::Limits {
        crate::oidc::listener::Limits {
            max_connections: self.max_connections as usize,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
        }
    }

    /// How failed back-channel logouts are retried.
    pub fn backchannel_retries(&self) -> crate::oidc::backchannel::RetrySchedule {
        crate::oidc::backchannel::RetrySchedule {
            attempts: self.backchannel_logout_attempts,
            first_delay: std::time::Duration::from_millis(self.backchannel_logout_first_retry_ms),
        }
    }

    pub fn client(&self, client_id: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

impl ClientConfig {
    fn validate(&self, i: usize) -> Result<(), KeyProblem> {
        let at = |k: &str| format!("clients[{i}].{k}");
        if self.client_id.is_empty() || self.client_id.len() > 200 {
            return Err(KeyProblem::new(
                at("client_id"),
                "must be 1 to 200 characters",
            ));
        }
        match (&self.client_secret_hash, self.public) {
            (Some(_), true) => {
                return Err(KeyProblem::new(
                    at("public"),
                    "a public client has no client_secret_hash",
                ));
            }
            (None, false) => {
                return Err(KeyProblem::new(
                    at("client_secret_hash"),
                    "set an argon2id hash (`airlock-receiver hash-secret`) or public = true",
                ));
            }
            (Some(h), false) => {
                if argon2::PasswordHash::new(h)
                    .map(|p| p.algorithm.as_str() != "argon2id")
                    .unwrap_or(true)
                {
                    return Err(KeyProblem::new(
                        at("client_secret_hash"),
                        "must be an argon2id PHC string ($argon2id$...)",
                    ));
                }
            }
            (None, true) => {}
        }
        if self.grant_types.is_empty() {
            return Err(KeyProblem::new(
                at("grant_types"),
                "at least one grant type is required",
            ));
        }
        for g in &self.grant_types {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(KeyProblem::new(
                    at("grant_types"),
                    format!(
                        "unknown grant type {g:?}; known: {}",
                        GRANT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if self.redirect_uris.is_empty() && self.allows_grant("authorization_code") {
            return Err(KeyProblem::new(
                at("redirect_uris"),
                "at least one redirect URI is required (or leave authorization_code out of grant_types)",
            ));
        }
        for u in &self.redirect_uris {
            check_url(&at("redirect_uris"), u)?;
            if u.contains('#') {
                return Err(KeyProblem::new(
                    at("redirect_uris"),
                    format!("{u:?} must not contain a fragment"),
                ));
            }
        }
        for u in &self.post_logout_redirect_uris {
            check_url(&at("post_logout_redirect_uris"), u)?;
        }
        if let Some(u) = &self.backchannel_logout_uri {
            check_url(&at("backchannel_logout_uri"), u)?;
            crate::oidc::backchannel::check_uri(u)
                .map_err(|e| KeyProblem::new(at("backchannel_logout_uri"), e))?;
        }
        self.validate_client_credentials(i)?;
        for s in &self.scopes {
            if !SUPPORTED_SCOPES.contains(&s.as_str()) {
                return Err(KeyProblem::new(
                    at("scopes"),
                    format!(
                        "unknown scope {s:?}; known: {}",
                        SUPPORTED_SCOPES.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `client_credentials_*` keys: only for confidential clients, scope tokens as
    /// RFC 6749 §3.3 allows them and no user scope, an audience for every grant.
    fn validate_client_credentials(&self, i: usize) -> Result<(), KeyProblem> {
        let at = |k: &str| format!("clients[{i}].{k}");
        let (scopes, audience) = (
            &self.client_credentials_scopes,
            &self.client_credentials_audience,
        );
        let listed = self.allows_grant(CLIENT_CREDENTIALS);
        if scopes.is_empty() && audience.is_empty() && !listed {
            return Ok(());
        }
        if self.public {
            return Err(KeyProblem::new(
                at("client_credentials_scopes"),
                "a public client cannot use the client_credentials grant (it has no secret); remove the key or make the client confidential",
            ));
        }
        if !listed {
            return Err(KeyProblem::new(
                at("grant_types"),
                "client_credentials_scopes/_audience are set: add \"client_credentials\" to grant_types (or remove them)",
            ));
        }
        if scopes.is_empty() {
            return Err(KeyProblem::new(
                at("client_credentials_scopes"),
                "set the scopes the client may be granted along with client_credentials_audience",
            ));
        }
        for s in scopes {
            let token_ok = !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !token_ok {
                return Err(KeyProblem::new(
                    at("client_credentials_scopes"),
                    format!(
                        "{s:?} is not a scope token (1 to 128 printable ASCII characters, no space, quote or backslash)"
                    ),
                ));
            }
            if SUPPORTED_SCOPES.contains(&s.as_str()) {
                return Err(KeyProblem::new(
                    at("client_credentials_scopes"),
                    format!("{s:?} is a user scope; a client_credentials token carries no user"),
                ));
            }
        }
        if audience.is_empty() {
            return Err(KeyProblem::new(
                at("client_credentials_audience"),
                "name at least one resource server (its URI or id) the tokens are for",
            ));
        }
        for a in audience {
            if a.is_empty()
                || a.len() > 512
                || a.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(KeyProblem::new(
                    at("client_credentials_audience"),
                    format!("{a:?} must be 1 to 512 characters without spaces"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this client may use the `client_credentials` grant.
    pub fn client_credentials_allowed(&self) -> bool {
        !self.public
            && self.allows_grant(CLIENT_CREDENTIALS)
            && !self.client_credentials_scopes.is_empty()
    }

    /// Whether the client must send PKCE (S256) at `/authorize`: public clients always,
    /// confidential ones when their `require_pkce` (or the global one) says so.
    pub fn pkce_required(&self, global: bool) -> bool {
        self.public || self.require_pkce.unwrap_or(global)
    }

    /// Whether the client must push its authorization requests (RFC 9126).
    pub fn par_required(&self, global: bool) -> bool {
        global || self.require_pushed_authorization_requests
    }

    /// Whether the client may use grant type `grant`.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether the client may ask for `scope` (`openid` always).
    pub fn allows_scope(&self, scope: &str) -> bool {
        scope == "openid" || self.scopes.iter().any(|s| s == scope)
    }
}

fn check_url(key: &str, u: &str) -> Result<(), KeyProblem> {
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(KeyProblem::new(
            key,
            format!("{u:?} is not an absolute http(s) URL"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OidcConfig {
        toml::from_str(
            r#"
            issuer = "http://127.0.0.1:9000"
            listen = "127.0.0.1:9000"
            allow_plain_http = true
            [[clients]]
            client_id = "app"
            public = true
            redirect_uris = ["http://127.0.0.1:9001/cb"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn minimal_config_is_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn backchannel_retry_settings_have_defaults_and_bounds() {
        let c = base();
        let r = c.backchannel_retries();
        assert_eq!((r.attempts, r.first_delay.as_millis()), (8, 1000));
        for (attempts, ms, key) in [
            (0, 1000, "backchannel_logout_attempts"),
            (21, 1000, "backchannel_logout_attempts"),
            (8, 5, "backchannel_logout_first_retry_ms"),
            (8, 60_001, "backchannel_logout_first_retry_ms"),
        ] {
            let mut c = base();
            c.backchannel_logout_attempts = attempts;
            c.backchannel_logout_first_retry_ms = ms;
            assert_eq!(c.validate().unwrap_err().key, key, "{attempts} {ms}");
        }
    }

    #[test]
    fn an_https_back_channel_needs_the_inside_ca_bundle() {
        let mut c = base();
        assert_eq!(c.backchannel_outbox_max, 10_000);
        c.clients[0].backchannel_logout_uri = Some("https://app.inside.example/bc".into());
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "backchannel_ca_file");
        assert!(
            e.problem.contains("clients[0].backchannel_logout_uri"),
            "{e}"
        );
        c.backchannel_ca_file = Some("/etc/airlock/inside-ca.pem".into());
        c.validate().unwrap();
        c.clients[0].backchannel_logout_uri = Some("http://127.0.0.1:8080/bc".into());
        c.validate().unwrap();
        c.clients[0].backchannel_logout_uri = Some("https://u:p@app/bc".into());
        assert_eq!(
            c.validate().unwrap_err().key,
            "clients[0].backchannel_logout_uri"
        );
        let mut c = base();
        c.backchannel_outbox_max = 0;
        assert_eq!(c.validate().unwrap_err().key, "backchannel_outbox_max");
    }

    #[test]
    fn storage_bounds_have_defaults_and_must_be_positive() {
        let c = base();
        assert_eq!(
            (
                c.max_pending_per_address,
                c.max_pending_total,
                c.max_codes_per_session
            ),
            (30, 10_000, 30)
        );
        for key in [
            "max_pending_per_address",
            "max_pending_total",
            "max_codes_per_session",
        ] {
            let mut c = base();
            match key {
                "max_pending_per_address" => c.max_pending_per_address = 0,
                "max_pending_total" => c.max_pending_total = 0,
                _ => c.max_codes_per_session = 0,
            }
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn listener_limits_have_defaults_and_bounds() {
        let l = base().listener_limits();
        assert_eq!(
            (
                l.max_connections,
                l.header_read_timeout.as_secs(),
                l.request_timeout.as_secs()
            ),
            (1024, 10, 30)
        );
        let mut c = base();
        c.max_connections = 0;
        assert_eq!(c.validate().unwrap_err().key, "max_connections");
        let mut c = base();
        c.header_read_timeout_secs = 0;
        assert_eq!(c.validate().unwrap_err().key, "header_read_timeout_secs");
        let mut c = base();
        c.request_timeout_secs = 601;
        assert_eq!(c.validate().unwrap_err().key, "request_timeout_secs");
    }

    #[test]
    fn scheduled_rotation_is_off_by_default_and_longer_than_a_key_cycle() {
        let mut c = base();
        assert_eq!(c.key_rotation_interval_days, 0);
        c.key_rotation_interval_days = 30;
        c.validate().unwrap();
        c.key_rotation_delay_secs = 40 * 86_400;
        assert_eq!(c.validate().unwrap_err().key, "key_rotation_interval_days");
    }

    #[test]
    fn grant_types_default_to_the_code_flow_and_are_checked() {
        let c = base();
        assert!(c.clients[0].allows_grant("authorization_code"));
        assert!(c.clients[0].allows_grant("refresh_token"));
        assert!(!c.clients[0].allows_grant(crate::oidc::device::GRANT_TYPE));
        let mut c = base();
        c.clients[0].grant_types = vec!["password".into()];
        assert_eq!(c.validate().unwrap_err().key, "clients[0].grant_types");
        let mut c = base();
        c.clients[0].grant_types = vec![];
        assert_eq!(c.validate().unwrap_err().key, "clients[0].grant_types");
        // A device-only client needs no redirect URI; a code-flow client does.
        let mut c = base();
        c.clients[0].redirect_uris.clear();
        assert_eq!(c.validate().unwrap_err().key, "clients[0].redirect_uris");
        c.clients[0].grant_types = vec![crate::oidc::device::GRANT_TYPE.into()];
        c.validate().unwrap();
        let mut c = base();
        c.device.poll_interval_secs = 0;
        assert_eq!(c.validate().unwrap_err().key, "device.poll_interval_secs");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<OidcConfig, _> =
            toml::from_str("issuer='http://x'\nlisten='127.0.0.1:1'\nbogus=1\n");
        assert!(r.unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = base();
        c.clients[0].public = false;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "clients[0].client_secret_hash");
        let mut c = base();
        c.allow_plain_http = false;
        assert_eq!(c.validate().unwrap_err().key, "tls_cert");
        let mut c = base();
        c.clients[0].scopes.push("admin".into());
        assert_eq!(c.validate().unwrap_err().key, "clients[0].scopes");
    }

    #[test]
    fn client_credentials_keys_are_checked_and_name_the_key() {
        const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$0l3HfRk1xUQUxmkuuVRsuQ";
        let conf = |extra: &str, public: bool| -> OidcConfig {
            let who = if public {
                "public = true".to_string()
            } else {
                format!("client_secret_hash = \"{HASH}\"")
            };
            toml::from_str(&format!(
                "issuer = \"http://127.0.0.1:9000\"\nlisten = \"127.0.0.1:9000\"\nallow_plain_http = true\n\
                 [[clients]]\nclient_id = \"svc\"\n{who}\nredirect_uris = [\"http://127.0.0.1:9001/cb\"]\n{extra}\n"
            ))
            .unwrap()
        };
        let cc = "grant_types = [\"authorization_code\", \"client_credentials\"]\n";
        let keys = "client_credentials_scopes = [\"orders.read\"]\nclient_credentials_audience = [\"https://orders.inside\"]";
        let ok = conf(&format!("{cc}{keys}"), false);
        ok.validate().unwrap();
        assert!(ok.clients[0].client_credentials_allowed());
        assert!(!ok.clients[0].pkce_required(false));
        assert!(ok.clients[0].pkce_required(true));
        for (extra, public, key) in [
            (keys, true, "client_credentials_scopes"),
            (
                "client_credentials_scopes = [\"a b\"]\nclient_credentials_audience = [\"x\"]",
                false,
                "client_credentials_scopes",
            ),
            (
                "client_credentials_scopes = [\"email\"]\nclient_credentials_audience = [\"x\"]",
                false,
                "client_credentials_scopes",
            ),
            (
                "client_credentials_scopes = [\"a\"]",
                false,
                "client_credentials_audience",
            ),
            (
                "client_credentials_audience = [\"x\"]",
                false,
                "client_credentials_scopes",
            ),
            ("", false, "client_credentials_scopes"),
        ] {
            let e = conf(&format!("{cc}{extra}"), public)
                .validate()
                .unwrap_err();
            assert_eq!(e.key, format!("clients[0].{key}"), "{extra}");
        }
        // The keys without the grant type listed.
        let e = conf(keys, false).validate().unwrap_err();
        assert_eq!(e.key, "clients[0].grant_types");
        // A service-only client needs no redirect URI.
        let service = conf(
            &format!("{keys}\ngrant_types = [\"client_credentials\"]"),
            false,
        );
        let mut service = service;
        service.clients[0].redirect_uris.clear();
        service.validate().unwrap();
        assert!(service.clients[0].client_credentials_allowed());
        let public = conf("", true);
        assert!(public.clients[0].pkce_required(false));
        assert!(!public.clients[0].client_credentials_allowed());
    }
}
