//! HTTP endpoints, one file each, and the router that mounts them. What they share
//! (parameters, cookies, protocol errors, responses) lives in [`crate::oidc::http`].

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::oidc::provider::Provider;

pub mod authorize;
pub mod client_credentials;
pub mod device;
pub mod device_authorization;
pub mod discovery;
pub mod end_session;
pub mod idp_mirror;
pub mod introspection;
pub mod jwks;
pub mod login;
pub mod par;
pub mod paths;
pub mod pushed_request;
pub mod revocation;
pub mod token;
pub mod userinfo;

pub use crate::oidc::http::{
    OAuthError, ParamError, Params, cookie, no_store_json, see_other, set_cookie,
};

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
        .route(paths::PAR, post(par::handle))
        .route(
            paths::DEVICE_AUTHORIZATION,
            post(device_authorization::handle),
        )
        .route(paths::DEVICE, get(device::show).post(device::submit))
        .route(
            paths::DEVICE_CONFIRM,
            get(device::confirm_page).post(device::decide),
        )
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
        .merge(crate::oidc::passkey::routes(Router::new()))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::map_response_with_state(
            p.clone(),
            crate::oidc::http::security_headers,
        ))
        .with_state(p)
}
