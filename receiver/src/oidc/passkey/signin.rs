//! Passkey sign-in on the login page: options (usernameless, or limited to the passkeys
//! of a typed name), then the signed response, which ends like a transfer-code sign-in.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use webauthn_rs_core::proto::Credential;

use crate::oidc::endpoints::login::{self as login_page, expired_page};
use crate::oidc::http::Params;
use crate::oidc::http::server_page;
use crate::oidc::login::{Authenticated, LoginMethod};
use crate::oidc::metrics::Counter;
use crate::oidc::passkey::events;
use crate::oidc::passkey::policy;
use crate::oidc::passkey::rp::{self, Refusal, b64};
use crate::oidc::provider::Provider;
use crate::oidc::store::{Ceremony, CeremonyKind, IdentitySnapshot, PasskeyRecord, PendingRequest};

/// The pending login of a form, after its CSRF check; Err is the page to answer.
fn pending_login(
    p: &Provider,
    headers: &HeaderMap,
    form: &Params,
) -> Result<(String, PendingRequest), Box<Response>> {
    let Some(txn) = form.get("txn").filter(|t| t.len() <= 64) else {
        return Err(Box::new(expired_page()));
    };
    let pend = match login_page::pending(p, txn) {
        Ok(Some(x)) => x,
        Ok(None) => return Err(Box::new(expired_page())),
        Err(r) => return Err(r),
    };
    if !policy::csrf_ok(p, headers, form, Some(&pend.csrf)) {
        return Err(Box::new(policy::csrf_rejected(p)));
    }
    Ok((txn.to_string(), pend))
}

/// `POST /passkey/sign-in/options`: WebAuthn request options for this login.
pub async fn options(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let addr = p.client_key(peer.ip(), &headers);
    let Ok(form) = Params::parse(&body) else {
        return policy::json_refusal(StatusCode::BAD_REQUEST, &Refusal::Malformed);
    };
    let (txn, pend) = match pending_login(&p, &headers, &form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(rp) = p.passkeys() else {
        return policy::json_refusal(
            StatusCode::NOT_FOUND,
            &Refusal::Invalid("passkeys are off".into()),
        );
    };
    if policy::transfer_code_forced(&pend.request) {
        let r = Refusal::TransferCodeRequired;
        policy::refused(&p, "sign-in options", &r, None, None, &addr);
        return policy::json_refusal(StatusCode::FORBIDDEN, &r);
    }
    let now = p.now();
    // By name: only that person's usable passkeys. An unknown name gets usernameless
    // options, so the answer does not tell who has passkeys.
    let mut named = None;
    let mut creds: Vec<Credential> = Vec::new();
    if let Some(name) = form
        .get("username")
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let recs = match p.store().passkeys_by_username(name) {
            Ok(r) => r,
            Err(e) => return server_page(e),
        };
        for r in recs.iter().filter(|r| policy::usable(r, now).is_ok()) {
            if let Ok(c) = serde_json::from_value::<Credential>(r.credential.clone()) {
                creds.push(c);
                named = Some(r.sub.clone());
            }
        }
    }
    let started = match rp.start_sign_in(creds) {
        Ok(s) => s,
        Err(e) => return server_page(e),
    };
    let ceremony = Ceremony {
        kind: CeremonyKind::SignIn,
        bound_to: txn,
        sub: named,
        name: None,
        state: started.state,
        expires_at: 0,
    };
    policy::start_ceremony(&p, ceremony, started.options)
}

/// A checked sign-in: who, and with which passkey.
struct Accepted {
    rec: PasskeyRecord,
    identity: IdentitySnapshot,
    verified: bool,
}

/// `POST /passkey/sign-in`: the signed response; success ends like a code sign-in.
pub async fn finish(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let addr = p.client_key(peer.ip(), &headers);
    let form = match Params::parse(&body) {
        Ok(f) => f,
        Err(crate::oidc::http::ParamError::TooLarge) => {
            policy::refused(&p, "sign-in", &Refusal::Oversized, None, None, &addr);
            return crate::oidc::http::bad_page(
                &Refusal::Oversized.message(),
                Refusal::Oversized.reason(),
            );
        }
        Err(_) => {
            return crate::oidc::http::bad_page(
                "The sign-in form was malformed.",
                "invalid_request",
            );
        }
    };
    let (txn, pend) = match pending_login(&p, &headers, &form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match check(&p, &txn, &pend, &form) {
        Ok(Ok(acc)) => {
            let auth = Authenticated {
                sub: acc.rec.sub.clone(),
                identity: acc.identity,
                method: LoginMethod::Passkey {
                    verified: acc.verified,
                },
            };
            let e = events::Event::new("passkey_sign_in", p.now())
                .subject(&acc.rec.sub)
                .credential(&acc.rec.cred_id)
                .detail(&format!(
                    "{} (client {})",
                    acc.rec.name, pend.request.client_id
                ))
                .address(&addr);
            if let Err(e) = events::record(&p, e) {
                return server_page(e);
            }
            login_page::finish(&p, &txn, &pend, auth)
        }
        Ok(Err((r, sub, cred))) => {
            policy::refused(&p, "sign-in", &r, sub.as_deref(), cred.as_deref(), &addr);
            let status = match r {
                Refusal::Revoked
                | Refusal::ApprovalExpired
                | Refusal::Disabled
                | Refusal::DisabledAtExpiry => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_page::form_page(&p, &txn, &pend, Some(&r.message()), status)
        }
        Err(e) => server_page(e),
    }
}

type Checked = Result<Accepted, (Refusal, Option<String>, Option<String>)>;

fn check(
    p: &Provider,
    txn: &str,
    pend: &PendingRequest,
    form: &Params,
) -> Result<Checked, crate::oidc::error::OidcError> {
    let no = |r: Refusal| Ok(Err((r, None, None)));
    let Some(rp) = p.passkeys() else {
        return no(Refusal::Invalid("passkeys are off".into()));
    };
    if policy::transfer_code_forced(&pend.request) {
        return no(Refusal::TransferCodeRequired);
    }
    let now = p.now();
    let response = match rp::parse_assertion(form.get("credential").unwrap_or("")) {
        Ok(r) => r,
        Err(r) => return no(r),
    };
    // The ceremony is consumed first: a replayed response finds nothing.
    let ceremony = match form.get("ceremony").filter(|c| c.len() <= 64) {
        Some(id) => p.store().take_ceremony(id)?,
        None => None,
    };
    let Some(ceremony) = ceremony
        .filter(|c| c.kind == CeremonyKind::SignIn && c.bound_to == txn && c.expires_at > now)
    else {
        return no(Refusal::Replayed);
    };
    let cred_id = b64(response.raw_id.as_ref());
    let Some(rec) = p.store().passkey(&cred_id)? else {
        return Ok(Err((Refusal::UnknownCredential, None, Some(cred_id))));
    };
    let fail = |r: Refusal| Ok(Err((r, Some(rec.sub.clone()), Some(rec.cred_id.clone()))));
    if let Some(h) = response.response.user_handle.as_ref()
        && b64(h.as_ref()) != rec.user_handle
    {
        return fail(Refusal::OtherUsersCredential);
    }
    // Sign-in by name, or a client naming the expected person (`id_token_hint`): only
    // that person's passkey.
    if ceremony.sub.as_ref().is_some_and(|s| *s != rec.sub)
        || pend
            .request
            .hint_sub
            .as_ref()
            .is_some_and(|h| *h != rec.sub)
    {
        return fail(Refusal::OtherUsersCredential);
    }
    let Ok(stored) = serde_json::from_value::<Credential>(rec.credential.clone()) else {
        return fail(Refusal::Invalid(
            "the stored credential is unreadable".into(),
        ));
    };
    let result =
        match rp.finish_sign_in(&response, &ceremony.state, &stored, ceremony.sub.is_none()) {
            Ok(r) => r,
            Err(r) => return fail(r),
        };
    // The signature holds: now the limits of the outside approval.
    if let Err(r) = policy::usable(&rec, now) {
        return fail(r);
    }
    let user = p.directory().user(&rec.sub)?;
    if let Err(r) = policy::standing(p, user.as_ref(), now) {
        return fail(r);
    }
    // The counter moves forward atomically: of two racing uses of one counter value
    // (a cloned authenticator) only one gets here.
    let verdict = p.store().update_passkey(&rec.cred_id, &mut |r| {
        let Ok(mut c) = serde_json::from_value::<Credential>(r.credential.clone()) else {
            return false;
        };
        if !rp::advance(&mut c, &result) {
            return false;
        }
        let Ok(v) = serde_json::to_value(&c) else {
            return false;
        };
        r.credential = v;
        r.last_used = Some(now);
        true
    })?;
    match verdict {
        Some(true) => {}
        Some(false) => return fail(Refusal::CounterRegression),
        None => return fail(Refusal::UnknownCredential),
    }
    let identity = match user {
        Some(u) => IdentitySnapshot {
            issuer: u.issuer,
            subject: u.subject,
            claims: u.claims,
            seq: u.provisioned_seq,
        },
        None => rec.identity.clone(),
    };
    p.metrics().inc(Counter::PasskeySignIns, "ok");
    Ok(Ok(Accepted {
        verified: result.user_verified(),
        rec,
        identity,
    }))
}
