//! PostgreSQL beside sled: ingest frames/s (real binary, UDP in, open, log, apply, commit)
//! and refresh_token and client_credentials grants/s (in-process provider, loopback HTTP). Ignored by default;
//! needs `AIRLOCK_TEST_PG_URL`. Run in release:
//!
//! ```text
//! D=$(mktemp -d); export AIRLOCK_TEST_PG_URL=$(scripts/pg start $D 55432)
//! cargo test --release -p airlock-receiver --test integration -- ha_bench:: --ignored --nocapture --test-threads=1
//! scripts/pg stop $D
//! ```
//! Prints figures; asserts only correctness (every frame accepted, every grant 200).

use crate::common;
use crate::oidc_support;

use std::sync::Arc;
use std::time::Instant;

use airlock_protocol::message::Claims;
use airlock_receiver::oidc::pg_store::PgOidcStore;
use airlock_receiver::oidc::sled_store::SledOidcStore;
use airlock_receiver::oidc::store::OidcStore;
use airlock_receiver::oidc::transfer_code::TransferCode;
use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{DirectoryTicket, Provider};
use airlock_receiver::store::postgres::PgStore;
use common::{LinkKind, Setup, TestSender, send_windowed, sized_provision};
use oidc_support::{Browser, MemDirectory, enc, hidden, http, pkce, query_param};

fn pg_url() -> String {
    std::env::var("AIRLOCK_TEST_PG_URL").expect("AIRLOCK_TEST_PG_URL: start one with scripts/pg")
}

fn fresh_schema(url: &str, tag: &str) -> String {
    common::fresh_pg_schema(url, &format!("bench_{tag}")).1
}

// ---------------------------------------------------------------------------------------
// Ingest

const FRAMES: usize = 20_000;
const WINDOW: u64 = 6_000;

fn ingest_rate(backend: &str, store_section: &str) -> f64 {
    let extra = format!("[ingest]\nmax_batch = 2048\nqueue_frames = 16384\n{store_section}");
    let setup = Setup::with_extra(LinkKind::Udp, &extra);
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<Vec<u8>> = (1..=FRAMES as u64)
        .map(|i| tx.next(sized_provision(&tx, i)).sealed)
        .collect();
    let (start, m) = send_windowed(&rx, setup.udp_port, &mut tx, &frames, WINDOW);
    let elapsed = start.elapsed();
    let rate = m.accepted() as f64 / elapsed.as_secs_f64();
    eprintln!(
        "ingest [{backend}]: {} of {FRAMES} ~600 B Provisions in {:.2} s = {rate:.0} frames/s ({} transactions)",
        m.accepted(),
        elapsed.as_secs_f64(),
        m.get("airlock_ingest_batches_total"),
    );
    assert_eq!(
        m.accepted(),
        FRAMES as u64,
        "every frame accepted:\n{}",
        m.raw
    );
    rate
}

#[test]
#[ignore = "benchmark: needs AIRLOCK_TEST_PG_URL; run with --release -- --ignored --nocapture"]
fn ingest_frames_per_second_sled_and_postgres() {
    let _pg = common::pg_shared();
    let url = fresh_schema(&pg_url(), "ingest");
    let sled = ingest_rate("sled", "");
    let pg = ingest_rate(
        "postgres",
        &format!("[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\n"),
    );
    eprintln!("ingest: postgres / sled = {:.2}", pg / sled);
}

// ---------------------------------------------------------------------------------------
// Refresh grants

const CONNS: usize = 16;
const GRANTS_PER_CONN: usize = 250;
const CB: &str = "http://127.0.0.1:1/cb";

/// Files a ticket for `subject`; returns the transfer code as shown.
fn ticket(dir: &MemDirectory, subject: &str) -> String {
    let code = TransferCode::generate(&mut rand::thread_rng());
    dir.tickets.lock().unwrap().insert(
        code.locator(),
        DirectoryTicket {
            code_hash: oidc_support::argon2_hash(&code.secret()),
            issuer: oidc_support::ISSUER_OUT.into(),
            subject: subject.into(),
            claims: Claims {
                email: Some(format!("{subject}@example.org")),
                ..Claims::default()
            },
            expires_at: common::now() + 600,
            seq: 1,
            used: false,
        },
    );
    code.display()
}

/// Full login on `base`; returns the refresh token.
async fn login(base: &str, code: &str) -> String {
    let p = pkce("bench");
    let mut b = Browser::default();
    let url = format!(
        "{base}/authorize?response_type=code&client_id=spa&redirect_uri={}&scope={}&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        enc(CB),
        enc("openid email offline_access"),
        p.challenge
    );
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&format!("{base}{}", r.location())).await;
    let form = format!(
        "txn={}&csrf={}&method=transfer_code&code={}",
        hidden(&page.body, "txn"),
        hidden(&page.body, "csrf"),
        enc(code)
    );
    let r = b.post(&format!("{base}/login"), &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let code = query_param(r.location(), "code").unwrap();
    let body = format!(
        "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
        enc(&code),
        enc(CB),
        p.verifier
    );
    let r = http("POST", &format!("{base}/token"), &[], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["refresh_token"].as_str().unwrap().to_owned()
}

async fn refresh_rate(backend: &str, store: Arc<dyn OidcStore>) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = Arc::new(MemDirectory::default());
    let provider = Provider::with_store(
        oidc_support::config(port, None),
        store,
        dir.clone(),
        Clock::system(),
    )
    .unwrap();
    tokio::spawn(provider.serve_on(listener));
    let base = format!("http://127.0.0.1:{port}");
    let mut tokens = Vec::new();
    for i in 0..CONNS {
        let code = ticket(&dir, &format!("bench-{i}"));
        tokens.push(login(&base, &code).await);
    }
    grants_per_second("refresh", backend, "ES256", tokens, move |rt: String| {
        let base = base.clone();
        async move {
            let body = format!(
                "grant_type=refresh_token&client_id=spa&refresh_token={}",
                enc(&rt)
            );
            let r = http("POST", &format!("{base}/token"), &[], Some(&body)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["refresh_token"].as_str().unwrap().to_owned()
        }
    })
    .await
}

/// `CONNS` clients at once, each making `GRANTS_PER_CONN` grants one after the other:
/// `grant` makes one from the client's state (its refresh token, say) and returns the next
/// state. Prints the rate and p50/p99 as `<kind> [<backend>]`; returns the rate.
async fn grants_per_second<S, F, Fut>(
    kind: &str,
    backend: &str,
    alg: &str,
    clients: Vec<S>,
    grant: F,
) -> f64
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut state in clients {
        let grant = grant.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(GRANTS_PER_CONN);
            for _ in 0..GRANTS_PER_CONN {
                let t = Instant::now();
                state = grant(state).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let rate = lat.len() as f64 / wall.as_secs_f64();
    eprintln!(
        "{kind} [{backend}]: {} grants ({alg}, {CONNS} clients, one connection per request) in {:.2} s = {rate:.0}/s, p50 {:?}, p99 {:?}",
        lat.len(),
        wall.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs AIRLOCK_TEST_PG_URL; run with --release -- --ignored --nocapture"]
async fn refresh_grants_per_second_sled_and_postgres() {
    let _pg = common::pg_shared_async().await;
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let sled_rate = refresh_rate("sled", Arc::new(SledOidcStore::open(db).unwrap())).await;
    // The synchronous client must not run on the runtime's thread.
    let url = tokio::task::block_in_place(|| fresh_schema(&pg_url(), "refresh"));
    let pg = PgStore::open_url(&url).unwrap();
    let pg_rate = refresh_rate("postgres", Arc::new(PgOidcStore::new(&pg))).await;
    eprintln!("refresh: postgres / sled = {:.2}", pg_rate / sled_rate);
}

/// Client-credentials grants per second on `store`, as [`refresh_rate`] measures refresh
/// grants (16 clients, a new connection per request): each grant authenticates `app`
/// (its secret cached after one argon2), stores the grant family and signs one RS256 token.
async fn client_credentials_rate(backend: &str, store: Arc<dyn OidcStore>) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = oidc_support::config(port, None);
    cfg.clients[1].client_credentials_scopes = vec!["orders.read".into()];
    cfg.clients[1].client_credentials_audience = vec!["https://orders.inside".into()];
    cfg.clients[1].grant_types.push("client_credentials".into());
    let provider = Provider::with_store(
        cfg,
        store,
        Arc::new(MemDirectory::default()),
        Clock::system(),
    )
    .unwrap();
    tokio::spawn(provider.serve_on(listener));
    let base = format!("http://127.0.0.1:{port}");
    let auth = oidc_support::basic("app", oidc_support::CONF_SECRET);
    let body = "grant_type=client_credentials&scope=orders.read";
    let warm = http(
        "POST",
        &format!("{base}/token"),
        std::slice::from_ref(&auth),
        Some(body),
    )
    .await;
    assert_eq!(warm.status, 200, "{}", warm.body);
    let clients = vec![(); CONNS];
    grants_per_second("client_credentials", backend, "RS256", clients, move |()| {
        let (base, auth) = (base.clone(), auth.clone());
        async move {
            let r = http(
                "POST",
                &format!("{base}/token"),
                std::slice::from_ref(&auth),
                Some(body),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs AIRLOCK_TEST_PG_URL; run with --release -- --ignored --nocapture"]
async fn client_credentials_grants_per_second_sled_and_postgres() {
    let _pg = common::pg_shared_async().await;
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let sled_rate =
        client_credentials_rate("sled", Arc::new(SledOidcStore::open(db).unwrap())).await;
    let url = tokio::task::block_in_place(|| fresh_schema(&pg_url(), "cc"));
    let pg = PgStore::open_url(&url).unwrap();
    let pg_rate = client_credentials_rate("postgres", Arc::new(PgOidcStore::new(&pg))).await;
    eprintln!(
        "client_credentials: postgres / sled = {:.2}",
        pg_rate / sled_rate
    );
}
