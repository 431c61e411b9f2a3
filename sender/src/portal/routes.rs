//! The portal's HTTP surface:
//! - `GET /` — the start page: one sign-in button per IdP.
//! - `GET /login/{idp}` — starts a login: sets the browser-binding cookie, redirects to the IdP.
//! - `GET /callback` — the IdP's answer: validates, asks the policy, shows the code or the refusal.
//! - `GET /assets/portal.css`, `GET /healthz`.
//!
//! Every response carries a strict CSP (no script at all), no-store, nosniff, no-referrer
//! and frame-ancestors 'none'.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_daemon::cookie::{CookieError, CookieName, cookie};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::grant::{self, Outcome};
use super::idp::Idp;
use super::login::{self, LoginError, VerifiedLogin};
use super::pages;
use super::pending::{self, PendingLogin};
use super::state::Portal;

/// The browser-binding cookie's name on a plain-http portal (a loopback test): browsers
/// refuse `__Host-` cookies without `Secure`.
pub const COOKIE: &str = "airlock_portal_login";
/// Its name when every redirect URL is https: with the `__Host-` prefix browsers accept
/// it only with `Secure`, `Path=/` and no `Domain`, so no sibling subdomain can plant it.
pub const COOKIE_HOST: &str = "__Host-airlock_portal_login";

const BINDING: CookieName = CookieName {
    plain: COOKIE,
    host: COOKIE_HOST,
};

/// The binding cookie's name for this portal.
pub fn cookie_name(portal: &Portal) -> &'static str {
    BINDING.get(portal.settings.secure_cookies())
}
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// A callback query longer than this is refused before parsing.
const MAX_QUERY: usize = 8 * 1024;
/// After a signature failure, refetch the JWKS (key rotation) only if the copy is older.
const JWKS_RETRY_AGE: Duration = Duration::from_secs(30);

pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/", get(start_page))
        .route("/login/{idp}", get(begin))
        .route("/callback", get(callback))
        .route("/assets/portal.css", get(css))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(portal)
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn error_page(status: StatusCode, title: &str, what: &str, todo: &str) -> Response {
    html(status, pages::error(title, what, todo))
}

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
        "Start from the portal's front page.",
    )
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::CSS,
    )
        .into_response()
}

async fn start_page(State(portal): State<Arc<Portal>>) -> Response {
    let idps: Vec<(String, String)> = portal
        .idps
        .iter()
        .map(|i| (i.config.name.clone(), i.config.display_name.clone()))
        .collect();
    html(StatusCode::OK, pages::start(&idps))
}

fn set_cookie(portal: &Portal, value: &str) -> Result<HeaderValue, CookieError> {
    airlock_daemon::cookie::set_cookie(
        cookie_name(portal),
        value,
        portal.settings.secure_cookies(),
        Some(pending::PENDING_TTL.as_secs()),
    )
}

fn refresh_age(portal: &Portal) -> Duration {
    Duration::from_secs(portal.settings.refresh_secs)
}

async fn begin(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((index, idp)) = portal
        .idps
        .iter()
        .enumerate()
        .find(|(_, i)| i.config.name == name)
    else {
        return not_found().await;
    };
    let docs = match idp.documents(&portal.http, refresh_age(&portal)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a login");
            return unavailable(idp);
        }
    };
    let started = match login::start(idp, &docs) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(idp = %name, error = %e, "cannot build the authorization request");
            return unavailable(idp);
        }
    };
    // Reuse this browser's binding (a second tab must not break the first login), but
    // only one this portal minted for a login still in progress: a value planted by
    // someone else is never adopted.
    let binding = cookie(&headers, cookie_name(&portal))
        .filter(|v| portal.pending.minted(v))
        .map(str::to_string)
        .unwrap_or_else(pending::new_binding);
    if let Err(e) = portal.pending.insert(
        started.state,
        index,
        started.pkce_verifier,
        started.nonce,
        &binding,
    ) {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            &e.to_string(),
            "Wait a few minutes and start again.",
        );
    }
    let mut response = (StatusCode::SEE_OTHER, "").into_response();
    let h = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(started.url.as_str()),
        set_cookie(&portal, &binding),
    ) {
        h.insert(header::LOCATION, location);
        h.insert(header::SET_COOKIE, cookie);
        response
    } else {
        unavailable(idp)
    }
}

fn unavailable(idp: &Idp) -> Response {
    error_page(
        StatusCode::BAD_GATEWAY,
        "Sign-in is unavailable",
        &format!(
            "The portal cannot reach {} right now.",
            idp.config.display_name
        ),
        "Try again in a few minutes. If it keeps failing, tell the people who run this portal.",
    )
}

/// The callback's query parameters; a repeated parameter is refused (RFC 6749 §3.1).
fn parse_query(raw: Option<String>) -> Result<HashMap<String, String>, &'static str> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY {
        return Err("the address is too long");
    }
    let mut out = HashMap::new();
    for (k, v) in openidconnect::url::form_urlencoded::parse(raw.as_bytes()) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err("a parameter is repeated");
        }
    }
    Ok(out)
}

fn restart(status: StatusCode, what: &str) -> Response {
    error_page(
        status,
        "Sign-in did not complete",
        what,
        "Start again from the portal's front page, in the same browser.",
    )
}

async fn callback(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match parse_query(raw) {
        Ok(q) => q,
        Err(what) => return restart(StatusCode::BAD_REQUEST, what),
    };
    let Some(state) = q.get("state") else {
        return restart(
            StatusCode::BAD_REQUEST,
            "The answer from the IdP has no state.",
        );
    };
    // Taking the pending login consumes it: whatever happens next, the state is used once.
    let pending = match portal
        .pending
        .take(state, cookie(&headers, cookie_name(&portal)))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "callback refused");
            return restart(StatusCode::BAD_REQUEST, &format!("Refused: {e}."));
        }
    };
    let Some(idp) = portal.idps.get(pending.idp) else {
        return restart(StatusCode::BAD_REQUEST, "Unknown IdP.");
    };
    if let Some(err) = q.get("error") {
        let desc = q.get("error_description").map(String::as_str).unwrap_or("");
        tracing::info!(idp = %idp.config.name, error = %err, "the IdP returned an error");
        return restart(
            StatusCode::BAD_REQUEST,
            &format!("{} answered: {err} {desc}", idp.config.display_name),
        );
    }
    // RFC 9207: if the IdP names itself, it must be the one this login went to (mix-up).
    if q.get("iss").is_some_and(|iss| *iss != idp.config.issuer) {
        return restart(StatusCode::BAD_REQUEST, "The answer came from another IdP.");
    }
    let Some(code) = q.get("code").cloned() else {
        return restart(
            StatusCode::BAD_REQUEST,
            "The answer from the IdP has no code.",
        );
    };
    let login = match complete(&portal, idp, pending, code).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(idp = %idp.config.name, error = %e, "login refused");
            return restart(
                StatusCode::BAD_REQUEST,
                &format!("Your sign-in could not be verified: {e}."),
            );
        }
    };
    decide(&portal, idp, login).await
}

/// Code exchange and ID-token validation; on a signature failure the JWKS is fetched again
/// once (the IdP may have rotated its keys) and the same token checked again.
async fn complete(
    portal: &Portal,
    idp: &Idp,
    pending: PendingLogin,
    code: String,
) -> Result<VerifiedLogin, LoginError> {
    let docs = idp
        .documents(&portal.http, refresh_age(portal))
        .await
        .map_err(|e| LoginError::Config(e.to_string()))?;
    let tokens = login::exchange(idp, &docs, &portal.http, code, pending.pkce_verifier).await?;
    let now = crate::clock::unix_now() as i64;
    let max_age = portal.settings.max_token_age_secs;
    match login::verify(idp, &docs, &tokens, &pending.nonce, max_age, now) {
        Err(LoginError::Signature(first)) => {
            let fresh = idp
                .documents(&portal.http, JWKS_RETRY_AGE)
                .await
                .map_err(|e| LoginError::Config(e.to_string()))?;
            if Arc::ptr_eq(&fresh, &docs) {
                return Err(LoginError::Signature(first));
            }
            login::verify(idp, &fresh, &tokens, &pending.nonce, max_age, now)
        }
        other => other,
    }
}

async fn decide(portal: &Portal, idp: &Idp, login: VerifiedLogin) -> Response {
    let now = crate::clock::unix_now();
    let subject = login.subject.clone();
    let timeout = Duration::from_secs(portal.settings.durable_timeout_secs);
    match grant::grant(&portal.config, &idp.config.name, login, now, timeout).await {
        Ok(Outcome::Issued {
            code,
            expires_at,
            dropped_claims,
        }) => {
            tracing::info!(idp = %idp.config.name, %subject, expires_at, ?dropped_claims, "login ticket issued");
            html(
                StatusCode::OK,
                pages::issued(&code, expires_at, now, &subject, &idp.config.display_name),
            )
        }
        Ok(Outcome::Refused(rejection)) => {
            tracing::info!(idp = %idp.config.name, %subject, rule = rejection.rule, detail = %rejection.detail, "login refused by policy");
            html(
                StatusCode::FORBIDDEN,
                pages::refused(
                    &rejection,
                    &portal.settings.help_contact,
                    &idp.config.display_name,
                ),
            )
        }
        Err(e) => {
            tracing::error!(idp = %idp.config.name, %subject, error = %e, "could not issue a ticket");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "No code this time",
                "Your sign-in worked, but the ticket could not be stored safely, so no code is shown.",
                "Try again in a minute. If it keeps failing, tell the people who run this portal.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_or_oversized_queries_are_refused() {
        assert!(parse_query(Some("code=a&state=b".into())).is_ok());
        assert!(parse_query(Some("code=a&code=b".into())).is_err());
        assert!(parse_query(Some("x".repeat(MAX_QUERY + 1))).is_err());
        assert!(parse_query(None).unwrap().is_empty());
    }

    #[test]
    fn the_https_name_carries_the_host_prefix() {
        assert!(BINDING.is_consistent());
    }
}
