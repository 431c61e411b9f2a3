//! What the passkey endpoints share: the policy checks (standing of the person, state of a
//! passkey, freshness of a sign-in, acr_values), CSRF, ceremonies and refusal accounting.

use axum::http::HeaderMap;

use crate::oidc::directory::DirectoryUser;
use crate::oidc::http::Params;
use crate::oidc::login::LoginMethod;
use crate::oidc::metrics::Counter;
use crate::oidc::passkey::events;
use crate::oidc::passkey::rp::Refusal;
use crate::oidc::provider::Provider;
use crate::oidc::store::{AuthRequest, PasskeyRecord, Session};
use crate::oidc::util::ct_eq;

/// How long a ceremony's options stay answerable (the browser's timeout plus a margin).
pub fn ceremony_lifetime(p: &Provider) -> u64 {
    p.config().passkeys.ceremony_timeout_secs.saturating_add(60)
}

/// True when the client demanded the transfer code through `acr_values` (it names the
/// transfer-code acr and not the passkey one).
pub fn transfer_code_forced(req: &AuthRequest) -> bool {
    let has = |a: &str| req.acr_values.iter().any(|v| v == a);
    has(LoginMethod::TransferCode.acr()) && !has(LoginMethod::PASSKEY_ACR)
}

/// Whether passkeys are offered for this request at all.
pub fn offered(p: &Provider, req: &AuthRequest) -> bool {
    p.passkeys().is_some() && !transfer_code_forced(req)
}

/// Double-submit check: the form's token equals this browser's CSRF cookie, which the
/// server minted (and `expected`, when the token is also bound to a server-side record).
pub fn csrf_ok(p: &Provider, headers: &HeaderMap, form: &Params, expected: Option<&str>) -> bool {
    crate::oidc::http::csrf_submitted(p, headers, form.get("csrf"))
        && expected.is_none_or(|e| form.get("csrf").is_some_and(|f| ct_eq(f, e)))
}

/// Why the person may not hold or use a passkey now, from the directory's view. A
/// provisioned person stands while their approval is valid; a person known only from
/// LoginTickets only where `allow_ticket_only_users` says so, and then their passkey's own
/// lifetime (`ticket_only_lifetime_secs`) bounds it: the ticket's `valid_until` is the
/// expiry of one transfer code, not an approval.
pub fn standing(p: &Provider, user: Option<&DirectoryUser>, now: u64) -> Result<(), Refusal> {
    match user {
        Some(u) if u.revoked => Err(Refusal::Revoked),
        Some(u) if u.provisioned && u.valid_until <= now => Err(Refusal::ApprovalExpired),
        Some(u) if u.provisioned => Ok(()),
        _ if p.config().passkeys.allow_ticket_only_users => Ok(()),
        _ => Err(Refusal::NotEligible),
    }
}

/// Whether `user` was admitted by a Provision (and so gets `lifetime_cap_secs`).
pub fn provisioned(user: Option<&DirectoryUser>) -> bool {
    user.is_some_and(|u| u.provisioned)
}

/// Whether a passkey may be used now (besides the person's standing).
pub fn usable(rec: &PasskeyRecord, now: u64) -> Result<(), Refusal> {
    match rec.disabled.as_deref() {
        Some(crate::oidc::store::OFF_EXPIRED) => return Err(Refusal::DisabledAtExpiry),
        Some(_) => return Err(Refusal::Disabled),
        None => {}
    }
    if rec.expires_at <= now {
        return Err(Refusal::PasskeyExpired);
    }
    Ok(())
}

/// A session counts as a fresh transfer-code sign-in within the enrolment window.
pub fn fresh_code_session(p: &Provider, s: &Session, now: u64) -> bool {
    s.acr == LoginMethod::TransferCode.acr()
        && now.saturating_sub(s.auth_time) <= p.config().passkeys.enrol_window_secs
}

/// A refusal answered to the page's script as JSON.
pub fn json_refusal(status: axum::http::StatusCode, r: &Refusal) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({"error": r.reason(), "error_description": r.message()});
    (status, axum::Json(body)).into_response()
}

/// Stores a ceremony under a fresh id and answers its browser half as JSON.
pub fn start_ceremony(
    p: &Provider,
    mut c: crate::oidc::store::Ceremony,
    options: serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let id = crate::oidc::util::random_token(24);
    c.expires_at = p.now().saturating_add(ceremony_lifetime(p));
    if let Err(e) = p.store().put_ceremony(&id, &c) {
        return crate::oidc::http::server_page(e);
    }
    let mut r = axum::Json(serde_json::json!({"ceremony": id, "options": options})).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

/// This browser's CSRF token, and the cookie to set when it has none yet.
pub fn csrf_token(p: &Provider, headers: &HeaderMap) -> (String, Option<axum::http::HeaderValue>) {
    crate::oidc::http::csrf_for_page(p, headers)
}

/// `r` with the CSRF cookie of [`csrf_token`] added when one was minted.
pub fn with_csrf_cookie(
    mut r: axum::response::Response,
    set: Option<axum::http::HeaderValue>,
) -> axum::response::Response {
    if let Some(h) = set {
        r.headers_mut().append(axum::http::header::SET_COOKIE, h);
    }
    r
}

/// The page for a form whose CSRF token does not match this browser (counted).
pub fn csrf_rejected(p: &Provider) -> axum::response::Response {
    p.metrics().inc(Counter::PasskeyRefusals, "csrf");
    crate::oidc::html::error_page(
        axum::http::StatusCode::FORBIDDEN,
        "Form rejected",
        "The form did not come from this browser's page (or cookies are blocked). Go back to the application and start again.",
        "csrf",
    )
}

/// Counts a refused attempt and writes it to the event log (a failing log is reported
/// in the receiver log: the refusal stands either way).
pub fn refused(
    p: &Provider,
    what: &str,
    r: &Refusal,
    sub: Option<&str>,
    cred: Option<&str>,
    addr: &str,
) {
    p.metrics().inc(Counter::PasskeyRefusals, r.reason());
    tracing::info!(what, reason = r.reason(), sub = ?sub, address = addr, "passkey attempt refused");
    let mut e = events::Event::new("passkey_refused", p.now())
        .detail(&format!("{what}: {}", r.reason()))
        .address(addr);
    if let Some(s) = sub {
        e = e.subject(s);
    }
    if let Some(c) = cred {
        e = e.credential(c);
    }
    if let Err(err) = events::record(p, e) {
        tracing::warn!(error = %err, "could not write the refused passkey attempt to the event log");
    }
}
