//! The outside portal: a web server, run by `airlock-sender run` when `[portal]` is
//! configured, where federated users sign in with their own outside IdP and get a one-time
//! transfer code for the inside login page.
//!
//! - [`config`]: the `[portal]` section.
//! - [`http_client`]: outbound HTTP (hyper-util + rustls) for openidconnect and the mirror.
//! - [`idp`]: discovery document and JWKS per IdP, fetched and cached, raw bytes kept.
//! - [`login`]: the relying party (openidconnect): code + PKCE S256, state, nonce, ID token.
//! - [`pending`]: logins in progress, bound to the browser by a cookie.
//! - [`grant`]: policy -> LoginTicket -> spool -> durable in the outbox -> the code.
//! - [`mirror`]: periodic `IdpMirror` frames of each IdP's documents.
//! - [`routes`], [`pages`]: the HTTP surface and its server-rendered HTML.
//! - [`state`]: what the handlers and the mirror task share.

pub mod config;
pub mod grant;
pub mod http_client;
pub mod idp;
pub mod login;
pub mod mirror;
pub mod pages;
pub mod pending;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

pub use config::PortalConfig;
pub use state::Portal;

use crate::config::{Config, ConfigError};
use http_client::{HttpClient, HttpError};
use idp::Idp;
use pending::PendingStore;

#[derive(Debug, Error)]
pub enum PortalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("portal: {0}")]
    Http(#[from] HttpError),
    #[error("portal: cannot listen on {addr}: {error} (change portal.listen)")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// The running portal; dropping it stops the web server and the mirror task.
pub struct PortalHandle {
    pub local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PortalHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the portal if the config has a `[portal]` section (None otherwise). IdPs are
/// contacted in the background: an IdP that is down does not stop the sender.
pub async fn start(config: &Config) -> Result<Option<PortalHandle>, PortalError> {
    let Some(settings) = config.portal.clone() else {
        return Ok(None);
    };
    settings.check(&config.source_file)?;
    let mut idps = Vec::with_capacity(settings.idps.len());
    for idp in &settings.idps {
        let secret = idp.client_secret(&config.source_file)?;
        idps.push(Idp::new(idp.clone(), secret));
    }
    let http = HttpClient::new(settings.allow_plain_http)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|error| PortalError::Listen {
            addr: settings.listen,
            error,
        })?;
    let local_addr = listener.local_addr().map_err(|error| PortalError::Listen {
        addr: settings.listen,
        error,
    })?;
    let portal = Arc::new(Portal {
        config: config.clone(),
        settings,
        idps,
        http,
        pending: PendingStore::default(),
    });
    let router = routes::router(portal.clone());
    let limits = portal.settings.listener_limits();
    let on_limit: airlock_daemon::listener::OnLimit =
        Arc::new(|reason| tracing::debug!(reason, "portal listener limit reached"));
    let server = tokio::spawn(async move {
        if let Err(e) =
            airlock_daemon::listener::serve("portal", on_limit, listener, router, limits).await
        {
            tracing::error!(error = %e, "portal web server stopped");
        }
    });
    let mirror = tokio::spawn(mirror::run(portal.clone()));
    tracing::info!(listen = %local_addr, idps = portal.idps.len(), "outside portal running");
    Ok(Some(PortalHandle {
        local_addr,
        tasks: vec![server, mirror],
    }))
}
