//! Pushed authorization requests (RFC 9126): the push, `/authorize` by `request_uri`,
//! and every refusal (reuse, expiry, another client, no client authentication, a body
//! naming another client than the authenticated one, a client that must push using plain
//! `/authorize`). Each refusal issues nothing and is counted.

use crate::oidc_support;

use oidc_support::*;

const SPA_CB: &str = "http://127.0.0.1:1/cb";
const APP_CB: &str = "http://127.0.0.1:2/cb";
const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

async fn par(op: &Op, auth: Option<(&'static str, String)>, body: &str) -> Resp {
    let h: Vec<(&str, String)> = auth.into_iter().collect();
    http("POST", &format!("{}/par", op.base), &h, Some(body)).await
}

fn spa_push(p: &Pkce) -> String {
    format!(
        "client_id=spa&response_type=code&redirect_uri={}&scope={}&state=pushed-state&nonce=n-9&code_challenge={}&code_challenge_method=S256",
        enc(SPA_CB),
        enc("openid email"),
        p.challenge
    )
}

fn app_push(p: &Pkce) -> String {
    format!(
        "response_type=code&redirect_uri={}&scope=openid&state=app-state&code_challenge={}&code_challenge_method=S256",
        enc(APP_CB),
        p.challenge
    )
}

/// Pushes and returns the request_uri (asserting the RFC 9126 §2.2 response).
async fn push_ok(op: &Op, auth: Option<(&'static str, String)>, body: &str) -> String {
    let r = par(op, auth, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["expires_in"], 60);
    let uri = j["request_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with(PREFIX), "{uri}");
    assert!(uri.len() >= PREFIX.len() + 43, "high entropy: {uri}");
    uri
}

fn by_reference(op: &Op, client: &str, uri: &str) -> String {
    format!(
        "{}/authorize?client_id={client}&request_uri={}",
        op.base,
        enc(uri)
    )
}

#[tokio::test]
async fn pushed_request_drives_the_code_flow_for_public_and_confidential_clients() {
    let op = Op::start(None).await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert_eq!(
        d["pushed_authorization_request_endpoint"],
        format!("{}/par", op.base)
    );
    assert_eq!(d["require_pushed_authorization_requests"], false);

    // A public client pushes naming itself; the browser carries only client_id and request_uri.
    let p = pkce("par-spa");
    let uri = push_ok(&op, None, &spa_push(&p)).await;
    let mut b = Browser::default();
    let r = b.get(&by_reference(&op, "spa", &uri)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let cb = submit_code(&op, &mut b, r.location(), &op.ticket("pia", 300)).await;
    assert!(cb.starts_with(SPA_CB), "{cb}");
    assert_eq!(query_param(&cb, "state").as_deref(), Some("pushed-state"));
    let code = query_param(&cb, "code").unwrap();
    let t = token(
        &op,
        None,
        &format!(
            "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
            enc(&code),
            enc(SPA_CB),
            p.verifier
        ),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let j = t.json();
    assert_eq!(
        j["scope"], "openid email",
        "the pushed scope, not a default"
    );
    let (_, id) = verify_jwt(
        &op,
        j["id_token"].as_str().unwrap(),
        jsonwebtoken::Algorithm::ES256,
    )
    .await;
    assert_eq!(id["nonce"], "n-9", "the pushed nonce");

    // A confidential client authenticates its push (Basic); the signed-in browser gets a code at once.
    let p2 = pkce("par-app");
    let uri = push_ok(&op, Some(basic("app", CONF_SECRET)), &app_push(&p2)).await;
    let r = b.get(&by_reference(&op, "app", &uri)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(APP_CB), "{}", r.location());
    assert_eq!(
        query_param(r.location(), "state").as_deref(),
        Some("app-state")
    );
    assert_eq!(op.provider.metric("par_requests", "ok"), 2);
}

#[tokio::test]
async fn request_uri_is_single_use() {
    let op = Op::start(None).await;
    let p = pkce("reuse");
    let uri = push_ok(&op, None, &spa_push(&p)).await;
    let mut b = Browser::default();
    let first = b.get(&by_reference(&op, "spa", &uri)).await;
    assert_eq!(first.status, 303);
    let again = Browser::default()
        .get(&by_reference(&op, "spa", &uri))
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.header("location").is_none());
    assert!(again.body.contains("invalid_request_uri"), "{}", again.body);
    assert_eq!(
        op.provider
            .metric("authorize_errors", "request_uri_unknown"),
        1
    );
    // A request_uri that was never issued is refused the same way.
    let forged = format!("{PREFIX}{}", "A".repeat(43));
    let r = Browser::default()
        .get(&by_reference(&op, "spa", &forged))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("invalid_request_uri"));
    assert_eq!(
        op.provider
            .metric("authorize_errors", "request_uri_unknown"),
        2
    );
}

#[tokio::test]
async fn expired_request_uri_is_refused() {
    let op = Op::start(None).await;
    let p = pkce("expired");
    let uri = push_ok(&op, None, &spa_push(&p)).await;
    op.clock.advance(61);
    let r = Browser::default()
        .get(&by_reference(&op, "spa", &uri))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request_uri"));
    assert!(r.header("location").is_none(), "nothing issued");
    // Refused as expired, or as unknown when the minute's purge (its first run at start-up
    // may come after the clock moved) removed it first: either way counted once.
    let m = |r| op.provider.metric("authorize_errors", r);
    assert_eq!(m("request_uri_expired") + m("request_uri_unknown"), 1);
}

#[tokio::test]
async fn request_uri_of_another_client_is_refused_and_not_burnt() {
    let op = Op::start(None).await;
    let p = pkce("other");
    let uri = push_ok(&op, None, &spa_push(&p)).await;
    // `ed` presents spa's request_uri: refused, and spa's push stays usable.
    let r = Browser::default().get(&by_reference(&op, "ed", &uri)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request_uri"));
    assert!(r.header("location").is_none());
    assert_eq!(
        op.provider
            .metric("authorize_errors", "request_uri_other_client"),
        1
    );
    let r = Browser::default()
        .get(&by_reference(&op, "spa", &uri))
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/login?txn="));
}

#[tokio::test]
async fn push_by_a_confidential_client_needs_its_secret() {
    let op = Op::start(None).await;
    let p = pkce("noauth");
    let body = format!("client_id=app&{}", app_push(&p));
    let r = par(&op, None, &body).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    let r = par(&op, Some(basic("app", "wrong-secret")), &app_push(&p)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(op.provider.metric("par_errors", "invalid_client"), 2);
    assert_eq!(op.provider.metric("par_requests", "ok"), 0);
}

/// RFC 9126 §2.1: a push is authenticated as at the token endpoint, so a body whose
/// `client_id` names another client than the one the Basic credentials authenticate is
/// refused, whether the other client is public or confidential: nothing is stored, no
/// `request_uri` is answered, and the refusal is counted.
#[tokio::test]
async fn push_naming_another_client_than_the_authenticated_one_is_refused() {
    let op = Op::start(None).await;
    let p = pkce("other-client");
    let cases = [
        // app's own parameters, but the body says it is ed (confidential).
        format!("client_id=ed&{}", app_push(&p)),
        // spa's (public) whole push, sent with app's credentials.
        spa_push(&p),
    ];
    for body in &cases {
        let r = par(&op, Some(basic("app", CONF_SECRET)), body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let j = r.json();
        assert_eq!(j["error"], "invalid_request", "{body}");
        assert!(
            j["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("client_id differs from the authenticated client")),
            "{body}: {j}"
        );
        assert!(j.get("request_uri").is_none(), "{j}");
    }
    assert_eq!(op.provider.metric("par_errors", "invalid_request"), 2);
    assert_eq!(op.provider.metric("par_requests", "ok"), 0);
    // Naming itself, the same push goes through: the refusal was the other name.
    push_ok(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!("client_id=app&{}", app_push(&p)),
    )
    .await;
}

#[tokio::test]
async fn push_is_validated_as_authorize_validates() {
    let op = Op::start(None).await;
    let p = pkce("bad");
    let cases = [
        // A public client without PKCE.
        (
            format!(
                "client_id=spa&response_type=code&redirect_uri={}&scope=openid",
                enc(SPA_CB)
            ),
            "invalid_request",
        ),
        // An unregistered redirect_uri.
        (
            spa_push(&p).replace(&enc(SPA_CB), &enc("http://127.0.0.1:1/evil")),
            "invalid_request",
        ),
        // A scope the client may not have.
        (
            spa_push(&p).replace(&enc("openid email"), "openid%20admin"),
            "invalid_scope",
        ),
        (
            spa_push(&p).replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        // request_uri inside a push (RFC 9126 §2.1).
        (
            format!(
                "{}&request_uri={}",
                spa_push(&p),
                enc(&format!("{PREFIX}x"))
            ),
            "invalid_request",
        ),
    ];
    for (body, error) in &cases {
        let r = par(&op, None, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"], *error, "{body}");
    }
    assert_eq!(op.provider.metric("par_errors", "invalid_request"), 3);
    assert_eq!(op.provider.metric("par_requests", "ok"), 0);
}

#[tokio::test]
async fn client_that_must_push_cannot_use_plain_authorize() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        airlock_receiver::oidc::util::Clock::manual(now()),
        Default::default(),
        None,
        |c| c.clients[0].require_pushed_authorization_requests = true,
    )
    .await;
    let p = pkce("must-push");
    let a = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let r = Browser::default().get(&authorize_url(&op, &a)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(SPA_CB), "{}", r.location());
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(r.location(), "code").is_none());
    assert_eq!(op.provider.metric("authorize_errors", "par_required"), 1);
    // Pushed, the same request goes through; other clients are not affected.
    let uri = push_ok(&op, None, &spa_push(&p)).await;
    let r = Browser::default()
        .get(&by_reference(&op, "spa", &uri))
        .await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let r = Browser::default()
        .get(&authorize_url(
            &op,
            &AuthParams {
                client: "app",
                redirect: APP_CB,
                ..a
            },
        ))
        .await;
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
}

#[tokio::test]
async fn global_require_par_is_advertised_and_enforced() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        airlock_receiver::oidc::util::Clock::manual(now()),
        Default::default(),
        None,
        |c| c.require_pushed_authorization_requests = true,
    )
    .await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert_eq!(d["require_pushed_authorization_requests"], true);
    let p = pkce("global");
    let r = Browser::default()
        .get(&authorize_url(
            &op,
            &AuthParams {
                client: "app",
                redirect: APP_CB,
                scope: "openid",
                pkce: Some(&p),
                extra: "",
            },
        ))
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(op.provider.metric("authorize_errors", "par_required"), 1);
}
