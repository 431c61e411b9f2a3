//! The device authorization grant (RFC 8628) over loopback sockets: the endpoint, the
//! person's page (code, sign-in, approve/deny), polling at the token endpoint, and
//! every bad input: unknown/expired codes, polling too fast, guessed user codes, a
//! denial, a second redemption, a code of another client, clients without the grant.
//! Two receivers sharing PostgreSQL run one flow across both.

use std::sync::Arc;

use crate::common;
use crate::oidc_support;

use airlock_receiver::oidc::config::ClientConfig;
use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{OidcConfig, Provider};
use jsonwebtoken::Algorithm;
use oidc_support::*;

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn client(toml_text: &str) -> ClientConfig {
    toml::from_str(toml_text).unwrap()
}

/// The test config plus `tv` (public, device + refresh) and `svc` (confidential,
/// device only); `edit` has the last word.
pub(crate) fn with_device_clients(c: &mut OidcConfig) {
    c.clients.push(client(&format!(
        r#"
        client_id = "tv"
        public = true
        grant_types = ["{DEVICE}", "refresh_token"]
        id_token_signed_response_alg = "ES256"
        "#
    )));
    c.clients.push(client(&format!(
        r#"
        client_id = "svc"
        client_secret_hash = "{}"
        grant_types = ["{DEVICE}"]
        scopes = ["openid", "email"]
        "#,
        argon2_hash(CONF_SECRET)
    )));
}

async fn start_with(edit: impl FnOnce(&mut OidcConfig)) -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db_path = tmp.path().join("db");
    Op::start_custom(
        tmp,
        db_path,
        Clock::manual(now()),
        Arc::new(MemDirectory::default()),
        None,
        |c| {
            with_device_clients(c);
            edit(c);
        },
    )
    .await
}

pub(crate) async fn start() -> Op {
    start_with(|_| {}).await
}

async fn device_auth(op: &Op, auth: Option<(&'static str, String)>, body: &str) -> Resp {
    let h: Vec<(&str, String)> = auth.into_iter().collect();
    http(
        "POST",
        &format!("{}/device_authorization", op.base),
        &h,
        Some(body),
    )
    .await
}

/// A device authorization for `tv`: (device_code, user_code as shown).
async fn tv_grant(op: &Op, scope: &str) -> (String, String) {
    let r = device_auth(op, None, &format!("client_id=tv&scope={}", enc(scope))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    (
        j["device_code"].as_str().unwrap().to_string(),
        j["user_code"].as_str().unwrap().to_string(),
    )
}

async fn poll(op: &Op, client_id: &str, device_code: &str) -> Resp {
    token(
        op,
        None,
        &format!(
            "grant_type={}&client_id={client_id}&device_code={}",
            enc(DEVICE),
            enc(device_code)
        ),
    )
    .await
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or("").to_string()
}

/// Types `user_code` on the device page; returns the answer to the POST.
pub(crate) async fn type_code(op: &Op, b: &mut Browser, user_code: &str) -> Resp {
    let page = b.get(&format!("{}/device", op.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let form = format!(
        "csrf={}&user_code={}",
        hidden(&page.body, "csrf"),
        enc(user_code)
    );
    b.post(&format!("{}/device", op.base), &form).await
}

/// The approval page's form answered with `decision`; returns the final page.
pub(crate) async fn decide(op: &Op, b: &mut Browser, confirm_url: &str, decision: &str) -> Resp {
    let page = b.get(confirm_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Allow this device?"), "{}", page.body);
    let form = format!(
        "h={}&csrf={}&decision={decision}",
        hidden(&page.body, "h"),
        hidden(&page.body, "csrf")
    );
    b.post(&format!("{}/device/confirm", op.base), &form).await
}

/// Code typed, signed in with a transfer code, approval page answered.
async fn approve_with_sign_in(op: &Op, b: &mut Browser, user_code: &str, decision: &str) -> Resp {
    let r = type_code(op, b, user_code).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let transfer = op.ticket("alice", 300);
    let confirm = submit_code(op, b, r.location(), &transfer).await;
    assert!(
        confirm.starts_with(&format!("{}/device/confirm?h=", op.base)),
        "{confirm}"
    );
    decide(op, b, &confirm, decision).await
}

#[tokio::test]
async fn discovery_advertises_the_device_endpoint_and_grant() {
    let op = start().await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert_eq!(
        d["device_authorization_endpoint"],
        format!("{}/device_authorization", op.base)
    );
    assert!(
        d["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == DEVICE)
    );
}

#[tokio::test]
async fn device_flow_issues_the_tokens_of_the_approving_sign_in() {
    let op = start().await;
    let r = device_auth(
        &op,
        None,
        "client_id=tv&scope=openid%20email%20offline_access",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("cache-control").unwrap_or("").contains("no-store"));
    let j = r.json();
    let device_code = j["device_code"].as_str().unwrap().to_string();
    let user_code = j["user_code"].as_str().unwrap().to_string();
    assert!(
        device_code.len() >= 43,
        "256-bit device code: {device_code}"
    );
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(j["verification_uri"], format!("{}/device", op.base));
    assert_eq!(
        j["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", op.base)
    );
    assert_eq!(
        (j["expires_in"].as_u64(), j["interval"].as_u64()),
        (Some(600), Some(5))
    );

    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(
        (r.status, error_of(&r)),
        (400, "authorization_pending".into())
    );

    // The prefilled link shows the form with the code in it, and approves nothing.
    let mut b = Browser::default();
    let page = b
        .get(j["verification_uri_complete"].as_str().unwrap())
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("value=\"{user_code}\"")));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );
    // Typed in lower case, without the dash: the same code.
    let typed = user_code.replace('-', " ").to_lowercase();
    let done = approve_with_sign_in(&op, &mut b, &typed, "approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Device allowed"));

    op.clock.advance(5);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid email offline_access");
    assert!(t["refresh_token"].is_string());
    let (_, claims) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::ES256).await;
    assert_eq!(claims["aud"], "tv");
    assert_eq!(claims["sub"], Op::sub("alice"));
    assert_eq!(claims["amr"], serde_json::json!(["otp"]));
    assert_eq!(claims["acr"], "urn:airlock:acr:transfer-code");
    assert!(claims["auth_time"].as_u64().unwrap() <= op.clock.now());
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["email"], "alice@example.org");
    // The refresh token works like one of the code flow.
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=tv&refresh_token={}",
            enc(t["refresh_token"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, reason) in [
        ("device_grants", "issued"),
        ("device_grants", "approved"),
        ("device_grants", "redeemed"),
    ] {
        assert_eq!(op.provider.metric(name, reason), 1, "{name} {reason}");
    }
    assert!(
        op.provider
            .metrics_text()
            .contains("airlock_oidc_device_grants_total{reason=\"redeemed\"} 1")
    );
}

#[tokio::test]
async fn a_signed_in_browser_goes_straight_to_the_approval() {
    let op = start().await;
    let mut b = Browser::default();
    let p = pkce("dev");
    let transfer = op.ticket("bob", 300);
    let a = AuthParams {
        client: "spa",
        redirect: "http://127.0.0.1:1/cb",
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    login(&op, &mut b, &a, &transfer).await;
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let r = type_code(&op, &mut b, &user_code).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location()
            .starts_with(&format!("{}/device/confirm?h=", op.base)),
        "no second sign-in: {}",
        r.location()
    );
    let page = b.get(r.location()).await;
    assert!(page.body.contains("bob@example.org"), "{}", page.body);
    assert!(page.body.contains("tv"), "names the client");
    let done = decide(&op, &mut b, r.location(), "approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["id_token"].is_string());
}

#[tokio::test]
async fn unknown_and_expired_device_codes_are_refused() {
    let op = start().await;
    let r = poll(&op, "tv", "no-such-device-code-0123456789abcdefghijklmn").await;
    assert_eq!((r.status, error_of(&r)), (400, "invalid_grant".into()));
    let r = token(
        &op,
        None,
        &format!("grant_type={}&client_id=tv", enc(DEVICE)),
    )
    .await;
    assert_eq!((r.status, error_of(&r)), (400, "invalid_request".into()));

    let (device_code, user_code) = tv_grant(&op, "openid").await;
    op.clock.advance(601);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!((r.status, error_of(&r)), (400, "expired_token".into()));
    let mut b = Browser::default();
    let r = type_code(&op, &mut b, &user_code).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Code expired"), "{}", r.body);
    assert_eq!(op.provider.metric("device_grants", "expired"), 1);
    assert_eq!(op.provider.metric("device_refusals", "invalid_grant"), 1);
    assert_eq!(
        op.provider.metric("device_user_code_failures", "expired"),
        1
    );
}

#[tokio::test]
async fn polling_too_fast_gets_slow_down_and_a_longer_interval() {
    let op = start().await;
    let (device_code, _) = tv_grant(&op, "openid").await;
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "authorization_pending");
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!((r.status, error_of(&r)), (400, "slow_down".into()));
    assert!(
        r.body.contains("10 seconds"),
        "interval grew by 5: {}",
        r.body
    );
    // 5 s later is still too soon: the interval is now 10 s (and grows to 15).
    op.clock.advance(5);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "slow_down");
    op.clock.advance(15);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "authorization_pending");
    assert_eq!(op.provider.metric("device_refusals", "slow_down"), 2);
}

#[tokio::test]
async fn wrong_user_codes_lock_the_address_even_for_the_right_code() {
    let op = start_with(|c| {
        c.device.max_user_code_failures_per_address = 3;
        c.device.code_lifetime_secs = 1800;
    })
    .await;
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let mut b = Browser::default();
    // Not a code at all (a vowel, a digit): no attempt is spent on it.
    for typo in ["BCDF-GHJA", "BCDF-GH1K", "BCD"] {
        let r = type_code(&op, &mut b, typo).await;
        assert_eq!(r.status, 400, "{typo}");
        assert!(r.body.contains("not a device code"), "{}", r.body);
    }
    let wrong = if user_code == "BCDF-GHJK" {
        "BCDF-GHJL"
    } else {
        "BCDF-GHJK"
    };
    for _ in 0..3 {
        let r = type_code(&op, &mut b, wrong).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("not right"));
    }
    let r = type_code(&op, &mut b, &user_code).await;
    assert_eq!(r.status, 429, "locked even for the right code: {}", r.body);
    assert!(r.body.contains("Too many wrong codes"));
    // Another browser at the same address is locked too.
    let r = type_code(&op, &mut Browser::default(), &user_code).await;
    assert_eq!(r.status, 429);
    assert_eq!(op.provider.metric("device_user_code_failures", "wrong"), 3);
    assert_eq!(op.provider.metric("device_user_code_failures", "locked"), 2);
    assert_eq!(
        op.provider.metric("device_user_code_failures", "malformed"),
        3
    );
    // The device meanwhile is still waiting, and once the window passes the code works.
    op.clock.advance(600);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "authorization_pending");
    let done = approve_with_sign_in(&op, &mut b, &user_code, "approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
}

#[tokio::test]
async fn a_denial_gets_access_denied_and_nothing_is_issued() {
    let op = start().await;
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let mut b = Browser::default();
    let done = approve_with_sign_in(&op, &mut b, &user_code, "deny").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Device denied"));
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!((r.status, error_of(&r)), (400, "access_denied".into()));
    assert!(r.json().get("access_token").is_none());
    // The code cannot be typed again, nor the decision changed.
    let r = type_code(&op, &mut b, &user_code).await;
    assert!(r.body.contains("already approved or denied"), "{}", r.body);
    assert_eq!(op.provider.metric("device_grants", "denied"), 1);
    assert_eq!(op.provider.metric("device_grants", "redeemed"), 0);
}

#[tokio::test]
async fn a_device_code_redeems_once_and_a_second_redemption_revokes_its_tokens() {
    let op = start().await;
    let (device_code, user_code) = tv_grant(&op, "openid offline_access").await;
    let mut b = Browser::default();
    approve_with_sign_in(&op, &mut b, &user_code, "approve").await;
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    op.clock.advance(5);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!((r.status, error_of(&r)), (400, "invalid_grant".into()));
    assert!(r.json().get("access_token").is_none());
    // What the first redemption issued is dead now, as for a reused authorization code.
    let i = introspect(&op, first["access_token"].as_str().unwrap()).await;
    assert_eq!(i["active"], false, "{i}");
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=tv&refresh_token={}",
            enc(first["refresh_token"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(error_of(&r), "invalid_grant");
    assert_eq!(op.provider.metric("device_refusals", "reused"), 1);
    assert_eq!(op.provider.metric("reuse_detected", "device_code"), 1);
}

#[tokio::test]
async fn a_device_code_of_another_client_is_refused() {
    let op = start().await;
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let mut b = Browser::default();
    approve_with_sign_in(&op, &mut b, &user_code, "approve").await;
    let r = token(
        &op,
        Some(basic("svc", CONF_SECRET)),
        &format!(
            "grant_type={}&device_code={}",
            enc(DEVICE),
            enc(&device_code)
        ),
    )
    .await;
    assert_eq!((r.status, error_of(&r)), (400, "invalid_grant".into()));
    assert!(r.body.contains("another client"), "{}", r.body);
    // The grant is untouched: its own client still redeems it.
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn clients_authenticate_and_need_the_grant() {
    let op = start().await;
    // A client without the device grant in its grant_types.
    let r = device_auth(&op, None, "client_id=spa&scope=openid").await;
    assert_eq!(
        (r.status, error_of(&r)),
        (400, "unauthorized_client".into())
    );
    // A confidential client authenticates as at the token endpoint.
    let r = device_auth(&op, None, "client_id=svc&scope=openid").await;
    assert_eq!((r.status, error_of(&r)), (401, "invalid_client".into()));
    let r = device_auth(&op, Some(basic("svc", "wrong-secret")), "scope=openid").await;
    assert_eq!((r.status, error_of(&r)), (401, "invalid_client".into()));
    let r = device_auth(&op, Some(basic("svc", CONF_SECRET)), "scope=openid%20email").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = device_auth(
        &op,
        Some(basic("svc", CONF_SECRET)),
        "scope=openid%20groups",
    )
    .await;
    assert_eq!((r.status, error_of(&r)), (400, "invalid_scope".into()));
    let r = device_auth(&op, None, "client_id=nobody").await;
    assert_eq!((r.status, error_of(&r)), (401, "invalid_client".into()));
    // The device grant at the token endpoint from a client that may not use it.
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type={}&device_code=x", enc(DEVICE)),
    )
    .await;
    assert_eq!(
        (r.status, error_of(&r)),
        (400, "unauthorized_client".into())
    );
    // A device-only client gets no refresh token and cannot use the code flow.
    let r = http(
        "GET",
        &format!(
            "{}/authorize?response_type=code&client_id=svc&redirect_uri=x&scope=openid",
            op.base
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        op.provider.metric("device_refusals", "unauthorized_client"),
        1
    );
    assert_eq!(op.provider.metric("device_refusals", "invalid_client"), 3);
    assert_eq!(op.provider.metric("device_refusals", "invalid_scope"), 1);
    assert_eq!(op.provider.metric("device_grants", "issued"), 1);
}

#[tokio::test]
async fn a_confidential_device_client_gets_no_refresh_token_without_the_grant() {
    let op = start().await;
    let r = device_auth(&op, Some(basic("svc", CONF_SECRET)), "scope=openid%20email").await;
    let j = r.json();
    let (device_code, user_code) = (
        j["device_code"].as_str().unwrap().to_string(),
        j["user_code"].as_str().unwrap().to_string(),
    );
    let mut b = Browser::default();
    approve_with_sign_in(&op, &mut b, &user_code, "approve").await;
    let r = token(
        &op,
        Some(basic("svc", CONF_SECRET)),
        &format!(
            "grant_type={}&device_code={}",
            enc(DEVICE),
            enc(&device_code)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert!(t["id_token"].is_string());
    assert!(t.get("refresh_token").is_none(), "{t}");
}

#[tokio::test]
async fn device_forms_need_their_csrf_token_and_a_session() {
    let op = start().await;
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    // No CSRF cookie: refused before the code is even looked at.
    let r = http(
        "POST",
        &format!("{}/device", op.base),
        &[],
        Some(&format!("csrf=x&user_code={}", enc(&user_code))),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A signed-in browser whose approval form lost its token.
    let mut b = Browser::default();
    let r = type_code(&op, &mut b, &user_code).await;
    let transfer = op.ticket("carol", 300);
    let confirm = submit_code(&op, &mut b, r.location(), &transfer).await;
    let page = b.get(&confirm).await;
    let h = hidden(&page.body, "h");
    let r = b
        .post(
            &format!("{}/device/confirm", op.base),
            &format!("h={h}&csrf=forged&decision=approve"),
        )
        .await;
    assert_eq!(r.status, 403);
    // Without the session the approval page asks to start again.
    let mut other = Browser::default();
    let page = other.get(&confirm).await;
    assert_eq!(page.status, 401, "{}", page.body);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "authorization_pending");
    assert_eq!(op.provider.metric("device_user_code_failures", "csrf"), 2);
}

#[tokio::test]
async fn device_authorizations_waiting_are_bounded_per_address() {
    let op = start_with(|c| c.device.max_pending_per_address = 2).await;
    tv_grant(&op, "openid").await;
    tv_grant(&op, "openid").await;
    let r = device_auth(&op, None, "client_id=tv").await;
    assert_eq!(
        (r.status, error_of(&r)),
        (503, "temporarily_unavailable".into())
    );
    // They expire and make room.
    op.clock.advance(601);
    let r = device_auth(&op, None, "client_id=tv").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Two receivers sharing one PostgreSQL: the device asks the first, the person approves
/// on the second, the device's poll on the first gets the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_a_device_code_from_one_receiver_is_redeemed_through_another() {
    use airlock_receiver::oidc::pg_store::PgOidcStore;
    use airlock_receiver::store::postgres::PgStore;
    let Ok(url) = std::env::var("AIRLOCK_TEST_PG_URL") else {
        eprintln!("oidc_device: PostgreSQL test SKIPPED: AIRLOCK_TEST_PG_URL is not set");
        return;
    };
    let _pg = common::pg_shared_async().await;
    let url = tokio::task::block_in_place(|| {
        let schema = format!("dev_{:x}", common::rand_u64() >> 16);
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}")
    });
    let clock = Clock::manual(now());
    let dir = Arc::new(MemDirectory::default());
    let mut ops = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pg = tokio::task::block_in_place(|| PgStore::open_url(&url).unwrap());
        let mut cfg = oidc_support::config(port, None);
        with_device_clients(&mut cfg);
        // Both answer under one issuer, as behind a load balancer.
        cfg.issuer = "http://127.0.0.1:1".into();
        let provider = tokio::task::block_in_place(|| {
            Provider::with_store(
                cfg,
                Arc::new(PgOidcStore::new(&pg)),
                dir.clone(),
                clock.clone(),
            )
            .unwrap()
        });
        tokio::spawn(provider.clone().serve_on(listener));
        ops.push(Op {
            base: format!("http://127.0.0.1:{port}"),
            provider,
            clock: clock.clone(),
            dir: dir.clone(),
            db_path: std::path::PathBuf::new(),
            feed: None,
            _tmp: Arc::new(tempfile::tempdir().unwrap()),
        });
    }
    let (a, b_op) = (&ops[0], &ops[1]);
    let (device_code, user_code) = tv_grant(a, "openid").await;
    let mut b = Browser::default();
    let r = type_code(b_op, &mut b, &user_code).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let transfer = b_op.ticket("dora", 300);
    let confirm = submit_code(b_op, &mut b, r.location(), &transfer).await;
    // The issuer is the shared name; this test talks to receiver B directly.
    let confirm = confirm.replace("http://127.0.0.1:1", &b_op.base);
    let done = decide(b_op, &mut b, &confirm, "approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let r = poll(a, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // And the second redemption, through B, is refused.
    clock.advance(5);
    let r = poll(b_op, "tv", &device_code).await;
    assert_eq!(error_of(&r), "invalid_grant");
}

/// With passkeys on, the device page's sign-in is the login page's: a transfer-code
/// sign-in goes through the enrolment offer and then to the approval, and a later device
/// is approved after a passkey-only sign-in, whose amr/acr the tokens carry.
#[tokio::test]
async fn passkeys_sign_in_for_a_device_too() {
    use crate::oidc_passkey as pk;
    let op = pk::start(with_device_clients).await;
    pk::provision(&op, "pia", 86_400);
    // Transfer code -> "create a passkey?" -> created -> the device's approval page.
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let mut b = Browser::default();
    let r = type_code(&op, &mut b, &user_code).await;
    let next = submit_code(&op, &mut b, r.location(), &op.ticket("pia", 300)).await;
    assert_eq!(
        next, "/passkey/enrol",
        "the enrolment offer follows a code sign-in"
    );
    let mut a = pk::authenticator::SoftAuthenticator::new();
    let r = pk::enrol(&op, &mut b, &mut a, "office laptop").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let confirm = r.location().to_string();
    assert!(
        confirm.starts_with(&format!("{}/device/confirm?h=", op.base)),
        "{confirm}"
    );
    assert_eq!(decide(&op, &mut b, &confirm, "approve").await.status, 200);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Another device, another browser: a passkey alone signs in.
    let (device_code, user_code) = tv_grant(&op, "openid").await;
    let mut b = Browser::default();
    let r = type_code(&op, &mut b, &user_code).await;
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let page = b.get(&format!("{}{}", op.base, r.location())).await;
    assert!(page.body.contains("passkey"), "the passkey is offered");
    let (txn, csrf) = (hidden(&page.body, "txn"), hidden(&page.body, "csrf"));
    let o = pk::sign_in_options(&op, &mut b, &txn, &csrf, "pia@example.org").await;
    assert_eq!(o.status, 200, "{}", o.body);
    let j = o.json();
    let resp = a.get(&j["options"], &op.provider.config().issuer);
    let r = pk::submit(
        &op,
        &mut b,
        &txn,
        &csrf,
        j["ceremony"].as_str().unwrap(),
        &resp,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location()
            .starts_with(&format!("{}/device/confirm?h=", op.base)),
        "{}",
        r.location()
    );
    let confirm = r.location().to_string();
    assert_eq!(decide(&op, &mut b, &confirm, "approve").await.status, 200);
    let r = poll(&op, "tv", &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, claims) = verify_jwt(
        &op,
        r.json()["id_token"].as_str().unwrap(),
        Algorithm::ES256,
    )
    .await;
    assert_eq!(claims["acr"], "urn:airlock:acr:passkey");
    assert_eq!(claims["amr"], serde_json::json!(["hwk", "user", "mfa"]));
}

#[tokio::test]
async fn a_client_without_the_code_flow_is_refused_at_authorize() {
    let op = start_with(|c| {
        c.clients.push(client(&format!(
            r#"
            client_id = "kiosk"
            public = true
            redirect_uris = ["http://127.0.0.1:9/cb"]
            grant_types = ["{DEVICE}"]
            "#
        )))
    })
    .await;
    let p = pkce("kiosk");
    let a = AuthParams {
        client: "kiosk",
        redirect: "http://127.0.0.1:9/cb",
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let r = http("GET", &authorize_url(&op, &a), &[], None).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("unauthorized_client"),
        "{}",
        r.location()
    );
    // Its device flow works.
    let r = device_auth(&op, None, "client_id=kiosk").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["expires_in"], 600);
}
