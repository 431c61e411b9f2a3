//! The OpenID provider over real loopback sockets: code + PKCE, tokens, refresh
//! rotation and reuse detection, code reuse, prompt/max_age, key rotation, restarts.

use crate::oidc_support;

use jsonwebtoken::Algorithm;
use oidc_support::*;

const SPA_CB: &str = "http://127.0.0.1:1/cb";

fn spa<'a>(p: &'a Pkce, extra: &'a str) -> AuthParams<'a> {
    AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid profile email groups offline_access",
        pkce: Some(p),
        extra,
    }
}

async fn redeem_spa(op: &Op, callback: &str, p: &Pkce) -> Resp {
    let code = query_param(callback, "code").expect("code in callback");
    token(
        op,
        None,
        &format!(
            "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
            enc(&code),
            enc(SPA_CB),
            p.verifier
        ),
    )
    .await
}

#[tokio::test]
async fn discovery_and_jwks_describe_the_provider() {
    let op = Op::start(None).await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert_eq!(d["issuer"], op.base);
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["request_uri_parameter_supported"], false);
    let jwks = op.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter()
            .all(|k| k["kid"].is_string() && k["use"] == "sig")
    );
    assert!(
        keys.iter()
            .all(|k| k.get("d").is_none() && k.get("p").is_none()),
        "no private parts"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verifiable_tokens() {
    let op = Op::start(None).await;
    let code = op.ticket("alice", 300);
    let p = pkce("a");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &code).await;
    assert!(cb.starts_with(SPA_CB));
    assert_eq!(query_param(&cb, "state").as_deref(), Some("st-1"));
    assert_eq!(
        query_param(&cb, "iss").as_deref(),
        Some(op.base.as_str()),
        "RFC 9207 iss"
    );
    let session_cookie = b
        .cookies
        .get("airlock_session")
        .cloned()
        .expect("session cookie");
    assert!(!session_cookie.is_empty());

    let r = redeem_spa(&op, &cb, &p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    let access = t["access_token"].as_str().unwrap();
    let (h, id) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::ES256).await;
    assert_eq!(h.typ.as_deref(), Some("JWT"));
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["sub"], Op::sub("alice"));
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(
        id["at_hash"],
        at_hash(Algorithm::ES256, access),
        "at_hash checked by hand"
    );
    assert!(id["sid"].is_string());
    assert!(id["auth_time"].as_u64().unwrap() <= op.clock.now());
    assert_eq!(id["amr"], serde_json::json!(["otp"]));
    assert_eq!(id["acr"], "urn:airlock:acr:transfer-code");
    assert_eq!(id["airlock_issuer"], ISSUER_OUT);
    assert_eq!(id["airlock_subject"], "alice");
    assert_eq!(id["airlock_seq"], 42);
    assert_eq!(id["email"], "alice@example.org");
    assert_eq!(id["groups"], serde_json::json!(["staff"]));

    let (ah, at) = verify_jwt(&op, access, Algorithm::ES256).await;
    assert_eq!(ah.typ.as_deref(), Some("at+jwt"), "RFC 9068");
    assert_eq!(at["client_id"], "spa");
    assert!(at["jti"].is_string() && at["exp"].is_u64());

    let ui = http(
        "GET",
        &format!("{}/userinfo", op.base),
        &[("Authorization", format!("Bearer {access}"))],
        None,
    )
    .await;
    assert_eq!(ui.status, 200);
    assert_eq!(ui.json()["sub"], Op::sub("alice"));
    assert_eq!(ui.json()["name"], "User alice");

    let intro = introspect(&op, access).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], "spa");
    let intro = introspect(&op, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["token_type"], "refresh_token");

    // The transfer code was single use.
    let mut other = Browser::default();
    let r = other.get(&authorize_url(&op, &spa(&p, ""))).await;
    let page = other.get(&format!("{}{}", op.base, r.location())).await;
    let form = format!(
        "txn={}&csrf={}&code={}",
        hidden(&page.body, "txn"),
        hidden(&page.body, "csrf"),
        enc(&code)
    );
    let again = other.post(&format!("{}/login", op.base), &form).await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("already been used"), "{}", again.body);
}

/// Every answer says nosniff (pages, JSON, CSS, errors, redirects); token answers add
/// `Pragma: no-cache` (RFC 6749 § 5.1); plain HTTP gets no HSTS (the TLS test checks it).
#[tokio::test]
async fn security_headers_on_every_response() {
    let op = Op::start(None).await;
    let p = pkce("h");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("hdr", 300)).await;
    let good = redeem_spa(&op, &cb, &p).await;
    assert_eq!(good.status, 200, "{}", good.body);
    let bad = token(
        &op,
        None,
        "grant_type=authorization_code&client_id=spa&code=nope",
    )
    .await;
    assert_eq!(bad.status, 400);
    for r in [&good, &bad] {
        assert_eq!(r.header("pragma"), Some("no-cache"), "{:?}", r.headers);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let mut all = vec![good, bad];
    for path in [
        "/.well-known/openid-configuration",
        "/jwks",
        "/assets/login.css",
        "/authorize?client_id=nobody",
        "/logout",
        "/no-such-page",
    ] {
        all.push(http("GET", &format!("{}{path}", op.base), &[], None).await);
    }
    all.push(b.get(&authorize_url(&op, &spa(&p, ""))).await);
    for r in &all {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{} {:?}",
            r.status,
            r.headers
        );
        assert_eq!(r.header("strict-transport-security"), None);
    }
}

/// `id_token_hint` names the user the app expects: with prompt=none a session of another
/// user gets `login_required`, not a code for the wrong person; with a prompt the login
/// page signs in the hinted user only.
#[tokio::test]
async fn authorize_honours_id_token_hint() {
    let op = Op::start(None).await;
    let p = pkce("i");
    let mut carol = Browser::default();
    let cb = login(&op, &mut carol, &spa(&p, ""), &op.ticket("carol", 300)).await;
    let carol_id = redeem_spa(&op, &cb, &p).await.json()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dave = Browser::default();
    let cb = login(&op, &mut dave, &spa(&p, ""), &op.ticket("dave", 300)).await;
    assert!(query_param(&cb, "code").is_some());
    let hinted = format!("&id_token_hint={carol_id}");
    let silent = format!("{hinted}&prompt=none");
    let r = dave.get(&authorize_url(&op, &spa(&p, &silent))).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required"),
        "{}",
        r.location()
    );
    // Carol's own browser gets her code silently.
    let r = carol.get(&authorize_url(&op, &spa(&p, &silent))).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "{}",
        r.location()
    );
    // With a prompt, Dave's browser is sent to the login page, which takes only Carol.
    let r = dave.get(&authorize_url(&op, &spa(&p, &hinted))).await;
    assert!(r.location().starts_with("/login?"), "{}", r.location());
    let page = dave.get(&format!("{}{}", op.base, r.location())).await;
    let form = |code: &str| {
        format!(
            "txn={}&csrf={}&code={}",
            hidden(&page.body, "txn"),
            hidden(&page.body, "csrf"),
            enc(code)
        )
    };
    let eve_code = op.ticket("eve", 300);
    let r = dave
        .post(&format!("{}/login", op.base), &form(&eve_code))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("another account"), "{}", r.body);
    // Eve's code was not spent by that refusal.
    let mut eve = Browser::default();
    let cb = login(&op, &mut eve, &spa(&p, ""), &eve_code).await;
    assert!(query_param(&cb, "code").is_some());
    let r = dave
        .post(
            &format!("{}/login", op.base),
            &form(&op.ticket("carol", 300)),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let t = redeem_spa(&op, r.location(), &p).await.json();
    let (_, id) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::ES256).await;
    assert_eq!(id["sub"], Op::sub("carol"));
    // A hint this provider did not sign is refused.
    let r = dave
        .get(&authorize_url(&op, &spa(&p, "&id_token_hint=e30.e30.sig")))
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn confidential_and_eddsa_clients_authenticate() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let a = AuthParams {
        client: "ed",
        redirect: "http://127.0.0.1:3/cb",
        scope: "openid email",
        pkce: None,
        extra: "",
    };
    let cb = login(&op, &mut b, &a, &op.ticket("erin", 300)).await;
    let code = query_param(&cb, "code").unwrap();
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}",
        enc(&code),
        enc("http://127.0.0.1:3/cb")
    );
    let wrong = token(&op, Some(basic("ed", "wrong")), &body).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid_client");
    let ok = token(
        &op,
        None,
        &format!("{body}&client_id=ed&client_secret={CONF_SECRET}"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let t = ok.json();
    assert!(
        t.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let (_, id) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::EdDSA).await;
    assert_eq!(
        id["at_hash"],
        at_hash(Algorithm::EdDSA, t["access_token"].as_str().unwrap())
    );
    assert!(id.get("name").is_none(), "profile scope not granted");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let op = Op::start(None).await;
    let p = pkce("r");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("bob", 300)).await;
    let t = redeem_spa(&op, &cb, &p).await.json();
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(&rt1)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t2 = r.json();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    let (_, id2) = verify_jwt(&op, t2["id_token"].as_str().unwrap(), Algorithm::ES256).await;
    assert!(id2.get("nonce").is_none());
    assert_eq!(
        introspect(&op, t2["access_token"].as_str().unwrap()).await["active"],
        true
    );

    // Reuse of rt1: refused, and the whole family dies (rt2 and its access token too).
    let reuse = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(&rt1)
        ),
    )
    .await;
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(&rt2)
        ),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        introspect(&op, t2["access_token"].as_str().unwrap()).await["active"],
        false
    );
    // Another client cannot use a refresh token it does not own.
    let foreign = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={}", enc(&rt2)),
    )
    .await;
    assert_eq!(foreign.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn second_use_of_a_code_revokes_what_the_first_issued() {
    let op = Op::start(None).await;
    let p = pkce("c");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("carol", 300)).await;
    let first = redeem_spa(&op, &cb, &p).await;
    assert_eq!(first.status, 200);
    let t = first.json();
    assert_eq!(
        introspect(&op, t["access_token"].as_str().unwrap()).await["active"],
        true
    );
    let second = redeem_spa(&op, &cb, &p).await;
    assert_eq!(second.status, 400);
    assert_eq!(second.json()["error"], "invalid_grant");
    assert_eq!(
        introspect(&op, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let rt = t["refresh_token"].as_str().unwrap();
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(rt)
        ),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn prompt_and_max_age_control_reauthentication() {
    let op = Op::start(None).await;
    let p = pkce("p");
    let mut b = Browser::default();
    // No session: prompt=none answers login_required at the redirect_uri.
    let r = b.get(&authorize_url(&op, &spa(&p, "&prompt=none"))).await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with(SPA_CB));
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(query_param(r.location(), "state").as_deref(), Some("st-1"));
    assert_eq!(
        query_param(r.location(), "iss").as_deref(),
        Some(op.base.as_str())
    );

    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("dave", 300)).await;
    let t = redeem_spa(&op, &cb, &p).await.json();
    let (_, id1) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::ES256).await;

    // With a session: prompt=none returns a code at once.
    let r = b.get(&authorize_url(&op, &spa(&p, "&prompt=none"))).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "{}",
        r.location()
    );

    op.clock.advance(120);
    // max_age=60 after 120 s: the login page again; prompt=none with it: login_required.
    let r = b.get(&authorize_url(&op, &spa(&p, "&max_age=60"))).await;
    assert!(r.location().starts_with("/login?"), "{}", r.location());
    let r = b
        .get(&authorize_url(&op, &spa(&p, "&max_age=60&prompt=none")))
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
    let r = b.get(&authorize_url(&op, &spa(&p, "&max_age=600"))).await;
    assert!(query_param(r.location(), "code").is_some());

    let r = b.get(&authorize_url(&op, &spa(&p, "&max_age=0"))).await;
    assert!(
        r.location().starts_with("/login?"),
        "max_age=0 always re-authenticates"
    );
    // prompt=login forces a fresh login that moves auth_time.
    let r = b.get(&authorize_url(&op, &spa(&p, "&prompt=login"))).await;
    assert!(r.location().starts_with("/login?"));
    let cb = submit_code(&op, &mut b, r.location(), &op.ticket("dave", 300)).await;
    let t = redeem_spa(&op, &cb, &p).await.json();
    let (_, id2) = verify_jwt(&op, t["id_token"].as_str().unwrap(), Algorithm::ES256).await;
    assert_eq!(
        id2["auth_time"].as_u64().unwrap(),
        id1["auth_time"].as_u64().unwrap() + 120
    );
}

#[tokio::test]
async fn key_rotation_publishes_before_signing() {
    let op = Op::start(None).await;
    let p = pkce("k");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("kim", 300)).await;
    let t = redeem_spa(&op, &cb, &p).await.json();
    let old_kid = jsonwebtoken::decode_header(t["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();

    let new_kids = op.provider.rotate_keys().unwrap();
    assert_eq!(new_kids.len(), 3);
    let jwks = op.jwks().await;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        6,
        "new keys published next to the old ones"
    );

    // Before the delay (100 s): still signed with the old key.
    let rt = t["refresh_token"].as_str().unwrap();
    let t2 = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(rt)
        ),
    )
    .await
    .json();
    let kid2 = jsonwebtoken::decode_header(t2["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(kid2, old_kid);

    op.clock.advance(100);
    let rt2 = t2["refresh_token"].as_str().unwrap();
    let t3 = token(
        &op,
        None,
        &format!(
            "grant_type=refresh_token&client_id=spa&refresh_token={}",
            enc(rt2)
        ),
    )
    .await
    .json();
    let kid3 = jsonwebtoken::decode_header(t3["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert!(
        new_kids.contains(&kid3),
        "signs with the new key after the delay"
    );
    // The old key is still published (its tokens have not expired) and verifies.
    verify_jwt(&op, t2["id_token"].as_str().unwrap(), Algorithm::ES256).await;
}

#[tokio::test]
async fn sessions_and_keys_survive_a_restart() {
    let op = Op::start(None).await;
    let p = pkce("s");
    let mut b = Browser::default();
    let cb = login(&op, &mut b, &spa(&p, ""), &op.ticket("sam", 300)).await;
    let t = redeem_spa(&op, &cb, &p).await.json();
    let kid = jsonwebtoken::decode_header(t["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    let (tmp, path, clock, dir) = (
        op._tmp.clone(),
        op.db_path.clone(),
        op.clock.clone(),
        op.dir.clone(),
    );
    drop(op.provider);
    // sled keeps the directory locked while any handle lives; the server task holds one.
    // Copy the flushed database instead of waiting for the task to stop.
    let copy = tmp.path().join("db-copy");
    copy_dir(&path, &copy);
    let op2 = Op::start_with(tmp, copy, clock, dir, None).await;
    let r = b.get(&authorize_url(&op2, &spa(&p, "&prompt=none"))).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "session survived: {}",
        r.location()
    );
    let jwks = op2.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid),
        "keys survived"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
