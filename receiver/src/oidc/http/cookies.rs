//! The provider's cookies: names, reading one, writing one.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::oidc::provider::Provider;

pub const SESSION_COOKIE: &str = "airlock_session";
pub const CSRF_COOKIE: &str = "airlock_csrf";

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            line.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| v.to_string())
            })
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure for an https issuer.
pub fn set_cookie(p: &Provider, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    // Secure whenever browsers reach us over HTTPS (own TLS or a terminating proxy).
    let secure = if p.config().tls() || p.config().issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}");
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("airlock_invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; airlock_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "airlock_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
