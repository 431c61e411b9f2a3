//! Shared helpers of the oidc_* integration tests: an in-memory directory, a provider
//! on a loopback port, a browser (the test kit's HTTP client with a cookie jar), and JWT
//! checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_protocol::message::{Claims, local_subject};
use airlock_receiver::oidc::transfer_code::TransferCode;
use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{
    DirectoryError, DirectoryTicket, DirectoryUser, IdentityDirectory, OidcConfig, OidcDeps,
    Provider,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ISSUER_OUT: &str = "https://idp.outside.example";

#[derive(Default)]
pub struct MemDirectory {
    pub users: Mutex<HashMap<String, DirectoryUser>>,
    pub tickets: Mutex<HashMap<[u8; 16], DirectoryTicket>>,
    /// Further tickets sharing a locator with one in `tickets` (a locator collision).
    pub colliding: Mutex<Vec<([u8; 16], DirectoryTicket)>>,
}

impl IdentityDirectory for MemDirectory {
    fn user(&self, sub: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        Ok(self.users.lock().unwrap().get(sub).cloned())
    }
    fn ticket(&self, l: &[u8; 16]) -> Result<Option<DirectoryTicket>, DirectoryError> {
        Ok(self.tickets.lock().unwrap().get(l).cloned())
    }
    fn tickets(&self, l: &[u8; 16]) -> Result<Vec<DirectoryTicket>, DirectoryError> {
        let mut all: Vec<DirectoryTicket> = self.ticket(l)?.into_iter().collect();
        let extra = self.colliding.lock().unwrap();
        all.extend(extra.iter().filter(|(k, _)| k == l).map(|(_, t)| t.clone()));
        Ok(all)
    }
    fn consume_ticket_seq(&self, l: &[u8; 16], seq: u64) -> Result<bool, DirectoryError> {
        let mut extra = self.colliding.lock().unwrap();
        if let Some((_, t)) = extra.iter_mut().find(|(k, t)| k == l && t.seq == seq) {
            let first = !t.used;
            t.used = true;
            return Ok(first);
        }
        drop(extra);
        self.consume_ticket(l)
    }
    fn consume_ticket(&self, l: &[u8; 16]) -> Result<bool, DirectoryError> {
        let mut t = self.tickets.lock().unwrap();
        match t.get_mut(l) {
            Some(t) if !t.used => {
                t.used = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemDirectory {
    /// Files a ticket and, as the ingest does (`apply.rs`, `login_ticket`), creates or
    /// refreshes its person: a new one is known from the ticket only (`provisioned =
    /// false`, `valid_until` = the code's expiry); a known one gets the ticket's claims
    /// and seq and keeps its revocation and its provisioned mark.
    pub fn file_ticket(&self, locator: [u8; 16], ticket: DirectoryTicket) {
        let sub = local_subject(&ticket.issuer, &ticket.subject);
        let mut users = self.users.lock().unwrap();
        let user = users.entry(sub).or_insert_with(|| DirectoryUser {
            issuer: ticket.issuer.clone(),
            subject: ticket.subject.clone(),
            claims: ticket.claims.clone(),
            valid_until: ticket.expires_at,
            provisioned_seq: ticket.seq,
            revoked: false,
            provisioned: false,
        });
        user.claims = ticket.claims.clone();
        user.valid_until = user.valid_until.max(ticket.expires_at);
        user.provisioned_seq = ticket.seq;
        drop(users);
        let previous = self.tickets.lock().unwrap().insert(locator, ticket);
        assert!(
            previous.is_none(),
            "2^25 locators: a collision in a test run is a bug"
        );
    }
}

/// Cheap argon2id (tests only): the provider reads the cost from the PHC string.
pub fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"airlock-test-salt").unwrap();
    a.hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

pub struct Op {
    pub base: String,
    pub provider: Provider,
    pub clock: Clock,
    pub dir: Arc<MemDirectory>,
    /// When set, the provider reads the real directory of this feed (frames applied to a
    /// store) and [`Op::ticket`] files its tickets there; `dir` is then unused.
    pub feed: Option<Arc<FrameFeed>>,
    /// The provider's sled database (on PostgreSQL: the database URL, for `--pg-url`).
    pub db_path: std::path::PathBuf,
    pub _tmp: Arc<tempfile::TempDir>,
}

/// Frames applied to a real store by the ingest's state machine (`apply_batch`, signed by
/// a sender key), read back through the real [`StoreDirectory`]: the receiver's directory
/// without the link.
///
/// [`StoreDirectory`]: airlock_receiver::identity_directory::StoreDirectory
pub struct FrameFeed {
    chain: Mutex<airlock_tests::peer::Chain>,
    apply: Box<dyn Fn(&airlock_receiver::apply::AcceptedFrame) + Send + Sync>,
    pub directory: Arc<dyn IdentityDirectory>,
}

impl FrameFeed {
    pub fn on<S: airlock_receiver::store::Store>(store: Arc<S>) -> Arc<FrameFeed> {
        use airlock_protocol::keys::{LinkKey, SignerKey};
        let sealer =
            airlock_protocol::seal::Sealer::new(SignerKey::generate(), LinkKey::generate(7));
        let directory = Arc::new(airlock_receiver::identity_directory::StoreDirectory::new(
            store.clone(),
        ));
        Arc::new(FrameFeed {
            chain: Mutex::new(airlock_tests::peer::Chain::new(sealer)),
            apply: Box::new(move |f| {
                store
                    .transact(|t| airlock_receiver::apply::apply_batch(t, std::slice::from_ref(f)))
                    .unwrap();
            }),
            directory,
        })
    }

    /// A sled store in `path`.
    pub fn sled(path: &std::path::Path) -> Arc<FrameFeed> {
        Self::on(Arc::new(
            airlock_receiver::store::SledStore::open(path).unwrap(),
        ))
    }

    /// Signs `body` as the sender's next frame and applies it.
    pub fn apply(&self, body: airlock_protocol::message::Body, issued_at: u64) {
        let (env, signed) = self
            .chain
            .lock()
            .unwrap()
            .sign_next(body, issued_at)
            .unwrap();
        let frame =
            airlock_receiver::apply::AcceptedFrame::new(env, signed.sign1, issued_at * 1000);
        (self.apply)(&frame);
    }
}

/// The approval every test frame carries.
pub fn test_approval(at: u64) -> airlock_protocol::message::Approval {
    airlock_protocol::message::Approval {
        approver: "approver@example.org".into(),
        approved_at: at,
        ticket_ref: "CHG-1".into(),
    }
}

pub const CONF_SECRET: &str = "s3cret-of-the-confidential-app";

/// Config with a public client `spa` (ES256), a confidential `app` (RS256, back-channel
/// to `bc`) and a confidential EdDSA client `ed`.
pub fn config(port: u16, bc: Option<&str>) -> OidcConfig {
    let bc_line = bc
        .map(|u| format!("backchannel_logout_uri = \"{u}\""))
        .unwrap_or_default();
    let text = format!(
        r#"
        issuer = "http://127.0.0.1:{port}"
        listen = "127.0.0.1:{port}"
        allow_plain_http = true
        key_rotation_delay_secs = 100
        max_attempts_per_locator = 3
        max_attempts_per_address = 6
        lockout_secs = 600
        [[clients]]
        client_id = "spa"
        public = true
        redirect_uris = ["http://127.0.0.1:1/cb"]
        post_logout_redirect_uris = ["http://127.0.0.1:1/bye"]
        id_token_signed_response_alg = "ES256"
        [[clients]]
        client_id = "app"
        client_secret_hash = "{hash}"
        redirect_uris = ["http://127.0.0.1:2/cb"]
        post_logout_redirect_uris = ["http://127.0.0.1:2/bye"]
        {bc_line}
        [[clients]]
        client_id = "ed"
        client_secret_hash = "{hash}"
        redirect_uris = ["http://127.0.0.1:3/cb"]
        scopes = ["openid", "email"]
        id_token_signed_response_alg = "EdDSA"
        "#,
        hash = argon2_hash(CONF_SECRET)
    );
    toml::from_str(&text).unwrap()
}

impl Op {
    pub async fn start(bc: Option<&str>) -> Op {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let clock = Clock::manual(now());
        let dir = Arc::new(MemDirectory::default());
        let db_path = tmp.path().join("db");
        Self::start_with(tmp, db_path, clock, dir, bc).await
    }

    pub async fn start_with(
        tmp: Arc<tempfile::TempDir>,
        db_path: std::path::PathBuf,
        clock: Clock,
        dir: Arc<MemDirectory>,
        bc: Option<&str>,
    ) -> Op {
        Self::start_custom(tmp, db_path, clock, dir, bc, |_| {}).await
    }

    /// Like [`Op::start_with`], with a last word on the config.
    pub async fn start_custom(
        tmp: Arc<tempfile::TempDir>,
        db_path: std::path::PathBuf,
        clock: Clock,
        dir: Arc<MemDirectory>,
        bc: Option<&str>,
        edit: impl FnOnce(&mut OidcConfig),
    ) -> Op {
        Self::start_fed(tmp, db_path, clock, dir, None, bc, edit).await
    }

    /// Like [`Op::start_custom`]; with a `feed`, the provider reads its real directory.
    pub async fn start_fed(
        tmp: Arc<tempfile::TempDir>,
        db_path: std::path::PathBuf,
        clock: Clock,
        dir: Arc<MemDirectory>,
        feed: Option<Arc<FrameFeed>>,
        bc: Option<&str>,
        edit: impl FnOnce(&mut OidcConfig),
    ) -> Op {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let db = sled::open(&db_path).unwrap();
        let directory: Arc<dyn IdentityDirectory> = match &feed {
            Some(f) => f.directory.clone(),
            None => dir.clone(),
        };
        let deps = OidcDeps {
            db,
            directory,
            clock: clock.clone(),
        };
        let mut cfg = config(port, bc);
        edit(&mut cfg);
        let provider = Provider::new(cfg, deps).unwrap();
        tokio::spawn(provider.clone().serve_on(listener));
        Op {
            base: format!("http://127.0.0.1:{port}"),
            provider,
            clock,
            dir,
            feed,
            db_path,
            _tmp: tmp,
        }
    }

    /// Files a LoginTicket for (issuer, subject); returns the transfer code as shown.
    pub fn ticket(&self, subject: &str, ttl: u64) -> String {
        let code = TransferCode::generate(&mut rand::thread_rng());
        let claims = Claims {
            email: Some(format!("{subject}@example.org")),
            email_verified: Some(true),
            name: Some(format!("User {subject}")),
            groups: vec!["staff".into()],
            ..Claims::default()
        };
        if let Some(feed) = &self.feed {
            let now = self.clock.now();
            feed.apply(
                airlock_protocol::message::Body::LoginTicket(
                    airlock_protocol::message::LoginTicket {
                        locator: code.locator(),
                        code_hash: argon2_hash(&code.secret()),
                        issuer: ISSUER_OUT.into(),
                        subject: subject.into(),
                        claims,
                        approval: test_approval(now),
                        expires_at: now + ttl,
                    },
                ),
                now,
            );
            return code.display();
        }
        let ticket = DirectoryTicket {
            code_hash: argon2_hash(&code.secret()),
            issuer: ISSUER_OUT.into(),
            subject: subject.into(),
            claims,
            expires_at: self.clock.now() + ttl,
            seq: 42,
            used: false,
        };
        self.dir.file_ticket(code.locator(), ticket);
        code.display()
    }

    pub fn sub(subject: &str) -> String {
        local_subject(ISSUER_OUT, subject)
    }

    pub async fn jwks(&self) -> Value {
        let r = Browser::default().get(&format!("{}/jwks", self.base)).await;
        serde_json::from_str(&r.body).unwrap()
    }
}

pub use airlock_tests::http::Response as Resp;
pub use airlock_tests::ops::unix_now as now;

/// One HTTP/1.1 exchange (Connection: close): [`airlock_tests::http::request`].
pub async fn http(method: &str, url: &str, headers: &[(&str, String)], body: Option<&str>) -> Resp {
    airlock_tests::http::request(method, url, headers, body)
        .await
        .unwrap()
}

/// A browser: a cookie jar and a client address (all 127.0.0.1 here).
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: HashMap<String, String>,
}

impl Browser {
    fn cookie_header(&self) -> Vec<(&'static str, String)> {
        if self.cookies.is_empty() {
            return vec![];
        }
        let v: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![("Cookie", v.join("; "))]
    }
    fn absorb(&mut self, r: &Resp) {
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let first = v.split(';').next().unwrap();
                let (name, value) = first.split_once('=').unwrap();
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
    }
    pub async fn get(&mut self, url: &str) -> Resp {
        let r = http("GET", url, &self.cookie_header(), None).await;
        self.absorb(&r);
        r
    }
    pub async fn post(&mut self, url: &str, body: &str) -> Resp {
        let r = http("POST", url, &self.cookie_header(), Some(body)).await;
        self.absorb(&r);
        r
    }
}

/// Value of hidden input `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

pub fn query_param(url: &str, k: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (a, b) = kv.split_once('=')?;
        (a == k).then(|| airlock_receiver::oidc::util::url_decode(b).unwrap())
    })
}

pub fn enc(s: &str) -> String {
    airlock_receiver::oidc::util::url_encode(s)
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce(tag: &str) -> Pkce {
    let verifier = format!("{tag}-verifier-with-enough-entropy-0123456789abcdef");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

pub struct AuthParams<'a> {
    pub client: &'a str,
    pub redirect: &'a str,
    pub scope: &'a str,
    pub pkce: Option<&'a Pkce>,
    pub extra: &'a str,
}

pub fn authorize_url(op: &Op, a: &AuthParams<'_>) -> String {
    let mut u = format!(
        "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=st-1&nonce=n-1",
        op.base,
        a.client,
        enc(a.redirect),
        enc(a.scope)
    );
    if let Some(p) = a.pkce {
        u.push_str(&format!(
            "&code_challenge={}&code_challenge_method=S256",
            p.challenge
        ));
    }
    u.push_str(a.extra);
    u
}

/// Authorize -> login page -> code typed -> callback URL.
pub async fn login(op: &Op, b: &mut Browser, a: &AuthParams<'_>, code: &str) -> String {
    let r = b.get(&authorize_url(op, a)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with("/login?txn="), "{}", r.location());
    submit_code(op, b, r.location(), code).await
}

pub async fn submit_code(op: &Op, b: &mut Browser, login_path: &str, code: &str) -> String {
    let page = b.get(&format!("{}{}", op.base, login_path)).await;
    assert_eq!(page.status, 200);
    let form = format!(
        "txn={}&csrf={}&method=transfer_code&code={}",
        hidden(&page.body, "txn"),
        hidden(&page.body, "csrf"),
        enc(code)
    );
    let r = b.post(&format!("{}/login", op.base), &form).await;
    assert_eq!(r.status, 303, "login failed: {}", r.body);
    r.location().to_string()
}

pub fn basic(id: &str, secret: &str) -> (&'static str, String) {
    (
        "Authorization",
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
    )
}

pub async fn token(op: &Op, auth: Option<(&'static str, String)>, body: &str) -> Resp {
    let h: Vec<(&str, String)> = auth.into_iter().collect();
    http("POST", &format!("{}/token", op.base), &h, Some(body)).await
}

/// Verifies a JWT against the provider's JWKS; returns (header, claims).
pub async fn verify_jwt(
    op: &Op,
    token: &str,
    alg: jsonwebtoken::Algorithm,
) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, alg);
    let kid = header.kid.clone().expect("kid always set");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(op.jwks().await).unwrap();
    let jwk = jwks.find(&kid).expect("kid published in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_aud = false;
    v.set_issuer(&[&op.base]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
    (header, data.claims)
}

/// at_hash computed by hand: left half of SHA-256 (SHA-512 for EdDSA), base64url.
pub fn at_hash(alg: jsonwebtoken::Algorithm, access: &str) -> String {
    let full = match alg {
        jsonwebtoken::Algorithm::EdDSA => sha2::Sha512::digest(access.as_bytes()).to_vec(),
        _ => Sha256::digest(access.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&full[..full.len() / 2])
}

pub async fn introspect(op: &Op, tok: &str) -> Value {
    let r = http(
        "POST",
        &format!("{}/introspect", op.base),
        &[basic("app", CONF_SECRET)],
        Some(&format!("token={}", enc(tok))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The confidential `app`'s registered redirect URI.
pub const APP_CB: &str = "http://127.0.0.1:2/cb";

/// Signs `subject` in to the confidential `app` asking for `scope`; returns the token
/// response.
pub async fn app_login(op: &Op, b: &mut Browser, subject: &str, scope: &str) -> Value {
    let a = AuthParams {
        client: "app",
        redirect: APP_CB,
        scope,
        pkce: None,
        extra: "",
    };
    let back = login(op, b, &a, &op.ticket(subject, 300)).await;
    redeem_app_code(op, &back, APP_CB).await
}

/// Redeems the code of `callback` for the confidential `app`, which asked with `redirect`;
/// returns the token response.
pub async fn redeem_app_code(op: &Op, callback: &str, redirect: &str) -> Value {
    let code = query_param(callback, "code").expect("a code in the callback");
    let r = token(
        op,
        Some(basic("app", CONF_SECRET)),
        &format!(
            "grant_type=authorization_code&code={}&redirect_uri={}",
            enc(&code),
            enc(redirect)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// A provider whose `app` has the back-channel logout URI `bc`, tried `attempts` times
/// with retries 20 ms apart (doubling); `ca` is the bundle an https URI is checked with.
pub async fn op_with_backchannel(bc: &str, attempts: u32, ca: Option<&std::path::Path>) -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let ca = ca.map(std::path::Path::to_path_buf);
    Op::start_custom(
        tmp,
        db,
        Clock::manual(now()),
        Arc::new(MemDirectory::default()),
        Some(bc),
        move |c| {
            c.backchannel_ca_file = ca;
            c.backchannel_logout_attempts = attempts;
            c.backchannel_logout_first_retry_ms = 20;
        },
    )
    .await
}

/// Polls until `done` (a wait with a generous bound, not a timing assertion).
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("not reached in 30 s: {what}");
}

/// Serves an inside app on a loopback port; returns its back-channel logout URI.
pub async fn serve_app(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// A tiny inside app that records back-channel logout tokens.
pub async fn backchannel_receiver() -> (
    String,
    Arc<Mutex<Vec<String>>>,
    tokio::sync::mpsc::Receiver<()>,
) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let g = got.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            let tx = tx.clone();
            async move {
                let token = body.strip_prefix("logout_token=").unwrap_or("").to_string();
                g.lock()
                    .unwrap()
                    .push(airlock_receiver::oidc::util::url_decode(&token).unwrap());
                let _ = tx.send(()).await;
                "ok"
            }
        }),
    );
    let url = serve_app(app).await;
    (url, got, rx)
}

/// Waits for the next back-channel logout call to arrive.
pub async fn wait(rx: &mut tokio::sync::mpsc::Receiver<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("back-channel call arrives");
}
