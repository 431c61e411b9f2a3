//! Request parameters (query or form body) as OAuth reads them.

use std::collections::HashMap;

/// Maximum number of parameters and length of one value.
const MAX_PARAMS: usize = 40;
const MAX_VALUE: usize = 8192;

/// Request parameters (query or form body), each at most once (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

/// Why parameters could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("parameters are not valid application/x-www-form-urlencoded UTF-8")]
    Encoding,
    #[error("too many or too large parameters")]
    TooLarge,
}

impl Params {
    pub fn parse(raw: &str) -> Result<Self, ParamError> {
        if !crate::oidc::util::form_encoding_is_strict(raw) {
            return Err(ParamError::Encoding);
        }
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            if v.len() > MAX_VALUE || k.len() > 64 || map.len() >= MAX_PARAMS {
                return Err(ParamError::TooLarge);
            }
            // An empty value counts as absent (OAuth 2.0 §3.1).
            if v.is_empty() {
                continue;
            }
            let k = k.into_owned();
            if map.insert(k.clone(), v.into_owned()).is_some() {
                return Err(ParamError::Repeated(k));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_reject_repeats_and_oversize() {
        assert_eq!(
            Params::parse("a=1&a=2").unwrap_err(),
            ParamError::Repeated("a".into())
        );
        assert_eq!(
            Params::parse(&format!("a={}", "x".repeat(9000))).unwrap_err(),
            ParamError::TooLarge
        );
        let p = Params::parse("a=x%20y&b=&c=+").unwrap();
        assert_eq!(p.get("a"), Some("x y"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" "));
        assert_eq!(Params::parse("a=%E9").unwrap_err(), ParamError::Encoding);
        assert_eq!(Params::parse("a=1%").unwrap_err(), ParamError::Encoding);
        let p = Params::parse("&&k&redirect_uri=https%3A%2F%2Fa%2Fcb%3Fx%3D1").unwrap();
        assert_eq!(p.get("k"), None);
        assert_eq!(p.get("redirect_uri"), Some("https://a/cb?x=1"));
    }
}
