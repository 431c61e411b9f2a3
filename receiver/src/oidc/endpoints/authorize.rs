//! The authorization endpoint (code flow, PKCE S256, prompt, max_age, RFC 9207 `iss`,
//! pushed requests by `request_uri`: [`crate::oidc::endpoints::par`]).
//!
//! Errors before the client and redirect_uri are validated get an error page; after
//! that they are redirected to the client with `error`, `state` and `iss`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::oidc::budget::Refused;
use crate::oidc::config::ClientConfig;
use crate::oidc::endpoints::{paths, pushed_request};
use crate::oidc::http::{OAuthError, Params, bad_page, csrf_for_page, see_other, server_page};
use crate::oidc::metrics::Counter;
use crate::oidc::provider::Provider;
use crate::oidc::session::{current_session, issue_code};
use crate::oidc::store::{AuthRequest, PendingRequest, Session};
use crate::oidc::tokens;
use crate::oidc::util::{random_token, with_query};

/// How long a user has to complete the login page.
const PENDING_LIFETIME: u64 = 600;

/// Longest `state` and `nonce` kept for the login page.
const MAX_STATE: usize = 512;
/// Longest `scope` (all values) and `acr_values` kept for the login page.
const MAX_SCOPE: usize = 1024;
const MAX_ACR_VALUES: usize = 512;

pub async fn get_handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    authorize(&p, peer, &headers, q.as_deref().unwrap_or(""))
}

pub async fn post_handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    authorize(&p, peer, &headers, &body)
}

/// A redirect-able error: sent to the validated redirect_uri.
struct Redirected {
    error: &'static str,
    description: String,
    /// Counted in `authorize_errors{reason}` when it is sent back.
    counted: Option<&'static str>,
}

fn err(error: &'static str, description: impl Into<String>) -> Redirected {
    Redirected {
        error,
        description: description.into(),
        counted: None,
    }
}

fn authorize(p: &Provider, peer: SocketAddr, headers: &HeaderMap, raw: &str) -> Response {
    let params = match Params::parse(raw) {
        Ok(x) => x,
        Err(e) => {
            return bad_page(
                &format!("The sign-in request is malformed: {e}."),
                "invalid_request",
            );
        }
    };
    // A pushed request replaces every parameter but client_id (RFC 9126 §4).
    let pushed = params.get("request_uri").is_some();
    let params = match pushed {
        true => match pushed_request::resolve(p, &params) {
            Ok(x) => x,
            Err(page) => return *page,
        },
        false => params,
    };
    let Some(client_id) = params.get("client_id") else {
        return bad_page(
            "The sign-in request names no application (client_id is missing).",
            "invalid_request",
        );
    };
    let Some(client) = p.config().client(client_id) else {
        tracing::warn!(client_id, "authorization request from unknown client");
        p.metrics().inc(Counter::AuthorizeErrors, "unknown_client");
        return bad_page(
            "The application that sent you here is not registered with this sign-in service.",
            "invalid_client",
        );
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return bad_page(
            "The sign-in request has no redirect_uri.",
            "invalid_request",
        );
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        tracing::warn!(client_id, redirect_uri, "redirect_uri mismatch");
        p.metrics()
            .inc(Counter::AuthorizeErrors, "redirect_uri_mismatch");
        return bad_page(
            "The application asked to return to an address it has not registered.",
            "invalid_request",
        );
    }
    let state = params.get("state").map(str::to_string);
    let back = |e: Redirected| redirect_error(p, redirect_uri, state.as_deref(), e);
    if !client.allows_grant("authorization_code") {
        return back(err(
            "unauthorized_client",
            "this client may not use the authorization code flow (see its grant_types)",
        ));
    }
    if !pushed && client.par_required(p.config().require_pushed_authorization_requests) {
        tracing::warn!(
            client_id,
            "plain authorization request from a client that must push"
        );
        p.metrics().inc(Counter::AuthorizeErrors, "par_required");
        return back(err(
            "invalid_request",
            "this client must push its authorization requests (POST /par, then request_uri)",
        ));
    }
    let (mut request, prompt) =
        match validate(client, &params, redirect_uri, p.config().require_pkce) {
            Ok(x) => x,
            Err(e) => return back(e),
        };
    let now = p.now();
    request.hint_sub = match hinted_sub(p, &params, now) {
        Ok(h) => h,
        Err(e) => return back(e),
    };
    let session = match current_session(p, headers) {
        Ok(s) => s,
        Err(e) => return server_page(e),
    };
    let fresh_enough = |s: &Session| {
        request
            .max_age
            .is_none_or(|m| now.saturating_sub(s.auth_time) <= m)
    };
    // A session of another user than the hinted one is no session for this request.
    let hinted = |s: &Session| request.hint_sub.as_ref().is_none_or(|h| *h == s.sub);
    // A client demanding the transfer code (acr_values) does not get a passkey session.
    let acr_ok = |s: &Session| {
        !crate::oidc::passkey::policy::transfer_code_forced(&request)
            || s.acr == crate::oidc::login::LoginMethod::TransferCode.acr()
    };
    let usable = match session {
        Some(s) if !prompt.login && fresh_enough(&s) && hinted(&s) && acr_ok(&s) => {
            match p.current_identity(&s.sub, &s.identity) {
                Ok(Ok(_)) => Some(s),
                Ok(Err(_)) => None,
                Err(e) => return server_page(e),
            }
        }
        _ => None,
    };
    match usable {
        Some(s) if !p.admit_code(&s.sid) => {
            p.metrics().inc(Counter::AuthorizeErrors, "code_limit");
            back(err(
                "temporarily_unavailable",
                format!(
                    "this session was issued {} codes within {} s; sign in again or wait",
                    p.config().max_codes_per_session,
                    p.config().code_lifetime_secs
                ),
            ))
        }
        Some(s) => match issue_code(p, &request, &s) {
            Ok(url) => see_other(&url),
            Err(e) => server_page(e),
        },
        None if prompt.none => back(err(
            "login_required",
            "the user is not logged in (or must log in again)",
        )),
        None => {
            let address = p.client_key(peer.ip(), headers);
            match start_login(p, headers, &address, request) {
                Ok(r) => r,
                Err(e) => back(e),
            }
        }
    }
}

/// Validates a pushed authorization request exactly as [`authorize`] would the same
/// parameters (registered redirect_uri, then every parameter, then `id_token_hint`); the
/// error it would redirect with is answered as JSON (RFC 9126 §2.3).
pub(crate) fn check_pushed(
    p: &Provider,
    client: &ClientConfig,
    params: &Params,
) -> Result<(), OAuthError> {
    if !client.allows_grant("authorization_code") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use the authorization code flow (see its grant_types)",
        ));
    }
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err(OAuthError::invalid_request("redirect_uri is missing"));
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    let refused = |e: Redirected| OAuthError::new(StatusCode::BAD_REQUEST, e.error, e.description);
    validate(client, params, redirect_uri, p.config().require_pkce).map_err(refused)?;
    hinted_sub(p, params, p.now()).map_err(refused)?;
    Ok(())
}

/// The `sub` of `id_token_hint`, which must be an ID token of ours (it may have expired).
fn hinted_sub(p: &Provider, params: &Params, now: u64) -> Result<Option<String>, Redirected> {
    let Some(t) = params.get("id_token_hint") else {
        return Ok(None);
    };
    let claims =
        tokens::verify_own(p.keys(), &p.config().issuer, t, "JWT", false, now).map_err(|e| {
            tracing::info!(error = %e, "authorization request with an invalid id_token_hint");
            err(
                "invalid_request",
                "id_token_hint is not an ID token this provider issued",
            )
        })?;
    match claims.get("sub").and_then(serde_json::Value::as_str) {
        Some(sub) => Ok(Some(sub.to_string())),
        None => Err(err("invalid_request", "id_token_hint has no sub")),
    }
}

#[derive(Default)]
struct Prompt {
    none: bool,
    login: bool,
}

/// Checks every parameter of an authorization request of `client`; `require_pkce` is
/// the global `[oidc] require_pkce` (the client's own setting overrides it).
fn validate(
    client: &ClientConfig,
    params: &Params,
    redirect_uri: &str,
    require_pkce: bool,
) -> Result<(AuthRequest, Prompt), Redirected> {
    if params.get("request").is_some() {
        return Err(err(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(err(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if params.get("response_type") != Some("code") {
        return Err(err(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(err(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let scope: Vec<String> = params
        .get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if !scope.iter().any(|s| s == "openid") {
        return Err(err("invalid_scope", "scope must include openid"));
    }
    if let Some(s) = scope.iter().find(|s| !client.allows_scope(s)) {
        return Err(err(
            "invalid_scope",
            format!("scope {s} is not allowed for this client"),
        ));
    }
    let challenge = params.get("code_challenge");
    match (challenge, params.get("code_challenge_method")) {
        (Some(_), Some("S256")) => {}
        (Some(_), _) => return Err(err("invalid_request", "code_challenge_method must be S256")),
        (None, Some(_)) => {
            return Err(err(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (None, None) if client.pkce_required(require_pkce) => {
            return Err(Redirected {
                counted: Some("pkce_required"),
                ..err(
                    "invalid_request",
                    "PKCE (code_challenge, S256) is required for this client",
                )
            });
        }
        (None, None) => {}
    }
    if let Some(c) = challenge
        && (c.len() != 43
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(err(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    let mut prompt = Prompt::default();
    for v in params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        match v {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            other => {
                return Err(err(
                    "invalid_request",
                    format!("prompt={other} is not supported"),
                ));
            }
        }
    }
    if prompt.none && prompt.login {
        return Err(err(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match params.get("max_age") {
        Some(m) => Some(
            m.parse::<u64>()
                .map_err(|_| err("invalid_request", "max_age must be a number of seconds"))?,
        ),
        None => None,
    };
    // max_age=0 means "authenticate now" (OIDC Core §3.1.2.1), like prompt=login.
    if max_age == Some(0) {
        prompt.login = true;
    }
    // Everything parked for the login page is bounded: an unauthenticated request must
    // not be able to make the store hold kilobytes for ten minutes.
    for (k, max) in [
        ("state", MAX_STATE),
        ("nonce", MAX_STATE),
        ("scope", MAX_SCOPE),
        ("acr_values", MAX_ACR_VALUES),
    ] {
        if params.get(k).is_some_and(|v| v.len() > max) {
            return Err(err(
                "invalid_request",
                format!("{k} is longer than {max} characters"),
            ));
        }
    }
    let request = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope,
        state: params.get("state").map(String::from),
        nonce: params.get("nonce").map(String::from),
        code_challenge: challenge.map(String::from),
        max_age,
        hint_sub: None,
        acr_values: params
            .get("acr_values")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .take(8)
            .map(String::from)
            .collect(),
        device: None,
    };
    Ok((request, prompt))
}

fn redirect_error(
    p: &Provider,
    redirect_uri: &str,
    state: Option<&str>,
    e: Redirected,
) -> Response {
    tracing::info!(error = e.error, description = %e.description, "authorization request refused");
    if let Some(reason) = e.counted {
        p.metrics().inc(Counter::AuthorizeErrors, reason);
    }
    let mut q: Vec<(&str, &str)> = vec![("error", e.error), ("error_description", &e.description)];
    if let Some(s) = state {
        q.push(("state", s));
    }
    q.push(("iss", &p.config().issuer));
    see_other(&with_query(redirect_uri, &q))
}

/// Parks the request and sends the browser to the login page. The CSRF token is bound
/// to this browser by a cookie (double submit) and to the parked request. Refused when
/// `address` or the receiver has its maximum of requests waiting.
fn start_login(
    p: &Provider,
    headers: &HeaderMap,
    address: &str,
    request: AuthRequest,
) -> Result<Response, Redirected> {
    let (csrf, set) = csrf_for_page(p, headers);
    let txn = random_token(24);
    let pending = PendingRequest {
        request,
        csrf: csrf.clone(),
        expires_at: p.now() + PENDING_LIFETIME,
    };
    match p.park_pending(address, &txn, &pending) {
        Ok(Ok(())) => {}
        Ok(Err(Refused::Key)) => {
            tracing::warn!(%address, "too many authorization requests waiting from one address");
            p.metrics()
                .inc(Counter::AuthorizeErrors, "pending_limit_address");
            return Err(err(
                "temporarily_unavailable",
                format!(
                    "{} sign-ins are already waiting from this address; finish one or try again in {} minutes",
                    p.config().max_pending_per_address,
                    PENDING_LIFETIME / 60
                ),
            ));
        }
        Ok(Err(Refused::Total)) => {
            tracing::warn!("too many authorization requests waiting in all");
            p.metrics()
                .inc(Counter::AuthorizeErrors, "pending_limit_total");
            return Err(err(
                "temporarily_unavailable",
                "the sign-in service has too many sign-ins waiting; try again in a few minutes",
            ));
        }
        Err(e) => return Ok(server_page(e)),
    }
    let mut r = see_other(&with_query(paths::LOGIN, &[("txn", &txn)]));
    if let Some(set) = set {
        r.headers_mut().append(header::SET_COOKIE, set);
    }
    Ok(r)
}
