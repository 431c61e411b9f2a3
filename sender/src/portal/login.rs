//! The relying-party half of a login, with the `openidconnect` crate: the authorization
//! request (code flow, PKCE S256, state, nonce) and the callback (code exchange, full
//! ID-token validation: signature against the cached JWKS, allowed algorithms, iss, aud,
//! azp, exp, iat, nonce).

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreTokenResponse,
};
use openidconnect::url::Url;
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use thiserror::Error;

use super::http_client::HttpClient;
use super::idp::{Documents, Idp};
use crate::intake::claims::{InputClaims, person_claims};

#[derive(Debug, Error)]
pub enum LoginError {
    #[error("the IdP's configuration is not usable: {0}")]
    Config(String),
    #[error("the IdP did not accept the authorization code: {0}")]
    Exchange(String),
    #[error("the IdP's token response has no ID token (is the `openid` scope registered?)")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the ID token's signature does not verify against the IdP's keys: {0}")]
    Signature(String),
    #[error("the ID token was issued {age} s ago; at most {max} s are accepted")]
    TooOld { age: i64, max: u64 },
    #[error("the ID token was issued {ahead} s in the future; check the clocks")]
    FromTheFuture { ahead: i64 },
}

/// Clock skew tolerated on `iat`.
const IAT_LEEWAY_SECS: i64 = 60;

/// An authorization request ready to send the browser to.
pub struct Started {
    pub url: Url,
    pub state: String,
    pub pkce_verifier: PkceCodeVerifier,
    pub nonce: Nonce,
}

/// A login the IdP vouched for, after every check.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub issuer: String,
    pub subject: String,
    /// The person's claims from the validated ID token (token-protocol claims removed).
    pub claims: InputClaims,
    /// The token's `jti`, if any (kept as the approval's ticket reference).
    pub jti: Option<String>,
}

fn client(
    idp: &Idp,
    docs: &Documents,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    LoginError,
> {
    let redirect = RedirectUrl::new(idp.config.redirect_url.clone())
        .map_err(|e| LoginError::Config(e.to_string()))?;
    Ok(CoreClient::from_provider_metadata(
        docs.metadata.clone(),
        ClientId::new(idp.config.client_id.clone()),
        idp.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

/// Builds the authorization URL with fresh state, nonce and PKCE (S256) challenge.
pub fn start(idp: &Idp, docs: &Documents) -> Result<Started, LoginError> {
    let client = client(idp, docs)?;
    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in idp.config.scopes.iter().filter(|s| s.as_str() != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.url();
    Ok(Started {
        url,
        state: state.secret().clone(),
        pkce_verifier,
        nonce,
    })
}

fn allowed_algs(idp: &Idp) -> Result<Vec<CoreJwsSigningAlgorithm>, LoginError> {
    idp.config
        .id_token_algs
        .iter()
        .map(|a| {
            serde_json::from_value(serde_json::Value::String(a.clone()))
                .map_err(|e| LoginError::Config(format!("algorithm {a:?}: {e}")))
        })
        .collect()
}

/// Exchanges the authorization code (with the PKCE verifier) for tokens.
pub async fn exchange(
    idp: &Idp,
    docs: &Documents,
    http: &HttpClient,
    code: String,
    pkce_verifier: PkceCodeVerifier,
) -> Result<CoreTokenResponse, LoginError> {
    client(idp, docs)?
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| LoginError::Config(e.to_string()))?
        .set_pkce_verifier(pkce_verifier)
        .request_async(http)
        .await
        .map_err(|e| LoginError::Exchange(describe_request_error(&e)))
}

/// Validates the ID token of `tokens` against `docs` (its JWKS) and reads its claims.
pub fn verify(
    idp: &Idp,
    docs: &Documents,
    tokens: &CoreTokenResponse,
    nonce: &Nonce,
    max_token_age_secs: u64,
    now: i64,
) -> Result<VerifiedLogin, LoginError> {
    let client = client(idp, docs)?;
    let id_token = tokens.id_token().ok_or(LoginError::NoIdToken)?;
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(allowed_algs(idp)?);
    let claims = id_token.claims(&verifier, nonce).map_err(|e| match e {
        ClaimsVerificationError::SignatureVerification(s) => LoginError::Signature(s.to_string()),
        other => LoginError::IdToken(other.to_string()),
    })?;
    let iat = claims.issue_time().timestamp();
    if iat > now + IAT_LEEWAY_SECS {
        return Err(LoginError::FromTheFuture { ahead: iat - now });
    }
    if now - iat > max_token_age_secs as i64 {
        return Err(LoginError::TooOld {
            age: now - iat,
            max: max_token_age_secs,
        });
    }
    // The signature is verified over exactly these bytes, so reading the payload ourselves
    // is safe; it keeps every claim (the policy's allow-list decides what crosses).
    let payload = raw_payload(&id_token.to_string())?;
    let jti = payload
        .get("jti")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(VerifiedLogin {
        issuer: claims.issuer().to_string(),
        subject: claims.subject().to_string(),
        claims: person_claims(payload),
        jti,
    })
}

fn raw_payload(jwt: &str) -> Result<serde_json::Map<String, serde_json::Value>, LoginError> {
    let bad = |what: &str| LoginError::IdToken(format!("payload: {what}"));
    let part = jwt.split('.').nth(1).ok_or_else(|| bad("missing"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| bad("not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("not a JSON object"))
}

fn describe_request_error<E: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    use openidconnect::RequestTokenError as R;
    match e {
        R::ServerResponse(r) => format!(
            "{}{}",
            r.error(),
            r.error_description()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        R::Request(inner) => inner.to_string(),
        R::Parse(inner, _) => format!("unreadable token response: {inner}"),
        R::Other(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_payload_is_read_from_the_middle_part() {
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"s","groups":["a"]}"#);
        let map = raw_payload(&format!("h.{p}.sig")).unwrap();
        assert_eq!(map["sub"], "s");
        assert!(raw_payload("onlyonepart").is_err());
        assert!(raw_payload("h.!!!.s").is_err());
    }
}
