//! The client credentials grant (RFC 6749 §4.4) for confidential inside services: an
//! RFC 9068 access token for the client itself, no user, no refresh token, no ID token.
//!
//! Each grant is a [`Family`] with no session ([`CLIENT_GRANT_SID`]) so that revocation,
//! introspection and expiry work as for every other access token (its `jti` names it).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::oidc::config::ClientConfig;
use crate::oidc::http::{OAuthError, Params, no_store_json};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::Provider;
use crate::oidc::store::{Family, IdentitySnapshot};
use crate::oidc::tokens;
use crate::oidc::util::random_token;

/// The `sid` of a client-credentials grant: no session id looks like it (those are
/// base64url), so no logout or session lookup ever finds these grants.
pub const CLIENT_GRANT_SID: &str = "(client_credentials)";

/// Whether `f` was issued by the client credentials grant (it has no user).
pub fn is_client_grant(f: &Family) -> bool {
    f.sid == CLIENT_GRANT_SID
}

/// Refused with `error`, counted in `client_credentials_refusals{reason}`.
fn refuse(p: &Provider, reason: &'static str, e: OAuthError) -> OAuthError {
    tracing::info!(reason, error = e.error, description = %e.description, "client_credentials refused");
    p.metrics().inc(Counter::ClientCredentialsRefusals, reason);
    e
}

/// `grant_type=client_credentials` from the authenticated `client`.
pub(crate) fn grant(
    p: &Provider,
    client: &ClientConfig,
    form: &Params,
) -> Result<Response, OAuthError> {
    if client.public {
        return Err(refuse(
            p,
            "public_client",
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "a public client cannot use client_credentials (RFC 6749 §4.4: confidential clients only)",
            ),
        ));
    }
    if !client.client_credentials_allowed() {
        return Err(refuse(
            p,
            "not_configured",
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "this client may not use client_credentials: the operator lists it in the client's grant_types and sets client_credentials_scopes and client_credentials_audience",
            ),
        ));
    }
    // No scope: everything the client may have (RFC 6749 §3.3 lets the server default).
    let scope: Vec<String> = match form.get("scope") {
        None => client.client_credentials_scopes.clone(),
        Some(s) => {
            let mut asked: Vec<String> = Vec::new();
            for x in s.split(' ').filter(|x| !x.is_empty()) {
                if !client.client_credentials_scopes.iter().any(|a| a == x) {
                    return Err(refuse(
                        p,
                        "scope_not_allowed",
                        OAuthError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            format!(
                                "scope {x} is not allowed for this client's client_credentials grant"
                            ),
                        ),
                    ));
                }
                if !asked.iter().any(|a| a == x) {
                    asked.push(x.to_string());
                }
            }
            if asked.is_empty() {
                client.client_credentials_scopes.clone()
            } else {
                asked
            }
        }
    };
    let audience: Vec<String> = match form.get("resource") {
        None => client.client_credentials_audience.clone(),
        Some(r) if client.client_credentials_audience.iter().any(|a| a == r) => {
            vec![r.to_string()]
        }
        Some(r) => {
            return Err(refuse(
                p,
                "resource_not_allowed",
                OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    format!("resource {r} is not an audience of this client (RFC 8707)"),
                ),
            ));
        }
    };
    let cfg = p.config();
    let now = p.now();
    let lifetime = cfg.access_token_lifetime_secs;
    let family = Family {
        id: random_token(16),
        client_id: client.client_id.clone(),
        sub: client.client_id.clone(),
        sid: CLIENT_GRANT_SID.to_string(),
        scope,
        auth_time: now,
        nonce: None,
        revoked: false,
        expires_at: now + lifetime,
        identity: IdentitySnapshot::default(),
        amr: Vec::new(),
        acr: String::new(),
    };
    p.store().put_family(&family)?;
    let token = access_token(p, client, &family, &audience, now, lifetime)?;
    p.metrics().inc(Counter::ClientCredentialsGrants, "ok");
    Ok(no_store_json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": family.scope.join(" "),
    })))
}

/// The RFC 9068 token of a grant without a resource owner: `sub` is the client (§2.2),
/// no `auth_time`, `acr`, `amr`, `sid` or user claim.
fn access_token(
    p: &Provider,
    client: &ClientConfig,
    family: &Family,
    audience: &[String],
    now: u64,
    lifetime: u64,
) -> Result<String, OAuthError> {
    let aud: Value = match audience {
        [one] => json!(one),
        many => json!(many),
    };
    let claims = json!({
        "iss": p.config().issuer,
        "sub": client.client_id,
        "aud": aud,
        "client_id": client.client_id,
        "exp": now + lifetime,
        "iat": now,
        // The family in the jti lets introspection and revocation find the grant.
        "jti": format!("{}.{}", family.id, random_token(9)),
        "scope": family.scope.join(" "),
    });
    Ok(tokens::sign(
        p.keys(),
        client.id_token_signed_response_alg,
        "at+jwt",
        &claims,
        now,
    )?)
}
