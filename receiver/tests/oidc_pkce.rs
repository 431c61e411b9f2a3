//! `require_pkce`: globally and per client, confidential clients must send PKCE (S256) as
//! public ones always must; a config without the key keeps confidential PKCE optional.

use std::sync::Arc;

use airlock_receiver::oidc::OidcConfig;
use airlock_receiver::oidc::util::Clock;
use oidc_support::*;

use crate::oidc_support;

const APP_CB: &str = "http://127.0.0.1:2/cb";
const ED_CB: &str = "http://127.0.0.1:3/cb";

async fn start(edit: impl FnOnce(&mut OidcConfig)) -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    Op::start_custom(
        tmp,
        db,
        Clock::manual(now()),
        Default::default(),
        None,
        edit,
    )
    .await
}

fn plain<'a>(client: &'a str, redirect: &'a str, pkce: Option<&'a Pkce>) -> AuthParams<'a> {
    AuthParams {
        client,
        redirect,
        scope: "openid",
        pkce,
        extra: "",
    }
}

/// The authorization request's verdict: the error sent back, or None when it went on to
/// the login page.
async fn verdict(op: &Op, a: &AuthParams<'_>) -> Option<String> {
    let r = Browser::default().get(&authorize_url(op, a)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    if r.location().starts_with("/login?txn=") {
        return None;
    }
    assert!(
        query_param(r.location(), "code").is_none(),
        "nothing issued"
    );
    Some(query_param(r.location(), "error").expect("an error or the login page"))
}

#[tokio::test]
async fn required_globally_a_confidential_client_without_pkce_is_refused() {
    let op = start(|c| {
        c.require_pkce = true;
        // A client may be let off explicitly (an app that cannot send PKCE yet).
        c.clients[2].require_pkce = Some(false);
    })
    .await;
    assert_eq!(
        verdict(&op, &plain("app", APP_CB, None)).await.as_deref(),
        Some("invalid_request")
    );
    assert_eq!(op.provider.metric("authorize_errors", "pkce_required"), 1);
    assert_eq!(verdict(&op, &plain("ed", ED_CB, None)).await, None);

    // With PKCE the confidential client signs in, and the verifier is checked at /token.
    let p = pkce("conf");
    let mut b = Browser::default();
    let cb = login(
        &op,
        &mut b,
        &plain("app", APP_CB, Some(&p)),
        &op.ticket("cy", 300),
    )
    .await;
    let code = query_param(&cb, "code").unwrap();
    let redeem = |verifier: &str| {
        format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
            enc(&code),
            enc(APP_CB)
        )
    };
    let t = token(&op, Some(basic("app", CONF_SECRET)), &redeem(&p.verifier)).await;
    assert_eq!(t.status, 200, "{}", t.body);

    // A push is held to the same rule.
    let r = http(
        "POST",
        &format!("{}/par", op.base),
        &[basic("app", CONF_SECRET)],
        Some(&format!(
            "response_type=code&redirect_uri={}&scope=openid",
            enc(APP_CB)
        )),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[tokio::test]
async fn without_the_key_confidential_pkce_stays_optional_unless_the_client_requires_it() {
    let op = start(|c| c.clients[1].require_pkce = Some(true)).await;
    assert!(
        !op.provider.config().require_pkce,
        "an existing config without the key keeps its behaviour"
    );
    assert_eq!(
        verdict(&op, &plain("app", APP_CB, None)).await.as_deref(),
        Some("invalid_request")
    );
    assert_eq!(op.provider.metric("authorize_errors", "pkce_required"), 1);
    assert_eq!(verdict(&op, &plain("ed", ED_CB, None)).await, None);
    // Public clients need PKCE whatever the settings say.
    let op = start(|c| c.clients[0].require_pkce = Some(false)).await;
    assert_eq!(
        verdict(&op, &plain("spa", "http://127.0.0.1:1/cb", None))
            .await
            .as_deref(),
        Some("invalid_request")
    );
}
