//! Minting and checking the provider's JWTs: ID tokens, RFC 9068 access tokens,
//! back-channel logout tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::oidc::config::{ClientConfig, SigningAlg};
use crate::oidc::error::OidcError;
use crate::oidc::keys::{KeySet, jwt_alg};

use crate::oidc::store::{Family, IdentitySnapshot};

/// The event claim of a back-channel logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What an identity says about itself, filtered by scope.
pub fn scoped_claims(id: &IdentitySnapshot, scope: &[String]) -> Map<String, Value> {
    let c = &id.claims;
    let has = |s: &str| scope.iter().any(|x| x == s);
    let mut m = Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    if has("profile") {
        set("name", c.name.clone().map(Value::from));
        set("given_name", c.given_name.clone().map(Value::from));
        set("family_name", c.family_name.clone().map(Value::from));
        set(
            "preferred_username",
            c.preferred_username.clone().map(Value::from),
        );
        for (k, v) in &c.extra {
            // Extra claims never override a standard or provider claim.
            if !RESERVED.contains(&k.as_str()) {
                set(k, Some(Value::from(v.clone())));
            }
        }
    }
    if has("email") {
        set("email", c.email.clone().map(Value::from));
        set("email_verified", c.email_verified.map(Value::from));
    }
    if has("groups") && !c.groups.is_empty() {
        set("groups", Some(json!(c.groups)));
    }
    m
}

const RESERVED: [&str; 24] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "auth_time",
    "acr",
    "amr",
    "azp",
    "sid",
    "at_hash",
    "c_hash",
    "scope",
    "client_id",
    "events",
    "name",
    "email",
    "email_verified",
    "groups",
    "airlock_issuer",
    "airlock_subject",
];

/// `at_hash`: left half of the hash of the access token, the hash chosen by the alg
/// (SHA-512 for Ed25519, as OpenID clients expect).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let full: Vec<u8> = match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => Sha256::digest(access_token.as_bytes()).to_vec(),
        SigningAlg::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
    };
    let half = full.get(..full.len() / 2).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(half)
}

/// Signs `claims` with the current key of `alg` (compact JWS). The header and the
/// signing input are built here so the parsed key is reused; jsonwebtoken verifies.
pub fn sign(
    keys: &KeySet,
    alg: SigningAlg,
    typ: &str,
    claims: &Value,
    now: u64,
) -> Result<String, OidcError> {
    let key = keys
        .signing_key(alg, now)
        .ok_or_else(|| OidcError::Key(format!("no {} signing key is active", alg.as_str())))?;
    let header = json!({"alg": alg.as_str(), "typ": typ, "kid": key.stored.kid});
    let mut jws = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&header).map_err(|e| OidcError::Key(e.to_string()))?);
    jws.push('.');
    jws.push_str(
        &URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(claims).map_err(|e| OidcError::Key(e.to_string()))?),
    );
    let sig = key.signer.sign(jws.as_bytes())?;
    jws.push('.');
    jws.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(jws)
}

/// Common parameters of the tokens one grant issues.
pub struct Grant<'a> {
    pub issuer: &'a str,
    pub client: &'a ClientConfig,
    pub family: &'a Family,
    pub identity: &'a IdentitySnapshot,
    pub amr: &'a [String],
    pub acr: &'a str,
    pub now: u64,
}

/// An RFC 9068 access token; returns (token, jti).
pub fn access_token(keys: &KeySet, g: &Grant<'_>, lifetime: u64) -> Result<String, OidcError> {
    // jti carries the family so introspection/userinfo can see a revoked grant.
    let jti = format!("{}.{}", g.family.id, crate::oidc::util::random_token(9));
    let claims = json!({
        "iss": g.issuer,
        "sub": g.family.sub,
        "aud": g.client.client_id,
        "client_id": g.client.client_id,
        "exp": g.now + lifetime,
        "iat": g.now,
        "jti": jti,
        "scope": g.family.scope.join(" "),
        "auth_time": g.family.auth_time,
        "acr": g.acr,
        "amr": g.amr,
        "sid": g.family.sid,
    });
    sign(
        keys,
        g.client.id_token_signed_response_alg,
        "at+jwt",
        &claims,
        g.now,
    )
}

/// An ID token for the grant, with `at_hash` of `access`.
pub fn id_token(
    keys: &KeySet,
    g: &Grant<'_>,
    access: &str,
    lifetime: u64,
) -> Result<String, OidcError> {
    let alg = g.client.id_token_signed_response_alg;
    let mut claims = scoped_claims(g.identity, &g.family.scope);
    let mut put = |k: &str, v: Value| {
        claims.insert(k.to_string(), v);
    };
    put("iss", json!(g.issuer));
    put("sub", json!(g.family.sub));
    put("aud", json!(g.client.client_id));
    put("azp", json!(g.client.client_id));
    put("exp", json!(g.now + lifetime));
    put("iat", json!(g.now));
    put("auth_time", json!(g.family.auth_time));
    put("sid", json!(g.family.sid));
    put("amr", json!(g.amr));
    put("acr", json!(g.acr));
    put("at_hash", json!(at_hash(alg, access)));
    put("airlock_issuer", json!(g.identity.issuer));
    put("airlock_subject", json!(g.identity.subject));
    put("airlock_seq", json!(g.identity.seq));
    if let Some(n) = &g.family.nonce {
        put("nonce", json!(n));
    }
    sign(keys, alg, "JWT", &Value::Object(claims), g.now)
}

/// A back-channel logout token (OpenID Back-Channel Logout 1.0, typ logout+jwt).
pub fn logout_token(
    keys: &KeySet,
    issuer: &str,
    client: &ClientConfig,
    sub: &str,
    sid: &str,
    now: u64,
) -> Result<String, OidcError> {
    let claims = json!({
        "iss": issuer,
        "sub": sub,
        "aud": client.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": crate::oidc::util::random_token(16),
        "sid": sid,
        "events": { BACKCHANNEL_EVENT: {} },
    });
    sign(
        keys,
        client.id_token_signed_response_alg,
        "logout+jwt",
        &claims,
        now,
    )
}

/// Why one of our own tokens was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenCheckError {
    #[error("not a JWT")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("wrong token type")]
    WrongType,
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Verifies a token we issued: known kid, its algorithm, signature, `iss`, `typ`;
/// `exp` only when `check_exp` (an id_token_hint may have expired).
pub fn verify_own(
    keys: &KeySet,
    issuer: &str,
    token: &str,
    typ: &str,
    check_exp: bool,
    now: u64,
) -> Result<Map<String, Value>, TokenCheckError> {
    if token.len() > 8192 {
        return Err(TokenCheckError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenCheckError::Malformed)?;
    let kid = header.kid.ok_or(TokenCheckError::UnknownKey)?;
    let key = keys.by_kid(&kid).ok_or(TokenCheckError::UnknownKey)?;
    if header.alg != jwt_alg(key.stored.alg) {
        return Err(TokenCheckError::UnknownKey);
    }
    if !header.typ.is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
        return Err(TokenCheckError::WrongType);
    }
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.validate_aud = false;
    v.validate_exp = false;
    v.required_spec_claims = ["iss", "sub"].iter().map(|s| s.to_string()).collect();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v)
        .map_err(|e| TokenCheckError::Invalid(e.to_string()))?;
    if check_exp {
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp <= now {
            return Err(TokenCheckError::Invalid("expired".into()));
        }
    }
    Ok(data.claims)
}
