//! Claims as they arrive (loosely typed JSON), before the policy filter types and trims them.

use std::collections::BTreeMap;

/// Token-protocol claims that describe the token, not the person: they never cross.
pub const REGISTERED_CLAIMS: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "nonce",
    "auth_time",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
    "acr",
];

/// Claim name -> JSON value, exactly as submitted or as found in a verified token.
pub type InputClaims = BTreeMap<String, serde_json::Value>;

/// Drops the registered token claims from a token payload, keeping the person's claims.
pub fn person_claims(payload: serde_json::Map<String, serde_json::Value>) -> InputClaims {
    payload
        .into_iter()
        .filter(|(name, _)| !REGISTERED_CLAIMS.contains(&name.as_str()))
        .collect()
}

/// The `email` claim if it is a string.
pub fn email(claims: &InputClaims) -> Option<&str> {
    claims.get("email").and_then(|v| v.as_str())
}

/// The `groups` claim as strings (non-strings ignored); empty if absent.
pub fn groups(claims: &InputClaims) -> Vec<&str> {
    match claims.get("groups") {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|g| g.as_str()).collect(),
        Some(serde_json::Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    }
}
