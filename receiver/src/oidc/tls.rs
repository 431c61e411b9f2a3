//! The optional TLS listener.

use crate::oidc::error::OidcError;
use crate::oidc::provider::Provider;

/// Serves HTTPS from the configured certificate and key.
pub async fn serve_tls(p: Provider) -> Result<(), OidcError> {
    let _ = p;
    Err(OidcError::Tls(
        "TLS listener not built yet: terminate TLS in front of the provider or set allow_plain_http".into(),
    ))
}
