//! RP-initiated logout 1.0: ends the browser's session, revokes its grants and sends
//! back-channel logouts; redirects only to a registered post_logout_redirect_uri.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::oidc::endpoints::paths;
use crate::oidc::html;
use crate::oidc::http::{
    Params, bad_page, csrf_for_page, csrf_submitted, see_other, server_page, session_cookie,
    set_cookie,
};
use crate::oidc::provider::Provider;
use crate::oidc::session::current_session;
use crate::oidc::tokens;
use crate::oidc::util::with_query;

pub async fn get_handle(
    State(p): State<Provider>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    end_session(&p, &headers, q.as_deref().unwrap_or(""), false)
}

pub async fn post_handle(State(p): State<Provider>, headers: HeaderMap, body: String) -> Response {
    end_session(&p, &headers, &body, true)
}

/// `post`: the request came as a form POST (only that can carry a confirmation).
fn end_session(p: &Provider, headers: &HeaderMap, raw: &str, post: bool) -> Response {
    let params = match Params::parse(raw) {
        Ok(x) => x,
        Err(e) => {
            return bad_page(
                &format!("The logout request is malformed: {e}."),
                "invalid_request",
            );
        }
    };
    let now = p.now();
    // The hint may have expired; it must still be ours and well signed.
    let hint = match params.get("id_token_hint") {
        Some(t) => match tokens::verify_own(p.keys(), &p.config().issuer, t, "JWT", false, now) {
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
    // Only an ID token of this very session (its sub and sid) speaks for it. Without one,
    // or with one of another user or an earlier session, the request may come from
    // anywhere: ask the person (RP-Initiated Logout § 2) with a CSRF-protected form that
    // is accepted by POST only.
    if let Some(s) = session {
        let claim = |k: &str| hint.as_ref().and_then(|c| c.get(k)).and_then(Value::as_str);
        let hint_is_this_session = claim("sub") == Some(&s.sub) && claim("sid") == Some(&s.sid);
        let asked_and_confirmed = post && confirmed(p, headers, &params);
        if !(hint_is_this_session || asked_and_confirmed) {
            return confirm_page(p, headers, &params, client_id, redirect.as_deref());
        }
        if let Err(e) = p.end_session(&s.sid) {
            return server_page(e);
        }
        tracing::info!(sub = %s.sub, sid = %s.sid, "logged out");
    }
    // From here on no session of this browser is alive: clearing the cookie leaves no
    // half logged-out state.
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
            maud::html! {
                h1 { "Signed out" }
                p class="ok" role="status" { "You are signed out of the inside sign-in service. You can close this window." }
            },
        ),
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(p, session_cookie(p), "", Some(0)),
    );
    r
}

/// A POSTed confirmation whose CSRF token matches this browser's (server-minted) cookie.
fn confirmed(p: &Provider, headers: &HeaderMap, params: &Params) -> bool {
    params.get("confirm") == Some("yes") && csrf_submitted(p, headers, params.get("csrf"))
}

fn confirm_page(
    p: &Provider,
    headers: &HeaderMap,
    params: &Params,
    client_id: Option<&str>,
    redirect: Option<&str>,
) -> Response {
    let (csrf, set) = csrf_for_page(p, headers);
    // The client as the hint named it too, so the confirmation may still return to it.
    let fields = [
        ("client_id", client_id),
        (
            "post_logout_redirect_uri",
            params.get("post_logout_redirect_uri"),
        ),
        ("state", params.get("state")),
    ];
    let main = maud::html! {
        h1 { "Sign out?" }
        p { "An application asked to sign you out of the inside sign-in service." }
        form method="post" action=(paths::END_SESSION) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="confirm" value="yes";
            @for (k, v) in fields {
                @if let Some(v) = v { input type="hidden" name=(k) value=(v); }
            }
            button type="submit" { "Sign out" }
        }
    };
    let mut r = html::page_with_form_target(StatusCode::OK, "Sign out", main, redirect);
    if let Some(set) = set {
        r.headers_mut().append(header::SET_COOKIE, set);
    }
    r
}
