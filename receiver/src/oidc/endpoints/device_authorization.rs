//! The device authorization endpoint (RFC 8628 § 3.1–3.2) and the device code grant at
//! the token endpoint (§ 3.4–3.5): polling, `slow_down`, single-use redemption.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oidc::budget::Refused;
use crate::oidc::clients::authenticate;
use crate::oidc::config::ClientConfig;
use crate::oidc::device::{self, GRANT_TYPE, SLOW_DOWN_STEP};
use crate::oidc::endpoints::paths;
use crate::oidc::http::{OAuthError, Params, no_store_json};
use crate::oidc::metrics::{Counter, DeviceGrantEvent};
use crate::oidc::provider::{Denied, Provider};
use crate::oidc::store::{DeviceApproval, DeviceGrant, DeviceStatus, Family};
use crate::oidc::util::{hash_secret, random_token, with_query};

/// Longest `scope` accepted (all values).
const MAX_SCOPE: usize = 1024;

/// User codes drawn before giving up on a free one (a collision among 20^8 codes is
/// already rare; several in a row mean something is wrong).
const USER_CODE_DRAWS: usize = 8;

pub async fn handle(
    State(p): State<Provider>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    match authorize(&p, peer.ip(), &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = e.error, description = %e.description, "device authorization refused");
            p.metrics().inc(Counter::DeviceRefusals, e.error);
            e.into_response()
        }
    }
}

fn oauth(status: StatusCode, error: &'static str, d: impl Into<String>) -> OAuthError {
    OAuthError::new(status, error, d)
}

async fn authorize(
    p: &Provider,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, OAuthError> {
    let form = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(p, peer, headers, &form).await?;
    if !client.allows_grant(GRANT_TYPE) {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("this client may not use the device flow: add {GRANT_TYPE} to its grant_types"),
        ));
    }
    let scope = scope_of(&client, form.get("scope"))?;
    let cfg = &p.config().device;
    let now = p.now();
    let expires_at = now.saturating_add(cfg.code_lifetime_secs);
    let device_code = random_token(32);
    let device_hash = hash_secret(&device_code);
    let address = p.client_key(peer, headers);
    let admission = p.device_budget().admit(
        &address,
        &device_hash,
        expires_at,
        now,
        cfg.max_pending_per_address as usize,
        cfg.max_pending_total as usize,
    );
    match admission.result {
        Ok(()) => {}
        Err(Refused::Key) => {
            tracing::warn!(%address, "too many device authorizations waiting from one address");
            return Err(oauth(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!(
                    "{} device sign-ins are already waiting from this address; finish one or wait until they expire",
                    cfg.max_pending_per_address
                ),
            ));
        }
        Err(Refused::Total) => {
            tracing::warn!("too many device authorizations waiting in all");
            return Err(oauth(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the sign-in service has too many device sign-ins waiting; try again in a few minutes",
            ));
        }
    }
    let mut user_code = None;
    for _ in 0..USER_CODE_DRAWS {
        let code = device::generate_user_code();
        let grant = DeviceGrant {
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            user_code_hash: hash_secret(&code),
            created_at: now,
            expires_at,
            interval: cfg.poll_interval_secs,
            last_poll: 0,
            status: DeviceStatus::Pending,
        };
        match p.store().insert_device(&device_hash, &grant) {
            Ok(true) => {
                user_code = Some(code);
                break;
            }
            Ok(false) => continue,
            Err(e) => {
                p.device_budget().release(&device_hash);
                return Err(e.into());
            }
        }
    }
    let Some(user_code) = user_code else {
        p.device_budget().release(&device_hash);
        return Err(OAuthError::server("no free user code after several draws"));
    };
    let shown = device::display_user_code(&user_code);
    let verification_uri = format!("{}{}", p.config().issuer, paths::DEVICE);
    tracing::info!(client = %client.client_id, scope = %scope.join(" "), %address, expires_at, "device authorization issued");
    p.metrics().device_grant(DeviceGrantEvent::Issued);
    Ok(no_store_json(json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri_complete": with_query(&verification_uri, &[("user_code", &shown)]),
        "verification_uri": verification_uri,
        "expires_in": cfg.code_lifetime_secs,
        "interval": cfg.poll_interval_secs,
    })))
}

/// The requested scopes (`openid` when none are named), each allowed for the client.
fn scope_of(client: &ClientConfig, asked: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let asked = asked.unwrap_or("openid");
    if asked.len() > MAX_SCOPE {
        return Err(OAuthError::invalid_request(format!(
            "scope is longer than {MAX_SCOPE} characters"
        )));
    }
    let mut scope: Vec<String> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if !crate::oidc::config::SUPPORTED_SCOPES.contains(&s) || !client.allows_scope(s) {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {s} is not allowed for this client"),
            ));
        }
        if !scope.iter().any(|x| x == s) {
            scope.push(s.to_string());
        }
    }
    if scope.is_empty() {
        scope.push("openid".into());
    }
    Ok(scope)
}

/// What one poll found.
enum Poll {
    OtherClient,
    Expired,
    SlowDown(u64),
    Pending,
    Denied,
    Approved(Box<DeviceApproval>, Vec<String>),
    Reused(String),
}

/// How the token endpoint mints the tokens of a grant (its `respond`): passed in, because
/// the token endpoint imports this module and not the other way round.
pub(crate) type Mint =
    fn(&Provider, &ClientConfig, &Family, &[String], bool, bool) -> Result<Response, OAuthError>;

/// `grant_type=urn:ietf:params:oauth:grant-type:device_code` at the token endpoint.
/// The poll is one atomic rewrite of the grant: it notes the poll time (and a grown
/// interval), or flips an approved grant to redeemed, so two polls racing on one or two
/// receivers redeem it once.
pub(crate) fn token_grant(
    p: &Provider,
    client: &ClientConfig,
    form: &Params,
    mint: Mint,
) -> Result<Response, OAuthError> {
    let code = form
        .get("device_code")
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let hash = hash_secret(code);
    let now = p.now();
    let family_id = random_token(16);
    let mut outcome = Poll::OtherClient;
    let found = p.store().update_device(&hash, &mut |g| {
        if g.client_id != client.client_id {
            outcome = Poll::OtherClient;
            return false;
        }
        if g.expires_at <= now {
            outcome = Poll::Expired;
            return false;
        }
        match &g.status {
            DeviceStatus::Pending => {
                let too_soon = g.last_poll != 0 && now < g.last_poll.saturating_add(g.interval);
                g.last_poll = now;
                if too_soon {
                    g.interval = g.interval.saturating_add(SLOW_DOWN_STEP);
                    outcome = Poll::SlowDown(g.interval);
                } else {
                    outcome = Poll::Pending;
                }
                true
            }
            DeviceStatus::Denied { .. } => {
                outcome = Poll::Denied;
                false
            }
            DeviceStatus::Approved { approval } => {
                outcome = Poll::Approved(approval.clone(), g.scope.clone());
                g.status = DeviceStatus::Redeemed {
                    family: family_id.clone(),
                };
                true
            }
            DeviceStatus::Redeemed { family } => {
                outcome = Poll::Reused(family.clone());
                false
            }
        }
    })?;
    let refuse = |reason: &'static str, e: OAuthError| {
        p.metrics().inc(Counter::DeviceRefusals, reason);
        tracing::info!(client = %client.client_id, reason, "device code poll refused");
        e
    };
    if found.is_none() {
        return Err(refuse(
            "invalid_grant",
            OAuthError::invalid_grant("unknown device code"),
        ));
    }
    let bad = |error: &'static str, d: String| oauth(StatusCode::BAD_REQUEST, error, d);
    match outcome {
        Poll::OtherClient => Err(refuse(
            "invalid_grant",
            OAuthError::invalid_grant("the device code was issued to another client"),
        )),
        Poll::Expired => {
            p.metrics().device_grant(DeviceGrantEvent::Expired);
            p.device_budget().release(&hash);
            Err(bad(
                "expired_token",
                "the device code has expired; start the device sign-in again".into(),
            ))
        }
        Poll::SlowDown(interval) => Err(refuse(
            "slow_down",
            bad(
                "slow_down",
                format!("polling too fast: wait at least {interval} seconds between polls"),
            ),
        )),
        Poll::Pending => Err(bad(
            "authorization_pending",
            "the person has not approved the device yet".into(),
        )),
        Poll::Denied => Err(bad(
            "access_denied",
            "the person denied the device's request".into(),
        )),
        Poll::Reused(family) => {
            p.store().revoke_family(&family)?;
            tracing::warn!(client = %client.client_id, "device code redeemed twice: its tokens are revoked");
            p.metrics().inc(Counter::ReuseDetected, "device_code");
            Err(refuse(
                "reused",
                OAuthError::invalid_grant(
                    "the device code was already redeemed; its tokens are revoked",
                ),
            ))
        }
        Poll::Approved(a, scope) => {
            p.device_budget().release(&hash);
            redeem(p, client, family_id, &a, scope, mint)
        }
    }
}

/// Issues the tokens of an approved grant, as the code flow does for its code.
fn redeem(
    p: &Provider,
    client: &ClientConfig,
    family_id: String,
    a: &DeviceApproval,
    scope: Vec<String>,
    mint: Mint,
) -> Result<Response, OAuthError> {
    let Some(session) = p.store().session(&a.sid)? else {
        return Err(OAuthError::invalid_grant(
            "the sign-in that approved the device has ended",
        ));
    };
    let identity = match p.current_identity(&a.sub, &a.identity)? {
        Ok(i) => i,
        Err(Denied::Revoked) => {
            return Err(OAuthError::invalid_grant("the user's access was revoked"));
        }
        Err(Denied::Expired) => {
            return Err(OAuthError::invalid_grant("the user's approval has expired"));
        }
    };
    let offline = scope.iter().any(|s| s == "offline_access");
    let cfg = p.config();
    let now = p.now();
    let family = Family {
        id: family_id,
        client_id: client.client_id.clone(),
        sub: a.sub.clone(),
        sid: session.sid.clone(),
        scope,
        auth_time: a.auth_time,
        nonce: None,
        revoked: false,
        expires_at: now
            + if offline {
                cfg.refresh_token_lifetime_secs
            } else {
                cfg.access_token_lifetime_secs
            },
        identity,
        amr: a.amr.clone(),
        acr: a.acr.clone(),
    };
    p.store().put_family(&family)?;
    p.store()
        .add_session_client(&session.sid, &client.client_id)?;
    // Revoked while it was being issued (the session ended): say so rather than hand out
    // tokens that are dead on arrival.
    if p.store().family(&family.id)?.is_none_or(|f| f.revoked) {
        return Err(OAuthError::invalid_grant(
            "the grant was revoked while it was being issued (signed out)",
        ));
    }
    tracing::info!(client = %client.client_id, sub = %family.sub, sid = %family.sid, "device grant redeemed");
    p.metrics().device_grant(DeviceGrantEvent::Redeemed);
    let with_id = family.scope.iter().any(|s| s == "openid");
    mint(p, client, &family, &family.scope, true, with_id)
}
