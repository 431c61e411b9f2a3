//! `/.well-known/openid-configuration`: exactly what is implemented.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::oidc::config::SigningAlg;
use crate::oidc::endpoints::paths;
use crate::oidc::provider::Provider;

pub fn document(issuer: &str) -> Value {
    let algs: Vec<&str> = SigningAlg::ALL.iter().map(|a| a.as_str()).collect();
    let at = |p: &str| format!("{issuer}{p}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": at(paths::AUTHORIZE),
        "token_endpoint": at(paths::TOKEN),
        "device_authorization_endpoint": at(paths::DEVICE_AUTHORIZATION),
        "userinfo_endpoint": at(paths::USERINFO),
        "jwks_uri": at(paths::JWKS),
        "revocation_endpoint": at(paths::REVOKE),
        "introspection_endpoint": at(paths::INTROSPECT),
        "end_session_endpoint": at(paths::END_SESSION),
        "pushed_authorization_request_endpoint": at(paths::PAR),
        "scopes_supported": crate::oidc::config::SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", crate::oidc::device::GRANT_TYPE],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "acr_values_supported": [
            crate::oidc::login::LoginMethod::TransferCode.acr(),
            crate::oidc::login::LoginMethod::PASSKEY_ACR
        ],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash",
            "name", "given_name", "family_name", "preferred_username", "email", "email_verified", "groups",
            "airlock_issuer", "airlock_subject", "airlock_seq"
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
    })
}

pub async fn handle(State(p): State<Provider>) -> Json<Value> {
    let mut d = document(&p.config().issuer);
    d["require_pushed_authorization_requests"] =
        json!(p.config().require_pushed_authorization_requests);
    Json(d)
}
