//! Client authentication at the token, revocation and introspection endpoints.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::oidc::config::ClientConfig;
use crate::oidc::http::{OAuthError, Params};
use crate::oidc::login::{Limiter, verify_argon2_in};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::Provider;
use crate::oidc::util::{ct_eq, hash_secret, url_decode};

/// The answer to a secret that does not authenticate, for a known client and an unknown
/// one alike (RFC 6749 §5.2 `invalid_client`): the description must not tell them apart.
const AUTH_FAILED: &str = "client authentication failed: unknown client or wrong secret";

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
/// clients only name themselves and must not send a secret. `peer` is the TCP peer (the
/// client address is taken as [`crate::oidc::http::client_addr`] says).
///
/// Argon2 runs on its own budget (the provider's
/// [`Argon2Budgets::client_auth`](crate::oidc::login::Argon2Budgets)), and is counted before it runs
/// per client and per address ([`Limiter`]); a secret for an unknown client is verified
/// against a configured client's hash, so it costs what a wrong secret of a known client
/// costs and tells nothing by its timing.
pub async fn authenticate(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    form: &Params,
) -> Result<ClientConfig, OAuthError> {
    let (id, secret) = presented(headers, form)?;
    let addr = p.client_key(peer, headers);
    let Some(client) = p.config().client(&id).cloned() else {
        tracing::warn!(client_id = %id, "unknown client at a back-channel endpoint");
        let Some(secret) = secret else {
            return Err(OAuthError::invalid_client("unknown client"));
        };
        if let Some(phc) = p
            .config()
            .clients
            .iter()
            .find_map(|c| c.client_secret_hash.clone())
        {
            let limits = limiters(p);
            let addr_key = format!("cauth-addr:{addr}");
            if let Some(minutes) = limits.1.charge(&addr_key, p.now())? {
                return Err(locked(p, minutes));
            }
            verify(p, phc, secret).await?;
        }
        return Err(OAuthError::invalid_client(AUTH_FAILED));
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
            let known = || {
                p.secret_cache()
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&id).cloned())
                    .is_some_and(|c| ct_eq(&c, &digest))
            };
            if known() {
                return Ok(client);
            }
            // One first verification per client at a time: replicas of a service starting
            // together would otherwise each count as an attempt before the first finished,
            // and the per-client limit would lock the client out with its right secret.
            // The later ones find the digest cached when their turn comes.
            let gate = p.client_auth_gate(&id);
            let _turn = gate.lock().await;
            if known() {
                return Ok(client);
            }
            let (per_client, per_address) = limiters(p);
            let (client_key, addr_key) =
                (format!("cauth-client:{id}"), format!("cauth-addr:{addr}"));
            let now = p.now();
            if let Some(minutes) = per_address.charge(&addr_key, now)? {
                return Err(locked(p, minutes));
            }
            if let Some(minutes) = per_client.charge(&client_key, now)? {
                per_address.refund(&addr_key)?;
                return Err(locked(p, minutes));
            }
            if !verify(p, phc.clone(), secret).await? {
                tracing::warn!(client_id = %id, "wrong client secret");
                return Err(OAuthError::invalid_client(AUTH_FAILED));
            }
            per_address.refund(&addr_key)?;
            per_client.refund(&client_key)?;
            if let Ok(mut c) = p.secret_cache().lock() {
                c.insert(id, digest);
            }
            Ok(client)
        }
    }
}

/// (per client, per address) limits of client authentication.
fn limiters(p: &Provider) -> (Limiter<'_>, Limiter<'_>) {
    let c = p.config();
    let l = |max| Limiter {
        store: p.store(),
        max,
        window: c.lockout_secs,
    };
    (
        l(c.max_client_auth_failures_per_client),
        l(c.max_client_auth_failures_per_address),
    )
}

fn locked(p: &Provider, minutes: u64) -> OAuthError {
    p.metrics().inc(Counter::ClientAuth, "locked");
    OAuthError::invalid_client(format!(
        "too many failed client authentications (for this client or from this address): try again in {minutes} minutes"
    ))
}

async fn verify(p: &Provider, phc: String, secret: String) -> Result<bool, OAuthError> {
    p.metrics().inc(Counter::ClientAuth, "argon2");
    verify_argon2_in(&p.argon2_budgets().client_auth, phc, secret)
        .await
        .map_err(OAuthError::server)
}
