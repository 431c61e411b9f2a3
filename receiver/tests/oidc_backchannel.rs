//! Back-channel logout over HTTPS to inside apps: the app's certificate comes from a test
//! CA (made here with the `openssl` CLI) that the receiver is told to trust
//! (`oidc.backchannel_ca_file`); a certificate from another CA, or for another name, is
//! refused and counted and gets nothing. The outbox survives a receiver killed during
//! the retries (the real binary, on sled, and on PostgreSQL when `AIRLOCK_TEST_PG_URL` is
//! set, where a second receiver shares the outbox and the delivery still arrives once). The test app verifies every logout token it gets against the provider's JWKS,
//! as a real relying party would, and answers 400 to one that does not verify.

use crate::common;
use crate::oidc_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use airlock_protocol::message::{Body, Claims, LoginTicket};
use airlock_receiver::oidc::transfer_code::TransferCode;
use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{OidcDeps, Provider};
use axum::routing::post;
use common::{LinkKind, Setup, TestSender};
use oidc_support::*;
use serde_json::Value;

const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------------------------------
// A test PKI

/// CAs and server certificates in a temp dir, made with the openssl CLI (P-256).
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A CA: `NAME.key`, `NAME.pem`.
    fn ca(&self, name: &str) -> PathBuf {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &key,
                "-out",
                &pem,
            ],
        );
        self.path(&pem)
    }

    /// A server certificate issued by CA `ca` for `san` (e.g. `IP:127.0.0.1`):
    /// (`NAME.pem`, `NAME.key`).
    fn leaf(&self, ca: &str, name: &str, san: &str) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
            ),
        )
        .unwrap();
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        (self.path(&pem), self.path(&key))
    }
}

// ---------------------------------------------------------------------------------------
// An inside app on HTTPS that verifies the logout tokens it gets

/// What the app saw.
#[derive(Clone, Default)]
struct AppLog {
    /// Claims of the logout tokens that verified.
    verified: Arc<Mutex<Vec<Value>>>,
    /// Requests that reached the handler at all (a refused handshake never does).
    calls: Arc<AtomicUsize>,
    /// The issuer whose JWKS the tokens are checked against (set once the provider runs).
    issuer: Arc<Mutex<String>>,
    /// Further places to fetch that JWKS from when the issuer's address does not answer
    /// (the other receiver of a cluster; in production, the load balancer's job).
    jwks_fallback: Arc<Mutex<Vec<String>>>,
}

impl AppLog {
    fn verified(&self) -> Vec<Value> {
        self.verified.lock().unwrap().clone()
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// OpenID Connect Back-Channel Logout 1.0 §2.6, as the app checks it: signature by a key
/// of the issuer's JWKS, iss, aud, iat/exp, typ, the event, a sid, no nonce.
async fn verify_logout_token(
    issuer: &str,
    fallback: &[String],
    aud: &str,
    token: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("logout+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let kid = header.kid.clone().ok_or("no kid")?;
    let mut jwks = Err("no JWKS source".to_string());
    for base in std::iter::once(issuer).chain(fallback.iter().map(String::as_str)) {
        jwks = airlock_tests::http::request("GET", &format!("{base}/jwks"), &[], None)
            .await
            .map_err(|e| e.to_string());
        if jwks.is_ok() {
            break;
        }
    }
    let jwks = jwks?;
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&jwks.body).map_err(|e| e.to_string())?;
    let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| e.to_string())?
        .claims;
    if !claims["events"][BACKCHANNEL_EVENT].is_object() {
        return Err("no back-channel logout event".into());
    }
    if !claims["sid"].is_string() || claims.get("nonce").is_some() {
        return Err("sid missing or nonce present".into());
    }
    Ok(claims)
}

/// The app's router: POST /backchannel verifies the token (200) or refuses it (400).
fn app_router(log: AppLog, aud: &'static str) -> axum::Router {
    axum::Router::new().route(
        "/backchannel",
        post(move |body: String| {
            let log = log.clone();
            async move {
                log.calls.fetch_add(1, Ordering::SeqCst);
                let token = body.strip_prefix("logout_token=").unwrap_or_default();
                let token = airlock_receiver::oidc::util::url_decode(token).unwrap_or_default();
                let issuer = log.issuer.lock().unwrap().clone();
                let fallback = log.jwks_fallback.lock().unwrap().clone();
                match verify_logout_token(&issuer, &fallback, aud, &token).await {
                    Ok(claims) => {
                        log.verified.lock().unwrap().push(claims);
                        axum::http::StatusCode::OK
                    }
                    Err(e) => {
                        eprintln!("test app: logout token refused: {e}");
                        axum::http::StatusCode::BAD_REQUEST
                    }
                }
            }
        }),
    )
}

/// Serves the app over HTTPS with `cert`/`key` on `listener`, on the current runtime.
async fn serve_https_app(
    listener: std::net::TcpListener,
    cert: &Path,
    key: &Path,
    log: AppLog,
    aud: &'static str,
) {
    listener.set_nonblocking(true).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .unwrap();
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls).unwrap();
    let app = app_router(log, aud);
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
}

/// An HTTPS app on a fresh loopback port: its back-channel URI and its log.
async fn https_app(cert: &Path, key: &Path, aud: &'static str) -> (String, AppLog) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/backchannel", l.local_addr().unwrap());
    let log = AppLog::default();
    serve_https_app(l, cert, key, log.clone(), aud).await;
    (url, log)
}

// ---------------------------------------------------------------------------------------
// In-process provider (oidc_support::op_with_backchannel)

#[tokio::test]
async fn https_back_channel_logout_reaches_an_app_the_inside_ca_vouches_for() {
    let pki = Pki::new();
    let ca = pki.ca("inside-ca");
    let (cert, key) = pki.leaf("inside-ca", "app", "IP:127.0.0.1,DNS:localhost");
    let (bc, app) = https_app(&cert, &key, "app").await;
    assert!(bc.starts_with("https://127.0.0.1:"));
    let op = op_with_backchannel(&bc, 3, Some(&ca)).await;
    *app.issuer.lock().unwrap() = op.base.clone();
    let mut b = Browser::default();
    let t = app_login(&op, &mut b, "tia", "openid").await;
    let (_, id) = verify_jwt(
        &op,
        t["id_token"].as_str().unwrap(),
        jsonwebtoken::Algorithm::RS256,
    )
    .await;
    assert_eq!(op.provider.revoke_user(&Op::sub("tia")).unwrap(), 1);

    let m = &op.provider;
    eventually("delivered", || {
        m.metric("backchannel_logouts", "delivered") == 1
    })
    .await;
    let got = app.verified();
    assert_eq!(got.len(), 1, "the app verified one logout token");
    assert_eq!(got[0]["sid"], id["sid"]);
    assert_eq!(got[0]["sub"], id["sub"]);
    assert_eq!(app.calls(), 1);
    assert_eq!(m.metric("backchannel_logouts", "failed"), 0);
    assert_eq!(m.metric("backchannel_logout_failures", "tls_untrusted"), 0);
    assert!(
        op.provider.pending_logouts().unwrap().is_empty(),
        "a delivered logout leaves the outbox"
    );
}

#[tokio::test]
async fn a_certificate_the_inside_ca_did_not_issue_for_that_host_is_refused_and_counted() {
    let pki = Pki::new();
    let ca = pki.ca("inside-ca");
    pki.ca("rogue-ca");
    // Another CA, the right name; the right CA, another name.
    let (rogue_cert, rogue_key) = pki.leaf("rogue-ca", "rogue", "IP:127.0.0.1");
    let (other_cert, other_key) = pki.leaf("inside-ca", "other", "DNS:other.inside.example");
    for ((cert, key), reason) in [
        ((rogue_cert, rogue_key), "tls_untrusted"),
        ((other_cert, other_key), "tls_name"),
    ] {
        let (bc, app) = https_app(&cert, &key, "app").await;
        let op = op_with_backchannel(&bc, 5, Some(&ca)).await;
        *app.issuer.lock().unwrap() = op.base.clone();
        let mut b = Browser::default();
        app_login(&op, &mut b, "ron", "openid").await;
        op.provider.revoke_user(&Op::sub("ron")).unwrap();
        let m = &op.provider;
        eventually("given up", || {
            m.metric("backchannel_logouts", "failed") == 1
        })
        .await;
        assert_eq!(
            m.metric("backchannel_logout_failures", reason),
            1,
            "{reason}"
        );
        // Not retried: a refused certificate does not become trusted by waiting.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(m.metric("backchannel_logouts", "retried"), 0, "{reason}");
        assert_eq!(m.metric("backchannel_logouts", "delivered"), 0, "{reason}");
        assert_eq!(app.calls(), 0, "{reason}: nothing reached the app");
        assert!(app.verified().is_empty());
        assert!(op.provider.pending_logouts().unwrap().is_empty());
        let text = op.provider.metrics_text();
        assert!(
            text.contains(&format!(
                "airlock_oidc_backchannel_logout_failures_total{{reason=\"{reason}\"}} 1\n"
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_bad_ca_bundle_stops_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("inside-ca.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for f in [&junk, &missing] {
        let mut cfg = config(9, Some("https://app.inside.example/bc"));
        cfg.backchannel_ca_file = Some(f.clone());
        let deps = OidcDeps {
            db: sled::Config::new().temporary(true).open().unwrap(),
            directory: Arc::new(MemDirectory::default()),
            clock: Clock::system(),
        };
        let e = Provider::new(cfg, deps).err().expect("refused").to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains("oidc.backchannel_ca_file"), "{e}");
    }
    // And an https:// URI without any bundle is a config error naming the key.
    let cfg = config(9, Some("https://app.inside.example/bc"));
    let e = cfg.validate().unwrap_err();
    assert_eq!(e.key, "backchannel_ca_file");
}

// ---------------------------------------------------------------------------------------
// The real binary, killed during the retries

const CB: &str = "http://127.0.0.1:1/cb";

fn login_ticket() -> (Body, String) {
    let code = TransferCode::generate(&mut rand::thread_rng());
    let body = Body::LoginTicket(LoginTicket {
        locator: code.locator(),
        code_hash: argon2_hash(&code.secret()),
        issuer: common::ISSUER.into(),
        subject: "kim@outside.example".into(),
        claims: Claims::default(),
        approval: common::approval(),
        expires_at: common::now() + 600,
    });
    (body, code.display())
}

/// authorize -> login -> token (public client `spa`), then RP-initiated logout with the
/// ID token as hint; returns the session's `sid`.
async fn log_in_and_out(base: &str, code: &str) -> String {
    let p = pkce("bc");
    let mut b = Browser::default();
    let url = format!(
        "{base}/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        enc(CB),
        p.challenge
    );
    let r = b.get(&url).await;
    assert_eq!(r.status, 303, "authorize: {}", r.body);
    let page = b.get(&format!("{base}{}", r.location())).await;
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
    let t = http("POST", &format!("{base}/token"), &[], Some(&body)).await;
    assert_eq!(t.status, 200, "token: {}", t.body);
    let id_token = t.json()["id_token"].as_str().unwrap().to_owned();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let r = b
        .get(&format!("{base}/logout?id_token_hint={id_token}"))
        .await;
    assert!(r.body.contains("Signed out"), "logout: {}", r.body);
    claims["sid"].as_str().unwrap().to_owned()
}

/// The app is down; the receiver tries, fails, is SIGKILLed; the app comes up; the
/// restarted receiver finds the delivery in its store and delivers it. With `ha` (a
/// shared PostgreSQL), a second receiver starts beside the restarted one: the delivery
/// reaches the app once, from one of them.
fn restart_during_retries(store_section: &str, ha: bool) {
    let pki = Pki::new();
    let ca = pki.ca("inside-ca");
    let (cert, key) = pki.leaf("inside-ca", "app", "IP:127.0.0.1");
    let (app_port, oidc_port) = (common::free_tcp_port(), common::free_tcp_port());
    let issuer = format!("http://127.0.0.1:{oidc_port}");
    let extra = format!(
        r#"{store_section}
[oidc]
issuer = "{issuer}"
listen = "127.0.0.1:{oidc_port}"
allow_plain_http = true
backchannel_logout_attempts = 20
backchannel_logout_first_retry_ms = 200
backchannel_ca_file = "{ca}"
[[oidc.clients]]
client_id = "spa"
public = true
redirect_uris = ["{CB}"]
backchannel_logout_uri = "https://127.0.0.1:{app_port}/backchannel"
"#,
        ca = ca.display()
    );
    let setup = Setup::with_extra(LinkKind::Udp, &extra);
    // The second receiver of a cluster: same issuer and keys, its own listener.
    let port_b = common::free_tcp_port();
    let setup_b = Setup::with_extra(
        LinkKind::Udp,
        &extra.replace(
            &format!("listen = \"127.0.0.1:{oidc_port}\""),
            &format!("listen = \"127.0.0.1:{port_b}\""),
        ),
    );
    setup.share_keys_with(&setup_b);
    let mut receiver = setup.start();
    let mut sender = TestSender::new(&setup.signer, &setup.link);
    let (ticket, code) = login_ticket();
    let frames: Vec<Vec<u8>> = [common::heartbeat(sender.session_id), ticket]
        .into_iter()
        .map(|b| sender.next(b).sealed)
        .collect();
    sender.send_udp(setup.udp_port, &frames);
    receiver.wait_for("the ticket", |m| m.accepted() >= 2);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let sid = rt.block_on(log_in_and_out(&issuer, &code));
    let failures = "airlock_oidc_backchannel_logout_failures_total{reason=\"connect\"}";
    let waiting = "airlock_oidc_backchannel_outbox_deliveries";
    let m = receiver.wait_for("two refused connections, one delivery waiting", |m| {
        m.get(failures) >= 2 && m.get(waiting) == 1
    });
    assert_eq!(m.get("airlock_oidc_backchannel_outbox_max"), 10_000);
    receiver.kill();

    // The app comes up; only a receiver that kept the delivery can reach it now.
    let log = AppLog::default();
    *log.issuer.lock().unwrap() = issuer.clone();
    *log.jwks_fallback.lock().unwrap() = vec![format!("http://127.0.0.1:{port_b}")];
    let listener = std::net::TcpListener::bind(("127.0.0.1", app_port)).unwrap();
    rt.block_on(serve_https_app(listener, &cert, &key, log.clone(), "spa"));
    let (receiver, other) = std::thread::scope(|s| {
        let a = s.spawn(|| setup.start());
        let b = ha.then(|| s.spawn(|| setup_b.start()));
        (a.join().unwrap(), b.map(|b| b.join().unwrap()))
    });
    let delivered = "airlock_oidc_backchannel_logouts_total{reason=\"delivered\"}";
    let retried = "airlock_oidc_backchannel_logouts_total{reason=\"retried\"}";
    let m = match &other {
        None => receiver.wait_for("the delivery after the restart", |m| m.get(delivered) == 1),
        Some(b) => {
            // Either receiver may have claimed it; wait until one has delivered.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no delivery from either receiver"
                );
                let (ma, mb) = (receiver.metrics(), b.metrics());
                if ma.get(delivered) + mb.get(delivered) >= 1 {
                    break if ma.get(delivered) == 1 { ma } else { mb };
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    assert!(
        m.get(retried) >= 1,
        "the receiver that delivered counts its attempt as a retry:\n{}",
        m.raw
    );
    receiver.wait_for("an empty outbox", |m| m.get(waiting) == 0);
    if let Some(b) = &other {
        // Several polls of both workers later, still one delivery in all.
        std::thread::sleep(3 * airlock_receiver::oidc::outbox::POLL);
        let total = receiver.metrics().get(delivered) + b.metrics().get(delivered);
        assert_eq!(total, 1, "delivered by one receiver only");
    }
    let got = log.verified();
    assert_eq!(got.len(), 1, "one verified logout token");
    assert_eq!(log.calls(), 1, "the app was called once");
    assert_eq!(got[0]["sid"], sid.as_str());
    assert_eq!(got[0]["aud"], "spa");
    drop((receiver, other));
}

#[test]
fn a_restart_during_retries_still_delivers_on_sled() {
    restart_during_retries("", false);
}

#[test]
fn a_restart_during_retries_still_delivers_once_on_postgres_with_two_receivers() {
    let Some(url) = common::pg_url(
        "oidc_backchannel::a_restart_during_retries_still_delivers_once_on_postgres_with_two_receivers",
    ) else {
        return;
    };
    let _pg = common::pg_shared();
    let schema = format!("bc_{:x}", common::rand_u64() >> 16);
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let db_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    restart_during_retries(
        &format!(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{db_url}\"\npool_size = 4\n"
        ),
        true,
    );
    // The outbox row is gone once delivered.
    let left: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {schema}.oidc_logout_outbox"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
