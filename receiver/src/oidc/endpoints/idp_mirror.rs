//! Read-only copies of outside IdPs' discovery documents and JWKS, ferried by IdpMirror
//! frames, so inside software that validates outside tokens never calls out.
//!
//! - `GET /idp-mirror/` lists the mirrored issuers: issuer, hash, fetched_at, seq.
//! - `GET /idp-mirror/{hash}/openid-configuration` and `GET /idp-mirror/{hash}/jwks` return
//!   the documents byte for byte, where `{hash}` is the lowercase hex SHA-256 of the issuer
//!   string exactly as the IdP names itself.
//!
//! The bytes are unchanged, so a mirrored discovery document still names the outside
//! `jwks_uri`: inside software is configured with the `/jwks` path of this mirror instead.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::oidc::directory::MirroredIdp;
use crate::oidc::provider::Provider;

/// The path segment that names a mirrored issuer.
pub fn issuer_hash(issuer: &str) -> String {
    hex::encode(Sha256::digest(issuer.as_bytes()))
}

/// The mirrors, or `None` (logged) when the store cannot be read.
fn mirrors(p: &Provider) -> Option<Vec<MirroredIdp>> {
    p.directory()
        .idp_mirrors()
        .inspect_err(|e| tracing::error!(error = %e, "cannot read IdP mirrors"))
        .ok()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable").into_response()
}

pub async fn index(State(p): State<Provider>) -> Response {
    let Some(list) = mirrors(&p) else {
        return unavailable();
    };
    let items: Vec<_> = list
        .iter()
        .map(|m| {
            let hash = issuer_hash(&m.issuer);
            json!({
                "issuer": m.issuer,
                "hash": hash,
                "openid_configuration": format!("/idp-mirror/{hash}/openid-configuration"),
                "jwks": format!("/idp-mirror/{hash}/jwks"),
                "fetched_at": m.fetched_at,
                "seq": m.seq,
            })
        })
        .collect();
    Json(json!({ "mirrors": items })).into_response()
}

pub async fn document(
    State(p): State<Provider>,
    Path((hash, document)): Path<(String, String)>,
) -> Response {
    let Some(list) = mirrors(&p) else {
        return unavailable();
    };
    let Some(m) = list.into_iter().find(|m| issuer_hash(&m.issuer) == hash) else {
        return (StatusCode::NOT_FOUND, "no IdP mirror with this issuer hash").into_response();
    };
    let bytes = match document.as_str() {
        "openid-configuration" => m.discovery,
        "jwks" => m.jwks,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "a mirror has `openid-configuration` and `jwks`",
            )
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex_of_the_issuer() {
        assert_eq!(
            issuer_hash("https://login.example.org"),
            hex::encode(Sha256::digest(b"https://login.example.org"))
        );
        assert_eq!(issuer_hash("x").len(), 64);
    }
}
