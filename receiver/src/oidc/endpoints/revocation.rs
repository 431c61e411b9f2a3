//! Token revocation (RFC 7009). Revoking either token of a grant revokes the grant.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::oidc::clients::authenticate;
use crate::oidc::http::{OAuthError, Params};
use crate::oidc::provider::Provider;
use crate::oidc::tokens;
use crate::oidc::util::hash_secret;

pub async fn handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    match revoke(&p, peer.ip(), &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), OAuthError> {
    let form = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(p, peer, headers, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    // Unknown, invalid or foreign tokens get 200 too (RFC 7009 §2.2): nothing to reveal.
    let family_id = if token.contains('.') {
        let now = p.now();
        tokens::verify_own(p.keys(), &p.config().issuer, token, "at+jwt", false, now)
            .ok()
            .filter(|c| {
                c.get("client_id").and_then(Value::as_str) == Some(client.client_id.as_str())
            })
            .and_then(|c| {
                c.get("jti")
                    .and_then(Value::as_str)
                    .and_then(|j| j.split('.').next())
                    .map(String::from)
            })
    } else {
        p.store().refresh(&hash_secret(token))?.map(|r| r.family)
    };
    if let Some(id) = family_id
        && let Some(f) = p.store().family(&id)?
        && f.client_id == client.client_id
    {
        p.store().revoke_family(&id)?;
        tracing::info!(client = %client.client_id, sub = %f.sub, "grant revoked by the client");
    }
    Ok(())
}
