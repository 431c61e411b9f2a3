//! Pushed authorization requests (RFC 9126): `POST /par` takes the authorization
//! parameters over the back channel, with client authentication as at the token endpoint
//! (a public client names itself), validates them exactly as `/authorize` does and
//! answers a `request_uri` that `/authorize` accepts once, within [`PUSH_LIFETIME`], from
//! the client that pushed it only.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::oidc::budget::Refused;
use crate::oidc::clients::authenticate;
use crate::oidc::endpoints::authorize;
use crate::oidc::endpoints::pushed_request::REQUEST_URI_PREFIX;
use crate::oidc::http::{OAuthError, Params, no_store_json};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::Provider;
use crate::oidc::store::PushedRequest;
use crate::oidc::util::{hash_secret, random_token};

/// Seconds a pushed request may wait for its `/authorize` (RFC 9126 §2.2 suggests a
/// short life: it only has to survive one browser redirect).
pub const PUSH_LIFETIME: u64 = 60;

/// The authorization parameters `/authorize` reads; only these are kept from a push
/// (never the client's credentials), each bounded by [`Params::parse`].
const AUTHORIZATION_PARAMS: [&str; 12] = [
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "max_age",
    "id_token_hint",
    "acr_values",
];

pub async fn handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = push(&p, peer.ip(), &headers, &body).await;
    p.metrics()
        .answer(Counter::ParRequests, Counter::ParErrors, result)
}

async fn push(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, OAuthError> {
    let form = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(p, peer, headers, &form).await?;
    if form.get("request_uri").is_some() {
        return Err(OAuthError::invalid_request(
            "request_uri cannot be pushed: push the authorization parameters themselves",
        ));
    }
    if form.get("request").is_some() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "request_not_supported",
            "request objects are not supported; push the parameters as form fields",
        ));
    }
    authorize::check_pushed(p, &client, &form)?;
    let secret = random_token(32);
    let id = hash_secret(&secret);
    let expires_at = p.now() + PUSH_LIFETIME;
    let address = p.client_key(peer, headers);
    match p.admit_push(&address, &id, expires_at) {
        Ok(()) => {}
        Err(Refused::Key) => {
            return Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!(
                    "{} pushed requests are already waiting from this address; use them or wait {PUSH_LIFETIME} s",
                    p.config().max_pending_per_address
                ),
            ));
        }
        Err(Refused::Total) => {
            return Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!("too many pushed requests are waiting; try again in {PUSH_LIFETIME} s"),
            ));
        }
    }
    let record = PushedRequest {
        client_id: client.client_id.clone(),
        params: AUTHORIZATION_PARAMS
            .iter()
            .filter_map(|k| form.get(k).map(|v| ((*k).to_string(), v.to_string())))
            .collect(),
        expires_at,
    };
    if let Err(e) = p.store().put_pushed(&id, &record) {
        p.release_push(&id);
        return Err(e.into());
    }
    let mut r = no_store_json(json!({
        "request_uri": format!("{REQUEST_URI_PREFIX}{secret}"),
        "expires_in": PUSH_LIFETIME,
    }));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}
