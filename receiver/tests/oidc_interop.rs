//! Harness for the JavaScript interop tests in `tests/interop/` (openid-client v6 and a
//! real Chromium through playwright-core). openid-client and the passkey flow run against
//! the real daemons (`airlock_tests::deployment`), the login-page test against an
//! in-process provider. Ignored by default: they need `npm ci` in tests/interop and
//! tests/sample-app and the Debian `chromium` package. Run with
//! `cargo test -p airlock-receiver --test integration -- oidc_interop:: --ignored --test-threads=1`.

use crate::oidc_support;

use std::path::PathBuf;
use std::sync::Arc;

use airlock_receiver::oidc::config::ClientConfig;
use airlock_receiver::oidc::util::Clock;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect};
use oidc_support::*;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

async fn run_node(script: &str, envs: &[(&str, String)]) {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules").exists(),
        "run `npm ci` (or `npm install`) in {} first",
        dir.display()
    );
    let mut cmd = std::process::Command::new("node");
    cmd.arg("--test").arg(script).current_dir(&dir);
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    // The provider runs on this test's runtime: wait for node on a blocking thread.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed");
}

/// openid-client v6 (tests/interop/openid-client.test.mjs) against the real binaries: the
/// code flow, PAR (`buildAuthorizationUrlWithPAR`, by a client that must push), client
/// credentials (`clientCredentialsGrant`) and the device flow (`initiateDeviceAuthorization`
/// / `pollDeviceAuthorizationGrant`) all talk to `airlock-receiver run`, configured from
/// TOML as an operator would, whose users and transfer codes came from `airlock-sender run`
/// over loopback UDP. The daemon runs on the system clock, which the library's real-time
/// device polling needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs npm ci in tests/interop"]
async fn openid_client_v6() {
    let port = airlock_tests::ops::free_tcp_port().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let hash = argon2_hash(CONF_SECRET);
    // spa: public (refused client credentials and the device grant); app: confidential,
    // also a service with client credentials; pushed: confidential, must use PAR;
    // cli: a public device client. The redirect URIs are the script's.
    let receiver_extra = format!(
        r#"
[oidc]
issuer = "{base}"
listen = "127.0.0.1:{port}"
allow_plain_http = true

[oidc.device]
poll_interval_secs = 1

[[oidc.clients]]
client_id = "spa"
public = true
redirect_uris = ["http://127.0.0.1:1/cb"]

[[oidc.clients]]
client_id = "app"
client_secret_hash = "{hash}"
redirect_uris = ["http://127.0.0.1:2/cb"]
post_logout_redirect_uris = ["http://127.0.0.1:2/bye"]
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
client_credentials_scopes = ["orders.read"]
client_credentials_audience = ["https://orders.inside"]

[[oidc.clients]]
client_id = "pushed"
client_secret_hash = "{hash}"
redirect_uris = ["http://127.0.0.1:2/cb"]
require_pushed_authorization_requests = true

[[oidc.clients]]
client_id = "cli"
public = true
grant_types = ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access"]
"#
    );
    let d = real_daemons(receiver_extra).await;
    let ticket = |subject: &str| {
        serde_json::json!({
            "kind": "login_ticket", "issuer": airlock_tests::deployment::ISSUER,
            "subject": subject,
            "claims": {"email": format!("{subject}@example.org"), "email_verified": true},
            "approver": "grace.hopper@example.org", "ticket_ref": "CHG-INTEROP",
        })
    };
    let codes = ferry(&d, "tickets.jsonl", &[ticket("nina"), ticket("nina")]).await;
    let device_codes = ferry(&d, "device.jsonl", &[ticket("dan"), ticket("dan")]).await;
    assert_eq!(
        (codes.len(), device_codes.len()),
        (2, 2),
        "one code per ticket"
    );
    run_node(
        "openid-client.test.mjs",
        &[
            ("AIRLOCK_ISSUER", base),
            ("AIRLOCK_CODES", codes.join(",")),
            ("AIRLOCK_SECRET", CONF_SECRET.into()),
            ("AIRLOCK_DEVICE_CODES", device_codes.join(",")),
        ],
    )
    .await;
    let m = d.receiver_metrics().await.unwrap();
    let count =
        |name: &str, reason: &str| airlock_tests::ops::metric_sum(&m, name, &[("reason", reason)]);
    // What the script did was seen by the daemon, not by a test double.
    assert_eq!(count("airlock_oidc_par_requests_total", "ok"), 1.0);
    assert_eq!(
        count("airlock_oidc_authorize_errors_total", "par_required"),
        1.0
    );
    assert_eq!(
        count(
            "airlock_oidc_client_credentials_refusals_total",
            "public_client"
        ),
        1.0
    );
    assert_eq!(count("airlock_oidc_device_grants_total", "approved"), 1.0);
    assert_eq!(count("airlock_oidc_device_grants_total", "denied"), 1.0);
}

/// The real daemons on a clean loopback link: `airlock-receiver run` with `receiver_extra`
/// appended to its config (the `[oidc]` section), and `airlock-sender run`.
async fn real_daemons(receiver_extra: String) -> airlock_tests::deployment::Deployment {
    use airlock_tests::deployment::{Deployment, Options};
    let mut d = Deployment::create(&Options {
        receiver_extra,
        ..Options::default()
    })
    .await
    .unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    d
}

/// Submits approval records through the sender (`airlock-sender submit`), waits until the
/// receiver has all of them, and returns the transfer codes of the login tickets in order.
async fn ferry(
    d: &airlock_tests::deployment::Deployment,
    name: &str,
    records: &[serde_json::Value],
) -> Vec<String> {
    use std::time::Duration;
    let out = d.submit(name, records).await.unwrap();
    let status = d.wait_sender_idle(Duration::from_secs(60)).await.unwrap();
    let sent = status["sent_through"].as_u64().unwrap();
    d.wait_no_gaps(sent, Duration::from_secs(60)).await.unwrap();
    transfer_codes(&out.stdout)
}

/// A provider for the device flow: the library polls in real time, so this one runs on
/// the system clock (a manual clock that stands still would answer every poll but the
/// first with slow_down), with a 1 s interval and a public device client `cli`.
async fn device_provider() -> Op {
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    Op::start_custom(tmp, db, Clock::system(), Arc::default(), None, |c| {
        c.device.poll_interval_secs = 1;
        c.clients.push(
            toml::from_str(
                "client_id = \"cli\"\npublic = true\ngrant_types = [\"urn:ietf:params:oauth:grant-type:device_code\", \"refresh_token\"]\nscopes = [\"openid\", \"profile\", \"email\", \"offline_access\"]\n",
            )
            .unwrap(),
        );
    })
    .await
}

/// A tiny inside app: `/` sends the browser to the provider, `/cb` redeems the code.
#[derive(Clone)]
struct App {
    /// Where the browser is sent (the issuer).
    issuer: String,
    /// Where the app itself calls the provider (its loopback address).
    api: String,
    me: String,
}

const VERIFIER: &str = "interop-browser-verifier-0123456789abcdefghijklmnop";

async fn app_home(State(a): State<App>) -> impl IntoResponse {
    let p = pkce_from(VERIFIER);
    Redirect::to(&format!(
        "{}/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid%20profile%20email&state=s1&code_challenge={}&code_challenge_method=S256",
        a.issuer,
        enc(&format!("{}/cb", a.me)),
        p.challenge
    ))
}

async fn app_callback(
    State(a): State<App>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Html<String> {
    let Some(code) = q.get("code") else {
        return Html(format!("<h1>Error</h1><p>{:?}</p>", q.get("error")));
    };
    let body = format!(
        "grant_type=authorization_code&client_id=web&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(code),
        enc(&format!("{}/cb", a.me))
    );
    let r = http("POST", &format!("{}/token", a.api), &[], Some(&body)).await;
    let t = r.json();
    let ui = http(
        "GET",
        &format!("{}/userinfo", a.api),
        &[(
            "Authorization",
            format!("Bearer {}", t["access_token"].as_str().unwrap_or("")),
        )],
        None,
    )
    .await
    .json();
    Html(format!(
        "<!doctype html><title>Inside app</title><h1 id=\"who\">Logged in as {}</h1>",
        ui["name"].as_str().unwrap_or("?")
    ))
}

fn pkce_from(verifier: &str) -> Pkce {
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier: verifier.into(),
        challenge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs npm ci in tests/interop and the Debian chromium package"]
async fn chromium_login_page() {
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", app_listener.local_addr().unwrap());
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let cb = format!("{me}/cb");
    let op = Op::start_custom(tmp, db, Clock::manual(now()), Arc::default(), None, |c| {
        c.clients.push(web_client(cb))
    })
    .await;
    let app = axum::Router::new()
        .route("/", axum::routing::get(app_home))
        .route("/cb", axum::routing::get(app_callback))
        .with_state(App {
            issuer: op.base.clone(),
            api: op.base.clone(),
            me: me.clone(),
        });
    tokio::spawn(async move { axum::serve(app_listener, app).await.unwrap() });
    // The good code, an expired one and a used one (for the error-state screenshots).
    let expired = op.ticket("Eve", 0);
    let used = op.ticket("Ugo", 300);
    let locator = airlock_receiver::oidc::transfer_code::TransferCode::parse(&used)
        .unwrap()
        .locator();
    op.dir
        .tickets
        .lock()
        .unwrap()
        .get_mut(&locator)
        .unwrap()
        .used = true;
    let codes = [op.ticket("Bea", 300), expired, used].join(",");
    let shots = std::env::var("AIRLOCK_SCREENSHOTS")
        .unwrap_or_else(|_| interop_dir().join("screenshots").display().to_string());
    // The device flow: the sample app's CLI (tests/sample-app/device-cli.mjs) polls in real time.
    let device = device_provider().await;
    let device_code = device.ticket("Cleo", 300);
    run_node(
        "browser.test.mjs",
        &[
            ("AIRLOCK_ISSUER", op.base.clone()),
            ("AIRLOCK_APP", me),
            ("AIRLOCK_CODES", codes),
            ("AIRLOCK_SCREENSHOTS", shots),
            ("AIRLOCK_DEVICE_ISSUER", device.base.clone()),
            ("AIRLOCK_DEVICE_CODES", device_code),
        ],
    )
    .await;
}

fn web_client(cb: String) -> ClientConfig {
    // From TOML, as an operator writes it: every other key keeps its default.
    toml::from_str(&format!(
        "client_id = \"web\"\npublic = true\nredirect_uris = [{cb:?}]\nscopes = [\"openid\", \"profile\", \"email\"]\n"
    ))
    .unwrap()
}

/// Passkeys in Chromium with a virtual authenticator (tests/interop/passkey.test.mjs),
/// against the real binaries: `airlock-sender run` seals a Provision and a LoginTicket for
/// Pia and sends them over loopback UDP to `airlock-receiver run` (ingest and the OpenID
/// provider in one daemon), which verifies and applies them. The relying party is the
/// project's sample app (tests/sample-app/app.mjs: openid-client, a confidential client
/// that validates the ID token, its signature included), so a strict OpenID library checks
/// the tokens of the transfer-code and of the passkey sign-in. Later the script submits a
/// Revoke with the same sender (`airlock-sender submit`) and waits on the receiver's
/// `/metrics` until the Revoke has been applied. The issuer is `http://localhost:PORT`:
/// browsers refuse IP addresses as WebAuthn rp ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs npm ci in tests/interop and tests/sample-app, and the Debian chromium package"]
async fn chromium_passkeys() {
    use airlock_tests::deployment::ISSUER;
    use airlock_tests::ops::metric_sum;
    use airlock_tests::supervisor::{Child, ChildSpec};
    use std::time::Duration;

    let sample_app = interop_dir().join("../sample-app");
    assert!(
        sample_app.join("node_modules").exists(),
        "run `npm ci` in {} first",
        sample_app.display()
    );
    let app_addr = airlock_tests::ops::free_tcp_port().unwrap();
    let me = format!("http://{app_addr}");
    let port = airlock_tests::ops::free_tcp_port().unwrap().port();
    let issuer = format!("http://localhost:{port}");
    let hash = argon2_hash(CONF_SECRET);
    // The sample app as scripts/demo registers it.
    let receiver_extra = format!(
        r#"
[oidc]
issuer = "{issuer}"
listen = "127.0.0.1:{port}"
allow_plain_http = true

[oidc.passkeys]
enabled = true

[[oidc.clients]]
client_id = "sample-app"
client_secret_hash = "{hash}"
redirect_uris = ["{me}/callback"]
post_logout_redirect_uris = ["{me}/"]
scopes = ["openid", "profile", "email", "groups"]
"#
    );
    let d = real_daemons(receiver_extra).await;

    // Pia is approved outside (Provision) and asks for a transfer code (LoginTicket).
    let claims = serde_json::json!({
        "email": "pia@example.org", "email_verified": true, "name": "User Pia",
    });
    let record = |kind: &str| {
        serde_json::json!({
            "kind": kind, "issuer": ISSUER, "subject": "pia", "claims": claims,
            "approver": "grace.hopper@example.org", "ticket_ref": "CHG-PIA",
        })
    };
    let mut provision = record("provision");
    provision["valid_until"] = (now() + 86_400).into();
    let codes = ferry(&d, "pia.jsonl", &[provision, record("login_ticket")]).await;
    assert_eq!(codes.len(), 1, "one code for the one ticket");
    assert_eq!(d.users().await.unwrap().len(), 1, "Pia is provisioned");
    // The Revoke the script submits through the sender once the passkey has worked.
    let revoke = d.path().join("revoke-pia.json");
    std::fs::write(
        &revoke,
        serde_json::json!({
            "kind": "revoke", "issuer": ISSUER, "subject": "pia",
            "approver": "grace.hopper@example.org", "ticket_ref": "CHG-PIA-LEFT", "reason": "left",
        })
        .to_string(),
    )
    .unwrap();

    let mut app = Child::start(
        ChildSpec::new(
            "sample-app",
            PathBuf::from("node"),
            d.path().join("sample-app.log"),
        )
        .arg("app.mjs")
        .cwd(&sample_app)
        .env("AIRLOCK_ISSUER", &issuer)
        .env("APP_CLIENT_ID", "sample-app")
        .env("APP_CLIENT_SECRET", CONF_SECRET)
        .env("APP_LISTEN", app_addr.to_string()),
    )
    .unwrap();
    app.wait_for_port(app_addr, Duration::from_secs(60))
        .await
        .unwrap();
    let shots = std::env::var("AIRLOCK_SCREENSHOTS")
        .unwrap_or_else(|_| interop_dir().join("screenshots").display().to_string());
    let sender = airlock_tests::supervisor::binary("airlock-sender").unwrap();
    run_node(
        "passkey.test.mjs",
        &[
            ("AIRLOCK_ISSUER", issuer),
            ("AIRLOCK_APP", me.clone()),
            ("AIRLOCK_CODE", codes[0].clone()),
            ("AIRLOCK_SENDER", sender.display().to_string()),
            (
                "AIRLOCK_SENDER_CONFIG",
                d.sender_config.display().to_string(),
            ),
            ("AIRLOCK_REVOKE_RECORD", revoke.display().to_string()),
            ("AIRLOCK_RECEIVER_OPS", format!("http://{}", d.receiver_ops)),
            ("AIRLOCK_SCREENSHOTS", shots),
        ],
    )
    .await;
    let m = d.receiver_metrics().await.unwrap();
    let count = |name: &str, reason: &str| metric_sum(&m, name, &[("reason", reason)]);
    assert_eq!(count("airlock_oidc_passkey_sign_ins_total", "ok"), 1.0);
    assert_eq!(
        count("airlock_oidc_passkey_refusals_total", "disabled"),
        1.0
    );
    assert_eq!(
        count("airlock_oidc_passkeys_disabled_total", "revoked"),
        1.0
    );
}

/// The codes in `airlock-sender submit`'s lines for login tickets, in order.
fn transfer_codes(stdout: &str) -> Vec<String> {
    stdout
        .split("transfer code ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
