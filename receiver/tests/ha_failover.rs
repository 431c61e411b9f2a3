//! Failover: two real `airlock-receiver run` processes on one PostgreSQL, the same UDP
//! feed duplicated to both (what a multicast group or a relayed serial feed does). A user
//! logs in through receiver A; A is SIGKILLed; the user's refresh and userinfo go on
//! through receiver B; a frame that arrives during the outage is applied once; the log's
//! hash chain verifies; an authorization request pushed (RFC 9126) to A is used on B, once.
//!
//! Runs when `AIRLOCK_TEST_PG_URL` is set (`scripts/pg start DIR PORT` prints one);
//! otherwise it says on stderr that it was skipped.

use crate::common;
use crate::oidc_support;

use airlock_protocol::message::{Body, Claims, LoginTicket};
use airlock_receiver::apply::decode_head;
use airlock_receiver::frame_log::verify_entry_chain;
use airlock_receiver::oidc::transfer_code::TransferCode;
use airlock_receiver::store::postgres::PgStore;
use airlock_receiver::store::{Store, Table, meta};
use common::{LinkKind, Receiver, Setup, TestSender};
use oidc_support::{Browser, enc, hidden, http, pkce, query_param};

const CB: &str = "http://127.0.0.1:1/cb";
const SUBJECT: &str = "ada@outside.example";

fn pg_url() -> Option<String> {
    common::pg_url("ha_failover")
}

/// The failover test drops every receiver connection to the database (a PostgreSQL restart),
/// which would also hit another test's receiver: the tests of this file run one at a time,
/// and while no other test uses the database.
fn one_at_a_time() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    common::pg_alone()
}

/// A schema of its own on the test database, as the search_path of the URL.
fn fresh_schema(url: &str) -> (String, String) {
    common::fresh_pg_schema(url, "ha")
}

/// The receiver config beyond the link: the shared database and the provider. Both
/// receivers announce the same issuer (the load balancer's name in production).
fn extra(db_url: &str, issuer: &str, oidc_port: u16) -> String {
    format!(
        r#"[store]
backend = "postgres"
[store.postgres]
url = "{db_url}"
pool_size = 4
[oidc]
issuer = "{issuer}"
listen = "127.0.0.1:{oidc_port}"
allow_plain_http = true
[[oidc.clients]]
client_id = "spa"
public = true
redirect_uris = ["{CB}"]
id_token_signed_response_alg = "ES256"
"#
    )
}

/// A LoginTicket for SUBJECT and the transfer code the user would be shown outside.
fn login_ticket() -> (Body, String) {
    let code = TransferCode::generate(&mut rand::thread_rng());
    let body = Body::LoginTicket(LoginTicket {
        locator: code.locator(),
        code_hash: oidc_support::argon2_hash(&code.secret()),
        issuer: common::ISSUER.into(),
        subject: SUBJECT.into(),
        claims: Claims {
            email: Some("ada@example.org".into()),
            name: Some("Ada".into()),
            ..Claims::default()
        },
        approval: common::approval(),
        expires_at: common::now() + 600,
    });
    (body, code.display())
}

/// Seals `bodies` and sends every datagram to every port (a duplicated feed).
fn feed(sender: &mut TestSender, ports: &[u16], bodies: Vec<Body>) {
    let frames: Vec<Vec<u8>> = bodies.into_iter().map(|b| sender.next(b).sealed).collect();
    for block in sender.datagrams(&frames) {
        for &p in ports {
            common::send_raw(p, &block);
        }
    }
}

/// Frames a receiver has dealt with: applied by itself, or found already applied.
fn seen(r: &Receiver) -> u64 {
    let m = r.metrics();
    m.accepted() + m.duplicates()
}

fn wait_seen(r: &Receiver, n: u64, who: &str) {
    r.wait_for(&format!("{who} to see {n} frames"), |m| {
        m.accepted() + m.duplicates() >= n
    });
}

struct Tokens {
    access: String,
    refresh: String,
}

fn tokens(r: &oidc_support::Resp) -> Tokens {
    assert_eq!(r.status, 200, "token endpoint: {}", r.body);
    let j = r.json();
    Tokens {
        access: j["access_token"].as_str().unwrap().to_owned(),
        refresh: j["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// authorize -> login page -> transfer code -> callback -> token, all on `base`.
async fn log_in(base: &str, code: &str) -> Tokens {
    let p = pkce("ha");
    let mut b = Browser::default();
    let url = format!(
        "{base}/authorize?response_type=code&client_id=spa&redirect_uri={}&scope={}&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        enc(CB),
        enc("openid profile email offline_access"),
        p.challenge
    );
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "authorize: {}", r.body);
    let page = b.get(&format!("{base}{}", r.location())).await;
    assert_eq!(page.status, 200, "login page: {}", page.body);
    let form = format!(
        "txn={}&csrf={}&method=transfer_code&code={}",
        hidden(&page.body, "txn"),
        hidden(&page.body, "csrf"),
        enc(code)
    );
    let r = b.post(&format!("{base}/login"), &form).await;
    assert_eq!(r.status, 303, "login: {}", r.body);
    let code = query_param(r.location(), "code").expect("code in the callback");
    let body = format!(
        "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
        enc(&code),
        enc(CB),
        p.verifier
    );
    tokens(&http("POST", &format!("{base}/token"), &[], Some(&body)).await)
}

async fn refresh(base: &str, rt: &str) -> oidc_support::Resp {
    let body = format!(
        "grant_type=refresh_token&client_id=spa&refresh_token={}",
        enc(rt)
    );
    http("POST", &format!("{base}/token"), &[], Some(&body)).await
}

async fn userinfo(base: &str, access: &str) -> oidc_support::Resp {
    http(
        "GET",
        &format!("{base}/userinfo"),
        &[("Authorization", format!("Bearer {access}"))],
        None,
    )
    .await
}

#[test]
fn login_survives_losing_a_receiver_and_frames_apply_once() {
    let Some(url) = pg_url() else {
        return;
    };
    let _one_at_a_time = one_at_a_time();
    let (schema, db_url) = fresh_schema(&url);
    let (port_a, port_b) = (common::free_tcp_port(), common::free_tcp_port());
    let issuer = format!("http://127.0.0.1:{port_a}");
    let setup_a = Setup::with_extra(LinkKind::Udp, &extra(&db_url, &issuer, port_a));
    let setup_b = Setup::with_extra(LinkKind::Udp, &extra(&db_url, &issuer, port_b));
    // One sender, one set of keys: B trusts what A trusts, and signs A's log with A's
    // checkpoint key.
    setup_a.share_keys_with(&setup_b);
    // Both start together: the schema migration and the first signing keys happen once.
    let (mut a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| setup_a.start());
        let hb = s.spawn(|| setup_b.start());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let ports = [setup_a.udp_port, setup_b.udp_port];
    let mut sender = TestSender::new(&setup_a.signer, &setup_a.link);

    let (ticket, code) = login_ticket();
    let (spare_ticket, spare_code) = login_ticket();
    let hb = common::heartbeat(sender.session_id);
    feed(
        &mut sender,
        &ports,
        vec![hb, common::provision(1), ticket, spare_ticket],
    );
    wait_seen(&a, 4, "A");
    wait_seen(&b, 4, "B");
    let applied_by = |r: &Receiver| r.metrics().accepted();
    assert_eq!(
        applied_by(&a) + applied_by(&b),
        4,
        "each frame applied by one receiver"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let base_a = format!("http://127.0.0.1:{port_a}");
    let base_b = format!("http://127.0.0.1:{port_b}");
    let first = rt.block_on(log_in(&base_a, &code));
    // A second grant, refreshed on B after the database dropped B's connections.
    let spare = rt.block_on(log_in(&base_a, &spare_code));
    let ui = rt.block_on(userinfo(&base_a, &first.access));
    assert_eq!(ui.status, 200, "userinfo on A: {}", ui.body);
    let sub = ui.json()["sub"].as_str().unwrap().to_owned();
    // A pushed authorization request, pushed to A, for use after A is gone.
    let par = pkce("ha-par");
    let pushed = rt.block_on(http(
        "POST",
        &format!("{base_a}/par"),
        &[],
        Some(&format!(
            "client_id=spa&response_type=code&redirect_uri={}&scope=openid&code_challenge={}&code_challenge_method=S256",
            enc(CB),
            par.challenge
        )),
    ));
    assert_eq!(pushed.status, 201, "PAR on A: {}", pushed.body);
    let by_reference = format!(
        "{base_b}/authorize?client_id=spa&request_uri={}",
        enc(pushed.json()["request_uri"].as_str().unwrap())
    );

    a.kill();

    // B takes the push A stored (to its login page), once.
    let r = rt.block_on(Browser::default().get(&by_reference));
    assert_eq!(r.status, 303, "A's push on B: {}", r.body);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    let r = rt.block_on(Browser::default().get(&by_reference));
    assert_eq!(r.status, 400, "second use: {}", r.body);
    assert!(r.body.contains("invalid_request_uri"));

    // B carries on: the access token from A is valid (shared keys, shared grant) ...
    let ui = rt.block_on(userinfo(&base_b, &first.access));
    assert_eq!(ui.status, 200, "A's access token on B: {}", ui.body);
    assert_eq!(ui.json()["sub"], sub.as_str());
    // ... the refresh token from A rotates on B ...
    let second = tokens(&rt.block_on(refresh(&base_b, &first.refresh)));
    assert_ne!(second.refresh, first.refresh);
    let ui = rt.block_on(userinfo(&base_b, &second.access));
    assert_eq!(ui.status, 200, "userinfo on B: {}", ui.body);
    assert_eq!(ui.json()["sub"], sub.as_str());
    assert_eq!(ui.json()["email"], "ada@example.org");
    // ... and B knows A's refresh token was spent: replaying it revokes the family.
    let replay = rt.block_on(refresh(&base_b, &first.refresh));
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(replay.json()["error"], "invalid_grant");
    let after = rt.block_on(refresh(&base_b, &second.refresh));
    assert_eq!(
        after.status, 400,
        "family revoked after reuse: {}",
        after.body
    );

    // The database drops B's connections (a restart or a failover of PostgreSQL would):
    // B's ingest reconnects and carries on.
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let dropped = c
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'airlock-receiver' AND datname = current_database()",
            &[],
        )
        .unwrap();
    assert!(dropped > 0, "B had connections to drop");

    // A frame during the outage: B alone applies it.
    let before = seen(&b);
    feed(&mut sender, &ports, vec![common::provision(2)]);
    wait_seen(&b, before + 1, "B");
    // B's provider reconnects too: a refresh grant (its prepared statements were on the
    // dropped connections) goes through on fresh ones.
    let refreshed = rt.block_on(refresh(&base_b, &spare.refresh));
    assert_eq!(
        refreshed.status, 200,
        "refresh on B after its connections were dropped: {}",
        refreshed.body
    );

    // Exactly once, and the chain holds, in the shared database.
    let store = PgStore::open_url(&db_url).unwrap();
    for t in [Table::Log, Table::Seqs] {
        assert_eq!(store.len(t), 5, "{t:?}");
    }
    // subject-1, subject-2 and the ticket holder.
    assert_eq!(store.len(Table::Users), 3);
    let (_, t) = store
        .scan_from(Table::Tickets, &[])
        .next()
        .unwrap()
        .unwrap();
    let t: serde_json::Value = serde_json::from_slice(&t).unwrap();
    assert_eq!(
        t["used"], true,
        "the transfer code was spent in the shared store"
    );
    let (next, head) = decode_head(&store.get(Table::Meta, meta::HEAD).unwrap().unwrap()).unwrap();
    assert_eq!(next, 5);
    let values: Vec<Vec<u8>> = store
        .scan_from(Table::Log, &[])
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(verify_entry_chain(values, Some(head)).unwrap().entries, 5);
    // One key rotation for the cluster, from the CLI, while B is serving: three keys
    // (one per algorithm) before, six after, and the old ones scheduled to retire.
    let kids = |c: &mut ::postgres::Client| -> Vec<(String, String)> {
        c.query(&format!("SELECT kid, data FROM {schema}.oidc_keys"), &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(kids(&mut c).len(), 3, "both receivers share one key set");
    let (ok, out, err) = setup_b.cli(&["keys", "rotate"]);
    assert!(ok, "keys rotate: {out}{err}");
    let after = kids(&mut c);
    assert_eq!(after.len(), 6);
    let retiring = after
        .iter()
        .filter(|(_, d)| !d.contains("\"retire_after\":null"))
        .count();
    assert_eq!(retiring, 3, "the old keys retire after the overlap");
    drop(b);
    drop(store);
    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}

/// A receiver that cannot read its database leaves the load balancer's rotation: `/healthz`
/// turns 503 and names the store, and turns 200 again once the database is back.
#[test]
fn healthz_turns_unhealthy_when_the_database_is_unreadable() {
    let Some(url) = pg_url() else {
        return;
    };
    let _one_at_a_time = one_at_a_time();
    let (schema, db_url) = fresh_schema(&url);
    let port = common::free_tcp_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let setup = Setup::with_extra(LinkKind::Udp, &extra(&db_url, &issuer, port));
    let r = setup.start();
    let health = || airlock_receiver::ops_client::get(r.ops, "/healthz").unwrap();
    assert_eq!(health().0, 200, "{}", health().1);

    // Take the store's tables away (what a lost primary looks like to the queries).
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("ALTER SCHEMA {schema} RENAME TO {schema}_away"))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = health();
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the store cannot be read"), "{body}");

    admin
        .batch_execute(&format!("ALTER SCHEMA {schema}_away RENAME TO {schema}"))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while health().0 != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", health().1);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
