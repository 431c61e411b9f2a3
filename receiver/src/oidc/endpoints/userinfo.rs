//! UserInfo: the claims of a live grant, by bearer access token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::oidc::http::no_store_json;
use crate::oidc::provider::Provider;
use crate::oidc::store::Family;
use crate::oidc::tokens::scoped_claims;

fn bearer_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let v = format!("Bearer error=\"{error}\", error_description=\"{description}\"");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Checks an access token and its grant: signature, type, expiry, family not revoked.
pub fn live_access_token(p: &Provider, token: &str) -> Option<(Arc<Map<String, Value>>, Family)> {
    let now = p.now();
    let claims = p.verified_access_token(token, now)?;
    let jti = claims.get("jti").and_then(Value::as_str)?;
    let family_id = jti.split('.').next()?;
    let family = p.store().family(family_id).ok()??;
    (!family.revoked).then_some((claims, family))
}

pub async fn handle(State(p): State<Provider>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = token else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let Some((claims, family)) = live_access_token(&p, token.trim()) else {
        return bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        );
    };
    if crate::oidc::endpoints::client_credentials::is_client_grant(&family) {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "a client_credentials token has no user to describe",
        );
    }
    let identity = match p.current_identity(&family.sub, &family.identity) {
        Ok(Ok(i)) => i,
        Ok(Err(_)) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the user's access has ended",
            );
        }
        Err(e) => return crate::oidc::http::OAuthError::server(e).into_response(),
    };
    let scope: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .map(String::from)
        .collect();
    let mut out = scoped_claims(&identity, &scope);
    out.insert("sub".into(), json!(family.sub));
    no_store_json(Value::Object(out))
}
