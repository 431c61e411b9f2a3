//! Small helpers: randomness, hashing of secrets, comparing them, query strings, the clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A random URL-safe token of `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // aws-lc's RNG only fails if the OS has no entropy source, which we cannot survive anyway;
    // fall back to rand's OS RNG rather than panicking.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(&mut b);
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// SHA-256 of a secret, hex: the only form secrets are stored in.
pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Constant-time comparison of two strings (the length is not secret).
pub fn ct_eq(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// Form-urlencodes one value (RFC 6749 appendix B: a space becomes `+`).
pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space), refusing what
/// a lenient decoder would guess at: a `%` not followed by two hex digits, or bytes that
/// are not UTF-8 (`form_urlencoded::parse` keeps the first and replaces the second).
pub fn url_decode(s: &str) -> Option<String> {
    if !form_encoding_is_strict(s) {
        return None;
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Whether form-urlencoded text has only well-formed escapes and decodes to UTF-8. The
/// separators `&` and `=` are ASCII, so the whole text decodes to UTF-8 exactly when
/// every key and value does.
pub fn form_encoding_is_strict(raw: &str) -> bool {
    let b = raw.as_bytes();
    let escapes = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    escapes && percent_encoding::percent_decode(b).decode_utf8().is_ok()
}

/// `base?k=v&k2=v2` (or `&` if base already has a query), the values form-urlencoded as
/// OAuth's redirects are (RFC 6749 appendix B). `base` is kept byte for byte, not parsed
/// and re-serialised: a redirect URI is used exactly as the client registered it.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return base.to_string();
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{base}{sep}{query}")
}

/// Unix seconds; tests use a manual clock to move time without sleeping.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that only moves when told to.
    pub fn manual(start: u64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start))),
        }
    }

    pub fn advance(&self, secs: u64) {
        if let Some(m) = &self.manual {
            m.fetch_add(secs, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(m) => m.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_appended_to_the_uri_as_registered() {
        assert_eq!(
            with_query("http://x/cb?z=1", &[("code", "a b&c")]),
            "http://x/cb?z=1&code=a+b%26c"
        );
        assert_eq!(
            with_query("https://App.example/cb", &[("a", "1"), ("b", "é")]),
            "https://App.example/cb?a=1&b=%C3%A9"
        );
        assert_eq!(with_query("https://x/cb", &[]), "https://x/cb");
    }

    #[test]
    fn form_values_round_trip_and_malformed_ones_are_refused() {
        let s = "a b&c=d/é+%~";
        assert_eq!(url_encode(s), "a+b%26c%3Dd%2F%C3%A9%2B%25%7E");
        assert_eq!(url_decode(&url_encode(s)).unwrap(), s);
        assert_eq!(url_decode("x%20y+z").as_deref(), Some("x y z"));
        assert_eq!(url_decode("a+b%2"), None);
        assert_eq!(url_decode("a%zz"), None);
        assert_eq!(url_decode("%FF"), None);
        assert!(form_encoding_is_strict("a=%C3%A9&b=1"));
        assert!(!form_encoding_is_strict("a=%C3&b=1"));
    }

    #[test]
    fn ct_eq_compares_whole_strings() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
        assert!(ct_eq("", ""));
    }
}
