//! Bad input: each gets the standard error, nothing is issued, attempts are counted.

use crate::oidc_support;

use oidc_support::*;

const SPA_CB: &str = "http://127.0.0.1:1/cb";

#[tokio::test]
async fn unknown_client_and_redirect_mismatch_get_an_error_page() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let p = pkce("b");
    let mut a = AuthParams {
        client: "nope",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let r = b.get(&authorize_url(&op, &a)).await;
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    assert!(r.body.contains("not registered"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    a.client = "spa";
    a.redirect = "http://127.0.0.1:1/cb/../evil";
    let r = b.get(&authorize_url(&op, &a)).await;
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    // Repeated or oversized parameters.
    let r = b
        .get(&format!(
            "{}&state=again",
            authorize_url(
                &op,
                &AuthParams {
                    redirect: SPA_CB,
                    ..a
                }
            )
        ))
        .await;
    assert_eq!(r.status, 400);
    let r = b
        .get(&format!(
            "{}&junk={}",
            authorize_url(
                &op,
                &AuthParams {
                    redirect: SPA_CB,
                    ..a
                }
            ),
            "x".repeat(9000)
        ))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn protocol_errors_are_redirected_with_state_and_iss() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let p = pkce("e");
    let cases = [
        (
            AuthParams {
                client: "spa",
                redirect: SPA_CB,
                scope: "openid",
                pkce: None,
                extra: "",
            },
            "invalid_request",
        ),
        (
            AuthParams {
                client: "spa",
                redirect: SPA_CB,
                scope: "profile",
                pkce: Some(&p),
                extra: "",
            },
            "invalid_scope",
        ),
        (
            AuthParams {
                client: "ed",
                redirect: "http://127.0.0.1:3/cb",
                scope: "openid groups",
                pkce: None,
                extra: "",
            },
            "invalid_scope",
        ),
        (
            AuthParams {
                client: "spa",
                redirect: SPA_CB,
                scope: "openid",
                pkce: Some(&p),
                extra: "&prompt=consent",
            },
            "invalid_request",
        ),
        (
            AuthParams {
                client: "spa",
                redirect: SPA_CB,
                scope: "openid",
                pkce: Some(&p),
                extra: "&request=eyJ",
            },
            "request_not_supported",
        ),
    ];
    for (a, want) in cases {
        let r = b.get(&authorize_url(&op, &a)).await;
        assert_eq!(r.status, 303, "{want}");
        assert_eq!(
            query_param(r.location(), "error").as_deref(),
            Some(want),
            "{}",
            r.location()
        );
        assert_eq!(query_param(r.location(), "state").as_deref(), Some("st-1"));
        assert_eq!(
            query_param(r.location(), "iss").as_deref(),
            Some(op.base.as_str())
        );
    }
    // plain PKCE is refused
    let url = authorize_url(
        &op,
        &AuthParams {
            client: "spa",
            redirect: SPA_CB,
            scope: "openid",
            pkce: None,
            extra: "",
        },
    );
    let r = b
        .get(&format!(
            "{url}&code_challenge={}&code_challenge_method=plain",
            "a".repeat(43)
        ))
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn wrong_pkce_verifier_burns_the_code() {
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let p = pkce("w");
    let a = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let cb = login(&op, &mut b, &a, &op.ticket("pat", 300)).await;
    let code = query_param(&cb, "code").unwrap();
    let body = |v: &str| {
        format!(
            "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={v}",
            enc(&code),
            enc(SPA_CB)
        )
    };
    let r = token(&op, None, &body(&pkce("other").verifier)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = token(&op, None, &body(&p.verifier)).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "a code that failed PKCE is gone"
    );
    assert_eq!(op.provider.metric("token_errors", "invalid_grant"), 2);
    // Unknown client, unsupported grant.
    let r = token(
        &op,
        None,
        "grant_type=authorization_code&client_id=ghost&code=x",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = token(&op, None, "grant_type=password&client_id=spa").await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = token(
        &op,
        None,
        "grant_type=authorization_code&client_id=spa&client_secret=x&code=x",
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_client");
}

/// Wrong client secrets are limited per client (10) and per address (30) in the lockout
/// window, even the right secret is then refused until it lifts (unless this receiver
/// verified it before); a secret for an unknown client costs one argon2 verification
/// like a known client's.
#[tokio::test]
async fn client_secret_failures_are_limited_and_unknown_clients_cost_the_same() {
    let op = Op::start(None).await;
    let call = |id: &str, secret: &str| {
        token(
            &op,
            Some(basic(id, secret)),
            "grant_type=authorization_code&code=x&redirect_uri=x",
        )
    };
    let r = call("ghost", "guess").await;
    assert_eq!(r.json()["error"], "invalid_client");
    let unknown = r.json()["error_description"].clone();
    assert_eq!(
        op.provider.metric("client_auth", "argon2"),
        1,
        "unknown costs one"
    );
    for _ in 0..10 {
        let r = call("app", "wrong").await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (401, Some("invalid_client"))
        );
        // The same answer as for the unknown client: it tells nothing about which ids exist.
        assert_eq!(r.json()["error_description"], unknown, "{}", r.body);
    }
    assert_eq!(op.provider.metric("client_auth", "argon2"), 11);
    let r = call("app", CONF_SECRET).await;
    assert_eq!(r.json()["error"], "invalid_client", "{}", r.body);
    assert!(r.body.contains("too many failed"), "{}", r.body);
    assert_eq!(
        op.provider.metric("client_auth", "argon2"),
        11,
        "locked: not verified"
    );
    // Another client is not locked with it: its right secret passes (then the code is bad).
    assert_eq!(
        call("ed", CONF_SECRET).await.json()["error"],
        "invalid_grant"
    );
    // Unknown clients fill the address budget (30): then every client from here waits.
    for i in 0..19 {
        assert_eq!(call(&format!("ghost-{i}"), "guess").await.status, 401);
    }
    let r = call("ed", "wrong").await;
    assert!(r.body.contains("too many failed"), "{}", r.body);
    // A secret this receiver verified before is still recognised without argon2.
    assert_eq!(
        call("ed", CONF_SECRET).await.json()["error"],
        "invalid_grant"
    );
    assert_eq!(op.provider.metric("client_auth", "locked"), 2);
}

/// Client secrets and transfer codes have separate argon2 budgets: with every client-auth
/// slot held, a transfer-code sign-in still completes while a client authentication waits
/// for its slot; with every transfer-code slot held, a client authenticates while a sign-in
/// waits. (The timeouts only bound a hang; nothing is timed.)
#[tokio::test]
async fn client_authentication_and_sign_ins_have_separate_argon2_budgets() {
    use std::sync::Arc;
    use std::time::Duration;
    const HANG: Duration = Duration::from_secs(120);
    let op = Arc::new(Op::start(None).await);
    let budgets = op.provider.argon2_budgets();

    // Client authentication's slots are all taken: a bad Basic header waits for one.
    let held = budgets
        .client_auth
        .acquire_many(airlock_receiver::oidc::login::CLIENT_AUTH_ARGON2_SLOTS as u32)
        .await
        .unwrap();
    let waiting_client = tokio::spawn({
        let op = op.clone();
        async move {
            token(
                &op,
                Some(basic("app", "wrong")),
                "grant_type=authorization_code&code=x&redirect_uri=x",
            )
            .await
        }
    });
    let p = pkce("budget-1");
    let a = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let mut b = Browser::default();
    let cb = tokio::time::timeout(HANG, login(&op, &mut b, &a, &op.ticket("tom", 300)))
        .await
        .expect("a sign-in must not wait for the client-authentication slots");
    assert!(query_param(&cb, "code").is_some(), "{cb}");
    assert!(
        !waiting_client.is_finished(),
        "the client authentication waits for its own slot"
    );
    drop(held);
    let r = tokio::time::timeout(HANG, waiting_client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["error"], "invalid_client", "{}", r.body);

    // The reverse: the transfer-code slots are all taken.
    let held = budgets
        .transfer_codes
        .acquire_many(airlock_receiver::oidc::login::TRANSFER_CODE_ARGON2_SLOTS as u32)
        .await
        .unwrap();
    let code = op.ticket("una", 300);
    let waiting_login = tokio::spawn({
        let op = op.clone();
        async move {
            let p = pkce("budget-2");
            let a = AuthParams {
                client: "spa",
                redirect: SPA_CB,
                scope: "openid",
                pkce: Some(&p),
                extra: "",
            };
            let mut b = Browser::default();
            login(&op, &mut b, &a, &code).await
        }
    });
    let argon2_before = op.provider.metric("client_auth", "argon2");
    let r = tokio::time::timeout(
        HANG,
        token(
            &op,
            Some(basic("ed", CONF_SECRET)),
            "grant_type=authorization_code&code=x&redirect_uri=x",
        ),
    )
    .await
    .expect("client authentication must not wait for the transfer-code slots");
    // Authenticated (argon2 ran), then the made-up code is refused.
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    assert_eq!(
        op.provider.metric("client_auth", "argon2"),
        argon2_before + 1
    );
    assert!(
        !waiting_login.is_finished(),
        "the sign-in waits for its own slot"
    );
    drop(held);
    let cb = tokio::time::timeout(HANG, waiting_login)
        .await
        .unwrap()
        .unwrap();
    assert!(query_param(&cb, "code").is_some(), "{cb}");
}

/// Opens a login page for `spa`; its (txn, csrf).
async fn login_form(op: &Op, b: &mut Browser) -> (String, String) {
    let p = pkce("l");
    let a = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let start = b.get(&authorize_url(op, &a)).await;
    let page = b.get(&format!("{}{}", op.base, start.location())).await;
    (hidden(&page.body, "txn"), hidden(&page.body, "csrf"))
}

/// `good` with another secret (same locator), check character recomputed.
fn wrong_secret(good: &str, i: u8) -> String {
    let alphabet = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut values = [0u8; 24];
    for (k, c) in good.replace('-', "").bytes().take(24).enumerate() {
        values[k] = alphabet.iter().position(|&a| a == c).unwrap() as u8;
    }
    values[10] = (values[10] + 1 + i) % 32;
    airlock_receiver::oidc::transfer_code::code_text(&values)
}

#[tokio::test]
async fn brute_forced_codes_lock_the_locator_then_the_address() {
    let op = Op::start(None).await;
    let good = op.ticket("tom", 300);
    let mut b = Browser::default();
    let (txn, csrf) = login_form(&op, &mut b).await;
    let post = |code: String| format!("txn={txn}&csrf={csrf}&code={}", enc(&code));
    // A typo caught by the check character is explained and costs nothing.
    let mut typo = good.clone().into_bytes();
    typo[8] = if typo[8] == b'A' { b'B' } else { b'A' };
    let r = b
        .post(
            &format!("{}/login", op.base),
            &post(String::from_utf8(typo).unwrap()),
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("typo"), "{}", r.body);
    // Same locator, wrong secret (check character recomputed): three tries lock the locator.
    let wrong_secret = |i: u8| wrong_secret(&good, i);
    for i in 0..3 {
        let r = b
            .post(&format!("{}/login", op.base), &post(wrong_secret(i)))
            .await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.body.contains("not right"));
        assert!(r.body.contains("aria-invalid=\"true\""));
    }
    let r = b
        .post(&format!("{}/login", op.base), &post(good.clone()))
        .await;
    assert_eq!(r.status, 429, "locked even for the right code");
    assert!(r.body.contains("locked"));
    // Unknown locators count against the address: 6 failures in all lock it.
    for i in 0..3 {
        let mut values = [5u8; 24];
        values[0] = i;
        let r = b
            .post(
                &format!("{}/login", op.base),
                &post(airlock_receiver::oidc::transfer_code::code_text(&values)),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let other = op.ticket("uma", 300);
    let r = b.post(&format!("{}/login", op.base), &post(other)).await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("from your computer"));
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("location")),
        "nothing issued"
    );
    // Every refused attempt is counted.
    assert_eq!(op.provider.metric("login_failures", "wrong"), 6);
    assert_eq!(op.provider.metric("login_failures", "malformed"), 1);
    assert_eq!(op.provider.metric("login_failures", "locked_address"), 1);
    assert!(
        op.provider
            .metrics_text()
            .contains("airlock_oidc_login_failures_total{reason=\"locked_code\"} 1")
    );
}

/// The attempt is counted before the code is verified: wrong codes sent at once on one
/// locator get `max_attempts_per_locator` (3) verifications between them, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_codes_share_one_attempt_budget() {
    let op = Op::start(None).await;
    let good = op.ticket("racer", 300);
    let mut b = Browser::default();
    let (txn, csrf) = login_form(&op, &mut b).await;
    let cookie = format!("airlock_csrf={}", b.cookies["airlock_csrf"]);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5u8 {
        let wrong = wrong_secret(&good, i);
        let body = format!("txn={txn}&csrf={csrf}&code={}", enc(&wrong));
        let (url, cookie) = (format!("{}/login", op.base), cookie.clone());
        tasks.spawn(async move { http("POST", &url, &[("Cookie", cookie)], Some(&body)).await });
    }
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        statuses.push(r.unwrap().status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429],
        "three tries, then locked"
    );
    assert_eq!(op.provider.metric("login_failures", "wrong"), 3);
    assert_eq!(op.provider.metric("login_failures", "locked_code"), 2);
}

/// Posts an unknown-locator code to the login form with `X-Forwarded-For: xff`.
async fn post_unknown_code(op: &Op, b: &Browser, form: &(String, String), i: u8, xff: &str) -> u16 {
    let mut values = [7u8; 24];
    values[0] = i;
    let code = airlock_receiver::oidc::transfer_code::code_text(&values);
    let body = format!("txn={}&csrf={}&code={}", form.0, form.1, enc(&code));
    let cookie = format!("airlock_csrf={}", b.cookies["airlock_csrf"]);
    let headers = [("Cookie", cookie), ("X-Forwarded-For", xff.to_string())];
    http("POST", &format!("{}/login", op.base), &headers, Some(&body))
        .await
        .status
}

/// Behind a trusted proxy each client address has its own budget (IPv6 by /64);
/// `X-Forwarded-For` from a peer that is not a trusted proxy is ignored.
#[tokio::test]
async fn address_limits_follow_trusted_proxies_and_ipv6_prefixes() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        airlock_receiver::oidc::util::Clock::manual(now()),
        Default::default(),
        None,
        |c| c.trusted_proxies = vec!["127.0.0.0/8".into()],
    )
    .await;
    let mut b = Browser::default();
    let form = login_form(&op, &mut b).await;
    for i in 0..6 {
        assert_eq!(
            post_unknown_code(&op, &b, &form, i, "198.51.100.7").await,
            401
        );
    }
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "198.51.100.7").await,
        429
    );
    // Another client behind the same proxy is not locked out with it.
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "198.51.100.8").await,
        401
    );
    // The proxy appends: the address it saw is the last one; what the client wrote is not
    // believed.
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "198.51.100.8, 198.51.100.7").await,
        429
    );
    // IPv6 clients rotate within a /64: the /64 is the key.
    for i in 0..6 {
        let addr = format!("2001:db8:1:2::{:x}", 0x10 + u32::from(i));
        assert_eq!(post_unknown_code(&op, &b, &form, i, &addr).await, 401);
    }
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "2001:db8:1:2::ffff").await,
        429
    );
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "2001:db8:1:3::1").await,
        401
    );

    // Without trusted proxies the header is ignored: all of it is 127.0.0.1.
    let op = Op::start(None).await;
    let mut b = Browser::default();
    let form = login_form(&op, &mut b).await;
    for i in 0..6 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(post_unknown_code(&op, &b, &form, i, &xff).await, 401);
    }
    assert_eq!(
        post_unknown_code(&op, &b, &form, 9, "203.0.113.1").await,
        429
    );
}

#[tokio::test]
async fn login_form_needs_its_csrf_cookie_and_reports_expiry() {
    let op = Op::start(None).await;
    let code = op.ticket("cy", 30);
    let mut b = Browser::default();
    let p = pkce("f");
    let a = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let start = b.get(&authorize_url(&op, &a)).await;
    let page = b.get(&format!("{}{}", op.base, start.location())).await;
    assert!(page.body.contains("<label for=\"code\">"));
    // form-action covers the redirect after the POST: only this request's redirect_uri origin.
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:1;"),
        "{csp}"
    );
    assert!(!page.body.contains("<script"));
    let form = format!(
        "txn={}&csrf={}&code={}",
        hidden(&page.body, "txn"),
        hidden(&page.body, "csrf"),
        enc(&code)
    );
    // Another browser (no cookie) posting the same form: refused.
    let r = Browser::default()
        .post(&format!("{}/login", op.base), &form)
        .await;
    assert_eq!(r.status, 403);
    op.clock.advance(31);
    let r = b.post(&format!("{}/login", op.base), &form).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
}

#[tokio::test]
async fn tickets_sharing_a_locator_are_each_tried() {
    use airlock_receiver::oidc::transfer_code::{TransferCode, code_text};
    let op = Op::start(None).await;
    // Two codes with the same first group (same locator), different secrets.
    let a: [u8; 24] = core::array::from_fn(|i| (i * 3 % 32) as u8);
    let mut b = a;
    b[12] = (b[12] + 5) % 32;
    let (code_a, code_b) = (
        TransferCode::parse(&code_text(&a)).unwrap(),
        TransferCode::parse(&code_text(&b)).unwrap(),
    );
    assert_eq!(code_a.locator(), code_b.locator());
    let ticket =
        |code: &TransferCode, subject: &str, seq: u64| airlock_receiver::oidc::DirectoryTicket {
            code_hash: argon2_hash(&code.secret()),
            issuer: ISSUER_OUT.into(),
            subject: subject.into(),
            claims: Default::default(),
            expires_at: op.clock.now() + 300,
            seq,
            used: false,
        };
    op.dir
        .tickets
        .lock()
        .unwrap()
        .insert(code_a.locator(), ticket(&code_a, "first", 50));
    op.dir
        .colliding
        .lock()
        .unwrap()
        .push((code_b.locator(), ticket(&code_b, "second", 51)));
    let p = pkce("k");
    let params = AuthParams {
        client: "spa",
        redirect: SPA_CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let cb = login(&op, &mut Browser::default(), &params, &code_b.display()).await;
    assert!(query_param(&cb, "code").is_some());
    assert!(
        op.dir.colliding.lock().unwrap()[0].1.used,
        "the second ticket was consumed"
    );
    assert!(
        !op.dir.tickets.lock().unwrap()[&code_a.locator()].used,
        "the first one is untouched"
    );
    let cb = login(&op, &mut Browser::default(), &params, &code_a.display()).await;
    assert!(query_param(&cb, "code").is_some());
}
