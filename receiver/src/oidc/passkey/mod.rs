//! Passkeys: an inside credential bound at a transfer-code sign-in and limited by the
//! outside approval that admitted the person (it never outlives `valid_until` or a Revoke).
//!
//! One file per concern: [`config`] (the `[oidc.passkeys]` section), [`rp`] (the WebAuthn
//! relying party and its refusals), [`policy`] (what the endpoints share), [`signin`],
//! [`enrol`] and [`account`] (the endpoints), [`section`] (the login page's passkey part),
//! [`events`] (the security event log). The records live in [`crate::oidc::store`].

pub mod account;
pub mod config;
pub mod enrol;
pub mod events;
pub mod paths;
pub mod policy;
pub mod rp;
pub mod section;
pub mod signin;

use crate::oidc::error::OidcError;
use crate::oidc::provider::Provider;
use crate::oidc::store::PasskeyRecord;

/// The browser half of the ceremonies, served from the provider's own origin.
pub const SCRIPT: &str = include_str!("../../../assets/passkey.js");

/// The passkey routes, merged into the provider's router.
pub fn routes(r: axum::Router<Provider>) -> axum::Router<Provider> {
    use axum::routing::{get, post};
    r.route(paths::SIGN_IN_OPTIONS, post(signin::options))
        .route(paths::SIGN_IN, post(signin::finish))
        .route(paths::ENROL, get(enrol::show).post(enrol::finish))
        .route(paths::ENROL_OPTIONS, post(enrol::options))
        .route(paths::ENROL_SKIP, post(enrol::skip))
        .route(paths::ACCOUNT, get(account::show))
        .route(paths::ACCOUNT_REMOVE, post(account::remove))
        .route(paths::SCRIPT, get(script))
}

async fn script() -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut r = SCRIPT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

impl Provider {
    /// The security event log after `after`, oldest first (tests and operators).
    pub fn security_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::oidc::store::SecurityEvent>, OidcError> {
        self.store().events(after, limit)
    }

    /// The passkeys of a local `sub`, oldest first.
    pub fn passkeys_of(&self, sub: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        self.store().passkeys_of(sub)
    }
}

impl Provider {
    /// Makes the provider's state durable now (tests copy a data directory after it).
    pub fn flush_store(&self) -> Result<(), OidcError> {
        self.store().flush()
    }
}
