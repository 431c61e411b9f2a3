//! The optional `[portal]` section of the sender config: where the portal listens and which
//! outside IdPs it is a relying party of.
//!
//! ```toml
//! [portal]
//! listen = "0.0.0.0:8443"
//! help_contact = "the identity team (idm@example.com)"
//!
//! [[portal.idps]]
//! name = "corp"                       # URL path segment: /login/corp
//! display_name = "Example Corp login"
//! issuer = "https://login.example.com"
//! client_id = "airlock-portal"
//! client_secret_file = "secrets/corp-client-secret"
//! scopes = ["openid", "email", "profile", "groups"]
//! redirect_url = "https://portal.example.com/callback"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use airlock_daemon::config_check::{ConfigError, Key, KeyProblem};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Address the portal's web server listens on.
    pub listen: SocketAddr,
    /// Who to ask when the policy refuses someone; shown on the refusal page.
    pub help_contact: String,
    /// Allow `http://` issuer and redirect URLs (loopback tests, the demo). Never in production.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// How often each IdP's discovery document and JWKS are fetched again.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// An `IdpMirror` is sent when the documents change, and at least this often otherwise.
    #[serde(default = "default_mirror_secs")]
    pub mirror_secs: u64,
    /// How long the portal waits for a ticket to be durable in the outbox before it gives up
    /// (and shows no code).
    #[serde(default = "default_durable_timeout_secs")]
    pub durable_timeout_secs: u64,
    /// ID tokens issued longer ago than this (by `iat`) are refused.
    #[serde(default = "default_max_token_age_secs")]
    pub max_token_age_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog until one ends.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A connection must send a request head within this many seconds (also between
    /// keep-alive requests), or it is closed.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// A request must be answered within this many seconds, or it gets 408.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    pub idps: Vec<IdpConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// Short name used in URLs and logs: letters, digits, `-` and `_`.
    pub name: String,
    /// The button label on the portal's start page.
    pub display_name: String,
    /// The issuer URL, exactly as in its tokens and its discovery document.
    pub issuer: String,
    pub client_id: String,
    /// File holding the client secret (one line). Absent: a public client (PKCE only).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The portal's callback URL as registered at the IdP; its path must be `/callback`.
    pub redirect_url: String,
    /// ID-token signature algorithms accepted (JOSE names).
    #[serde(default = "default_algs")]
    pub id_token_algs: Vec<String>,
    /// Whether to ferry this IdP's discovery document and JWKS inside (`IdpMirror`).
    #[serde(default = "default_true")]
    pub mirror: bool,
}

fn default_refresh_secs() -> u64 {
    900
}
fn default_mirror_secs() -> u64 {
    6 * 3600
}
fn default_durable_timeout_secs() -> u64 {
    20
}
fn default_max_token_age_secs() -> u64 {
    300
}
fn default_max_connections() -> u32 {
    1024
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_request_timeout_secs() -> u64 {
    30
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_algs() -> Vec<String> {
    vec!["RS256".to_string()]
}
fn default_true() -> bool {
    true
}

/// Algorithms the portal accepts for ID tokens (no `none`, no HMAC: the portal is not the signer).
pub const ALLOWED_ALGS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA",
];

/// The callback path every redirect_url must end in.
pub const CALLBACK_PATH: &str = "/callback";

impl PortalConfig {
    /// Value checks serde cannot express; `file` names the config file in errors.
    pub fn check(&self, file: &Path) -> Result<(), ConfigError> {
        self.check_keys()
            .map_err(|p| p.under("portal").in_file(file))
    }

    fn check_keys(&self) -> Result<(), KeyProblem> {
        Key::new("max_connections").at_least(self.max_connections, 1)?;
        for (key, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ] {
            Key::new(key).unit("seconds").range(v, 1..=600)?;
        }
        if self.help_contact.trim().is_empty() {
            return Err(KeyProblem::new(
                "help_contact",
                "name who refused users should ask, e.g. \"the identity team (idm@example.com)\"",
            ));
        }
        Key::new("refresh_secs").range(self.refresh_secs, 5..=86_400)?;
        Key::new("mirror_secs").range(self.mirror_secs, 60..=7 * 86_400)?;
        Key::new("durable_timeout_secs").range(self.durable_timeout_secs, 1..=300)?;
        Key::new("max_token_age_secs").range(self.max_token_age_secs, 30..=3600)?;
        if self.idps.is_empty() {
            return Err(KeyProblem::missing(
                "idps",
                "configure at least one [[portal.idps]] (issuer, client_id, redirect_url)",
            ));
        }
        for (i, idp) in self.idps.iter().enumerate() {
            let key = |k: &str| format!("idps[{i}].{k}");
            self.check_idp(idp)
                .map_err(|(k, m)| KeyProblem::new(key(k), m))?;
            if self.idps[..i].iter().any(|o| o.name == idp.name) {
                return Err(KeyProblem::new(
                    key("name"),
                    format!("{:?} is used twice", idp.name),
                ));
            }
        }
        Ok(())
    }

    fn check_idp(&self, idp: &IdpConfig) -> Result<(), (&'static str, String)> {
        let name_ok = !idp.name.is_empty()
            && idp.name.len() <= 32
            && idp
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err((
                "name",
                format!(
                    "must be 1 to 32 letters, digits, '-' or '_', got {:?}",
                    idp.name
                ),
            ));
        }
        if idp.display_name.trim().is_empty() {
            return Err(("display_name", "must not be empty".into()));
        }
        self.check_url(&idp.issuer).map_err(|m| ("issuer", m))?;
        if idp.issuer.len() > airlock_protocol::limits::MAX_TEXT {
            return Err(("issuer", "is longer than 512 bytes".into()));
        }
        if idp.client_id.is_empty() {
            return Err((
                "client_id",
                "must be the client id registered at the IdP".into(),
            ));
        }
        let redirect = self
            .check_url(&idp.redirect_url)
            .map_err(|m| ("redirect_url", m))?;
        if redirect.path() != CALLBACK_PATH || redirect.query().is_some() {
            return Err((
                "redirect_url",
                format!(
                    "must end in {CALLBACK_PATH} with no query, e.g. \"https://portal.example.com/callback\", got {:?}",
                    idp.redirect_url
                ),
            ));
        }
        if !idp.scopes.iter().any(|s| s == "openid") {
            return Err(("scopes", "must include \"openid\"".into()));
        }
        if idp.id_token_algs.is_empty() {
            return Err(("id_token_algs", "list at least one algorithm".into()));
        }
        for alg in &idp.id_token_algs {
            if !ALLOWED_ALGS.contains(&alg.as_str()) {
                return Err((
                    "id_token_algs",
                    format!("{alg:?} is not allowed; use {}", ALLOWED_ALGS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn check_url(&self, text: &str) -> Result<openidconnect::url::Url, String> {
        let url = openidconnect::url::Url::parse(text)
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.allow_plain_http => Ok(url),
            "http" => Err(format!(
                "{text:?} is plain http; use https (or set portal.allow_plain_http = true for a loopback test)"
            )),
            other => Err(format!("{text:?}: scheme {other:?} is not http(s)")),
        }
    }

    /// The listener's bounds against slow and idle clients.
    pub fn listener_limits(&self) -> airlock_daemon::listener::Limits {
        airlock_daemon::listener::Limits {
            max_connections: self.max_connections as usize,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
        }
    }

    /// Whether cookies get the `Secure` attribute (every redirect URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.idps
            .iter()
            .all(|i| i.redirect_url.starts_with("https://"))
    }
}

impl IdpConfig {
    /// Reads the client secret file (relative paths are relative to the config file).
    pub fn client_secret(&self, config_file: &Path) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.client_secret_file else {
            return Ok(None);
        };
        let path = if path.is_relative() {
            config_file
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(path)
        } else {
            path.clone()
        };
        let key = format!("portal.idps[{}].client_secret_file", self.name);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::KeyFile {
            file: config_file.to_path_buf(),
            key: key.clone(),
            path: path.clone(),
            source,
        })?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(KeyProblem::new(
                key,
                format!(
                    "{} is empty: put the client secret the IdP issued into it",
                    path.display()
                ),
            )
            .in_file(config_file));
        }
        Ok(Some(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<PortalConfig, String> {
        let text = format!(
            r#"listen = "127.0.0.1:0"
help_contact = "idm@example.com"
{extra}
[[idps]]
name = "corp"
display_name = "Corp"
issuer = "https://login.example.com"
client_id = "c"
redirect_url = "https://portal.example.com/callback"
"#
        );
        let c: PortalConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check(Path::new("sender.toml"))
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_minimal_section_is_valid() {
        let c = parse("").unwrap();
        assert_eq!(c.idps[0].scopes, ["openid", "email", "profile"]);
        assert!(c.secure_cookies());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("colour = 1").unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn plain_http_needs_the_explicit_switch() {
        let text = r#"listen = "127.0.0.1:0"
help_contact = "x"
[[idps]]
name = "t"
display_name = "T"
issuer = "http://127.0.0.1:1"
client_id = "c"
redirect_url = "http://127.0.0.1:2/callback"
"#;
        let c: PortalConfig = toml::from_str(text).unwrap();
        let e = c.check(Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("portal.idps[0].issuer"), "{e}");
        assert!(e.contains("allow_plain_http"), "{e}");
    }

    #[test]
    fn listener_limits_have_defaults_and_bounds() {
        let l = parse("").unwrap().listener_limits();
        assert_eq!(
            (
                l.max_connections,
                l.header_read_timeout.as_secs(),
                l.request_timeout.as_secs()
            ),
            (1024, 10, 30)
        );
        for (line, key) in [
            ("max_connections = 0", "portal.max_connections"),
            (
                "header_read_timeout_secs = 0",
                "portal.header_read_timeout_secs",
            ),
            ("request_timeout_secs = 601", "portal.request_timeout_secs"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn values_are_checked_with_their_key() {
        let e = parse("refresh_secs = 1").unwrap_err();
        assert!(e.contains("portal.refresh_secs"), "{e}");
        let mut c = parse("").unwrap();
        c.help_contact = " ".into();
        let e = c.check(Path::new("s.toml")).unwrap_err().to_string();
        assert!(
            e.contains("portal.help_contact") && e.contains("s.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_callback_path_and_algorithms_are_checked() {
        let mut c = parse("").unwrap();
        c.idps[0].redirect_url = "https://portal.example.com/cb".into();
        let e = c.check(Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("redirect_url") && e.contains("/callback"), "{e}");
        let mut c = parse("").unwrap();
        c.idps[0].id_token_algs = vec!["HS256".into()];
        let e = c.check(Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("id_token_algs"), "{e}");
        let mut c = parse("").unwrap();
        c.idps.push(c.idps[0].clone());
        let e = c.check(Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("portal.idps[1].name"), "{e}");
    }
}
