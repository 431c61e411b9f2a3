//! Client authentication at the token, revocation and introspection endpoints.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::oidc::config::ClientConfig;
use crate::oidc::http::{OAuthError, Params};
use crate::oidc::login::verify_argon2_bounded;
use crate::oidc::provider::Provider;
use crate::oidc::util::{ct_eq, hash_secret, url_decode};

/// Credentials as presented.
fn presented(headers: &HeaderMap, form: &Params) -> Result<(String, Option<String>), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    match basic {
        Some(b64) => {
            if form.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded.
            let id = url_decode(id)
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            let secret = url_decode(secret)
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            if form.get("client_id").is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            Ok((id, Some(secret)))
        }
        None => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
            Ok((id.to_string(), form.get("client_secret").map(String::from)))
        }
    }
}

/// Authenticates the calling client. Confidential clients must prove their secret
/// (argon2id once, then a constant-time compare against the cached SHA-256); public
/// clients only name themselves and must not send a secret.
pub async fn authenticate(
    p: &Provider,
    headers: &HeaderMap,
    form: &Params,
) -> Result<ClientConfig, OAuthError> {
    let (id, secret) = presented(headers, form)?;
    let Some(client) = p.config().client(&id).cloned() else {
        tracing::warn!(client_id = %id, "unknown client at a back-channel endpoint");
        return Err(OAuthError::invalid_client("unknown client"));
    };
    match (&client.client_secret_hash, secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client(
            "this client is public and has no secret",
        )),
        (Some(_), None) => Err(OAuthError::invalid_client(
            "this client must authenticate with its secret",
        )),
        (Some(phc), Some(secret)) => {
            let digest = hash_secret(&secret);
            let cached = p
                .secret_cache()
                .lock()
                .ok()
                .and_then(|c| c.get(&id).cloned());
            if cached.is_some_and(|c| ct_eq(&c, &digest)) {
                return Ok(client);
            }
            let phc = phc.clone();
            let ok = verify_argon2_bounded(phc, secret)
                .await
                .map_err(OAuthError::server)?;
            if !ok {
                tracing::warn!(client_id = %id, "wrong client secret");
                return Err(OAuthError::invalid_client("wrong client secret"));
            }
            if let Ok(mut c) = p.secret_cache().lock() {
                c.insert(id, digest);
            }
            Ok(client)
        }
    }
}
