//! Paths, relative to the issuer.

pub const DISCOVERY: &str = "/.well-known/openid-configuration";
pub const JWKS: &str = "/jwks";
pub const AUTHORIZE: &str = "/authorize";
pub const LOGIN: &str = "/login";
pub const TOKEN: &str = "/token";
pub const PAR: &str = "/par";
pub const USERINFO: &str = "/userinfo";
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
pub const END_SESSION: &str = "/logout";
pub const CSS: &str = "/assets/login.css";
pub const IDP_MIRROR: &str = "/idp-mirror/";
pub const DEVICE_AUTHORIZATION: &str = "/device_authorization";
/// The page where a person types a device's user code (`verification_uri`).
pub const DEVICE: &str = "/device";
/// The approve/deny page of one device grant, after the sign-in.
pub const DEVICE_CONFIRM: &str = "/device/confirm";
