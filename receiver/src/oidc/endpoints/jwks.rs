//! The JWK Set: every key that is published (upcoming, current, retiring).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::oidc::provider::Provider;

pub async fn handle(State(p): State<Provider>) -> Response {
    let jwks = p.keys().jwks(p.now());
    let mut r = axum::Json(jwks).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}
