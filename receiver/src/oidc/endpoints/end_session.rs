//! RP-initiated logout 1.0: ends the browser's session, revokes its grants and sends
//! back-channel logouts; redirects only to a registered post_logout_redirect_uri.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::oidc::endpoints::authorize::{bad_page, current_session, server_page};
use crate::oidc::endpoints::{Params, SESSION_COOKIE, see_other, set_cookie};
use crate::oidc::html;
use crate::oidc::provider::Provider;
use crate::oidc::tokens;
use crate::oidc::util::with_query;

pub async fn get_handle(
    State(p): State<Provider>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    end_session(&p, &headers, q.as_deref().unwrap_or(""))
}

pub async fn post_handle(State(p): State<Provider>, headers: HeaderMap, body: String) -> Response {
    end_session(&p, &headers, &body)
}

fn end_session(p: &Provider, headers: &HeaderMap, raw: &str) -> Response {
    let params = match Params::parse(raw) {
        Ok(x) => x,
        Err(e) => {
            return bad_page(
                &format!("The logout request is malformed: {e}."),
                "invalid_request",
            );
        }
    };
    let now = p.0.clock.now();
    // The hint may have expired; it must still be ours and well signed.
    let hint = match params.get("id_token_hint") {
        Some(t) => match tokens::verify_own(&p.0.keys, &p.config().issuer, t, "JWT", false, now) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "logout with an invalid id_token_hint");
                return bad_page(
                    "The logout request carries an ID token this service did not issue.",
                    "invalid_request",
                );
            }
        },
        None => None,
    };
    let hint_aud = hint
        .as_ref()
        .and_then(|c| c.get("aud"))
        .and_then(Value::as_str);
    let client_id = match (params.get("client_id"), hint_aud) {
        (Some(a), Some(b)) if a != b => {
            return bad_page(
                "client_id and the ID token's audience differ.",
                "invalid_request",
            );
        }
        (a, b) => a.or(b),
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let ok = client_id
                .and_then(|id| p.config().client(id))
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
            if !ok {
                return bad_page(
                    "The application asked to return to an address it has not registered for logout.",
                    "invalid_request",
                );
            }
            Some(uri.to_string())
        }
    };
    let session = match current_session(p, headers) {
        Ok(s) => s,
        Err(e) => return server_page(e),
    };
    if let Some(s) = session {
        let hint_sub = hint
            .as_ref()
            .and_then(|c| c.get("sub"))
            .and_then(Value::as_str);
        // A hint for another user must not log this one out.
        if hint_sub.is_none_or(|sub| sub == s.sub) {
            if let Err(e) = p.end_session(&s.sid) {
                return server_page(e);
            }
            tracing::info!(sub = %s.sub, sid = %s.sid, "logged out");
        }
    }
    let mut r = match redirect {
        Some(uri) => {
            let q: Vec<(&str, &str)> = params
                .get("state")
                .map(|s| vec![("state", s)])
                .unwrap_or_default();
            see_other(&with_query(&uri, &q))
        }
        None => html::page(
            StatusCode::OK,
            "Signed out",
            "<h1>Signed out</h1>\n<p class=\"ok\" role=\"status\">You are signed out of the inside sign-in service. You can close this window.</p>",
        ),
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(p, SESSION_COOKIE, "", Some(0)),
    );
    r
}
