//! Errors of the OpenID provider layer.

use crate::oidc::directory::DirectoryError;
use airlock_daemon::config_check::KeyProblem;

/// Everything that can go wrong inside the provider (not protocol errors a client
/// caused: those are [`crate::oidc::http::OAuthError`] answers).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid [oidc] configuration: {0}")]
    Config(#[from] KeyProblem),
    #[error("OIDC store: {0}")]
    Store(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("signing key: {0}")]
    Key(String),
    #[error("token signing or verification: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl From<sled::Error> for OidcError {
    fn from(e: sled::Error) -> Self {
        OidcError::Store(e.to_string())
    }
}

impl From<serde_json::Error> for OidcError {
    fn from(e: serde_json::Error) -> Self {
        OidcError::Store(format!("corrupt record: {e}"))
    }
}
