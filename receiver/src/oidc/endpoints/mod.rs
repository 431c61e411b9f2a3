//! HTTP endpoints, one file each, and what they share: parameters, cookies, errors.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::oidc::provider::Provider;

pub mod authorize;
pub mod discovery;
pub mod end_session;
pub mod idp_mirror;
pub mod introspection;
pub mod jwks;
pub mod login;
pub mod revocation;
pub mod token;
pub mod userinfo;

pub const SESSION_COOKIE: &str = "airlock_session";
pub const CSRF_COOKIE: &str = "airlock_csrf";

/// Paths, relative to the issuer.
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/jwks";
    pub const AUTHORIZE: &str = "/authorize";
    pub const LOGIN: &str = "/login";
    pub const TOKEN: &str = "/token";
    pub const USERINFO: &str = "/userinfo";
    pub const REVOKE: &str = "/revoke";
    pub const INTROSPECT: &str = "/introspect";
    pub const END_SESSION: &str = "/logout";
    pub const CSS: &str = "/assets/login.css";
    pub const IDP_MIRROR: &str = "/idp-mirror/";
}

/// Every endpoint. Bodies are limited to 16 KiB: no legitimate request is bigger.
pub fn router(p: Provider) -> Router {
    Router::new()
        .route(paths::DISCOVERY, get(discovery::handle))
        .route(paths::JWKS, get(jwks::handle))
        .route(
            paths::AUTHORIZE,
            get(authorize::get_handle).post(authorize::post_handle),
        )
        .route(paths::LOGIN, get(login::show).post(login::submit))
        .route(paths::TOKEN, post(token::handle))
        .route(
            paths::USERINFO,
            get(userinfo::handle).post(userinfo::handle),
        )
        .route(paths::REVOKE, post(revocation::handle))
        .route(paths::INTROSPECT, post(introspection::handle))
        .route(
            paths::END_SESSION,
            get(end_session::get_handle).post(end_session::post_handle),
        )
        .route(paths::CSS, get(|| async { crate::oidc::html::css() }))
        .route(paths::IDP_MIRROR, get(idp_mirror::index))
        .route("/idp-mirror/{hash}/{document}", get(idp_mirror::document))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(p)
}

/// Maximum number of parameters and length of one value.
const MAX_PARAMS: usize = 40;
const MAX_VALUE: usize = 8192;

/// Request parameters (query or form body), each at most once (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

/// Why parameters could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("parameters are not valid application/x-www-form-urlencoded UTF-8")]
    Encoding,
    #[error("too many or too large parameters")]
    TooLarge,
}

impl Params {
    pub fn parse(raw: &str) -> Result<Self, ParamError> {
        let mut map = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = crate::oidc::util::url_decode(k).ok_or(ParamError::Encoding)?;
            let v = crate::oidc::util::url_decode(v).ok_or(ParamError::Encoding)?;
            if v.len() > MAX_VALUE || k.len() > 64 || map.len() >= MAX_PARAMS {
                return Err(ParamError::TooLarge);
            }
            // An empty value counts as absent (OAuth 2.0 §3.1).
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ParamError::Repeated(k));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            line.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| v.to_string())
            })
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure for an https issuer.
pub fn set_cookie(p: &Provider, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    // Secure whenever browsers reach us over HTTPS (own TLS or a terminating proxy).
    let secure = if p.config().tls() || p.config().issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}");
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("airlock_invalid=; Max-Age=0"))
}

/// A protocol error answered as JSON (token, revocation, introspection, userinfo).
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "OIDC server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; see the receiver log",
        )
    }
}

impl From<crate::oidc::error::OidcError> for OAuthError {
    fn from(e: crate::oidc::error::OidcError) -> Self {
        OAuthError::server(e)
    }
}

impl From<crate::oidc::directory::DirectoryError> for OAuthError {
    fn from(e: crate::oidc::directory::DirectoryError) -> Self {
        OAuthError::server(e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut r = (self.status, Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"airlock\""),
            );
        }
        r
    }
}

/// JSON with `Cache-Control: no-store` (token responses and the like).
pub fn no_store_json(v: serde_json::Value) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A 303 redirect.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_reject_repeats_and_oversize() {
        assert_eq!(
            Params::parse("a=1&a=2").unwrap_err(),
            ParamError::Repeated("a".into())
        );
        assert_eq!(
            Params::parse(&format!("a={}", "x".repeat(9000))).unwrap_err(),
            ParamError::TooLarge
        );
        let p = Params::parse("a=x%20y&b=&c=+").unwrap();
        assert_eq!(p.get("a"), Some("x y"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" "));
    }

    #[test]
    fn cookies_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; airlock_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "airlock_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
