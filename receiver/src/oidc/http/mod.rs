//! HTTP helpers the endpoints share: parameters, cookies, protocol errors, responses.

pub mod client_addr;
pub mod cookies;
pub mod oauth_error;
pub mod params;
pub mod responses;

pub use cookies::{
    browser_csrf, cookie, csrf_cookie, csrf_for_page, csrf_submitted, session_cookie, set_cookie,
};
pub use oauth_error::OAuthError;
pub use params::{ParamError, Params};
pub use responses::{bad_page, no_store_json, security_headers, see_other, server_page};
