//! The provider's cookies: names, reading one, writing one, and the CSRF token.
//!
//! Over https (own TLS or a terminating proxy, i.e. an `https://` issuer) the cookies are
//! `Secure` and named with the `__Host-` prefix; on a plain-http issuer (the demo's
//! `http://localhost:8443`) they are unprefixed. The attributes and the reasons are
//! [`airlock_daemon::cookie`]'s, shared with the sender's portal.
//!
//! The CSRF token is minted by the server: a random value and its HMAC under a key
//! derived from the published signing keys (shared by every receiver of a cluster, see
//! [`crate::oidc::keys::KeySet::cookie_mac`]). A CSRF cookie whose MAC does not verify
//! (a value an attacker chose) is neither adopted nor accepted: a fresh one is minted.

use airlock_daemon::cookie::CookieName;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::oidc::provider::Provider;
use crate::oidc::util::{ct_eq, random_token};

/// The session cookie's name over plain http.
pub const SESSION_COOKIE: &str = "airlock_session";
/// The CSRF cookie's name over plain http.
pub const CSRF_COOKIE: &str = "airlock_csrf";
/// The session cookie's name over https.
pub const SESSION_COOKIE_HOST: &str = "__Host-airlock_session";
/// The CSRF cookie's name over https.
pub const CSRF_COOKIE_HOST: &str = "__Host-airlock_csrf";

const SESSION: CookieName = CookieName {
    plain: SESSION_COOKIE,
    host: SESSION_COOKIE_HOST,
};
const CSRF: CookieName = CookieName {
    plain: CSRF_COOKIE,
    host: CSRF_COOKIE_HOST,
};

/// Whether browsers reach the provider over https (own TLS or a terminating proxy).
pub fn secure(p: &Provider) -> bool {
    p.config().tls() || p.config().issuer.starts_with("https://")
}

/// The name of the session cookie for this provider.
pub fn session_cookie(p: &Provider) -> &'static str {
    SESSION.get(secure(p))
}

/// The name of the CSRF cookie for this provider.
pub fn csrf_cookie(p: &Provider) -> &'static str {
    CSRF.get(secure(p))
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    airlock_daemon::cookie::cookie(headers, name).map(str::to_string)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, no Domain, Secure over https
/// (which the `__Host-` names of [`session_cookie`] and [`csrf_cookie`] require).
pub fn set_cookie(p: &Provider, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    airlock_daemon::cookie::set_cookie(name, value, secure(p), max_age).unwrap_or_else(|e| {
        // Names are constants and values random tokens: only a bug gets here.
        tracing::error!(error = %e, "cannot set a cookie");
        HeaderValue::from_static("airlock_invalid=; Max-Age=0")
    })
}

/// A fresh CSRF token: `random.mac`, the MAC under the current cookie key.
pub fn mint_csrf(p: &Provider) -> String {
    let nonce = random_token(16);
    match p.keys().cookie_mac(p.now()) {
        Some(key) => {
            let tag = aws_lc_rs::hmac::sign(&key, nonce.as_bytes());
            format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
        }
        // No key loaded (cannot happen after start-up): a token nothing will accept.
        None => nonce,
    }
}

/// Whether `token` is a CSRF token this provider (or another receiver of its cluster)
/// minted, under any published key.
pub fn csrf_minted(p: &Provider, token: &str) -> bool {
    let Some((nonce, tag)) = token.split_once('.') else {
        return false;
    };
    if nonce.len() != 22 || tag.len() != 43 {
        return false;
    }
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    p.keys()
        .cookie_macs()
        .iter()
        .any(|k| aws_lc_rs::hmac::verify(k, nonce.as_bytes(), &tag).is_ok())
}

/// This browser's CSRF token if the server minted it.
pub fn browser_csrf(p: &Provider, headers: &HeaderMap) -> Option<String> {
    cookie(headers, csrf_cookie(p)).filter(|c| csrf_minted(p, c))
}

/// The CSRF token for a page: this browser's (if minted here), else a fresh one with
/// the `Set-Cookie` that gives it to the browser.
pub fn csrf_for_page(p: &Provider, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match browser_csrf(p, headers) {
        Some(c) => (c, None),
        None => {
            let c = mint_csrf(p);
            let h = set_cookie(p, csrf_cookie(p), &c, None);
            (c, Some(h))
        }
    }
}

/// Double submit: the form's token equals this browser's CSRF cookie, which the server
/// minted.
pub fn csrf_submitted(p: &Provider, headers: &HeaderMap, form: Option<&str>) -> bool {
    match (form, browser_csrf(p, headers)) {
        (Some(f), Some(c)) => ct_eq(f, &c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_names_carry_the_host_prefix() {
        assert!(SESSION.is_consistent() && CSRF.is_consistent());
    }
}
