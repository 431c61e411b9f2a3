//! The client credentials grant: RFC 9068 tokens for a confidential service, with no user;
//! introspection and revocation; every refusal gets the RFC's error, issues nothing and is
//! counted.

use std::sync::Arc;

use airlock_receiver::oidc::util::Clock;
use jsonwebtoken::Algorithm;
use oidc_support::*;

use crate::oidc_support;

const ORDERS: &str = "https://orders.inside";
const BILLING: &str = "https://billing.inside";

/// `app` (confidential) may use the grant; `ed` (confidential) and `spa` (public) may not.
async fn start() -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    Op::start_custom(
        tmp,
        db,
        Clock::manual(now()),
        Default::default(),
        None,
        |c| {
            let app = &mut c.clients[1];
            assert_eq!(app.client_id, "app");
            app.client_credentials_scopes = vec!["orders.read".into(), "orders.write".into()];
            app.client_credentials_audience = vec![ORDERS.into(), BILLING.into()];
            app.grant_types.push("client_credentials".into());
        },
    )
    .await
}

fn refusals(op: &Op, reason: &str) -> u64 {
    op.provider.metric("client_credentials_refusals", reason)
}

#[tokio::test]
async fn confidential_service_gets_a_userless_rfc9068_token() {
    let op = start().await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert!(
        d["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("client_credentials"))
    );
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        "grant_type=client_credentials&scope=orders.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["scope"], "orders.read");
    assert_eq!(j["expires_in"], 600);
    assert!(j.get("refresh_token").is_none(), "no refresh token: {j}");
    assert!(j.get("id_token").is_none(), "no ID token: {j}");
    let at = j["access_token"].as_str().unwrap();
    let (header, claims) = verify_jwt(&op, at, Algorithm::RS256).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["sub"], "app", "RFC 9068 §2.2: sub is the client");
    assert_eq!(claims["client_id"], "app");
    assert_eq!(claims["aud"], serde_json::json!([ORDERS, BILLING]));
    assert_eq!(claims["scope"], "orders.read");
    assert!(claims["jti"].is_string() && claims["exp"].is_u64() && claims["iat"].is_u64());
    for user_claim in [
        "auth_time",
        "sid",
        "acr",
        "amr",
        "email",
        "name",
        "groups",
        "nonce",
    ] {
        assert!(claims.get(user_claim).is_none(), "{user_claim} in {claims}");
    }

    let i = introspect(&op, at).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], "app");
    assert_eq!(i["sub"], "app");
    assert_eq!(i["scope"], "orders.read");
    assert_eq!(i["aud"], serde_json::json!([ORDERS, BILLING]));
    assert_eq!(i["token_type"], "Bearer");
    assert!(
        i.get("sid").is_none() && i.get("auth_time").is_none(),
        "{i}"
    );

    // No user: userinfo has nothing to say.
    let u = http(
        "GET",
        &format!("{}/userinfo", op.base),
        &[("Authorization", format!("Bearer {at}"))],
        None,
    )
    .await;
    assert_eq!(u.status, 403, "{}", u.body);

    // One audience by RFC 8707 `resource`, client_secret_post, every allowed scope by default.
    let r = token(
        &op,
        None,
        &format!(
            "grant_type=client_credentials&client_id=app&client_secret={}&resource={}",
            enc(CONF_SECRET),
            enc(ORDERS)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["scope"], "orders.read orders.write");
    let at2 = j["access_token"].as_str().unwrap().to_string();
    let (_, claims) = verify_jwt(&op, &at2, Algorithm::RS256).await;
    assert_eq!(claims["aud"], ORDERS);

    // Revocation ends that token, not the other.
    let rv = http(
        "POST",
        &format!("{}/revoke", op.base),
        &[basic("app", CONF_SECRET)],
        Some(&format!("token={}", enc(&at2))),
    )
    .await;
    assert_eq!(rv.status, 200);
    assert_eq!(introspect(&op, &at2).await["active"], false);
    assert_eq!(introspect(&op, at).await["active"], true);
    assert_eq!(op.provider.metric("client_credentials_grants", "ok"), 2);
}

#[tokio::test]
async fn public_client_cannot_use_client_credentials() {
    let op = start().await;
    let r = token(&op, None, "grant_type=client_credentials&client_id=spa").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let j = r.json();
    assert_eq!(j["error"], "unauthorized_client");
    assert!(j.get("access_token").is_none());
    assert_eq!(refusals(&op, "public_client"), 1);
    // A confidential client the operator did not configure for the grant.
    let r = token(
        &op,
        Some(basic("ed", CONF_SECRET)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthorized_client");
    assert_eq!(refusals(&op, "not_configured"), 1);
    assert_eq!(op.provider.metric("token_errors", "unauthorized_client"), 2);
    assert_eq!(op.provider.metric("client_credentials_grants", "ok"), 0);
}

#[tokio::test]
async fn scope_or_audience_not_allowed_is_refused() {
    let op = start().await;
    for scope in ["orders.delete", "openid", "orders.read%20email"] {
        let r = token(
            &op,
            Some(basic("app", CONF_SECRET)),
            &format!("grant_type=client_credentials&scope={scope}"),
        )
        .await;
        assert_eq!(r.status, 400, "{scope}: {}", r.body);
        let j = r.json();
        assert_eq!(j["error"], "invalid_scope", "{scope}");
        assert!(j.get("access_token").is_none());
    }
    assert_eq!(refusals(&op, "scope_not_allowed"), 3);
    let r = token(
        &op,
        Some(basic("app", CONF_SECRET)),
        &format!(
            "grant_type=client_credentials&resource={}",
            enc("https://hr.inside")
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_target");
    assert_eq!(refusals(&op, "resource_not_allowed"), 1);
    assert_eq!(op.provider.metric("client_credentials_grants", "ok"), 0);
}

#[tokio::test]
async fn wrong_secret_gets_invalid_client() {
    let op = start().await;
    let r = token(
        &op,
        Some(basic("app", "not-the-secret")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(r.header("www-authenticate").is_some());
    let r = token(&op, None, "grant_type=client_credentials&client_id=app").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(op.provider.metric("token_errors", "invalid_client"), 2);
    assert_eq!(op.provider.metric("client_credentials_grants", "ok"), 0);
}

/// A service's replicas starting together: their first authentications arrive at once,
/// while the first argon2 verification still runs. None may count as a failed attempt
/// (the per-client limit is 10 in 15 minutes): every replica gets its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_authenticating_at_once_are_not_locked_out() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    // A production-like cost, so the first verification takes long enough for the other
    // requests to arrive during it.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let slow = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(
            CONF_SECRET.as_bytes(),
            &SaltString::encode_b64(b"replica-salt").unwrap(),
        )
        .unwrap()
        .to_string();
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        Clock::manual(now()),
        Default::default(),
        None,
        |c| {
            let app = &mut c.clients[1];
            app.client_secret_hash = Some(slow);
            app.client_credentials_scopes = vec!["orders.read".into()];
            app.client_credentials_audience = vec![ORDERS.into()];
            app.grant_types.push("client_credentials".into());
        },
    )
    .await;
    let replicas = 24;
    let mut tasks = Vec::new();
    for _ in 0..replicas {
        let base = op.base.clone();
        tasks.push(tokio::spawn(async move {
            http(
                "POST",
                &format!("{base}/token"),
                &[basic("app", CONF_SECRET)],
                Some("grant_type=client_credentials"),
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(op.provider.metric("client_auth", "locked"), 0);
    assert_eq!(
        op.provider.metric("client_auth", "argon2"),
        1,
        "one verification"
    );
}
