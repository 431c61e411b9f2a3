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
        let mut map = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = crate::oidc::util::url_decode(k).ok_or(ParamError::Encoding)?;
            let v = crate::oidc::util::url_decode(v).ok_or(ParamError::Encoding)?;
            if v.len() > MAX_VALUE || k.len() > 64 || map.len() >= MAX_PARAMS {
                return Err(ParamError::TooLarge);
            }
            // An empty value counts as absent (OAuth 2.0 §3.1).
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone(), v).is_some() {
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
    }
}
