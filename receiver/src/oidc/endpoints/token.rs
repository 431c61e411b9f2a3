//! The token endpoint: authorization_code (PKCE, single use), refresh_token
//! (rotation, reuse detection revoking the family), client_credentials
//! ([`crate::oidc::endpoints::client_credentials`]) and the device code grant (its
//! polling in [`crate::oidc::endpoints::device_authorization`]).

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::oidc::clients::authenticate;
use crate::oidc::config::ClientConfig;
use crate::oidc::endpoints::client_credentials;
use crate::oidc::http::{OAuthError, Params, no_store_json};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::{Denied, Provider};
use crate::oidc::store::{CodeRedeem, Family, RefreshToken};
use crate::oidc::tokens::{self, Grant};
use crate::oidc::util::{ct_eq, hash_secret, random_token};

pub async fn handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = grant(&p, peer.ip(), &headers, &body).await;
    p.metrics()
        .answer(Counter::TokenResponses, Counter::TokenErrors, result)
}

async fn grant(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, OAuthError> {
    let form = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(p, peer, headers, &form).await?;
    if let Some(g) = form.get("grant_type")
        && crate::oidc::config::GRANT_TYPES.contains(&g)
        && !client.allows_grant(g)
        // Refused there with a reason of its own (public client, not configured).
        && g != crate::oidc::config::CLIENT_CREDENTIALS
    {
        return Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("this client may not use grant_type {g} (see its grant_types)"),
        ));
    }
    match form.get("grant_type") {
        Some("authorization_code") => code_grant(p, &client, &form),
        Some("refresh_token") => refresh_grant(p, &client, &form),
        Some("client_credentials") => client_credentials::grant(p, &client, &form),
        Some(crate::oidc::device::GRANT_TYPE) => {
            crate::oidc::endpoints::device_authorization::token_grant(p, &client, &form, respond)
        }
        Some(other) => Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {other} is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    }
}

fn code_grant(p: &Provider, client: &ClientConfig, form: &Params) -> Result<Response, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let family_id = random_token(16);
    let now = p.now();
    let c = match p.store().redeem_code(&hash_secret(code), &family_id)? {
        CodeRedeem::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
        CodeRedeem::Reused(c) => {
            // RFC 6749 §4.1.2: revoke what the first use issued.
            if c.request.client_id == client.client_id
                && let Some(f) = &c.used_by_family
            {
                p.store().revoke_family(f)?;
                tracing::warn!(client = %client.client_id, sub = %c.sub, "authorization code reused: its tokens are revoked");
                p.metrics()
                    .inc(Counter::ReuseDetected, "authorization_code");
            }
            return Err(OAuthError::invalid_grant(
                "authorization code was already used; its tokens are revoked",
            ));
        }
        CodeRedeem::First(c) => c,
    };
    if c.request.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if c.expires_at <= now {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    if form.get("redirect_uri") != Some(c.request.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    check_pkce(
        c.request.code_challenge.as_deref(),
        form.get("code_verifier"),
    )?;
    let Some(session) = p.store().session(&c.sid)? else {
        return Err(OAuthError::invalid_grant("the login session has ended"));
    };
    let identity = match p.current_identity(&c.sub, &session.identity)? {
        Ok(i) => i,
        Err(d) => return Err(denied(d)),
    };
    let offline = c.request.scope.iter().any(|s| s == "offline_access");
    let c_cfg = p.config();
    let family = Family {
        id: family_id,
        client_id: client.client_id.clone(),
        sub: c.sub.clone(),
        sid: c.sid.clone(),
        scope: c.request.scope.clone(),
        auth_time: c.auth_time,
        nonce: c.request.nonce.clone(),
        revoked: false,
        expires_at: now
            + if offline {
                c_cfg.refresh_token_lifetime_secs
            } else {
                c_cfg.access_token_lifetime_secs
            },
        identity,
        amr: session.amr.clone(),
        acr: session.acr.clone(),
    };
    p.store().put_family(&family)?;
    // Revoked while it was being issued (the code reused, the session ended): say so
    // rather than hand out tokens that are dead on arrival.
    if p.store().family(&family.id)?.is_none_or(|f| f.revoked) {
        return Err(OAuthError::invalid_grant(
            "the grant was revoked while it was being issued (code reused or logged out)",
        ));
    }
    respond(p, client, &family, &family.scope, offline, true)
}

fn check_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent but the request had no code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        (Some(ch), Some(v)) => {
            let well_formed = (43..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            if well_formed && ct_eq(&computed, ch) {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
        }
    }
}

fn refresh_grant(
    p: &Provider,
    client: &ClientConfig,
    form: &Params,
) -> Result<Response, OAuthError> {
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let hash = hash_secret(token);
    let now = p.now();
    let Some((rt, Some(mut family))) = p.store().refresh_and_family(&hash)? else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    if family.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if family.revoked {
        return Err(OAuthError::invalid_grant(
            "the refresh token has been revoked",
        ));
    }
    if rt.expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    if rt.used {
        return Err(reused(p, client, &family)?);
    }
    let identity = match p.current_identity(&family.sub, &family.identity)? {
        Ok(i) => i,
        Err(d) => {
            p.store().revoke_family(&family.id)?;
            return Err(denied(d));
        }
    };
    let scope: Vec<String> = match form.get("scope") {
        None => family.scope.clone(),
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect();
            if let Some(bad) = asked.iter().find(|x| !family.scope.contains(x)) {
                return Err(OAuthError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {bad} was not granted"),
                ));
            }
            asked
        }
    };
    // One atomic step (one commit on PostgreSQL): the old token is used, the family lives
    // on, the new token exists. A refused request above leaves the old token usable.
    let next = random_token(32);
    let record = RefreshToken {
        family: family.id.clone(),
        expires_at: now + p.config().refresh_token_lifetime_secs,
        used: false,
    };
    if !p
        .store()
        .rotate_refresh(&hash, &hash_secret(&next), &record)?
    {
        return Err(reused(p, client, &family)?);
    }
    family.identity = identity;
    // The nonce belongs to the first ID token only.
    family.nonce = None;
    respond_with(
        p,
        client,
        &family,
        &scope,
        Some(next),
        scope.iter().any(|s| s == "openid"),
    )
}

/// A refresh token presented a second time: the whole family is revoked (RFC 9700 § 4.14.2,
/// refresh token rotation), since one of the two presenters stole it.
fn reused(p: &Provider, client: &ClientConfig, family: &Family) -> Result<OAuthError, OAuthError> {
    p.store().revoke_family(&family.id)?;
    tracing::warn!(client = %client.client_id, sub = %family.sub, "refresh token reused: family revoked");
    p.metrics().inc(Counter::ReuseDetected, "refresh_token");
    Ok(OAuthError::invalid_grant(
        "refresh token was already used; all tokens of this grant are revoked",
    ))
}

fn denied(d: Denied) -> OAuthError {
    match d {
        Denied::Revoked => OAuthError::invalid_grant("the user's access was revoked"),
        Denied::Expired => OAuthError::invalid_grant("the user's approval has expired"),
    }
}

/// Mints the tokens of one grant and answers; with `refresh`, and only for a client that
/// may use the refresh_token grant, a new refresh token of the family is stored and sent.
fn respond(
    p: &Provider,
    client: &ClientConfig,
    family: &Family,
    scope: &[String],
    refresh: bool,
    with_id: bool,
) -> Result<Response, OAuthError> {
    let refresh_token = if refresh && client.allows_grant("refresh_token") {
        let rt = random_token(32);
        let record = RefreshToken {
            family: family.id.clone(),
            expires_at: p.now() + p.config().refresh_token_lifetime_secs,
            used: false,
        };
        p.store().put_refresh(&hash_secret(&rt), &record)?;
        Some(rt)
    } else {
        None
    };
    respond_with(p, client, family, scope, refresh_token, with_id)
}

/// Mints the access and ID tokens of one grant and answers with them and `refresh_token`
/// (already stored).
fn respond_with(
    p: &Provider,
    client: &ClientConfig,
    family: &Family,
    scope: &[String],
    refresh_token: Option<String>,
    with_id: bool,
) -> Result<Response, OAuthError> {
    let cfg = p.config();
    let now = p.now();
    let mut scoped = family.clone();
    scoped.scope = scope.to_vec();
    let g = Grant {
        issuer: &cfg.issuer,
        client,
        family: &scoped,
        identity: &family.identity,
        amr: &family.amr,
        acr: &family.acr,
        now,
    };
    let access = tokens::access_token(p.keys(), &g, cfg.access_token_lifetime_secs)?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": cfg.access_token_lifetime_secs,
        "scope": scope.join(" "),
    });
    if with_id {
        body["id_token"] = json!(tokens::id_token(
            p.keys(),
            &g,
            &access,
            cfg.id_token_lifetime_secs
        )?);
    }
    if let Some(rt) = refresh_token {
        body["refresh_token"] = json!(rt);
    }
    Ok(no_store_json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_vector() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let ch = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_pkce(Some(ch), Some(v)).is_ok());
        assert!(
            check_pkce(
                Some(ch),
                Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")
            )
            .is_err()
        );
        assert!(check_pkce(Some(ch), None).is_err());
        assert!(check_pkce(None, Some(v)).is_err());
        assert!(check_pkce(Some(ch), Some("short")).is_err());
    }
}
