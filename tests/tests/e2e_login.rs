//! After loss, duplication, reordering, corruption, replayed datagrams and a
//! receiver SIGKILL, a person still logs in through the OpenID provider — driven by the npm
//! `openid-client` (v6, strict) from tests/interop, against the real receiver binary whose
//! users and login ticket arrived over the impaired link from the real sender binary.
//!
//! Needs `npm ci` in tests/interop (./scripts/install-test-deps does it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use airlock_tests::deployment::{Deployment, ISSUER, Options, provision_record};
use airlock_tests::impair::ImpairConfig;
use airlock_tests::peer::unix_now;
use tokio::io::AsyncWriteExt;

const USERS: u64 = 300;
const SECRET: &str = "interop-secret-for-tests-only";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn free_port() -> u16 {
    airlock_tests::ops::free_tcp_port().unwrap().port()
}

/// `airlock-receiver hash-secret`, the way an operator registers a client.
async fn hash_secret() -> String {
    airlock_tests::supervisor::ensure_daemons_built().unwrap();
    let bin = airlock_tests::supervisor::binary("airlock-receiver").unwrap();
    let mut child = tokio::process::Command::new(bin)
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(SECRET.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn oidc_section(port: u16, secret_hash: &str) -> String {
    format!(
        r#"
[oidc]
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
allow_plain_http = true

[[oidc.clients]]
client_id = "app"
client_secret_hash = "{secret_hash}"
redirect_uris = ["http://127.0.0.1:2/cb"]
post_logout_redirect_uris = ["http://127.0.0.1:2/bye"]
scopes = ["openid", "profile", "email", "groups", "offline_access"]
id_token_signed_response_alg = "ES256"
"#
    )
}

fn ticket_record() -> serde_json::Value {
    serde_json::json!({
        "kind": "login_ticket", "issuer": ISSUER, "subject": "user-7",
        "claims": {"email": "user-7@example.org", "email_verified": true, "name": "User Seven", "groups": ["airlock-users"]},
        "approver": "e2e", "ticket_ref": "E2E-LOGIN"
    })
}

fn transfer_code(stdout: &str) -> String {
    let at = stdout
        .find("transfer code ")
        .unwrap_or_else(|| panic!("no transfer code in: {stdout}"));
    stdout[at + "transfer code ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_openid_client_login_after_faults() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    assert!(
        interop_dir().join("node_modules").exists(),
        "run ./scripts/install-test-deps (npm ci in tests/interop) first"
    );
    let oidc_port = free_port();
    let opts = Options {
        impair: ImpairConfig {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_depth: 8,
            corrupt: 0.01,
            ..ImpairConfig::seeded(7)
        },
        record_limit: 4000,
        repetitions: 2,
        receiver_extra: oidc_section(oidc_port, &hash_secret().await),
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();

    // A stream of approvals through the impaired link, with the receiver killed mid-way.
    let until = unix_now() + 30 * 86_400;
    let first: Vec<_> = (0..USERS / 2).map(|i| provision_record(i, until)).collect();
    d.submit("first.jsonl", &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.kill_receiver().await.unwrap();
    let second: Vec<_> = (USERS / 2..USERS)
        .map(|i| provision_record(i, until))
        .collect();
    d.submit("second.jsonl", &second).await.unwrap();
    d.restart_receiver().await.unwrap();

    // Replay everything recorded so far at the receiver: all of it must be refused.
    let relay = d.relay().unwrap();
    relay.replay_recorded().await.unwrap();

    // Fill what FEC and repetition could not, as an operator would.
    d.wait_sender_idle(Duration::from_secs(120)).await.unwrap();
    d.wait_users(
        USERS as usize,
        Duration::from_secs(20),
        Duration::from_secs(180),
    )
    .await
    .ok();
    d.resend_gaps().await.unwrap();
    assert_eq!(
        d.wait_users(
            USERS as usize,
            Duration::from_secs(30),
            Duration::from_secs(180)
        )
        .await
        .unwrap(),
        USERS as usize
    );

    // Now the just-in-time ticket, on a clean link so the test does not wait on FEC luck.
    relay.set_impairment(ImpairConfig::seeded(1)).unwrap();
    let out = d.submit("ticket.json", &[ticket_record()]).await.unwrap();
    let code = transfer_code(&out.stdout);
    d.wait_sender_idle(Duration::from_secs(60)).await.unwrap();
    let gaps = d.gaps().await.unwrap();
    let highest = gaps.signers.values().map(|s| s.highest).max().unwrap_or(0);
    d.wait_no_gaps(highest, Duration::from_secs(60))
        .await
        .unwrap();

    // The strict third-party client logs in, validates iss, refreshes, reads userinfo, logs out.
    let out = tokio::process::Command::new("node")
        // Only the browser-app flow: this deployment's provider has the one confidential
        // client and one transfer code; the whole script (PAR, client credentials, the
        // device flow) runs in `oidc_interop::openid_client_v6` against the real receiver
        // configured for them.
        .args([
            "--test",
            "--test-name-pattern",
            "code flow, iss, userinfo",
            "openid-client.test.mjs",
        ])
        .current_dir(interop_dir())
        .env("AIRLOCK_ISSUER", format!("http://127.0.0.1:{oidc_port}"))
        .env("AIRLOCK_CODES", &code)
        .env("AIRLOCK_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openid-client login failed:\n{stdout}\n{stderr}"
    );
    let metrics = d.receiver_metrics().await.unwrap();
    assert!(
        metrics.keys().any(|k| k.starts_with("airlock_oidc_")),
        "the provider's counters are on the ops listener's /metrics"
    );
    eprintln!(
        "relay: {:?}\nreplay/duplicate counters: {:?}",
        relay.stats(),
        metrics
            .iter()
            .filter(|(k, _)| k.contains("replay") || k.contains("duplicate"))
            .collect::<Vec<_>>()
    );
}
