//! The person's side of the device flow (RFC 8628 § 3.3): `/device` takes the user code,
//! the login page signs the person in (unless this browser has a usable session), and
//! `/device/confirm` asks them to approve or deny the named client. Plain HTML forms:
//! no script, the provider's CSP, CSRF double submit like the login form.

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::html;

use crate::oidc::budget::Refused;
use crate::oidc::device::{self, USER_CODE_LEN};
use crate::oidc::endpoints::paths;
use crate::oidc::html;
use crate::oidc::http::{Params, csrf_for_page, csrf_submitted, see_other, server_page};
use crate::oidc::login::Limiter;
use crate::oidc::metrics::{Counter, DeviceGrantEvent, UserCodeFailure};
use crate::oidc::provider::Provider;
use crate::oidc::session::current_session;
use crate::oidc::store::{
    AuthRequest, DeviceApproval, DeviceGrant, DeviceStatus, PendingRequest, Session,
};
use crate::oidc::util::{hash_secret, random_token, with_query};

/// How long the person has for the sign-in between the code and the approval page.
const SIGN_IN_LIFETIME: u64 = 600;

fn with_cookie(mut r: Response, set: Option<HeaderValue>) -> Response {
    if let Some(set) = set {
        r.headers_mut().append(header::SET_COOKIE, set);
    }
    r
}

/// `GET /device[?user_code=...]`: the form, filled in from `verification_uri_complete`
/// (the person still presses the button: a link alone approves nothing).
pub async fn show(
    State(p): State<Provider>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let prefill = Params::parse(q.as_deref().unwrap_or(""))
        .ok()
        .and_then(|q| q.get("user_code").map(str::to_string))
        .filter(|c| c.len() <= 32)
        .unwrap_or_default();
    let (csrf, set) = csrf_for_page(&p, &headers);
    with_cookie(code_form(&csrf, &prefill, None, StatusCode::OK), set)
}

fn code_form(csrf: &str, prefill: &str, failure: Option<&str>, status: StatusCode) -> Response {
    let described = if failure.is_some() {
        "code-hint code-error"
    } else {
        "code-hint"
    };
    let main = html! {
        h1 { "Connect a device" }
        p { "Type the code that your device or command line shows you." }
        (html::alert(Some("code-error"), "error", failure))
        form method="post" action=(paths::DEVICE) {
            input type="hidden" name="csrf" value=(csrf);
            label for="user_code" { "Device code" }
            p id="code-hint" class="hint" {
                (USER_CODE_LEN) " letters, like " code { "BCDF-GHJK" } ". Dashes, spaces and case do not matter."
            }
            input type="text" id="user_code" name="user_code" value=(prefill) required autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="32" autofocus aria-invalid=[failure.map(|_| "true")] aria-describedby=(described);
            button type="submit" { "Continue" }
        }
    };
    html::page(status, "Connect a device", main)
}

/// A plain message page of the device flow.
fn notice(status: StatusCode, title: &str, message: &str, code: &str) -> Response {
    html::error_page(status, title, message, code)
}

fn expired() -> Response {
    notice(
        StatusCode::BAD_REQUEST,
        "Code expired",
        "This device code has expired. Start the sign-in again on your device to get a new code.",
        "expired_token",
    )
}

fn used() -> Response {
    notice(
        StatusCode::BAD_REQUEST,
        "Code already used",
        "This device code was already approved or denied. Each code works once: start the sign-in again on your device if you need to.",
        "code_used",
    )
}

fn csrf_refused(p: &Provider, peer: std::net::IpAddr) -> Response {
    tracing::warn!(peer = %peer, "device form CSRF check failed");
    p.metrics().user_code_refused(UserCodeFailure::Csrf);
    html::error_page(
        StatusCode::FORBIDDEN,
        "Form rejected",
        "The form did not come from this browser's device page (or cookies are blocked). Open the device page again and retype the code.",
        "csrf",
    )
}

/// `POST /device`: checks the user code (counted per client address before it is looked
/// up, given back when right), then signs the person in or goes straight to the approval.
pub async fn submit(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Ok(form) = Params::parse(&body) else {
        return crate::oidc::http::bad_page("The device form was malformed.", "invalid_request");
    };
    if !csrf_submitted(&p, &headers, form.get("csrf")) {
        return csrf_refused(&p, peer.ip());
    }
    let csrf = form.get("csrf").unwrap_or_default().to_string();
    let typed = form.get("user_code").unwrap_or("");
    let address = p.client_key(peer.ip(), &headers);
    let again = |msg: &str, status| {
        let shown: String = typed.chars().take(32).collect();
        code_form(&csrf, &shown, Some(msg), status)
    };
    let code = match device::normalize_user_code(typed) {
        Ok(c) => c,
        // A code that cannot be one is no guess: it costs no attempt.
        Err(e) => {
            p.metrics().user_code_refused(UserCodeFailure::Malformed);
            return again(
                &format!("That is not a device code: {e}."),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let c = p.config();
    let limiter = Limiter {
        store: p.store(),
        max: c.device.max_user_code_failures_per_address,
        window: c.lockout_secs,
    };
    let key = format!("device-addr:{address}");
    let now = p.now();
    match limiter.charge(&key, now) {
        Ok(None) => {}
        Ok(Some(minutes)) => {
            tracing::warn!(%address, "device page locked for this address after wrong codes");
            p.metrics().user_code_refused(UserCodeFailure::Locked);
            return again(
                &format!(
                    "Too many wrong codes from your computer. Try again in {minutes} minutes."
                ),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return server_page(e),
    }
    let (device_hash, grant) = match p.store().device_by_user_code(&hash_secret(&code)) {
        Ok(Some(x)) => x,
        Ok(None) => {
            tracing::info!(%address, "wrong device user code");
            p.metrics().user_code_refused(UserCodeFailure::Wrong);
            return again(
                "That code is not right. Check it against the one your device shows and try again.",
                StatusCode::UNAUTHORIZED,
            );
        }
        Err(e) => return server_page(e),
    };
    if let Err(e) = limiter.refund(&key) {
        return server_page(e);
    }
    if grant.expires_at <= now {
        p.metrics().user_code_refused(UserCodeFailure::Expired);
        return expired();
    }
    if grant.status != DeviceStatus::Pending {
        p.metrics().user_code_refused(UserCodeFailure::Used);
        return used();
    }
    let confirm = format!("{}{}", c.issuer, paths::DEVICE_CONFIRM);
    match usable_session(&p, &headers) {
        Ok(Some(_)) => return see_other(&with_query(&confirm, &[("h", &device_hash)])),
        Ok(None) => {}
        Err(r) => return *r,
    }
    // Sign in first: the login page (transfer code or passkey) ends, through
    // `issue_code`, on the approval page of this grant.
    let pending = PendingRequest {
        request: AuthRequest {
            client_id: grant.client_id.clone(),
            redirect_uri: confirm,
            scope: grant.scope.clone(),
            state: None,
            nonce: None,
            code_challenge: None,
            max_age: None,
            hint_sub: None,
            acr_values: vec![],
            device: Some(device_hash),
        },
        csrf,
        expires_at: now.saturating_add(SIGN_IN_LIFETIME).min(grant.expires_at),
    };
    let txn = random_token(24);
    match p.park_pending(&address, &txn, &pending) {
        Ok(Ok(())) => see_other(&with_query(paths::LOGIN, &[("txn", &txn)])),
        Ok(Err(refused)) => {
            let reason = match refused {
                Refused::Key => "pending_limit_address",
                Refused::Total => "pending_limit_total",
            };
            tracing::warn!(%address, reason, "device sign-in refused: too many sign-ins waiting");
            p.metrics().inc(Counter::AuthorizeErrors, reason);
            notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins waiting",
                "Too many sign-ins are waiting from this computer or on this service. Finish one or try again in a few minutes.",
                "temporarily_unavailable",
            )
        }
        Err(e) => server_page(e),
    }
}

/// This browser's session if it may approve now (the person is still allowed in).
fn usable_session(p: &Provider, headers: &HeaderMap) -> Result<Option<Session>, Box<Response>> {
    let s = match current_session(p, headers) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Box::new(server_page(e))),
    };
    match p.current_identity(&s.sub, &s.identity) {
        Ok(Ok(_)) => Ok(Some(s)),
        Ok(Err(_)) => Ok(None),
        Err(e) => Err(Box::new(server_page(e))),
    }
}

/// The grant named by `h` (the hash of its device code, never the code itself).
fn grant_of(p: &Provider, h: Option<&str>) -> Result<(String, DeviceGrant), Box<Response>> {
    let unknown = || {
        Box::new(notice(
            StatusCode::BAD_REQUEST,
            "Device sign-in not found",
            "This approval page does not belong to a device sign-in. Open the device page and type the code your device shows.",
            "invalid_request",
        ))
    };
    let Some(h) = h.filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) else {
        return Err(unknown());
    };
    match p.store().device(h) {
        Ok(Some(g)) if g.expires_at <= p.now() => Err(Box::new(expired())),
        Ok(Some(g)) if g.status != DeviceStatus::Pending => Err(Box::new(used())),
        Ok(Some(g)) => Ok((h.to_string(), g)),
        Ok(None) => Err(unknown()),
        Err(e) => Err(Box::new(server_page(e))),
    }
}

fn signed_out() -> Response {
    notice(
        StatusCode::UNAUTHORIZED,
        "Not signed in",
        "Your sign-in has ended. Open the device page and type the code your device shows again.",
        "login_required",
    )
}

/// What a scope gives the device, in words.
fn scope_words(s: &str) -> &str {
    match s {
        "openid" => "who you are (your account identifier)",
        "profile" => "your name",
        "email" => "your email address",
        "groups" => "your groups",
        "offline_access" => "access while you are away (a refresh token)",
        other => other,
    }
}

/// `GET /device/confirm?h=...`: approve or deny, naming the client and what it gets.
pub async fn confirm_page(
    State(p): State<Provider>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Params::parse(q.as_deref().unwrap_or("")).ok();
    let (h, grant) = match grant_of(&p, q.as_ref().and_then(|q| q.get("h"))) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let session = match usable_session(&p, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => return signed_out(),
        Err(r) => return *r,
    };
    let (csrf, set) = csrf_for_page(&p, &headers);
    let who = session
        .identity
        .claims
        .email
        .clone()
        .or_else(|| session.identity.claims.name.clone())
        .unwrap_or_else(|| session.identity.subject.clone());
    let age = match p.now().saturating_sub(grant.created_at) / 60 {
        0 => "less than a minute ago".to_string(),
        1 => "a minute ago".to_string(),
        m => format!("{m} minutes ago"),
    };
    let main = html! {
        h1 { "Allow this device?" }
        p {
            span class="client" { (grant.client_id) } " on a device or command line asks to sign in as " strong { (who) } ". This sign-in was started " (age) "."
        }
        p { "It will get:" }
        ul { @for s in &grant.scope { li { (scope_words(s)) } } }
        p class="hint" { "Only allow it if you started this sign-in yourself and your device shows the code you typed. If someone sent you the code, deny." }
        form method="post" action=(paths::DEVICE_CONFIRM) {
            input type="hidden" name="h" value=(h);
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" name="decision" value="approve" { "Allow" }
            " "
            button type="submit" name="decision" value="deny" class="secondary" { "Deny" }
        }
    };
    with_cookie(html::page(StatusCode::OK, "Allow this device?", main), set)
}

/// `POST /device/confirm`: records the decision (once: a grant leaves pending only once).
pub async fn decide(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Ok(form) = Params::parse(&body) else {
        return crate::oidc::http::bad_page("The approval form was malformed.", "invalid_request");
    };
    if !csrf_submitted(&p, &headers, form.get("csrf")) {
        return csrf_refused(&p, peer.ip());
    }
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return crate::oidc::http::bad_page(
                "The approval form must say allow or deny.",
                "invalid_request",
            );
        }
    };
    let (h, grant) = match grant_of(&p, form.get("h")) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let session = match usable_session(&p, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => return signed_out(),
        Err(r) => return *r,
    };
    let now = p.now();
    let approval = DeviceApproval {
        sid: session.sid.clone(),
        sub: session.sub.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        acr: session.acr.clone(),
        identity: session.identity.clone(),
        approved_at: now,
    };
    let mut late = false;
    let changed = p.store().update_device(&h, &mut |g| {
        if g.expires_at <= now || g.status != DeviceStatus::Pending {
            late = g.expires_at <= now;
            return false;
        }
        g.status = if approve {
            DeviceStatus::Approved {
                approval: Box::new(approval.clone()),
            }
        } else {
            DeviceStatus::Denied { at: now }
        };
        true
    });
    match changed {
        Ok(Some(true)) => {}
        Ok(Some(false)) if late => return expired(),
        Ok(Some(false)) => return used(),
        Ok(None) => return expired(),
        Err(e) => return server_page(e),
    }
    if let Err(e) = p.store().flush() {
        return server_page(e);
    }
    let client = html! { span class="client" { (grant.client_id) } };
    if approve {
        tracing::info!(client = %grant.client_id, sub = %session.sub, sid = %session.sid, "device grant approved");
        p.metrics().device_grant(DeviceGrantEvent::Approved);
        let main = html! {
            h1 { "Device allowed" }
            p role="status" { (client) " is signed in. Go back to your device: it continues by itself. You can close this page." }
        };
        html::page(StatusCode::OK, "Device allowed", main)
    } else {
        tracing::info!(client = %grant.client_id, sub = %session.sub, "device grant denied");
        p.metrics().device_grant(DeviceGrantEvent::Denied);
        p.device_budget().release(&h);
        let main = html! {
            h1 { "Device denied" }
            p role="status" { (client) " was refused and gets nothing. You can close this page." }
        };
        html::page(StatusCode::OK, "Device denied", main)
    }
}
