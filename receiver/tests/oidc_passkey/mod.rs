//! Passkeys end to end through the real provider over loopback HTTP, with a software
//! authenticator: enrolment right after a transfer-code sign-in, passkey-only sign-in,
//! the limits of the outside approval, acr_values, and every bad input named in the
//! design (each refused with a reason, counted, nothing stored, no panic).

pub mod authenticator;

use std::sync::Arc;

use airlock_protocol::message::Claims;
use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{DirectoryUser, OidcConfig};
use authenticator::{Forge, SoftAuthenticator};
use serde_json::Value;

use crate::oidc_support::*;

const CB: &str = "http://127.0.0.1:2/cb";

/// Where the provider reads its people and keeps its state: the test double on sled, the
/// receiver's real directory (frames applied to a sled store, read through
/// `StoreDirectory`), or both on PostgreSQL (a schema of its own on `AIRLOCK_TEST_PG_URL`;
/// the test holds [`pg_turn`]).
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    Mem,
    Store,
    Pg,
}

/// The shared turn on the test PostgreSQL, or None (the test is skipped, said on stderr).
pub async fn pg_turn(test: &str) -> Option<tokio::sync::RwLockReadGuard<'static, ()>> {
    crate::common::pg_url(test)?;
    Some(crate::common::pg_shared_async().await)
}

/// A fresh schema on the test database; the URL that uses it.
fn pg_schema() -> String {
    let u = std::env::var("AIRLOCK_TEST_PG_URL").unwrap();
    let schema = format!("passkeys_{:x}", rand::random::<u64>() >> 16);
    // The synchronous client runs its own runtime: not inside the test's.
    std::thread::spawn(move || {
        let mut c = ::postgres::Client::connect(&u, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
        let sep = if u.contains('?') { '&' } else { '?' };
        format!("{u}{sep}options=-c%20search_path%3D{schema}")
    })
    .join()
    .unwrap()
}

/// A provider whose store and directory are on PostgreSQL (the HA backend).
async fn start_pg(bc: Option<&str>, edit: impl FnOnce(&mut OidcConfig)) -> Op {
    use airlock_receiver::oidc::Provider;
    use airlock_receiver::oidc::pg_store::PgOidcStore;
    use airlock_receiver::store::postgres::PgStore;
    let db_url = pg_schema();
    let clock = Clock::manual(now());
    let store = Arc::new(PgStore::open_url(&db_url).unwrap());
    let oidc = PgOidcStore::new(&store);
    oidc.init_keys_once(clock.now()).unwrap();
    let feed = FrameFeed::on(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = config(port, bc);
    cfg.passkeys.enabled = true;
    edit(&mut cfg);
    let provider =
        Provider::with_store(cfg, Arc::new(oidc), feed.directory.clone(), clock.clone()).unwrap();
    tokio::spawn(provider.clone().serve_on(listener));
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    Op {
        base: format!("http://127.0.0.1:{port}"),
        provider,
        clock,
        dir: Arc::new(MemDirectory::default()),
        feed: Some(feed),
        db_path: std::path::PathBuf::from(db_url),
        _tmp: tmp,
    }
}

pub async fn start(edit: impl FnOnce(&mut OidcConfig)) -> Op {
    start_on(Dir::Mem, None, edit).await
}

/// A provider with passkeys on, reading `dir`, with the back-channel logout of client
/// `app` at `bc`.
pub async fn start_on(dir: Dir, bc: Option<&str>, edit: impl FnOnce(&mut OidcConfig)) -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let clock = Clock::manual(now());
    let feed = match dir {
        Dir::Mem => None,
        Dir::Store => Some(FrameFeed::sled(&tmp.path().join("store"))),
        Dir::Pg => return start_pg(bc, edit).await,
    };
    let db_path = tmp.path().join("db");
    let mem = Arc::new(MemDirectory::default());
    Op::start_fed(tmp, db_path, clock, mem, feed, bc, |c| {
        c.passkeys.enabled = true;
        edit(c)
    })
    .await
}

/// A Revoke for `subject` reaches the directory, and the daemon's hook runs.
pub fn revoke(op: &Op, subject: &str) {
    match &op.feed {
        Some(feed) => feed.apply(
            airlock_protocol::message::Body::Revoke(airlock_protocol::message::Revoke {
                issuer: ISSUER_OUT.into(),
                subject: subject.into(),
                approval: test_approval(op.clock.now()),
                reason: "left the project".into(),
            }),
            op.clock.now(),
        ),
        None => {
            op.dir
                .users
                .lock()
                .unwrap()
                .get_mut(&Op::sub(subject))
                .unwrap()
                .revoked = true
        }
    }
    op.provider.revoke_user(&Op::sub(subject)).unwrap();
}

/// A Provision for `subject`, valid for `secs`.
pub fn provision(op: &Op, subject: &str, secs: u64) {
    if let Some(feed) = &op.feed {
        let now = op.clock.now();
        feed.apply(
            airlock_protocol::message::Body::Provision(airlock_protocol::message::Provision {
                issuer: ISSUER_OUT.into(),
                subject: subject.into(),
                claims: Claims {
                    email: Some(format!("{subject}@example.org")),
                    email_verified: Some(true),
                    name: Some(format!("User {subject}")),
                    ..Claims::default()
                },
                approval: test_approval(now),
                valid_until: now + secs,
            }),
            now,
        );
        return;
    }
    op.dir.users.lock().unwrap().insert(
        Op::sub(subject),
        DirectoryUser {
            issuer: ISSUER_OUT.into(),
            subject: subject.into(),
            claims: Claims {
                email: Some(format!("{subject}@example.org")),
                email_verified: Some(true),
                name: Some(format!("User {subject}")),
                ..Claims::default()
            },
            valid_until: op.clock.now() + secs,
            provisioned_seq: 7,
            revoked: false,
            provisioned: true,
        },
    );
}

fn app(extra: &str) -> AuthParams<'_> {
    AuthParams {
        client: "app",
        redirect: CB,
        scope: "openid email",
        pkce: None,
        extra,
    }
}

pub async fn post(op: &Op, b: &mut Browser, path: &str, body: &str) -> Resp {
    b.post(&format!("{}{path}", op.base), body).await
}

/// Transfer-code sign-in; returns where the provider sent the browser.
pub async fn code_sign_in(op: &Op, b: &mut Browser, subject: &str) -> String {
    let code = op.ticket(subject, 300);
    login(op, b, &app(""), &code).await
}

/// From the enrolment interstitial: options, authenticator, response. Returns the answer.
pub async fn enrol(op: &Op, b: &mut Browser, a: &mut SoftAuthenticator, name: &str) -> Resp {
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    let o = post(
        op,
        b,
        "/passkey/enrol/options",
        &format!("csrf={csrf}&name={}", enc(name)),
    )
    .await;
    assert_eq!(o.status, 200, "{}", o.body);
    let j = o.json();
    let resp = a.create(&j["options"], &op.provider.config().issuer);
    post(
        op,
        b,
        "/passkey/enrol",
        &format!(
            "csrf={csrf}&ceremony={}&credential={}",
            j["ceremony"].as_str().unwrap(),
            enc(&resp)
        ),
    )
    .await
}

/// A provisioned person signs in with a code and creates a passkey; returns it.
pub async fn enrolled(op: &Op, subject: &str) -> SoftAuthenticator {
    provision(op, subject, 86_400);
    let mut b = Browser::default();
    let next = code_sign_in(op, &mut b, subject).await;
    assert_eq!(
        next, "/passkey/enrol",
        "the enrolment offer follows a code sign-in"
    );
    let mut a = SoftAuthenticator::new();
    let r = enrol(op, &mut b, &mut a, "office laptop").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location().starts_with(CB),
        "back to the app: {}",
        r.location()
    );
    a
}

/// The login page of a fresh authorization request: (txn, csrf, page).
pub async fn login_page(op: &Op, b: &mut Browser, extra: &str) -> (String, String, Resp) {
    let r = b.get(&authorize_url(op, &app(extra))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let page = b.get(&format!("{}{}", op.base, r.location())).await;
    assert_eq!(page.status, 200);
    let (txn, csrf) = (hidden(&page.body, "txn"), hidden(&page.body, "csrf"));
    (txn, csrf, page)
}

/// Sign-in options for a login page (optionally by name).
pub async fn sign_in_options(
    op: &Op,
    b: &mut Browser,
    txn: &str,
    csrf: &str,
    username: &str,
) -> Resp {
    post(
        op,
        b,
        "/passkey/sign-in/options",
        &format!("txn={txn}&csrf={csrf}&username={}", enc(username)),
    )
    .await
}

/// A whole passkey sign-in in a browser with no session; returns the final answer.
pub async fn passkey_sign_in(
    op: &Op,
    b: &mut Browser,
    a: &mut SoftAuthenticator,
    username: &str,
) -> Resp {
    passkey_sign_in_with(op, b, a, username, "").await
}

pub async fn passkey_sign_in_with(
    op: &Op,
    b: &mut Browser,
    a: &mut SoftAuthenticator,
    username: &str,
    extra: &str,
) -> Resp {
    let (txn, csrf, _) = login_page(op, b, extra).await;
    let o = sign_in_options(op, b, &txn, &csrf, username).await;
    assert_eq!(o.status, 200, "{}", o.body);
    let j = o.json();
    let resp = a.get(&j["options"], &op.provider.config().issuer);
    submit(op, b, &txn, &csrf, j["ceremony"].as_str().unwrap(), &resp).await
}

pub async fn submit(
    op: &Op,
    b: &mut Browser,
    txn: &str,
    csrf: &str,
    ceremony: &str,
    resp: &str,
) -> Resp {
    post(
        op,
        b,
        "/passkey/sign-in",
        &format!(
            "txn={txn}&csrf={csrf}&ceremony={ceremony}&credential={}",
            enc(resp)
        ),
    )
    .await
}

/// Redeems the code of a callback at the token endpoint (client `app`); returns the JSON.
pub async fn redeem(op: &Op, callback: &str) -> Value {
    redeem_app_code(op, callback, CB).await
}

async fn id_token(op: &Op, callback: &str) -> Value {
    let t = redeem(op, callback).await;
    let (_, claims) = verify_jwt(
        op,
        t["id_token"].as_str().unwrap(),
        jsonwebtoken::Algorithm::RS256,
    )
    .await;
    claims
}

fn events(op: &Op) -> Vec<String> {
    op.provider
        .security_events(0, 1000)
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e.kind, e.detail.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn enrol_after_code_sign_in_then_sign_in_with_the_passkey_only() {
    let op = start(|_| {}).await;
    let mut a = enrolled(&op, "alice").await;
    let recs = op.provider.passkeys_of(&Op::sub("alice")).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, "office laptop");
    assert_eq!(recs[0].username, "alice@example.org");
    assert_eq!(op.provider.metric("passkey_enrolments", "ok"), 1);

    // Another browser (signed out): the passkey alone, usernameless.
    op.clock.advance(60);
    let mut b = Browser::default();
    let r = passkey_sign_in(&op, &mut b, &mut a, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(CB), "{}", r.location());
    assert!(b.cookies.contains_key("airlock_session"));
    let id = id_token(&op, r.location()).await;
    assert_eq!(id["sub"], Op::sub("alice"));
    assert_eq!(id["acr"], "urn:airlock:acr:passkey");
    assert_eq!(id["amr"], serde_json::json!(["hwk", "user", "mfa"]));
    assert_eq!(id["auth_time"].as_u64().unwrap(), op.clock.now());
    assert_eq!(
        id["airlock_seq"], 42,
        "claims of the directory's latest frame (the LoginTicket of the code sign-in)"
    );
    assert_eq!(op.provider.metric("logins", "passkey"), 1);

    // By name as well; prompt=login moves auth_time.
    op.clock.advance(30);
    let r = passkey_sign_in_with(&op, &mut b, &mut a, "alice@example.org", "&prompt=login").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = id_token(&op, r.location()).await;
    assert_eq!(id["auth_time"].as_u64().unwrap(), op.clock.now());
    let rec = &op.provider.passkeys_of(&Op::sub("alice")).unwrap()[0];
    assert_eq!(rec.last_used, Some(op.clock.now()));
    let ev = events(&op);
    assert!(
        ev[0].starts_with("passkey_enrolled office laptop"),
        "{ev:?}"
    );
    assert!(ev[1].starts_with("passkey_sign_in office laptop"), "{ev:?}");
    assert_eq!(ev.len(), 3, "{ev:?}");

    // `audit events` on a copy of the data directory shows the same log.
    op.provider.flush_store().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .args(["-r"])
        .arg(&op.db_path)
        .arg(copy.path().join("store.sled"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-receiver"))
        .args(["audit", "events", "--data-dir"])
        .arg(copy.path())
        .args(["--user", &Op::sub("alice")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("3 security event(s)"), "{text}");
    assert!(
        text.contains("passkey_enrolled sub=") && text.contains("office laptop from 127.0.0.1"),
        "{text}"
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-receiver"));
    cmd.args(["audit", "events", "--json", "--data-dir"])
        .arg(copy.path());
    check_json_export(
        cmd,
        &Op::sub("alice"),
        &a.cred_b64(),
        &["passkey_enrolled", "passkey_sign_in", "passkey_sign_in"],
    );
}

/// `audit events --json`: one JSON object per line, in id order, of these `kinds`, all of
/// `sub`, the ones naming a credential naming `cred`; the first is the enrolment.
pub fn check_json_export(mut cmd: std::process::Command, sub: &str, cred: &str, kinds: &[&str]) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let got: Vec<&str> = lines.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(got, kinds, "{lines:?}");
    let ids: Vec<u64> = lines.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for e in &lines {
        assert_eq!(e["sub"], sub, "{e}");
        assert!(e["credential"].is_null() || e["credential"] == cred, "{e}");
        assert!(e["at"].as_u64().unwrap() > 0, "{e}");
    }
    assert_eq!(lines[0]["detail"], "office laptop");
}

#[tokio::test]
async fn enrolment_is_skippable_and_the_app_still_gets_its_code() {
    let op = start(|_| {}).await;
    provision(&op, "sam", 86_400);
    let mut b = Browser::default();
    assert_eq!(code_sign_in(&op, &mut b, "sam").await, "/passkey/enrol");
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    assert!(page.body.contains("Create a passkey for this computer?"));
    assert!(!page.body.contains("<script>"), "no inline script");
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    // Even after the enrolment window, "Not now" still reaches the app.
    op.clock.advance(400);
    let r = post(
        &op,
        &mut b,
        "/passkey/enrol/skip",
        &format!("csrf={}", hidden(&page.body, "csrf")),
    )
    .await;
    assert_eq!(r.status, 303);
    let id = id_token(&op, r.location()).await;
    assert_eq!(id["acr"], "urn:airlock:acr:transfer-code");
    assert!(op.provider.passkeys_of(&Op::sub("sam")).unwrap().is_empty());
}

#[tokio::test]
async fn passkeys_off_leaves_the_code_flow_as_it_was() {
    let op = start(|c| c.passkeys.enabled = false).await;
    provision(&op, "olga", 86_400);
    let mut b = Browser::default();
    let next = code_sign_in(&op, &mut b, "olga").await;
    assert!(next.starts_with(CB), "{next}");
    let (_, _, page) = login_page(&op, &mut Browser::default(), "").await;
    assert!(!page.body.contains("passkey"), "no passkey section");
    assert!(
        !page
            .header("content-security-policy")
            .unwrap()
            .contains("script-src")
    );
}

#[tokio::test]
async fn counter_regression_is_refused_as_a_clone() {
    let op = start(|_| {}).await;
    let mut a = enrolled(&op, "carl").await;
    let mut b = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut b, &mut a, "").await.status, 303);
    let stored = op.provider.passkeys_of(&Op::sub("carl")).unwrap()[0].clone();
    // A clone that signs with an older counter value.
    a.forge.counter = Some(1);
    let mut b2 = Browser::default();
    let r = passkey_sign_in(&op, &mut b2, &mut a, "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("looks copied"), "{}", r.body);
    assert!(!b2.cookies.contains_key("airlock_session"));
    assert_eq!(
        op.provider.metric("passkey_refusals", "counter_regression"),
        1
    );
    assert_eq!(
        op.provider.passkeys_of(&Op::sub("carl")).unwrap()[0],
        stored,
        "nothing changed"
    );
}

#[tokio::test]
async fn backup_eligibility_change_is_refused() {
    let op = start(|_| {}).await;
    let mut a = enrolled(&op, "bea").await;
    a.forge.backup_eligible = Some(true);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        op.provider
            .metric("passkey_refusals", "backup_eligibility_changed"),
        1
    );
}

#[tokio::test]
async fn revoked_user_is_refused_and_the_page_says_why() {
    revoked_user_is_refused(Dir::Mem).await
}

#[tokio::test]
async fn revoked_user_is_refused_through_the_store_directory() {
    revoked_user_is_refused(Dir::Store).await
}

async fn revoked_user_is_refused(dir: Dir) {
    let op = start_on(dir, None, |_| {}).await;
    let mut a = enrolled(&op, "rita").await;
    revoke(&op, "rita");
    let rec = &op.provider.passkeys_of(&Op::sub("rita")).unwrap()[0];
    assert_eq!(rec.disabled.as_deref(), Some("revoked"));
    let mut b = Browser::default();
    let r = passkey_sign_in(&op, &mut b, &mut a, "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("switched off because your access was withdrawn outside"),
        "{}",
        r.body
    );
    assert!(!b.cookies.contains_key("airlock_session"));
    assert_eq!(op.provider.metric("passkey_refusals", "disabled"), 1);
    assert!(
        events(&op)
            .iter()
            .any(|e| e.starts_with("passkeys_disabled revoked: 1"))
    );
}

#[tokio::test]
async fn expired_approval_is_refused() {
    expired_approval(Dir::Mem).await
}

#[tokio::test]
async fn expired_approval_through_the_store_directory() {
    expired_approval(Dir::Store).await
}

/// Past a Provision's `valid_until` the passkey is refused at once; the maintenance tick
/// then ends the person's sessions (back-channel logout), revokes their grants and switches
/// the passkeys off. A ticket-only person past their transfer code's expiry is left alone.
async fn expired_approval(dir: Dir) {
    let (bc, got, mut rx) = backchannel_receiver().await;
    let op = start_on(dir, Some(bc.as_str()), |_| {}).await;
    let mut a = enrolled(&op, "eve").await;
    let mut b = Browser::default();
    let r = passkey_sign_in(&op, &mut b, &mut a, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let tokens = redeem(&op, r.location()).await;
    let mut tb = Browser::default();
    assert!(code_sign_in(&op, &mut tb, "tom").await.starts_with(CB));
    // The approval is renewed for 400 s only, then lapses (past tom's code expiry too).
    provision(&op, "eve", 400);
    op.clock.advance(401);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("approval to enter this network has expired"),
        "{}",
        r.body
    );
    assert_eq!(
        op.provider.metric("passkey_refusals", "approval_expired"),
        1
    );
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing ended before the tick"
    );

    op.provider.maintain().unwrap();
    // Two sessions of eve (the code sign-in that enrolled, the passkey sign-in), both
    // with a code for `app`: two back-channel logouts, both for eve.
    wait(&mut rx).await;
    wait(&mut rx).await;
    let logouts = got.lock().unwrap().clone();
    assert_eq!(logouts.len(), 2, "{logouts:?}");
    for lt in &logouts {
        let (_, claims) = verify_jwt(&op, lt, jsonwebtoken::Algorithm::RS256).await;
        assert_eq!(claims["sub"], Op::sub("eve"));
    }
    let rec = &op.provider.passkeys_of(&Op::sub("eve")).unwrap()[0];
    assert_eq!(rec.disabled.as_deref(), Some("expired"));
    assert_eq!(op.provider.metric("passkeys_disabled", "expired"), 1);
    assert!(
        events(&op)
            .iter()
            .any(|e| e == "passkeys_disabled expired: 1 passkey(s)"),
        "{:?}",
        events(&op)
    );
    // Eve's session is gone: the app's next request lands on the login page.
    let r = b.get(&authorize_url(&op, &app(""))).await;
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let rt = tokens["refresh_token"].as_str();
    if let Some(rt) = rt {
        let r = token(
            &op,
            Some(basic("app", CONF_SECRET)),
            &format!("grant_type=refresh_token&refresh_token={}", enc(rt)),
        )
        .await;
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    // Tom (ticket-only) keeps his session past his code's expiry.
    let r = tb.get(&authorize_url(&op, &app(""))).await;
    assert!(r.location().starts_with(CB), "{}", r.location());
    assert_eq!(redeem(&op, r.location()).await["token_type"], "Bearer");

    // Another tick changes nothing; a renewed approval does not switch the passkey on
    // again, and the page says why and what to do.
    op.provider.maintain().unwrap();
    assert_eq!(op.provider.metric("passkeys_disabled", "expired"), 1);
    provision(&op, "eve", 86_400);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("switched off when your approval to enter this network expired"),
        "{}",
        r.body
    );
    assert_eq!(
        op.provider.metric("passkey_refusals", "disabled_expired"),
        1
    );
    assert_eq!(got.lock().unwrap().len(), 2, "tom got no logout");
    if let Dir::Pg = dir {
        // The auditor's export straight from the cluster's database.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-receiver"));
        cmd.args([
            "audit",
            "events",
            "--json",
            "--user",
            &Op::sub("eve"),
            "--pg-url",
        ])
        .arg(&op.db_path);
        check_json_export(
            cmd,
            &Op::sub("eve"),
            &a.cred_b64(),
            &[
                "passkey_enrolled",
                "passkey_sign_in",
                "passkey_refused",
                "passkeys_disabled",
                "passkey_refused",
            ],
        );
    }
}

#[tokio::test]
async fn passkey_lifetime_cap_and_ticket_only_users() {
    ticket_only_users(Dir::Mem).await
}

/// In the receiver a LoginTicket writes a user record too: the directory must still tell
/// a ticket-only person from a provisioned one.
#[tokio::test]
async fn ticket_only_users_through_the_store_directory() {
    ticket_only_users(Dir::Store).await
}

async fn ticket_only_users(dir: Dir) {
    // A LoginTicket-only person (no Provision) gets no offer unless the config allows it.
    let op = start_on(dir, None, |_| {}).await;
    let mut b = Browser::default();
    assert!(code_sign_in(&op, &mut b, "tina").await.starts_with(CB));
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    let o = post(
        &op,
        &mut b,
        "/passkey/enrol/options",
        &format!("csrf={}&name=x", hidden(&page.body, "csrf")),
    )
    .await;
    assert_eq!(o.status, 403, "{}", o.body);
    assert_eq!(o.json()["error"], "not_eligible");
    assert!(
        op.provider
            .passkeys_of(&Op::sub("tina"))
            .unwrap()
            .is_empty()
    );
    // A provisioned person on the same receiver is offered one, for the lifetime cap.
    enrolled(&op, "pia").await;
    let rec = &op.provider.passkeys_of(&Op::sub("pia")).unwrap()[0];
    assert_eq!(
        rec.expires_at,
        op.clock.now() + op.provider.config().passkeys.lifetime_cap_secs
    );

    let op = start_on(dir, None, |c| {
        c.passkeys.allow_ticket_only_users = true;
        c.passkeys.ticket_only_lifetime_secs = 3600;
    })
    .await;
    let mut b = Browser::default();
    assert_eq!(code_sign_in(&op, &mut b, "tina").await, "/passkey/enrol");
    let mut a = SoftAuthenticator::new();
    assert_eq!(enrol(&op, &mut b, &mut a, "kiosk").await.status, 303);
    let rec = &op.provider.passkeys_of(&Op::sub("tina")).unwrap()[0];
    assert_eq!(rec.expires_at, op.clock.now() + 3600);
    // Long after the transfer code's 300 s: the passkey follows its own lifetime, and the
    // app gets working tokens.
    op.clock.advance(1800);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = id_token(&op, r.location()).await;
    assert_eq!(id["sub"], Op::sub("tina"));
    assert_eq!(id["acr"], "urn:airlock:acr:passkey");
    op.clock.advance(1801);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("end of its allowed lifetime"));
    assert_eq!(op.provider.metric("passkey_refusals", "passkey_expired"), 1);
}

#[tokio::test]
async fn acr_values_naming_the_transfer_code_forces_it() {
    acr_values_force_the_transfer_code(Dir::Mem).await
}

async fn acr_values_force_the_transfer_code(dir: Dir) {
    let op = start_on(dir, None, |_| {}).await;
    let d = Browser::default()
        .get(&format!("{}/.well-known/openid-configuration", op.base))
        .await
        .json();
    assert_eq!(
        d["acr_values_supported"],
        serde_json::json!(["urn:airlock:acr:transfer-code", "urn:airlock:acr:passkey"])
    );
    let mut a = enrolled(&op, "anna").await;
    let mut b = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut b, &mut a, "").await.status, 303);
    // A passkey session satisfies a plain request...
    let r = b.get(&authorize_url(&op, &app(""))).await;
    assert!(r.location().starts_with(CB), "{}", r.location());
    // ...not one demanding the transfer code: back to a login page without passkeys.
    let extra = "&acr_values=urn%3Aairlock%3Aacr%3Atransfer-code";
    let (txn, csrf, page) = login_page(&op, &mut b, extra).await;
    assert!(!page.body.contains("id=\"passkey\""), "no passkey offered");
    let o = sign_in_options(&op, &mut b, &txn, &csrf, "").await;
    assert_eq!(o.status, 403);
    assert_eq!(o.json()["error"], "transfer_code_required");
    let code = op.ticket("anna", 300);
    let cb = submit_code(&op, &mut b, &format!("/login?txn={txn}"), &code).await;
    let next = if cb == "/passkey/enrol" {
        let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
        post(
            &op,
            &mut b,
            "/passkey/enrol/skip",
            &format!("csrf={}", hidden(&page.body, "csrf")),
        )
        .await
        .location()
        .to_string()
    } else {
        cb
    };
    assert_eq!(
        id_token(&op, &next).await["acr"],
        "urn:airlock:acr:transfer-code"
    );
}

#[tokio::test]
async fn account_page_lists_and_removes_with_a_fresh_sign_in() {
    let op = start(|_| {}).await;
    let mut a = enrolled(&op, "ann").await;
    let mut b = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut b, &mut a, "").await.status, 303);
    let page = b.get(&format!("{}/account", op.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("office laptop") && page.body.contains("Last used"));
    let csrf = hidden(&page.body, "csrf");
    let form = format!("csrf={csrf}&credential={}", a.cred_b64());
    // Too old a sign-in: refused, nothing removed.
    op.clock.advance(301);
    let r = post(&op, &mut b, "/account/remove", &form).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(op.provider.passkeys_of(&Op::sub("ann")).unwrap().len(), 1);
    // Fresh sign-in: removed, logged, and the passkey no longer signs in.
    let mut b = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut b, &mut a, "").await.status, 303);
    let page = b.get(&format!("{}/account", op.base)).await;
    let form = format!(
        "csrf={}&credential={}",
        hidden(&page.body, "csrf"),
        a.cred_b64()
    );
    let r = post(&op, &mut b, "/account/remove", &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("removed"));
    assert!(op.provider.passkeys_of(&Op::sub("ann")).unwrap().is_empty());
    assert!(
        events(&op)
            .iter()
            .any(|e| e.starts_with("passkey_removed office laptop"))
    );
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        op.provider.metric("passkey_refusals", "unknown_credential"),
        1
    );
}

/// Bad input at sign-in: each refused with its reason, counted, no session, the stored
/// passkey unchanged.
#[tokio::test]
async fn bad_sign_in_responses_are_refused_counted_and_change_nothing() {
    bad_sign_in_responses(Dir::Mem).await
}

async fn bad_sign_in_responses(dir: Dir) {
    let op = start_on(dir, None, |_| {}).await;
    let mut a = enrolled(&op, "bob").await;
    let mut other = enrolled(&op, "mallory").await;
    let before = op.provider.passkeys_of(&Op::sub("bob")).unwrap();
    let cases: Vec<(&str, Forge)> = vec![
        (
            "wrong_origin",
            Forge {
                origin: Some("http://evil.example".into()),
                ..Forge::default()
            },
        ),
        (
            "wrong_rp_id",
            Forge {
                rp_id: Some("evil.example".into()),
                ..Forge::default()
            },
        ),
        (
            "wrong_challenge",
            Forge {
                challenge: Some(vec![7; 32]),
                ..Forge::default()
            },
        ),
        (
            "bad_signature",
            Forge {
                flip_signature: true,
                ..Forge::default()
            },
        ),
        (
            "user_not_verified",
            Forge {
                no_uv: true,
                ..Forge::default()
            },
        ),
        (
            "other_users_credential",
            Forge {
                user_handle: Some(vec![1; 32]),
                ..Forge::default()
            },
        ),
    ];
    for (reason, forge) in cases {
        a.forge = forge;
        let mut b = Browser::default();
        let r = passkey_sign_in(&op, &mut b, &mut a, "").await;
        assert_eq!(r.status, 401, "{reason}: {}", r.body);
        assert!(
            r.body.contains("role=\"alert\""),
            "{reason}: the page says why"
        );
        assert!(!b.cookies.contains_key("airlock_session"), "{reason}");
        assert_eq!(
            op.provider.metric("passkey_refusals", reason),
            1,
            "{reason}"
        );
    }
    a.forge = Forge::default();
    assert_eq!(
        op.provider.passkeys_of(&Op::sub("bob")).unwrap(),
        before,
        "nothing stored"
    );

    // Replayed: the same good response twice.
    let mut b = Browser::default();
    let (txn, csrf, _) = login_page(&op, &mut b, "").await;
    let j = sign_in_options(&op, &mut b, &txn, &csrf, "").await.json();
    let resp = a.get(&j["options"], &op.provider.config().issuer);
    let ceremony = j["ceremony"].as_str().unwrap();
    assert_eq!(
        submit(&op, &mut b, &txn, &csrf, ceremony, &resp)
            .await
            .status,
        303
    );
    let mut b2 = Browser::default();
    let (txn2, csrf2, _) = login_page(&op, &mut b2, "").await;
    let r = submit(&op, &mut b2, &txn2, &csrf2, ceremony, &resp).await;
    assert_eq!(r.status, 401);
    assert_eq!(op.provider.metric("passkey_refusals", "replayed"), 1);
    assert!(!b2.cookies.contains_key("airlock_session"));

    // Another person's credential against options made for bob by name.
    let mut b = Browser::default();
    let (txn, csrf, _) = login_page(&op, &mut b, "").await;
    let j = sign_in_options(&op, &mut b, &txn, &csrf, "bob@example.org")
        .await
        .json();
    assert_eq!(
        j["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let resp = other.get(&j["options"], &op.base);
    let r = submit(
        &op,
        &mut b,
        &txn,
        &csrf,
        j["ceremony"].as_str().unwrap(),
        &resp,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        op.provider
            .metric("passkey_refusals", "other_users_credential"),
        2
    );

    // Oversized, tampered JSON, unknown credential.
    let mut b = Browser::default();
    let (txn, csrf, _) = login_page(&op, &mut b, "").await;
    let j = sign_in_options(&op, &mut b, &txn, &csrf, "").await.json();
    let c = j["ceremony"].as_str().unwrap();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(9000));
    let r = submit(&op, &mut b, &txn, &csrf, c, &big).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.status);
    assert_eq!(op.provider.metric("passkey_refusals", "oversized"), 1);
    let r = submit(&op, &mut b, &txn, &csrf, c, "{\"id\": 1}").await;
    assert_eq!(r.status, 401);
    assert_eq!(op.provider.metric("passkey_refusals", "malformed"), 1);
    let mut stranger = SoftAuthenticator::new();
    stranger.user_handle = vec![9; 32];
    let j = sign_in_options(&op, &mut b, &txn, &csrf, "").await.json();
    let resp = stranger.get(&j["options"], &op.base);
    let r = submit(
        &op,
        &mut b,
        &txn,
        &csrf,
        j["ceremony"].as_str().unwrap(),
        &resp,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        op.provider.metric("passkey_refusals", "unknown_credential"),
        1
    );
    assert!(!b.cookies.contains_key("airlock_session"));
    let refused = events(&op)
        .iter()
        .filter(|e| e.starts_with("passkey_refused"))
        .count();
    assert_eq!(refused, 11, "every refusal is in the event log");
}

/// `id_token_hint` names the person the app expects: a passkey sign-in for that request
/// takes only the hinted person's passkey. Another person's is refused
/// (`other_users_credential`, no session), and the hinted person's signs that person in.
#[tokio::test]
async fn id_token_hint_restricts_a_passkey_sign_in_to_the_hinted_person() {
    let op = start(|_| {}).await;
    let mut bob = enrolled(&op, "bob").await;
    let mut mallory = enrolled(&op, "mallory").await;
    // Bob's ID token, as the app holds it after his sign-in.
    let mut b = Browser::default();
    let r = passkey_sign_in(&op, &mut b, &mut bob, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let hint = redeem(&op, r.location()).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let extra = format!("&id_token_hint={hint}");

    let mut b = Browser::default();
    let r = passkey_sign_in_with(&op, &mut b, &mut mallory, "", &extra).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("role=\"alert\""), "the page says why");
    assert_eq!(
        op.provider
            .metric("passkey_refusals", "other_users_credential"),
        1
    );
    assert!(!b.cookies.contains_key("airlock_session"));
    assert!(!b.cookies.contains_key("__Host-airlock_session"));

    let mut b = Browser::default();
    let r = passkey_sign_in_with(&op, &mut b, &mut bob, "", &extra).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(CB), "{}", r.location());
    assert_eq!(id_token(&op, r.location()).await["sub"], Op::sub("bob"));
}

/// Enrolment without a fresh transfer-code sign-in, and bad enrolment responses.
#[tokio::test]
async fn enrolment_needs_a_fresh_code_sign_in_and_a_good_response() {
    bad_enrolments(Dir::Mem).await
}

async fn bad_enrolments(dir: Dir) {
    let op = start_on(dir, None, |_| {}).await;
    // No session at all.
    let mut nobody = Browser::default();
    let r = post(&op, &mut nobody, "/passkey/enrol/options", "csrf=x&name=x").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "not_fresh_sign_in");

    // A code sign-in older than the window.
    provision(&op, "dan", 86_400);
    let mut b = Browser::default();
    assert_eq!(code_sign_in(&op, &mut b, "dan").await, "/passkey/enrol");
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    let csrf = hidden(&page.body, "csrf");
    let o = post(
        &op,
        &mut b,
        "/passkey/enrol/options",
        &format!("csrf={csrf}&name=x"),
    )
    .await
    .json();
    let mut a = SoftAuthenticator::new();
    let good = a.create(&o["options"], &op.base);
    op.clock.advance(301);
    let r = post(
        &op,
        &mut b,
        "/passkey/enrol",
        &format!(
            "csrf={csrf}&ceremony={}&credential={}",
            o["ceremony"].as_str().unwrap(),
            enc(&good)
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("within a few minutes of signing in with a transfer code")
    );
    assert_eq!(
        op.provider.metric("passkey_refusals", "not_fresh_sign_in"),
        2
    );

    // A passkey session is not a code sign-in either.
    let mut a2 = enrolled(&op, "dora").await;
    let mut pb = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut pb, &mut a2, "").await.status, 303);
    let page = pb.get(&format!("{}/passkey/enrol", op.base)).await;
    assert!(!page.body.contains("id=\"enrol-form\""));
    let r = post(
        &op,
        &mut pb,
        "/passkey/enrol/options",
        &format!("csrf={}&name=x", hidden(&page.body, "csrf")),
    )
    .await;
    assert_eq!(r.status, 403);

    // Fresh sign-in, forged responses.
    let mut b = Browser::default();
    assert_eq!(code_sign_in(&op, &mut b, "dan").await, "/passkey/enrol");
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    let csrf = hidden(&page.body, "csrf");
    for (reason, forge) in [
        (
            "wrong_origin",
            Forge {
                origin: Some("http://evil.example".into()),
                ..Forge::default()
            },
        ),
        (
            "wrong_rp_id",
            Forge {
                rp_id: Some("evil.example".into()),
                ..Forge::default()
            },
        ),
        (
            "wrong_challenge",
            Forge {
                challenge: Some(vec![3; 32]),
                ..Forge::default()
            },
        ),
        (
            "user_not_verified",
            Forge {
                no_uv: true,
                ..Forge::default()
            },
        ),
    ] {
        let mut a = SoftAuthenticator::new();
        a.forge = forge;
        let r = enrol(&op, &mut b, &mut a, "x").await;
        assert_eq!(r.status, 400, "{reason}: {}", r.body);
        assert_eq!(
            op.provider.metric("passkey_refusals", reason),
            1,
            "{reason}"
        );
    }
    // Replayed enrolment response.
    let o = post(
        &op,
        &mut b,
        "/passkey/enrol/options",
        &format!("csrf={csrf}&name=x"),
    )
    .await
    .json();
    let resp = a.create(&o["options"], &op.base);
    let form = format!(
        "csrf={csrf}&ceremony={}&credential={}",
        o["ceremony"].as_str().unwrap(),
        enc(&resp)
    );
    let r = post(&op, &mut b, "/passkey/enrol", &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = post(&op, &mut b, "/passkey/enrol", &form).await;
    assert_eq!(r.status, 400);
    assert_eq!(op.provider.metric("passkey_refusals", "replayed"), 1);
    assert_eq!(
        op.provider.passkeys_of(&Op::sub("dan")).unwrap().len(),
        1,
        "only the good one"
    );
}

/// Two receivers on one PostgreSQL database (an HA pair behind one issuer name): the
/// passkey enrolled through A signs in through B, and a clone caught on B stays caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_postgres_enrol_on_a_sign_in_on_b() {
    use airlock_receiver::oidc::Provider;
    use airlock_receiver::oidc::pg_store::PgOidcStore;
    use airlock_receiver::store::postgres::PgStore;
    let Some(url) = std::env::var("AIRLOCK_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipped: AIRLOCK_TEST_PG_URL is not set (scripts/pg start)");
        return;
    };
    // Receivers on the test database: not while a failover test drops every connection.
    let _pg = crate::common::pg_shared_async().await;
    let db_url = tokio::task::block_in_place(|| {
        let schema = format!("passkeys_{:x}", rand::random::<u64>() >> 16);
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}")
    });
    let clock = Clock::manual(now());
    let dir = Arc::new(MemDirectory::default());
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let mut issuer = String::new();
    let mut ops = Vec::new();
    for _ in 0..2 {
        let store = tokio::task::block_in_place(|| PgStore::open_url(&db_url).unwrap());
        let oidc = PgOidcStore::new(&store);
        tokio::task::block_in_place(|| oidc.init_keys_once(clock.now()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = config(port, None);
        cfg.passkeys.enabled = true;
        if issuer.is_empty() {
            issuer = cfg.issuer.clone();
        }
        cfg.issuer = issuer.clone();
        let provider =
            Provider::with_store(cfg, Arc::new(oidc), dir.clone(), clock.clone()).unwrap();
        tokio::spawn(provider.clone().serve_on(listener));
        ops.push(Op {
            base: format!("http://127.0.0.1:{port}"),
            provider,
            clock: clock.clone(),
            dir: dir.clone(),
            feed: None,
            db_path: tmp.path().join("unused"),
            _tmp: tmp.clone(),
        });
    }
    let (a_op, b_op) = (&ops[0], &ops[1]);
    let mut a = enrolled(a_op, "hana").await;
    let r = passkey_sign_in(b_op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(CB));
    a.forge.counter = Some(1);
    let r = passkey_sign_in(a_op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 401, "the counter B saw holds on A");
    let kinds: Vec<String> = b_op
        .provider
        .security_events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["passkey_enrolled", "passkey_sign_in", "passkey_refused"]
    );
}

#[tokio::test]
async fn max_age_sends_a_passkey_session_back_to_the_login_page_and_moves_auth_time() {
    let op = start(|_| {}).await;
    let mut a = enrolled(&op, "max").await;
    let mut b = Browser::default();
    assert_eq!(passkey_sign_in(&op, &mut b, &mut a, "").await.status, 303);
    let first = op.clock.now();
    op.clock.advance(20);
    // Within max_age the session is reused: straight back with a code.
    let r = b.get(&authorize_url(&op, &app("&max_age=60"))).await;
    assert!(r.location().starts_with(CB), "{}", r.location());
    assert_eq!(id_token(&op, r.location()).await["auth_time"], first);
    // Older than max_age: the login page again, and the new passkey sign-in moves auth_time.
    let r = passkey_sign_in_with(&op, &mut b, &mut a, "", "&max_age=10").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        id_token(&op, r.location()).await["auth_time"],
        op.clock.now()
    );
}

#[tokio::test]
async fn max_per_user_reached_stops_the_offer_and_refuses_enrolment() {
    let op = start(|c| c.passkeys.max_per_user = 1).await;
    enrolled(&op, "molly").await;
    // The next transfer-code sign-in goes straight to the app: no offer.
    let mut b = Browser::default();
    let next = code_sign_in(&op, &mut b, "molly").await;
    assert!(next.starts_with(CB), "{next}");
    // Asking anyway: refused with a message saying what to do, counted, logged.
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    let csrf = hidden(&page.body, "csrf");
    let o = post(
        &op,
        &mut b,
        "/passkey/enrol/options",
        &format!("csrf={csrf}&name=second"),
    )
    .await;
    assert_eq!(o.status, 403, "{}", o.body);
    assert_eq!(o.json()["error"], "too_many");
    assert!(
        o.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("Remove one on your account page"),
        "{}",
        o.body
    );
    // The form posted without options: the page says the same.
    let r = post(
        &op,
        &mut b,
        "/passkey/enrol",
        &format!("csrf={csrf}&ceremony=x&credential=%7B%7D"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("You already have the maximum number of passkeys"),
        "{}",
        r.body
    );
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    assert_eq!(op.provider.metric("passkey_refusals", "too_many"), 2);
    assert_eq!(op.provider.passkeys_of(&Op::sub("molly")).unwrap().len(), 1);
    let refused: Vec<String> = events(&op)
        .into_iter()
        .filter(|e| e.starts_with("passkey_refused"))
        .collect();
    assert_eq!(
        refused,
        [
            "passkey_refused enrol options: too_many",
            "passkey_refused enrol: too_many"
        ]
    );
}

// The scenarios above on PostgreSQL: the provider's store and the directory (frames
// applied by the ingest's state machine) both in the HA backend.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_only_users_on_postgres() {
    let Some(_pg) = pg_turn("ticket_only_users_on_postgres").await else {
        return;
    };
    ticket_only_users(Dir::Pg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_user_is_refused_on_postgres() {
    let Some(_pg) = pg_turn("revoked_user_is_refused_on_postgres").await else {
        return;
    };
    revoked_user_is_refused(Dir::Pg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_approval_on_postgres() {
    let Some(_pg) = pg_turn("expired_approval_on_postgres").await else {
        return;
    };
    expired_approval(Dir::Pg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_values_naming_the_transfer_code_forces_it_on_postgres() {
    let Some(_pg) = pg_turn("acr_values_naming_the_transfer_code_forces_it_on_postgres").await
    else {
        return;
    };
    acr_values_force_the_transfer_code(Dir::Pg).await
}

/// `attestation` reaches the creation options; with `user_verification = "preferred"` an
/// assertion without user verification signs in, and the ID token says so (no `mfa`).
#[tokio::test]
async fn attestation_and_user_verification_follow_the_config() {
    use airlock_receiver::oidc::passkey::config::{AttestationPreference, UserVerification};
    let op = start(|c| {
        c.passkeys.attestation = AttestationPreference::Direct;
        c.passkeys.user_verification = UserVerification::Preferred;
    })
    .await;
    provision(&op, "uma", 86_400);
    let mut b = Browser::default();
    assert_eq!(code_sign_in(&op, &mut b, "uma").await, "/passkey/enrol");
    let page = b.get(&format!("{}/passkey/enrol", op.base)).await;
    let o = post(
        &op,
        &mut b,
        "/passkey/enrol/options",
        &format!("csrf={}&name=desk", hidden(&page.body, "csrf")),
    )
    .await;
    assert_eq!(o.status, 200, "{}", o.body);
    let pk = &o.json()["options"]["publicKey"];
    assert_eq!(pk["attestation"], "direct", "{pk}");
    assert_eq!(
        pk["authenticatorSelection"]["userVerification"], "preferred",
        "{pk}"
    );
    // An authenticator without PIN or biometric (presence only), from enrolment on.
    let mut a = SoftAuthenticator::new();
    a.forge.no_uv = true;
    assert_eq!(enrol(&op, &mut b, &mut a, "desk").await.status, 303);
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut a, "").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = id_token(&op, r.location()).await;
    assert_eq!(id["acr"], "urn:airlock:acr:passkey");
    assert_eq!(id["amr"], serde_json::json!(["hwk", "user"]), "no mfa");
    // One that verified the person at enrolment must keep doing so (WebAuthn library policy).
    let mut v = enrolled(&op, "vic").await;
    v.forge.no_uv = true;
    let r = passkey_sign_in(&op, &mut Browser::default(), &mut v, "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        op.provider.metric("passkey_refusals", "user_not_verified"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sign_in_responses_are_refused_on_postgres() {
    let Some(_pg) = pg_turn("bad_sign_in_responses_are_refused_on_postgres").await else {
        return;
    };
    bad_sign_in_responses(Dir::Pg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_enrolments_are_refused_on_postgres() {
    let Some(_pg) = pg_turn("bad_enrolments_are_refused_on_postgres").await else {
        return;
    };
    bad_enrolments(Dir::Pg).await
}
