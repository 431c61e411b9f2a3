//! Cookies: `__Host-` names over https, and CSRF tokens only the server mints.

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

/// A CSRF value planted in the browser (a sibling subdomain, a plain-http page) is not
/// adopted: the provider mints its own, and the sign-in still works.
#[tokio::test]
async fn a_planted_csrf_cookie_is_not_adopted() {
    let op = Op::start(None).await;
    let planted = "A".repeat(43);
    let mut b = Browser::default();
    b.cookies.insert("airlock_csrf".into(), planted.clone());
    let p = pkce("plant");
    let r = b.get(&authorize_url(&op, &spa(&p, ""))).await;
    assert_eq!(r.status, 303);
    assert_ne!(b.cookies["airlock_csrf"], planted, "a fresh token was set");
    let page = b.get(&format!("{}{}", op.base, r.location())).await;
    assert_ne!(hidden(&page.body, "csrf"), planted);
    // The form with the planted value (as an attacker who planted it would send) fails.
    let mut attacker = b.clone();
    attacker
        .cookies
        .insert("airlock_csrf".into(), planted.clone());
    let code = op.ticket("plant", 300);
    let forged = attacker
        .post(
            &format!("{}/login", op.base),
            &format!(
                "txn={}&csrf={planted}&code={}",
                hidden(&page.body, "txn"),
                enc(&code)
            ),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let cb = submit_code(&op, &mut b, r.location(), &code).await;
    assert!(query_param(&cb, "code").is_some());
}

/// A logout confirmation is not accepted on a CSRF value the server did not mint, even
/// when the cookie and the form agree.
#[tokio::test]
async fn a_planted_csrf_cookie_does_not_confirm_logout() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let p = pkce("lo");
    login(&op, &mut b, &spa(&p, ""), &op.ticket("lo", 300)).await;
    let planted = "B".repeat(43);
    let mut attacker = b.clone();
    attacker
        .cookies
        .insert("airlock_csrf".into(), planted.clone());
    let r = attacker
        .post(
            &format!("{}/logout", op.base),
            &format!("confirm=yes&csrf={planted}"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Sign out?"), "asked, not logged out");
    let r = b.get(&authorize_url(&op, &spa(&p, "&prompt=none"))).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "the session is alive: {}",
        r.location()
    );
}

/// Behind a TLS-terminating proxy (an https issuer) the cookies are `__Host-` cookies:
/// Secure, Path=/, no Domain; the unprefixed names are not read.
#[tokio::test]
async fn https_issuer_cookies_have_the_host_prefix() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        airlock_receiver::oidc::util::Clock::manual(now()),
        Default::default(),
        None,
        |c| c.issuer = c.issuer.replace("http://", "https://"),
    )
    .await;
    let mut b = Browser::default();
    let p = pkce("host");
    let r = b.get(&authorize_url(&op, &spa(&p, ""))).await;
    let set = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(set.starts_with("__Host-airlock_csrf="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let cb = submit_code(&op, &mut b, r.location(), &op.ticket("host", 300)).await;
    assert!(query_param(&cb, "code").is_some());
    assert!(b.cookies.contains_key("__Host-airlock_session"));
    // The session is found under its prefixed name only.
    let mut plain = Browser::default();
    plain.cookies.insert(
        "airlock_session".into(),
        b.cookies["__Host-airlock_session"].clone(),
    );
    let r = plain
        .get(&authorize_url(&op, &spa(&p, "&prompt=none")))
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
    let r = b.get(&authorize_url(&op, &spa(&p, "&prompt=none"))).await;
    assert!(query_param(r.location(), "code").is_some());
}
