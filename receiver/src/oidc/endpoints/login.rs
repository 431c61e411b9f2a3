//! The login page: GET shows the form, POST checks the transfer code.

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use crate::oidc::endpoints::paths;
use maud::html;

use crate::oidc::html;
use crate::oidc::http::{
    Params, bad_page, csrf_submitted, see_other, server_page, session_cookie, set_cookie,
};
use crate::oidc::login::{self, Authenticated, Limiter, LoginFailure};
use crate::oidc::metrics::LoginRefusal;
use crate::oidc::provider::Provider;
use crate::oidc::session::issue_code;
use crate::oidc::store::{PendingRequest, Session};
use crate::oidc::util::{ct_eq, hash_secret, random_token};

#[derive(Deserialize)]
pub struct LoginQuery {
    txn: Option<String>,
}

pub async fn show(State(p): State<Provider>, Query(q): Query<LoginQuery>) -> Response {
    let Some(txn) = q.txn.filter(|t| t.len() <= 64) else {
        return bad_page(
            "This page is opened by an application's sign-in link.",
            "invalid_request",
        );
    };
    match pending(&p, &txn) {
        Ok(Some(pend)) => form_page(&p, &txn, &pend, None, StatusCode::OK),
        Ok(None) => expired_page(),
        Err(r) => *r,
    }
}

pub(crate) fn pending(p: &Provider, txn: &str) -> Result<Option<PendingRequest>, Box<Response>> {
    let now = p.now();
    match p.store().pending(txn) {
        Ok(x) => Ok(x.filter(|x| x.expires_at > now)),
        Err(e) => Err(Box::new(server_page(e))),
    }
}

pub(crate) fn expired_page() -> Response {
    html::error_page(
        StatusCode::BAD_REQUEST,
        "Sign-in page expired",
        "This sign-in page has expired or was already used. Go back to the application and start again.",
        "login_expired",
    )
}

/// The login page; `failure` is the message of the last failed attempt (either method).
pub(crate) fn form_page(
    p: &Provider,
    txn: &str,
    pend: &PendingRequest,
    failure: Option<&str>,
    status: StatusCode,
) -> Response {
    let described = if failure.is_some() {
        "code-hint code-error"
    } else {
        "code-hint"
    };
    let passkeys = crate::oidc::passkey::policy::offered(p, &pend.request);
    let main = html! {
        h1 { "Sign in" }
        p { "to " span class="client" { (pend.request.client_id) } " with your outside account." }
        (html::alert(Some("code-error"), "error", failure))
        @if passkeys { (crate::oidc::passkey::section::section(txn, &pend.csrf)) }
        form method="post" action=(paths::LOGIN) {
            input type="hidden" name="txn" value=(txn);
            input type="hidden" name="csrf" value=(pend.csrf);
            input type="hidden" name="method" value="transfer_code";
            label for="code" { "Transfer code" }
            p id="code-hint" class="hint" {
                "The 25-character code shown after you signed in outside, like " code { "7KQ2M-X4HDN-R8WPA-3FZTC-9JB6E" } ". Dashes and case do not matter."
            }
            input type="text" id="code" name="code" required autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" maxlength="64" autofocus[!passkeys] aria-invalid=[failure.map(|_| "true")] aria-describedby=(described);
            button type="submit" { "Sign in" }
        }
    };
    if passkeys {
        html::page_with_script(status, "Sign in", main, Some(&pend.request.redirect_uri))
    } else {
        html::page_with_form_target(status, "Sign in", main, Some(&pend.request.redirect_uri))
    }
}

pub async fn submit(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Ok(form) = Params::parse(&body) else {
        return bad_page("The sign-in form was malformed.", "invalid_request");
    };
    let Some(txn) = form.get("txn") else {
        return expired_page();
    };
    let pend = match pending(&p, txn) {
        Ok(Some(x)) => x,
        Ok(None) => return expired_page(),
        Err(r) => return *r,
    };
    // Double submit: the form's token must match both this browser's cookie and the request.
    let csrf_ok = csrf_submitted(&p, &headers, form.get("csrf"))
        && form.get("csrf").is_some_and(|f| ct_eq(f, &pend.csrf));
    if !csrf_ok {
        tracing::warn!(peer = %peer.ip(), "login form CSRF check failed");
        p.metrics().login_refused(LoginRefusal::Csrf);
        return html::error_page(
            StatusCode::FORBIDDEN,
            "Sign-in form rejected",
            "The form did not come from this browser's sign-in page (or cookies are blocked). Go back to the application and start again.",
            "csrf",
        );
    }
    if form.get("method").unwrap_or("transfer_code") != "transfer_code" {
        return bad_page("That sign-in method is not available.", "invalid_request");
    }
    let typed = form.get("code").unwrap_or("");
    let c = p.config();
    let per_locator = Limiter {
        store: p.store(),
        max: c.max_attempts_per_locator,
        window: c.lockout_secs,
    };
    let per_address = Limiter {
        store: p.store(),
        max: c.max_attempts_per_address,
        window: c.lockout_secs,
    };
    let now = p.now();
    let ip = p.client_key(peer.ip(), &headers);
    let outcome = login::transfer_code(
        p.directory(),
        &p.argon2_budgets().transfer_codes,
        (&per_locator, &per_address),
        &ip,
        typed,
        pend.request.hint_sub.as_deref(),
        now,
    )
    .await;
    match outcome {
        Err(e) => server_page(e),
        Ok(Err(failure)) => {
            tracing::info!(peer = %ip, reason = failure.reason(), "login failed");
            p.metrics().login_refused(LoginRefusal::from(&failure));
            let status = match failure {
                LoginFailure::LockedAddress { .. } | LoginFailure::LockedCode { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                _ => StatusCode::UNAUTHORIZED,
            };
            form_page(&p, txn, &pend, Some(&failure.message()), status)
        }
        Ok(Ok(auth)) => finish(&p, txn, &pend, auth),
    }
}

/// Creates the session, issues the code, and sends the browser back to the app (or,
/// after a transfer code, to the passkey enrolment offer first).
pub(crate) fn finish(
    p: &Provider,
    txn: &str,
    pend: &PendingRequest,
    auth: Authenticated,
) -> Response {
    let now = p.now();
    let secret = random_token(32);
    let lifetime = p.config().session_lifetime_secs;
    let session = Session {
        sid: random_token(16),
        sub: auth.sub,
        auth_time: now,
        expires_at: now + lifetime,
        amr: auth.method.amr().iter().map(|s| s.to_string()).collect(),
        acr: auth.method.acr().to_string(),
        identity: auth.identity,
        clients: vec![],
    };
    let stored = p
        .store()
        .put_session(&hash_secret(&secret), &session)
        .and_then(|_| p.unpark_pending(txn))
        .and_then(|_| {
            match crate::oidc::passkey::enrol::offer_after_code_sign_in(p, &session, pend)? {
                Some(url) => Ok(url),
                None => issue_code(p, &pend.request, &session),
            }
        })
        .and_then(|url| p.store().flush().map(|_| url));
    match stored {
        Ok(url) => {
            tracing::info!(sub = %session.sub, sid = %session.sid, client = %pend.request.client_id, "login succeeded");
            p.metrics().login(auth.method);
            let mut r = see_other(&url);
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(p, session_cookie(p), &secret, Some(lifetime)),
            );
            r
        }
        Err(e) => server_page(e),
    }
}
