//! Outside ID tokens: verified against the issuer's pinned JWKS file before anything is sent.
//!
//! The unverified `iss` is read only to pick which pinned key set to verify with; the
//! verification itself then checks signature, `iss`, `aud`, `exp`, `nbf` and `sub`, and the
//! sender adds a maximum age on `iat` (a ticket is for someone who logged in just now), refuses
//! an `iat` in the future (beyond the leeway), checks `azp` as OpenID Connect Core § 3.1.3.7
//! says (required when there are several audiences, and always equal to the sender's client
//! id when present), and refuses a header `typ` other than `JWT` (an access token, `at+jwt`,
//! or a logout token is not an ID token).
//! Symmetric (HS*) algorithms are refused: the sender must never hold an IdP's secret.

use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use thiserror::Error;

use crate::config::TrustedIssuer;

/// Why a token was refused.
#[derive(Debug, Error, PartialEq)]
pub enum TokenError {
    #[error("not a well-formed JWT: {0}")]
    Malformed(String),
    #[error(
        "issuer {0:?} is not a trusted issuer: add a [[trusted_issuers]] entry with its pinned JWKS"
    )]
    ForeignIssuer(String),
    #[error(
        "algorithm {0:?} is refused: only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are accepted"
    )]
    Algorithm(String),
    #[error(
        "no key in the pinned JWKS of {issuer} matches kid {kid:?}: refresh the JWKS file if the issuer rotated keys"
    )]
    UnknownKey { issuer: String, kid: String },
    #[error("the pinned JWKS key {kid:?} does not fit algorithm {alg}")]
    KeyMismatch { kid: String, alg: String },
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("wrong audience: the token is not for this sender")]
    Audience,
    #[error("wrong issuer")]
    Issuer,
    #[error("required claim `{0}` is missing")]
    MissingClaim(String),
    #[error("token was issued {age} s ago; at most {max} s are allowed")]
    TooOld { age: u64, max: u64 },
    #[error(
        "token was issued in the future (iat {iat}, now {now}, leeway {leeway} s): check the clocks of the sender and the IdP"
    )]
    IssuedInFuture { iat: u64, now: u64, leeway: u64 },
    #[error("the token has several audiences, so `azp` is required and must be {audience:?}")]
    AzpMissing { audience: String },
    #[error("the token's authorized party (azp) is {azp:?}, not this sender ({audience:?})")]
    AuthorizedParty { azp: String, audience: String },
    #[error(
        "header typ {0:?} is not an ID token (an access or logout token?): present the ID token"
    )]
    NotAnIdToken(String),
    #[error("token claims are unusable: {0}")]
    Claims(String),
}

/// Errors loading the pinned JWKS files.
#[derive(Debug, Error)]
pub enum JwksError {
    #[error("cannot read pinned JWKS {file} of issuer {issuer}: {error}")]
    Read {
        file: PathBuf,
        issuer: String,
        error: std::io::Error,
    },
    #[error("pinned JWKS {file} of issuer {issuer} is not a JWK set: {error}")]
    Parse {
        file: PathBuf,
        issuer: String,
        error: String,
    },
    #[error("no JWT crypto provider is available in this build")]
    NoCrypto,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: String,
    pub jti: Option<String>,
    /// Every claim of the payload (registered ones are dropped later).
    pub payload: serde_json::Map<String, serde_json::Value>,
}

struct PinnedIssuer {
    config: TrustedIssuer,
    keys: JwkSet,
}

/// The trusted issuers with their pinned key sets.
pub struct JwtVerifier {
    issuers: Vec<PinnedIssuer>,
}

#[derive(serde::Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

impl JwtVerifier {
    /// A verifier that trusts no issuer.
    pub fn empty() -> Self {
        Self {
            issuers: Vec::new(),
        }
    }

    /// Reads every pinned JWKS file.
    pub fn load(trusted: &[TrustedIssuer]) -> Result<Self, JwksError> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(JwksError::NoCrypto);
        }
        let mut issuers = Vec::new();
        for t in trusted {
            let text = std::fs::read_to_string(&t.jwks_file).map_err(|error| JwksError::Read {
                file: t.jwks_file.clone(),
                issuer: t.issuer.clone(),
                error,
            })?;
            let keys: JwkSet = serde_json::from_str(&text).map_err(|e| JwksError::Parse {
                file: t.jwks_file.clone(),
                issuer: t.issuer.clone(),
                error: e.to_string(),
            })?;
            issuers.push(PinnedIssuer {
                config: t.clone(),
                keys,
            });
        }
        Ok(Self { issuers })
    }

    /// Verifies a compact JWT; `now` is unix seconds (used for the `iat` age check).
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        check_typ(header.typ.as_deref())?;
        // Only to choose the key set; nothing of it is used before verification below.
        let claimed: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        let iss = claimed.iss.unwrap_or_default();
        let pinned = self
            .issuers
            .iter()
            .find(|p| p.config.issuer == iss)
            .ok_or(TokenError::ForeignIssuer(iss.clone()))?;
        let jwk = pick_key(pinned, header.kid.as_deref())?;
        // A key pinned for one algorithm is never used with another.
        if let Some(pinned_alg) = jwk.common.key_algorithm
            && Algorithm::try_from(pinned_alg).ok() != Some(header.alg)
        {
            return Err(TokenError::KeyMismatch {
                kid: header.kid.clone().unwrap_or_default(),
                alg: format!("{:?}", header.alg),
            });
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::KeyMismatch {
            kid: header.kid.clone().unwrap_or_default(),
            alg: format!("{:?}", header.alg),
        })?;
        let validation = validation(&pinned.config, header.alg);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| map_error(e.kind(), &header.kid, header.alg))?;
        verified(data.claims, &pinned.config, now)
    }
}

/// An ID token's `typ`, when the IdP sets one, is `JWT` (RFC 7519 § 5.1; case-insensitive,
/// with or without the `application/` prefix). Anything else is another kind of token.
fn check_typ(typ: Option<&str>) -> Result<(), TokenError> {
    let Some(typ) = typ else { return Ok(()) };
    let bare = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| typ.get(12..).unwrap_or(""));
    if bare.eq_ignore_ascii_case("jwt") {
        Ok(())
    } else {
        Err(TokenError::NotAnIdToken(typ.to_string()))
    }
}

/// OpenID Connect Core § 3.1.3.7 items 4 and 5.
fn check_azp(
    payload: &serde_json::Map<String, serde_json::Value>,
    audience: &str,
) -> Result<(), TokenError> {
    let several = matches!(payload.get("aud"), Some(serde_json::Value::Array(a)) if a.len() > 1);
    match payload.get("azp") {
        None if several => Err(TokenError::AzpMissing {
            audience: audience.to_string(),
        }),
        None => Ok(()),
        Some(serde_json::Value::String(azp)) if azp == audience => Ok(()),
        Some(other) => Err(TokenError::AuthorizedParty {
            azp: other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string),
            audience: audience.to_string(),
        }),
    }
}

fn pick_key<'a>(pinned: &'a PinnedIssuer, kid: Option<&str>) -> Result<&'a Jwk, TokenError> {
    let unknown = || TokenError::UnknownKey {
        issuer: pinned.config.issuer.clone(),
        kid: kid.unwrap_or("(none)").to_string(),
    };
    match kid {
        Some(kid) => pinned.keys.find(kid).ok_or_else(unknown),
        // Without a kid, only an unambiguous one-key set is usable.
        None => match pinned.keys.keys.as_slice() {
            [only] => Ok(only),
            _ => Err(unknown()),
        },
    }
}

fn validation(config: &TrustedIssuer, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[&config.issuer]);
    v.set_audience(&[&config.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = config.leeway_secs;
    v
}

fn map_error(kind: &ErrorKind, kid: &Option<String>, alg: Algorithm) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat | ErrorKind::InvalidEcdsaKey => {
            TokenError::KeyMismatch {
                kid: kid.clone().unwrap_or_default(),
                alg: format!("{alg:?}"),
            }
        }
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

fn verified(
    payload: serde_json::Map<String, serde_json::Value>,
    config: &TrustedIssuer,
    now: u64,
) -> Result<VerifiedToken, TokenError> {
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let issuer = text("iss").ok_or(TokenError::MissingClaim("iss".into()))?;
    let subject = text("sub").ok_or(TokenError::Claims("sub must be a string".into()))?;
    let iat = payload
        .get("iat")
        .and_then(|v| v.as_u64())
        .ok_or(TokenError::MissingClaim("iat".into()))?;
    if iat > now.saturating_add(config.leeway_secs) {
        return Err(TokenError::IssuedInFuture {
            iat,
            now,
            leeway: config.leeway_secs,
        });
    }
    check_azp(&payload, &config.audience)?;
    let age = now.saturating_sub(iat);
    if age > config.max_token_age_secs {
        return Err(TokenError::TooOld {
            age,
            max: config.max_token_age_secs,
        });
    }
    Ok(VerifiedToken {
        issuer,
        subject,
        jti: text("jti"),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_accepts_only_jwt() {
        for ok in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
            Some("Application/JWT"),
        ] {
            assert_eq!(check_typ(ok), Ok(()), "{ok:?}");
        }
        for bad in ["at+jwt", "application/at+jwt", "JOSE", "", "application/"] {
            assert!(
                matches!(check_typ(Some(bad)), Err(TokenError::NotAnIdToken(_))),
                "{bad}"
            );
        }
    }
}
