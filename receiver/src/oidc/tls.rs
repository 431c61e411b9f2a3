//! The optional TLS listener: rustls (aws-lc-rs) from PEM files of the inside PKI.

use std::net::SocketAddr;

use axum_server::tls_rustls::RustlsConfig;

use crate::oidc::error::OidcError;
use crate::oidc::provider::Provider;

/// Loads the configured certificate chain and key; the error names both files.
pub async fn load(p: &Provider) -> Result<RustlsConfig, OidcError> {
    let c = p.config();
    let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) else {
        return Err(OidcError::Tls(
            "oidc.tls_cert and oidc.tls_key must both be set".into(),
        ));
    };
    RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
        OidcError::Tls(format!(
            "cannot load oidc.tls_cert {} / oidc.tls_key {}: {e}; give a PEM certificate chain and its PEM (PKCS#8, SEC1 or PKCS#1) private key",
            cert.display(),
            key.display()
        ))
    })
}

/// Serves HTTPS on the configured address until the future is dropped.
pub async fn serve_tls(p: Provider) -> Result<(), OidcError> {
    let tls = load(&p).await?;
    let addr = p.config().listen;
    tracing::info!(%addr, issuer = %p.config().issuer, "OpenID provider listening (TLS)");
    p.spawn_maintenance();
    let app = p
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum_server::bind_rustls(addr, tls)
        .serve(app)
        .await
        .map_err(|source| OidcError::Io {
            what: format!("serving the OpenID provider on {addr}"),
            source,
        })
}
