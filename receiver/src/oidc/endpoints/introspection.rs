//! Token introspection (RFC 7662) for confidential clients (resource servers).

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::oidc::clients::authenticate;
use crate::oidc::endpoints::userinfo::live_access_token;
use crate::oidc::http::{OAuthError, Params, no_store_json};
use crate::oidc::provider::Provider;
use crate::oidc::util::hash_secret;

pub async fn handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    match introspect(&p, peer.ip(), &headers, &body).await {
        Ok(v) => no_store_json(v),
        Err(e) => e.into_response(),
    }
}

async fn introspect(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<Value, OAuthError> {
    let form = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(p, peer, headers, &form).await?;
    if client.public {
        return Err(OAuthError::invalid_client(
            "public clients may not introspect tokens",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let inactive = json!({"active": false});
    if token.contains('.') {
        let Some((claims, family)) = live_access_token(p, token) else {
            return Ok(inactive);
        };
        if p.current_identity(&family.sub, &family.identity)?.is_err() {
            return Ok(inactive);
        }
        let mut out = json!({"active": true, "token_type": "Bearer"});
        for k in [
            "scope",
            "client_id",
            "sub",
            "exp",
            "iat",
            "iss",
            "aud",
            "jti",
            "sid",
            "auth_time",
            "acr",
        ] {
            if let Some(v) = claims.get(k) {
                out[k] = v.clone();
            }
        }
        return Ok(out);
    }
    let now = p.now();
    let Some(rt) = p.store().refresh(&hash_secret(token))? else {
        return Ok(inactive);
    };
    let Some(family) = p.store().family(&rt.family)? else {
        return Ok(inactive);
    };
    if rt.used || family.revoked || rt.expires_at <= now {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": family.scope.join(" "),
        "client_id": family.client_id,
        "sub": family.sub,
        "exp": rt.expires_at,
        "iss": p.config().issuer,
        "sid": family.sid,
    }))
}
