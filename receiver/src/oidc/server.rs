//! Start-up: the router with every endpoint, and the plain HTTP and TLS (rustls,
//! aws-lc-rs, PEM files of the inside PKI) listeners.

use axum_server::tls_rustls::RustlsConfig;

use crate::oidc::config::OidcConfig;
use crate::oidc::endpoints;
use crate::oidc::error::OidcError;
use crate::oidc::metrics::Counter;
use crate::oidc::provider::{OidcDeps, Provider};

impl Provider {
    /// The axum router with every endpoint.
    pub fn router(&self) -> axum::Router {
        endpoints::router(self.clone())
    }

    /// Binds the configured address and serves until the future is dropped.
    pub async fn serve(self) -> Result<(), OidcError> {
        let addr = self.config().listen;
        if self.config().tls() {
            return serve_tls(self).await;
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| OidcError::Io {
                what: format!("binding the OpenID provider to {addr}"),
                source,
            })?;
        self.serve_on(listener).await
    }

    /// Serves plain HTTP on an already bound listener (tests bind port 0 first).
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> Result<(), OidcError> {
        tracing::info!(addr = ?listener.local_addr().ok(), issuer = %self.config().issuer, "OpenID provider listening");
        self.spawn_maintenance();
        self.serve_limited(listener, None)
            .await
            .map_err(|source| OidcError::Io {
                what: "serving the OpenID provider".into(),
                source,
            })
    }

    /// The accept loop with the configured connection cap and timeouts.
    async fn serve_limited(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<RustlsConfig>,
    ) -> std::io::Result<()> {
        let p = self.clone();
        let on_limit: airlock_daemon::listener::OnLimit =
            std::sync::Arc::new(move |reason| p.metrics().inc(Counter::ListenerLimits, reason));
        let limits = self.config().listener_limits();
        let tls = tls.map(axum_server::tls_rustls::RustlsAcceptor::new);
        airlock_daemon::listener::serve_with(
            "OpenID provider",
            on_limit,
            listener,
            self.router(),
            limits,
            tls,
        )
        .await
    }
}

/// Convenience for the daemon: build the provider and serve it.
pub async fn serve(config: OidcConfig, deps: OidcDeps) -> Result<(), OidcError> {
    Provider::new(config, deps)?.serve().await
}

/// Loads the configured certificate chain and key; the error names both files.
pub async fn load_tls(p: &Provider) -> Result<RustlsConfig, OidcError> {
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
    let tls = load_tls(&p).await?;
    let addr = p.config().listen;
    tracing::info!(%addr, issuer = %p.config().issuer, "OpenID provider listening (TLS)");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OidcError::Io {
            what: format!("binding the OpenID provider to {addr}"),
            source,
        })?;
    // The accept loop speaks HTTP/1.1 only: offer no h2 in ALPN.
    let mut server_config = (*tls.get_inner()).clone();
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = RustlsConfig::from_config(std::sync::Arc::new(server_config));
    p.spawn_maintenance();
    p.serve_limited(listener, Some(tls))
        .await
        .map_err(|source| OidcError::Io {
            what: format!("serving the OpenID provider on {addr}"),
            source,
        })
}
