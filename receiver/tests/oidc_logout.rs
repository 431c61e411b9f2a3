//! Logout: RP-initiated logout, back-channel logout to an inside app, user revocation.

use crate::oidc_support;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use jsonwebtoken::Algorithm;
use oidc_support::*;

/// A `prompt=none` request of `spa`: answers a code while the browser's session lives.
fn silent_spa(p: &Pkce) -> AuthParams<'_> {
    AuthParams {
        client: "spa",
        redirect: "http://127.0.0.1:1/cb",
        scope: "openid",
        pkce: Some(p),
        extra: "&prompt=none",
    }
}

#[tokio::test]
async fn rp_initiated_logout_ends_session_and_calls_back_channel() {
    let (bc, got, mut rx) = backchannel_receiver().await;
    let op = Op::start(Some(&bc)).await;
    let mut b = Browser::default();
    let t = app_login(&op, &mut b, "lou", "openid offline_access").await;
    let id_token = t["id_token"].as_str().unwrap();
    let (_, id) = verify_jwt(&op, id_token, Algorithm::RS256).await;

    // Unregistered post_logout_redirect_uri: an error page, no redirect, session kept.
    let bad = b
        .get(&format!(
            "{}/logout?id_token_hint={}&post_logout_redirect_uri={}",
            op.base,
            id_token,
            enc("http://evil.example/")
        ))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.header("location").is_none());
    // Malformed hint: error page.
    let bad = b
        .get(&format!("{}/logout?id_token_hint=not.a.jwt", op.base))
        .await;
    assert_eq!(bad.status, 400);

    let r = b
        .get(&format!(
            "{}/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye-1",
            op.base,
            id_token,
            enc("http://127.0.0.1:2/bye")
        ))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "http://127.0.0.1:2/bye?state=bye-1");
    assert!(!b.cookies.contains_key("airlock_session"), "cookie cleared");

    wait(&mut rx).await;
    let lt = got.lock().unwrap()[0].clone();
    let (h, claims) = verify_jwt(&op, &lt, Algorithm::RS256).await;
    assert_eq!(h.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["aud"], "app");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());

    // The session's grants are gone.
    let rt = t["refresh_token"].as_str().unwrap();
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={}", enc(rt)),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        introspect(&op, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
    // And the browser must log in again.
    let p = pkce("x");
    let a = silent_spa(&p);
    let r = b.get(&authorize_url(&op, &a)).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn revoked_user_loses_sessions_and_tokens() {
    let (bc, got, mut rx) = backchannel_receiver().await;
    let op = Op::start(Some(&bc)).await;
    let mut b = Browser::default();
    let t = app_login(&op, &mut b, "rita", "openid offline_access").await;
    let sub = Op::sub("rita");
    assert_eq!(op.provider.revoke_user(&sub).unwrap(), 1);
    wait(&mut rx).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    let rt = t["refresh_token"].as_str().unwrap();
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={}", enc(rt)),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let ui = http(
        "GET",
        &format!("{}/userinfo", op.base),
        &[(
            "Authorization",
            format!("Bearer {}", t["access_token"].as_str().unwrap()),
        )],
        None,
    )
    .await;
    assert_eq!(ui.status, 401);
}

#[tokio::test]
async fn revocation_endpoint_and_expired_approval() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let t = app_login(&op, &mut b, "val", "openid offline_access").await;
    // A provisioned user whose approval expires: refresh stops working.
    op.dir.users.lock().unwrap().insert(
        Op::sub("val"),
        airlock_receiver::oidc::DirectoryUser {
            issuer: ISSUER_OUT.into(),
            subject: "val".into(),
            claims: Default::default(),
            valid_until: op.clock.now() + 10,
            provisioned_seq: 7,
            revoked: false,
            provisioned: true,
        },
    );
    let rt = t["refresh_token"].as_str().unwrap();
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={}", enc(rt)),
    )
    .await;
    assert_eq!(r.status, 200);
    let t2 = r.json();
    let (_, id) = verify_jwt(&op, t2["id_token"].as_str().unwrap(), Algorithm::RS256).await;
    assert_eq!(id["airlock_seq"], 7, "claims follow the directory");
    op.clock.advance(11);
    let rt2 = t2["refresh_token"].as_str().unwrap();
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={}", enc(rt2)),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // RFC 7009: revoking a token ends its grant; unknown tokens answer 200 too.
    let t3 = app_login(&op, &mut Browser::default(), "wes", "openid offline_access").await;
    let rv = http(
        "POST",
        &format!("{}/revoke", op.base),
        &[basic("app", CONF_SECRET)],
        Some(&format!(
            "token={}&token_type_hint=refresh_token",
            enc(t3["refresh_token"].as_str().unwrap())
        )),
    )
    .await;
    assert_eq!(rv.status, 200);
    assert_eq!(
        introspect(&op, t3["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let rv = http(
        "POST",
        &format!("{}/revoke", op.base),
        &[basic("app", CONF_SECRET)],
        Some("token=nonsense"),
    )
    .await;
    assert_eq!(rv.status, 200);
}

#[tokio::test]
async fn logout_without_hint_asks_first() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    app_login(&op, &mut b, "hal", "openid offline_access").await;
    let url = format!(
        "{}/logout?client_id=app&post_logout_redirect_uri={}&state=s9",
        op.base,
        enc("http://127.0.0.1:2/bye")
    );
    let page = b.get(&url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign out?"));
    assert!(
        b.cookies.contains_key("airlock_session"),
        "nothing ended yet"
    );
    // A forged confirmation (no matching CSRF cookie) is not enough.
    // A cross-site POST carries the session cookie but cannot know the CSRF cookie.
    let mut attacker = b.clone();
    attacker.cookies.remove("airlock_csrf");
    let forged = attacker
        .post(&format!("{}/logout", op.base), "confirm=yes&csrf=x")
        .await;
    assert_eq!(forged.status, 200);
    assert!(
        forged.body.contains("Sign out?"),
        "asked again, not logged out"
    );
    let p = pkce("h");
    let a = silent_spa(&p);
    let r = b.get(&authorize_url(&op, &a)).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "session still alive"
    );
    let form = format!(
        "csrf={}&confirm=yes&client_id=app&post_logout_redirect_uri={}&state=s9",
        hidden(&page.body, "csrf"),
        enc("http://127.0.0.1:2/bye")
    );
    let r = b.post(&format!("{}/logout", op.base), &form).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "http://127.0.0.1:2/bye?state=s9");
    let r = b.get(&authorize_url(&op, &a)).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
}

/// A hint for another user, or for an earlier session of this user, asks the person
/// instead of acting; nothing is half done (the cookie stays while the session lives);
/// a confirmation sent by GET is not one.
#[tokio::test]
async fn logout_with_a_foreign_or_old_hint_asks_and_never_half_logs_out() {
    let op = Op::start(None).await;
    let mut other = Browser::default();
    let foreign = app_login(&op, &mut other, "oscar", "openid offline_access").await["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = Browser::default();
    let old = app_login(&op, &mut b, "hal", "openid offline_access").await["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Hal logs out and in again: `old` names a session that is over.
    let r = b
        .get(&format!("{}/logout?id_token_hint={old}", op.base))
        .await;
    assert!(r.body.contains("Signed out"), "{}", r.body);
    app_login(&op, &mut b, "hal", "openid offline_access").await;
    let p = pkce("q");
    let a = silent_spa(&p);
    for hint in [&foreign, &old] {
        let page = b
            .get(&format!("{}/logout?id_token_hint={hint}", op.base))
            .await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Sign out?"), "{}", page.body);
        assert!(b.cookies.contains_key("airlock_session"), "cookie kept");
        let r = b.get(&authorize_url(&op, &a)).await;
        assert!(query_param(r.location(), "code").is_some(), "session alive");
        // The confirmation's fields on a GET do not confirm.
        let get = b
            .get(&format!(
                "{}/logout?confirm=yes&csrf={}",
                op.base,
                hidden(&page.body, "csrf")
            ))
            .await;
        assert!(get.body.contains("Sign out?"), "{}", get.body);
        assert!(b.cookies.contains_key("airlock_session"));
    }
    // Oscar's own session was never touched.
    let r = other.get(&authorize_url(&op, &a)).await;
    assert!(query_param(r.location(), "code").is_some());
    // Hal confirms by POST: now, and only now, Hal is signed out.
    let page = b
        .get(&format!("{}/logout?id_token_hint={foreign}", op.base))
        .await;
    let r = b
        .post(
            &format!("{}/logout", op.base),
            &format!("csrf={}&confirm=yes", hidden(&page.body, "csrf")),
        )
        .await;
    assert!(r.body.contains("Signed out"), "{}", r.body);
    assert!(!b.cookies.contains_key("airlock_session"));
    let r = b.get(&authorize_url(&op, &a)).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
}

/// An inside app whose back-channel endpoint answers `statuses` in turn (then 200), and
/// counts the calls.
async fn flaky_backchannel(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<u16>>>) {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let a = answered.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        post(move |body: String| {
            let a = a.clone();
            let statuses = statuses.clone();
            async move {
                assert!(body.starts_with("logout_token="), "{body}");
                let mut a = a.lock().unwrap();
                let status = statuses.get(a.len()).copied().unwrap_or(200);
                a.push(status);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let url = serve_app(app).await;
    (url, answered)
}

#[tokio::test]
async fn a_failed_back_channel_logout_is_retried_until_it_arrives() {
    let (bc, answered) = flaky_backchannel(vec![503, 502]).await;
    let op = op_with_backchannel(&bc, 5, None).await;
    let mut b = Browser::default();
    app_login(&op, &mut b, "ret", "openid offline_access").await;
    assert_eq!(op.provider.revoke_user(&Op::sub("ret")).unwrap(), 1);
    let m = &op.provider;
    eventually("delivered", || {
        m.metric("backchannel_logouts", "delivered") == 1
    })
    .await;
    assert_eq!(*answered.lock().unwrap(), [503, 502, 200]);
    assert_eq!(m.metric("backchannel_logouts", "retried"), 2);
    assert_eq!(m.metric("backchannel_logouts", "failed"), 0);
}

#[tokio::test]
async fn a_refused_or_never_arriving_back_channel_logout_ends_as_failed() {
    // The app refuses the token (400): trying again cannot help.
    let (bc, answered) = flaky_backchannel(vec![400]).await;
    let op = op_with_backchannel(&bc, 5, None).await;
    let mut b = Browser::default();
    app_login(&op, &mut b, "ref", "openid offline_access").await;
    op.provider.revoke_user(&Op::sub("ref")).unwrap();
    let m = &op.provider;
    eventually("failed", || m.metric("backchannel_logouts", "failed") == 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(*answered.lock().unwrap(), [400], "not retried");
    assert_eq!(m.metric("backchannel_logouts", "retried"), 0);

    // The app is down for longer than the schedule: three attempts, then failed.
    let (bc, answered) = flaky_backchannel(vec![503; 10]).await;
    let op = op_with_backchannel(&bc, 3, None).await;
    let mut b = Browser::default();
    app_login(&op, &mut b, "dwn", "openid offline_access").await;
    op.provider.revoke_user(&Op::sub("dwn")).unwrap();
    let m = &op.provider;
    eventually("failed", || m.metric("backchannel_logouts", "failed") == 1).await;
    assert_eq!(*answered.lock().unwrap(), [503, 503, 503]);
    assert_eq!(m.metric("backchannel_logouts", "retried"), 2);
    assert_eq!(m.metric("backchannel_logouts", "delivered"), 0);
}
