//! Cookies as both daemons write and read them.
//!
//! Every cookie is `HttpOnly; SameSite=Lax; Path=/` with no `Domain`. Over https it is also
//! `Secure`, and its name carries the `__Host-` prefix: browsers then accept it only with
//! `Secure`, `Path=/` and no `Domain`, so neither a sibling subdomain nor a plain-http page
//! can plant or overwrite it. Browsers refuse `__Host-` cookies without `Secure`, so over
//! plain http (a loopback test, the demo) the names are unprefixed.

use http::{HeaderMap, HeaderValue, header};

/// The prefix that makes browsers bind a cookie to the exact origin.
pub const HOST_PREFIX: &str = "__Host-";

/// A cookie's two names: unprefixed over plain http, [`HOST_PREFIX`]ed over https.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieName {
    /// The name over plain http.
    pub plain: &'static str,
    /// The name over https: `__Host-` and the plain name.
    pub host: &'static str,
}

impl CookieName {
    /// The name to use when browsers reach the daemon over https (`secure`) or not.
    pub fn get(self, secure: bool) -> &'static str {
        if secure { self.host } else { self.plain }
    }

    /// Whether `host` is the plain name with the prefix (the daemons' tests check theirs).
    pub fn is_consistent(self) -> bool {
        self.host.strip_prefix(HOST_PREFIX) == Some(self.plain)
    }
}

/// Why a `Set-Cookie` value was not made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CookieError {
    /// Name or value outside RFC 6265's cookie-octets (the daemons only set random tokens,
    /// so this is a bug, not bad input).
    #[error("cookie {0} has a name or value that cannot be sent in a Set-Cookie header")]
    Invalid(String),
    /// A `__Host-` cookie without `Secure`: browsers would drop it.
    #[error("cookie {0} has the __Host- prefix but is not Secure; browsers would refuse it")]
    HostWithoutSecure(String),
}

/// A `Set-Cookie` value: `name=value; Path=/; HttpOnly; SameSite=Lax`, then `Max-Age`
/// when given (0 deletes the cookie; none makes a session cookie) and `Secure` over https.
pub fn set_cookie(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<u64>,
) -> Result<HeaderValue, CookieError> {
    let token = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    let octets = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\",;\\".contains(&b))
    };
    if name.is_empty() || !token(name) || !octets(value) {
        return Err(CookieError::Invalid(name.to_string()));
    }
    if name.starts_with(HOST_PREFIX) && !secure {
        return Err(CookieError::HostWithoutSecure(name.to_string()));
    }
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax{age}{secure}"
    ))
    .map_err(|_| CookieError::Invalid(name.to_string()))
}

/// The value of cookie `name`: the first one named so across every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; s=xyz; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3;s=later"));
        assert_eq!(cookie(&h, "s"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "nope"), None);
        assert_eq!(cookie(&HeaderMap::new(), "s"), None);
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let v = set_cookie("__Host-s", "abc", true, Some(600)).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-s=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Secure"
        );
        let v = set_cookie("s", "", false, Some(0)).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "s=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
        let v = set_cookie("s", "t", false, None).unwrap();
        assert_eq!(v.to_str().unwrap(), "s=t; Path=/; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn bad_cookies_are_not_made() {
        assert_eq!(
            set_cookie("__Host-s", "a", false, None),
            Err(CookieError::HostWithoutSecure("__Host-s".into()))
        );
        assert!(set_cookie("s", "a;Domain=evil", true, None).is_err());
        assert!(set_cookie("s", "a\r\nX: y", true, None).is_err());
        assert!(set_cookie("", "a", true, None).is_err());
        assert!(set_cookie("a=b", "c", true, None).is_err());
    }

    #[test]
    fn names_follow_the_scheme() {
        let n = CookieName {
            plain: "airlock_x",
            host: "__Host-airlock_x",
        };
        assert!(n.is_consistent());
        assert_eq!(n.get(true), "__Host-airlock_x");
        assert_eq!(n.get(false), "airlock_x");
        assert!(
            !CookieName {
                plain: "a",
                host: "__Host-b"
            }
            .is_consistent()
        );
    }
}
