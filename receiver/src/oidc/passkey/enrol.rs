//! Enrolment: the interstitial shown right after a transfer-code sign-in ("create a
//! passkey for this computer"), its WebAuthn ceremony, and "not now".

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use webauthn_rs_core::proto::Credential;

use crate::oidc::error::OidcError;
use maud::html;

use crate::oidc::html;
use crate::oidc::http::server_page;
use crate::oidc::http::{Params, see_other};
use crate::oidc::metrics::Counter;
use crate::oidc::passkey::events;
use crate::oidc::passkey::paths;
use crate::oidc::passkey::policy;
use crate::oidc::passkey::rp::{Refusal, b64};
use crate::oidc::provider::Provider;
use crate::oidc::session::{current_session, issue_code};
use crate::oidc::store::{Ceremony, CeremonyKind, PasskeyRecord, PendingRequest, Session};

/// How much longer than the enrolment window a parked request waits.
const PARKED_EXTRA_SECS: u64 = 600;

/// The key of a session's waiting authorization request.
fn offer_key(sid: &str) -> String {
    format!("passkey-offer:{sid}")
}

/// Called after a transfer-code sign-in: if the person may create a passkey, parks the
/// request and returns the interstitial's URL (the app gets its code after it).
pub fn offer_after_code_sign_in(
    p: &Provider,
    session: &Session,
    pend: &PendingRequest,
) -> Result<Option<String>, OidcError> {
    let now = p.now();
    if p.passkeys().is_none() || !policy::fresh_code_session(p, session, now) {
        return Ok(None);
    }
    let user = p.directory().user(&session.sub)?;
    if policy::standing(p, user.as_ref(), now).is_err() || at_limit(p, &session.sub, now)? {
        return Ok(None);
    }
    // The request waits longer than the enrolment window: "Not now" still reaches the
    // app when the person took their time reading.
    let parked = PendingRequest {
        request: pend.request.clone(),
        csrf: pend.csrf.clone(),
        expires_at: now
            .saturating_add(p.config().passkeys.enrol_window_secs)
            .saturating_add(PARKED_EXTRA_SECS),
    };
    p.store().put_pending(&offer_key(&session.sid), &parked)?;
    Ok(Some(paths::ENROL.to_string()))
}

fn at_limit(p: &Provider, sub: &str, now: u64) -> Result<bool, OidcError> {
    let live = p
        .store()
        .passkeys_of(sub)?
        .iter()
        .filter(|r| policy::usable(r, now).is_ok())
        .count();
    Ok(live >= usize::try_from(p.config().passkeys.max_per_user).unwrap_or(usize::MAX))
}

/// Where the person goes after the interstitial: the app (with its code) if a request
/// waits, else the account page.
fn continue_to(p: &Provider, session: &Session) -> Response {
    let key = offer_key(&session.sid);
    let now = p.now();
    let parked = match p.store().pending(&key) {
        Ok(x) => x.filter(|x| x.expires_at > now),
        Err(e) => return server_page(e),
    };
    let Some(parked) = parked else {
        return see_other(paths::ACCOUNT);
    };
    let url = p
        .store()
        .delete_pending(&key)
        .and_then(|_| issue_code(p, &parked.request, session))
        .and_then(|u| p.store().flush().map(|_| u));
    match url {
        Ok(u) => see_other(&u),
        Err(e) => server_page(e),
    }
}

fn no_session_page() -> Response {
    html::error_page(
        StatusCode::UNAUTHORIZED,
        "Not signed in",
        "Creating a passkey needs a sign-in with a transfer code first. Open your application and sign in.",
        "login_required",
    )
}

/// The session of this browser and the page to show when there is none.
fn session_of(p: &Provider, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    match current_session(p, headers) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Box::new(no_session_page())),
        Err(e) => Err(Box::new(server_page(e))),
    }
}

/// The interstitial page.
fn page(
    p: &Provider,
    session: &Session,
    csrf: &str,
    failure: Option<&str>,
    status: StatusCode,
) -> Response {
    let now = p.now();
    let parked = p
        .store()
        .pending(&offer_key(&session.sid))
        .ok()
        .flatten()
        .filter(|x| x.expires_at > now);
    let form_target = parked.as_ref().map(|x| x.request.redirect_uri.clone());
    let skip_label = if parked.is_some() {
        "Not now, continue to the application"
    } else {
        "Not now, go to my account"
    };
    let can = policy::fresh_code_session(p, session, now);
    let main = html! {
        h1 { "Create a passkey for this computer?" }
        p { "Next time, sign in here with your fingerprint, face or PIN instead of fetching a transfer code outside. The passkey works only while your outside approval is valid." }
        (html::alert(Some("enrol-error"), "error", failure))
        @if can {
            form id="enrol-form" method="post" action=(paths::ENROL) data-options=(paths::ENROL_OPTIONS) hidden {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="ceremony" value="";
                input type="hidden" name="credential" value="";
                label for="passkey-name" { "Name of this passkey" }
                p id="name-hint" class="hint" { "So you can tell your passkeys apart later, e.g. \"office laptop\"." }
                input type="text" class="plain" id="passkey-name" name="name" required maxlength="64" value="This computer" aria-describedby="name-hint";
                button type="submit" id="enrol-button" { "Create a passkey" }
            }
            p id="passkey-status" class="hint" role="status" {}
            noscript { p class="hint" { "Creating a passkey needs JavaScript. You can keep signing in with transfer codes." } }
        } @else {
            p class="hint" { (Refusal::NotFreshSignIn.message()) }
        }
        form method="post" action=(paths::ENROL_SKIP) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" class="secondary" id="skip-button" { (skip_label) }
        }
        script src=(paths::SCRIPT) defer {}
    };
    html::page_with_script(status, "Create a passkey", main, form_target.as_deref())
}

/// `GET /passkey/enrol`.
pub async fn show(State(p): State<Provider>, headers: HeaderMap) -> Response {
    if p.passkeys().is_none() {
        return html::error_page(
            StatusCode::NOT_FOUND,
            "Passkeys are off",
            "This sign-in service does not offer passkeys.",
            "passkeys_off",
        );
    }
    let session = match session_of(&p, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (csrf, set) = policy::csrf_token(&p, &headers);
    policy::with_csrf_cookie(page(&p, &session, &csrf, None, StatusCode::OK), set)
}

/// Checks the form's CSRF token and that this session may enrol now.
fn may_enrol(
    p: &Provider,
    headers: &HeaderMap,
    form: &Params,
    session: &Session,
) -> Result<(), Refusal> {
    if !policy::csrf_ok(p, headers, form, None) {
        return Err(Refusal::Invalid(
            "the form did not come from this browser's page".into(),
        ));
    }
    let now = p.now();
    if !policy::fresh_code_session(p, session, now) {
        return Err(Refusal::NotFreshSignIn);
    }
    let user = p
        .directory()
        .user(&session.sub)
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    policy::standing(p, user.as_ref(), now)?;
    if at_limit(p, &session.sub, now).map_err(|e| Refusal::Invalid(e.to_string()))? {
        return Err(Refusal::TooMany);
    }
    Ok(())
}

fn valid_name(name: &str) -> Option<String> {
    let n = name.trim();
    (!n.is_empty() && n.chars().count() <= 64 && !n.chars().any(char::is_control))
        .then(|| n.to_string())
}

/// `POST /passkey/enrol/options`: creation options for this session's person.
pub async fn options(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let addr = p.client_key(peer.ip(), &headers);
    let Some(rp) = p.passkeys() else {
        return policy::json_refusal(
            StatusCode::NOT_FOUND,
            &Refusal::Invalid("passkeys are off".into()),
        );
    };
    let Ok(form) = Params::parse(&body) else {
        return policy::json_refusal(StatusCode::BAD_REQUEST, &Refusal::Malformed);
    };
    let session = match current_session(&p, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => {
            policy::refused(
                &p,
                "enrol options",
                &Refusal::NotFreshSignIn,
                None,
                None,
                &addr,
            );
            return policy::json_refusal(StatusCode::UNAUTHORIZED, &Refusal::NotFreshSignIn);
        }
        Err(e) => return server_page(e),
    };
    if let Err(r) = may_enrol(&p, &headers, &form, &session) {
        policy::refused(&p, "enrol options", &r, Some(&session.sub), None, &addr);
        return policy::json_refusal(StatusCode::FORBIDDEN, &r);
    }
    let Some(name) = form.get("name").and_then(valid_name) else {
        return policy::json_refusal(
            StatusCode::BAD_REQUEST,
            &Refusal::Invalid("the name must be 1 to 64 characters".into()),
        );
    };
    let existing: Vec<Credential> = match p.store().passkeys_of(&session.sub) {
        Ok(v) => v
            .iter()
            .filter_map(|r| serde_json::from_value(r.credential.clone()).ok())
            .collect(),
        Err(e) => return server_page(e),
    };
    let username = username_of(&session);
    let display = session
        .identity
        .claims
        .name
        .clone()
        .unwrap_or_else(|| username.clone());
    let started = match rp.start_enrol(&session.sub, &username, &display, existing) {
        Ok(s) => s,
        Err(e) => return server_page(e),
    };
    let c = Ceremony {
        kind: CeremonyKind::Enrol,
        bound_to: session.sid.clone(),
        sub: Some(session.sub.clone()),
        name: Some(name),
        state: started.state,
        expires_at: 0,
    };
    policy::start_ceremony(&p, c, started.options)
}

/// What the person types to sign in by name: the email claim, else the outside subject.
fn username_of(s: &Session) -> String {
    s.identity
        .claims
        .email
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| s.identity.subject.clone())
}

/// `POST /passkey/enrol`: the authenticator's response; stores the passkey.
pub async fn finish(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let addr = p.client_key(peer.ip(), &headers);
    let session = match session_of(&p, &headers) {
        Ok(s) => s,
        Err(r) => {
            policy::refused(&p, "enrol", &Refusal::NotFreshSignIn, None, None, &addr);
            return *r;
        }
    };
    let form = match Params::parse(&body) {
        Ok(f) => f,
        Err(e) => {
            let r = match e {
                crate::oidc::http::ParamError::TooLarge => Refusal::Oversized,
                _ => Refusal::Malformed,
            };
            policy::refused(&p, "enrol", &r, Some(&session.sub), None, &addr);
            return page(
                &p,
                &session,
                "",
                Some(&r.message()),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let csrf = form.get("csrf").unwrap_or("").to_string();
    match enrol(&p, &headers, &form, &session) {
        Ok(Ok(rec)) => {
            let e = events::Event::new("passkey_enrolled", p.now())
                .subject(&rec.sub)
                .credential(&rec.cred_id)
                .detail(&rec.name)
                .address(&addr);
            if let Err(e) = events::record(&p, e).and_then(|_| p.store().flush()) {
                return server_page(e);
            }
            p.metrics().inc(Counter::PasskeyEnrolments, "ok");
            continue_to(&p, &session)
        }
        Ok(Err(r)) => {
            policy::refused(&p, "enrol", &r, Some(&session.sub), None, &addr);
            page(
                &p,
                &session,
                &csrf,
                Some(&r.message()),
                StatusCode::BAD_REQUEST,
            )
        }
        Err(e) => server_page(e),
    }
}

fn enrol(
    p: &Provider,
    headers: &HeaderMap,
    form: &Params,
    session: &Session,
) -> Result<Result<PasskeyRecord, Refusal>, OidcError> {
    let Some(rp) = p.passkeys() else {
        return Ok(Err(Refusal::Invalid("passkeys are off".into())));
    };
    let response = form.get("credential").unwrap_or("");
    if response.len() > crate::oidc::passkey::rp::MAX_RESPONSE {
        return Ok(Err(Refusal::Oversized));
    }
    if let Err(r) = may_enrol(p, headers, form, session) {
        return Ok(Err(r));
    }
    let now = p.now();
    let ceremony = match form.get("ceremony").filter(|c| c.len() <= 64) {
        Some(id) => p.store().take_ceremony(id)?,
        None => None,
    };
    let Some(ceremony) = ceremony.filter(|c| {
        c.kind == CeremonyKind::Enrol
            && c.bound_to == session.sid
            && c.sub.as_deref() == Some(session.sub.as_str())
            && c.expires_at > now
    }) else {
        return Ok(Err(Refusal::Replayed));
    };
    let cred = match rp.finish_enrol(response, &ceremony.state) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let cfg = &p.config().passkeys;
    let provisioned = policy::provisioned(p.directory().user(&session.sub)?.as_ref());
    let lifetime = if provisioned {
        cfg.lifetime_cap_secs
    } else {
        cfg.ticket_only_lifetime_secs
    };
    let rec = PasskeyRecord {
        cred_id: b64(cred.cred_id.as_ref()),
        sub: session.sub.clone(),
        username: username_of(session),
        user_handle: b64(&crate::oidc::passkey::rp::RelyingParty::user_handle(
            &session.sub,
        )),
        name: ceremony.name.unwrap_or_else(|| "passkey".into()),
        created_at: now,
        last_used: None,
        expires_at: now.saturating_add(lifetime),
        disabled: None,
        backup_eligible: cred.backup_eligible,
        credential: serde_json::to_value(&cred)?,
        identity: session.identity.clone(),
    };
    if !p.store().insert_passkey(&rec)? {
        return Ok(Err(Refusal::AlreadyRegistered));
    }
    Ok(Ok(rec))
}

/// `POST /passkey/enrol/skip`: "not now".
pub async fn skip(State(p): State<Provider>, headers: HeaderMap, body: String) -> Response {
    let session = match session_of(&p, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let ok = Params::parse(&body)
        .map(|f| policy::csrf_ok(&p, &headers, &f, None))
        .unwrap_or(false);
    if !ok {
        return policy::csrf_rejected(&p);
    }
    p.metrics().inc(Counter::PasskeyEnrolments, "skipped");
    continue_to(&p, &session)
}
