//! Key rotation on a running receiver: `keys rotate` while the daemon holds the store
//! (through its ops listener), and the scheduled rotation (`key_rotation_interval_days`):
//! publish before use, retire after every token the old key signed has expired.

use crate::common::{LinkKind, Setup, free_tcp_port};
use crate::oidc_support;

use oidc_support::*;

const CB: &str = "http://127.0.0.1:1/cb";

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

/// The kid of the ID token of a fresh sign-in.
async fn signing_kid(op: &Op, tag: &str) -> String {
    let p = pkce(tag);
    let a = AuthParams {
        client: "spa",
        redirect: CB,
        scope: "openid",
        pkce: Some(&p),
        extra: "",
    };
    let cb = login(op, &mut Browser::default(), &a, &op.ticket(tag, 300)).await;
    let code = query_param(&cb, "code").unwrap();
    let t = token(
        op,
        None,
        &format!(
            "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
            enc(&code),
            enc(CB),
            p.verifier
        ),
    )
    .await
    .json();
    jsonwebtoken::decode_header(t["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap()
}

/// With `key_rotation_interval_days = 1` and a test clock: nothing before a day; then new
/// keys are in the JWKS at once but sign only after `key_rotation_delay_secs` (100 s); the
/// old keys stay published until the tokens they signed have expired, then leave.
#[tokio::test]
async fn scheduled_rotation_publishes_then_signs_then_retires() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let clock = airlock_receiver::oidc::util::Clock::manual(now());
    let op = Op::start_custom(tmp, db, clock, Default::default(), None, |c| {
        c.key_rotation_interval_days = 1;
    })
    .await;
    let before = kids(&op.jwks().await);
    assert_eq!(before.len(), 3);
    let old = signing_kid(&op, "r1").await;
    op.clock.advance(86_399);
    op.provider.maintain().unwrap();
    assert_eq!(kids(&op.jwks().await), before, "not due yet");

    op.clock.advance(1);
    op.provider.maintain().unwrap();
    let during = kids(&op.jwks().await);
    assert_eq!(during.len(), 6, "new keys published next to the old");
    assert_eq!(op.provider.metric("key_rotations", "scheduled"), 1);
    assert_eq!(
        signing_kid(&op, "r2").await,
        old,
        "not used before the delay"
    );
    op.provider.maintain().unwrap();
    assert_eq!(
        kids(&op.jwks().await).len(),
        6,
        "no second rotation while one is pending"
    );

    op.clock.advance(100);
    let new = signing_kid(&op, "r3").await;
    assert_ne!(new, old);
    assert!(during.contains(&new) && !before.contains(&new));
    // The old key stays while tokens it signed (600 s) may be alive, plus a margin.
    op.clock.advance(600);
    op.provider.maintain().unwrap();
    assert!(kids(&op.jwks().await).contains(&old), "old key kept");
    op.clock.advance(301);
    op.provider.maintain().unwrap();
    let after = kids(&op.jwks().await);
    assert_eq!(after.len(), 3);
    assert!(!after.contains(&old) && after.contains(&new));
}

/// `airlock-receiver keys rotate` while the daemon runs (it holds the sled store): the
/// daemon rotates through its ops listener, the new kids are in the provider's JWKS at
/// once, and a second rotation while the first is pending is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_works_on_a_running_receiver() {
    let port = free_tcp_port();
    let extra = format!(
        "[oidc]\nissuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\
         allow_plain_http = true\nkey_rotation_delay_secs = 3600\n\
         [[oidc.clients]]\nclient_id = \"spa\"\npublic = true\nredirect_uris = [\"{CB}\"]\n"
    );
    let setup = Setup::with_extra(LinkKind::Udp, &extra);
    let mut daemon = setup.start();
    let jwks_url = format!("http://127.0.0.1:{port}/jwks");
    let mut before = None;
    for _ in 0..600 {
        if let Ok(r) = airlock_tests::http::request("GET", &jwks_url, &[], None).await
            && r.status == 200
        {
            before = Some(kids(&r.json()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = before.expect("the provider answers");
    assert_eq!(before.len(), 3);

    let (ok, out, err) = tokio::task::spawn_blocking({
        let setup_cfg = setup.config.clone();
        move || cli_rotate(&setup_cfg)
    })
    .await
    .unwrap();
    assert!(ok, "keys rotate on a running receiver: {out}{err}");
    assert!(out.contains("rotated by the running daemon"), "{out}");
    let after = kids(
        &airlock_tests::http::request("GET", &jwks_url, &[], None)
            .await
            .unwrap()
            .json(),
    );
    assert_eq!(after.len(), 6);
    for k in after.iter().filter(|k| !before.contains(k)) {
        assert!(out.contains(k.as_str()), "{k} named in {out}");
    }

    let (ok, out, err) = tokio::task::spawn_blocking({
        let setup_cfg = setup.config.clone();
        move || cli_rotate(&setup_cfg)
    })
    .await
    .unwrap();
    assert!(!ok, "a second rotation while one is pending: {out}");
    assert!(err.contains("already under way"), "{err}");
    daemon.stop();
}

fn cli_rotate(config: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-receiver"))
        .args(["keys", "rotate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
