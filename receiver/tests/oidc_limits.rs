//! Bounds on what unauthenticated and cheap requests leave in the provider's store.

use crate::oidc_support;

use oidc_support::*;

fn spa<'a>(p: &'a Pkce, extra: &'a str) -> AuthParams<'a> {
    AuthParams {
        client: "spa",
        redirect: "http://127.0.0.1:1/cb",
        scope: "openid",
        pkce: Some(p),
        extra,
    }
}

/// An oversized scope (repeated allowed values) or acr_values is refused with an OAuth
/// error, not parked.
#[tokio::test]
async fn oversized_authorization_parameters_are_refused() {
    let op = Op::start(None).await;
    let p = pkce("big");
    let url = |scope: &str, extra: &str| {
        format!(
            "{}/authorize?response_type=code&client_id=spa&redirect_uri={}&scope={}&code_challenge={}&code_challenge_method=S256{extra}",
            op.base,
            enc("http://127.0.0.1:1/cb"),
            enc(scope),
            p.challenge
        )
    };
    let long_scope = "openid ".repeat(300);
    let long_acr = format!("&acr_values={}", "x".repeat(600));
    let long_state = format!("&state={}", "s".repeat(600));
    for (u, key) in [
        (url(&long_scope, ""), "scope"),
        (url("openid", &long_acr), "acr_values"),
        (url("openid", &long_state), "state"),
    ] {
        let r = Browser::default().get(&u).await;
        assert_eq!(r.status, 303, "{key}: {}", r.body);
        assert_eq!(
            query_param(r.location(), "error").as_deref(),
            Some("invalid_request"),
            "{key}: {}",
            r.location()
        );
        assert!(
            query_param(r.location(), "error_description")
                .unwrap()
                .contains(key),
            "{}",
            r.location()
        );
    }
}

async fn authorize_from(op: &Op, p: &Pkce, xff: &str) -> Resp {
    http(
        "GET",
        &authorize_url(op, &spa(p, "")),
        &[("X-Forwarded-For", xff.to_string())],
        None,
    )
    .await
}

fn refused(r: &Resp) -> bool {
    r.location().starts_with("http://127.0.0.1:1/cb")
        && query_param(r.location(), "error").as_deref() == Some("temporarily_unavailable")
}

/// Parked authorization requests are bounded per client address (behind a trusted
/// proxy) and in all; a finished login frees its place, and expired ones are deleted
/// from the store as soon as they are seen, not at the next purge.
#[tokio::test]
async fn parked_requests_are_bounded_per_address_and_in_all() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let clock = airlock_receiver::oidc::util::Clock::manual(now());
    let op = Op::start_custom(tmp, db, clock, Default::default(), None, |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.max_pending_per_address = 3;
        c.max_pending_total = 5;
    })
    .await;
    let p = pkce("park");
    let mut first = None;
    for _ in 0..3 {
        let r = authorize_from(&op, &p, "192.0.2.1").await;
        assert!(r.location().starts_with("/login?txn="), "{}", r.location());
        first.get_or_insert_with(|| r.location().to_string());
    }
    let r = authorize_from(&op, &p, "192.0.2.1").await;
    assert!(refused(&r), "fourth from one address: {}", r.location());
    assert!(
        query_param(r.location(), "error_description")
            .unwrap()
            .contains("this address")
    );
    // Another address has its own budget, until the total is reached.
    for _ in 0..2 {
        let r = authorize_from(&op, &p, "192.0.2.2").await;
        assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    }
    let r = authorize_from(&op, &p, "192.0.2.3").await;
    assert!(refused(&r), "over the total: {}", r.location());
    assert_eq!(
        op.provider
            .metric("authorize_errors", "pending_limit_address"),
        1
    );
    assert_eq!(
        op.provider
            .metric("authorize_errors", "pending_limit_total"),
        1
    );
    // After their lifetime the parked requests no longer count, and the store drops them.
    op.clock.advance(601);
    let r = authorize_from(&op, &p, "192.0.2.3").await;
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let txn = query_param(&first.unwrap(), "txn").unwrap();
    assert!(
        op.provider.pending_request(&txn).unwrap().is_none(),
        "an expired parked request is deleted when seen"
    );
}

/// A signed-in browser looping on `/authorize` gets at most `max_codes_per_session`
/// codes per code lifetime.
#[tokio::test]
async fn codes_per_session_are_bounded() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let clock = airlock_receiver::oidc::util::Clock::manual(now());
    let op = Op::start_custom(tmp, db, clock, Default::default(), None, |c| {
        c.max_codes_per_session = 2;
    })
    .await;
    let p = pkce("loop");
    let mut b = Browser::default();
    login(&op, &mut b, &spa(&p, ""), &op.ticket("loop", 300)).await;
    let silent = spa(&p, "&prompt=none");
    for _ in 0..2 {
        let r = b.get(&authorize_url(&op, &silent)).await;
        assert!(
            query_param(r.location(), "code").is_some(),
            "{}",
            r.location()
        );
    }
    let r = b.get(&authorize_url(&op, &silent)).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("temporarily_unavailable"),
        "{}",
        r.location()
    );
    op.clock.advance(61);
    let r = b.get(&authorize_url(&op, &silent)).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "{}",
        r.location()
    );
}
