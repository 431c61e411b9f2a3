//! Paths of the passkey endpoints, relative to the issuer.

pub const SIGN_IN_OPTIONS: &str = "/passkey/sign-in/options";
pub const SIGN_IN: &str = "/passkey/sign-in";
pub const ENROL: &str = "/passkey/enrol";
pub const ENROL_OPTIONS: &str = "/passkey/enrol/options";
pub const ENROL_SKIP: &str = "/passkey/enrol/skip";
pub const ACCOUNT: &str = "/account";
pub const ACCOUNT_REMOVE: &str = "/account/remove";
pub const SCRIPT: &str = "/assets/passkey.js";
