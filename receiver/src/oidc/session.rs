//! Browser sessions at the endpoints: the current one, and codes issued in one.

use axum::http::HeaderMap;

use crate::oidc::error::OidcError;
use crate::oidc::http::{cookie, session_cookie};
use crate::oidc::provider::Provider;
use crate::oidc::store::{AuthCode, AuthRequest, Session};
use crate::oidc::util::{hash_secret, random_token, with_query};

/// The live session of this browser, if any.
pub fn current_session(p: &Provider, headers: &HeaderMap) -> Result<Option<Session>, OidcError> {
    let Some(secret) = cookie(headers, session_cookie(p)) else {
        return Ok(None);
    };
    let now = p.now();
    Ok(p.store()
        .session_by_secret(&hash_secret(&secret))?
        .filter(|s| s.expires_at > now))
}

/// Issues a code for `request` in `session`; returns the redirect URL. A sign-in for a
/// device grant gets no code: it continues on the device's approval page (its
/// `redirect_uri`), which asks the person to approve or deny.
pub fn issue_code(
    p: &Provider,
    request: &AuthRequest,
    session: &Session,
) -> Result<String, OidcError> {
    if let Some(device) = &request.device {
        return Ok(with_query(&request.redirect_uri, &[("h", device)]));
    }
    let code = random_token(32);
    let now = p.now();
    let record = AuthCode {
        request: request.clone(),
        sid: session.sid.clone(),
        sub: session.sub.clone(),
        auth_time: session.auth_time,
        expires_at: now + p.config().code_lifetime_secs,
        used_by_family: None,
    };
    p.store().put_code(&hash_secret(&code), &record)?;
    p.store()
        .add_session_client(&session.sid, &request.client_id)?;
    let mut q: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(s) = &request.state {
        q.push(("state", s));
    }
    q.push(("iss", &p.config().issuer));
    Ok(with_query(&request.redirect_uri, &q))
}
