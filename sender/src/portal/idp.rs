//! One configured outside IdP at run time: its discovery document and JWKS, fetched and
//! cached. The raw bytes are kept as fetched: they are what the `IdpMirror` ferries inside.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use thiserror::Error;
use tokio::sync::Mutex;

use super::config::IdpConfig;
use super::http_client::{HttpClient, HttpError};

#[derive(Debug, Error)]
pub enum IdpError {
    #[error("IdP {idp}: cannot fetch its metadata: {error}")]
    Fetch { idp: String, error: HttpError },
    #[error("IdP {idp}: its discovery document is not valid OpenID metadata: {error}")]
    Discovery { idp: String, error: String },
    #[error(
        "IdP {idp}: its discovery document names issuer {found:?}, but the config says {configured:?}; fix portal.idps.issuer"
    )]
    IssuerMismatch {
        idp: String,
        found: String,
        configured: String,
    },
    #[error("IdP {idp}: its JWKS is not a valid key set: {error}")]
    Jwks { idp: String, error: String },
}

/// The documents of one fetch.
#[derive(Debug)]
pub struct Documents {
    /// The discovery document, byte for byte as served.
    pub discovery: Vec<u8>,
    /// The JWKS, byte for byte as served.
    pub jwks: Vec<u8>,
    /// The parsed metadata, with the JWKS attached (what openidconnect validates against).
    pub metadata: CoreProviderMetadata,
    /// Unix seconds of the fetch.
    pub fetched_at: u64,
    fetched: Instant,
}

pub struct Idp {
    pub config: IdpConfig,
    pub client_secret: Option<String>,
    cache: Mutex<Option<Arc<Documents>>>,
}

impl Idp {
    pub fn new(config: IdpConfig, client_secret: Option<String>) -> Self {
        Self {
            config,
            client_secret,
            cache: Mutex::new(None),
        }
    }

    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        )
    }

    /// The cached documents, fetched if there are none or they are older than `max_age`.
    pub async fn documents(
        &self,
        http: &HttpClient,
        max_age: Duration,
    ) -> Result<Arc<Documents>, IdpError> {
        let mut cache = self.cache.lock().await;
        if let Some(docs) = cache.as_ref()
            && docs.fetched.elapsed() < max_age
        {
            return Ok(docs.clone());
        }
        let docs = Arc::new(self.fetch(http).await?);
        *cache = Some(docs.clone());
        Ok(docs)
    }

    /// Fetches discovery and JWKS now, replacing the cache.
    pub async fn refresh(&self, http: &HttpClient) -> Result<Arc<Documents>, IdpError> {
        self.documents(http, Duration::ZERO).await
    }

    async fn fetch(&self, http: &HttpClient) -> Result<Documents, IdpError> {
        let idp = self.config.name.clone();
        let fetch_err = |error| IdpError::Fetch {
            idp: idp.clone(),
            error,
        };
        let discovery = http
            .get_bytes(&self.discovery_url())
            .await
            .map_err(fetch_err)?;
        let metadata: CoreProviderMetadata =
            serde_json::from_slice(&discovery).map_err(|e| IdpError::Discovery {
                idp: idp.clone(),
                error: e.to_string(),
            })?;
        // OpenID Connect Discovery 1.0 §4.3: the issuer must be exactly the configured one.
        if metadata.issuer().as_str() != self.config.issuer {
            return Err(IdpError::IssuerMismatch {
                idp,
                found: metadata.issuer().to_string(),
                configured: self.config.issuer.clone(),
            });
        }
        let jwks = http
            .get_bytes(metadata.jwks_uri().as_str())
            .await
            .map_err(fetch_err)?;
        let keys: CoreJsonWebKeySet =
            serde_json::from_slice(&jwks).map_err(|e| IdpError::Jwks {
                idp: idp.clone(),
                error: e.to_string(),
            })?;
        tracing::info!(
            idp = %self.config.name,
            issuer = %self.config.issuer,
            keys = keys.keys().len(),
            "fetched discovery document and JWKS"
        );
        Ok(Documents {
            discovery,
            jwks,
            metadata: metadata.set_jwks(keys),
            fetched_at: crate::clock::unix_now(),
            fetched: Instant::now(),
        })
    }
}
