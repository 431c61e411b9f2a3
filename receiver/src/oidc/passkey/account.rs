//! `/account`: the person's passkeys (name, created, last used, state) and removal,
//! which needs a sign-in no older than a few minutes.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use maud::html;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::oidc::html;
use crate::oidc::http::server_page;
use crate::oidc::http::{Params, see_other};
use crate::oidc::metrics::Counter;
use crate::oidc::passkey::events;
use crate::oidc::passkey::paths;
use crate::oidc::passkey::policy;
use crate::oidc::passkey::rp::Refusal;
use crate::oidc::provider::Provider;
use crate::oidc::session::current_session;
use crate::oidc::store::{PasskeyRecord, Session};

const MINUTES: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

/// A Unix time as `YYYY-MM-DD HH:MM UTC` (beyond year 9999: `unix N`).
pub fn utc(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|d| d.format(MINUTES).ok())
        .unwrap_or_else(|| format!("unix {t}"))
}

fn state_of(r: &PasskeyRecord, now: u64) -> String {
    match (&r.disabled, policy::usable(r, now)) {
        (Some(why), _) => format!("switched off ({why})"),
        (None, Err(Refusal::PasskeyExpired)) => "expired".into(),
        _ => format!("works until {}", utc(r.expires_at)),
    }
}

fn page(
    p: &Provider,
    s: &Session,
    csrf: &str,
    note: Option<(&str, bool)>,
    status: StatusCode,
) -> Response {
    let now = p.now();
    let recs = match p.store().passkeys_of(&s.sub) {
        Ok(r) => r,
        Err(e) => return server_page(e),
    };
    let who = s
        .identity
        .claims
        .email
        .clone()
        .unwrap_or_else(|| s.identity.subject.clone());
    let add = p.passkeys().is_some() && policy::fresh_code_session(p, s, now);
    let mins = p
        .config()
        .passkeys
        .remove_requires_sign_in_within_secs
        .div_ceil(60);
    let main = html! {
        h1 { "Your account" }
        p { "Signed in as " strong { (who) } " since " (utc(s.auth_time)) "." }
        @if let Some((m, err)) = note {
            (html::alert(None, if err { "error" } else { "notice" }, Some(m)))
        }
        @if recs.is_empty() {
            p { "You have no passkeys. You can create one right after signing in with a transfer code." }
        } @else {
            table {
                caption { "Your passkeys" }
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Created" }
                    th scope="col" { "Last used" }
                    th scope="col" { "State" }
                    th scope="col" { span class="visually-hidden" { "Action" } }
                } }
                tbody {
                    @for r in &recs {
                        tr {
                            td { (r.name) }
                            td { (utc(r.created_at)) }
                            td { (r.last_used.map(utc).unwrap_or_else(|| "never".into())) }
                            td { (state_of(r, now)) }
                            td { form method="post" action=(paths::ACCOUNT_REMOVE) {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="credential" value=(r.cred_id);
                                button type="submit" class="secondary" aria-label={ "Remove passkey " (r.name) } { "Remove" }
                            } }
                        }
                    }
                }
            }
        }
        @if add { p { a href=(paths::ENROL) { "Create a passkey for this computer" } } }
        p class="hint" { "Removing a passkey needs a sign-in within the last " (mins) " minutes." }
    };
    html::page(status, "Your account", main)
}

/// `GET /account`.
pub async fn show(State(p): State<Provider>, headers: HeaderMap) -> Response {
    let session = match current_session(&p, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return html::error_page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Your account page needs a sign-in. Open your application and sign in, then come back here.",
                "login_required",
            );
        }
        Err(e) => return server_page(e),
    };
    let (csrf, set) = policy::csrf_token(&p, &headers);
    policy::with_csrf_cookie(page(&p, &session, &csrf, None, StatusCode::OK), set)
}

/// `POST /account/remove`.
pub async fn remove(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let addr = p.client_key(peer.ip(), &headers);
    let session = match current_session(&p, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => return see_other(paths::ACCOUNT),
        Err(e) => return server_page(e),
    };
    let Ok(form) = Params::parse(&body) else {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "Form rejected",
            "The form was malformed.",
            "invalid_request",
        );
    };
    let csrf = form.get("csrf").unwrap_or("").to_string();
    if !policy::csrf_ok(&p, &headers, &form, None) {
        return policy::csrf_rejected(&p);
    }
    let now = p.now();
    let window = p.config().passkeys.remove_requires_sign_in_within_secs;
    if now.saturating_sub(session.auth_time) > window {
        p.metrics().inc(Counter::PasskeyRefusals, "stale_sign_in");
        let m = format!(
            "Removing a passkey needs a sign-in within the last {} minutes; yours is older. Sign out, sign in again through your application, then come back here.",
            window.div_ceil(60)
        );
        return page(&p, &session, &csrf, Some((&m, true)), StatusCode::FORBIDDEN);
    }
    let cred = form.get("credential").unwrap_or("");
    let name = match p.store().passkey(cred) {
        Ok(Some(r)) if r.sub == session.sub => r.name,
        Ok(_) => {
            policy::refused(
                &p,
                "remove",
                &Refusal::OtherUsersCredential,
                Some(&session.sub),
                Some(cred),
                &addr,
            );
            return page(
                &p,
                &session,
                &csrf,
                Some(("That passkey is not one of yours.", true)),
                StatusCode::NOT_FOUND,
            );
        }
        Err(e) => return server_page(e),
    };
    let removed = p.store().delete_passkey(&session.sub, cred).and_then(|ok| {
        if ok {
            let e = events::Event::new("passkey_removed", now)
                .subject(&session.sub)
                .credential(cred)
                .detail(&name)
                .address(&addr);
            events::record(&p, e)?;
            p.store().flush()?;
        }
        Ok(ok)
    });
    match removed {
        Ok(true) => {
            p.metrics().inc(Counter::PasskeyRemovals, "ok");
            let m = format!(
                "Passkey \"{name}\" removed. Also delete it from your device or password manager."
            );
            page(&p, &session, &csrf, Some((&m, false)), StatusCode::OK)
        }
        Ok(false) => page(
            &p,
            &session,
            &csrf,
            Some(("That passkey was already removed.", true)),
            StatusCode::NOT_FOUND,
        ),
        Err(e) => server_page(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_796_342_400 + 3_661), "2026-12-04 01:01 UTC");
        assert_eq!(super::utc(u64::MAX), format!("unix {}", u64::MAX));
    }
}
