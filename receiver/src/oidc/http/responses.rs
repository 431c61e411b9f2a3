//! Responses the endpoints share: no-store JSON, redirects, error pages.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oidc::html;
use crate::oidc::provider::Provider;

/// Headers every answer carries: `nosniff`; HSTS when browsers reach us over HTTPS (own
/// TLS or a terminating proxy; browsers ignore it over plain HTTP anyway); and with
/// `Cache-Control: no-store` (token answers and their errors) `Pragma: no-cache` for
/// HTTP/1.0 caches (RFC 6749 § 5.1).
pub async fn security_headers(
    axum::extract::State(p): axum::extract::State<Provider>,
    mut r: Response,
) -> Response {
    let https = p.config().tls() || p.config().issuer.starts_with("https://");
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if h.get(header::CACHE_CONTROL)
        .is_some_and(|v| v == "no-store")
    {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    r
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

/// A 400 page for a request that cannot even be redirected back.
pub fn bad_page(message: &str, code: &str) -> Response {
    html::error_page(
        StatusCode::BAD_REQUEST,
        "Sign-in request not accepted",
        message,
        code,
    )
}

/// A 500 page; the error goes to the log, not to the browser.
pub fn server_page(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "OIDC server error");
    html::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sign-in is unavailable",
        "The sign-in service hit an internal error. Try again in a minute.",
        "server_error",
    )
}
