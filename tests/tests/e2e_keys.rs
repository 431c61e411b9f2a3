//! The signer key ceremony over the link with the real binaries: `keys announce` (signed by
//! the old key), switch the sender to the new key, `keys retire` of the old kid (signed by
//! the new one). Frames of the new key are applied; frames of the retired kid are refused.

use std::time::Duration;

use airlock_protocol::keys::SignerPublicKey;
use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;
use airlock_tests::supervisor;

/// Points `[keys] signer` of the sender's config at `pem` and restarts the sender.
async fn switch_signer(d: &mut Deployment, from: &str, to: &str) {
    d.stop_sender().await.unwrap();
    let text = std::fs::read_to_string(&d.sender_config).unwrap();
    let from = format!("signer = \"{from}\"");
    assert!(text.contains(&from), "{text}");
    std::fs::write(
        &d.sender_config,
        text.replace(&from, &format!("signer = \"{to}\"")),
    )
    .unwrap();
    d.restart_sender().await.unwrap();
}

async fn wait_user_count(d: &Deployment, n: usize) {
    let got = d
        .wait_users(n, Duration::from_secs(60), Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(got, n, "users: {:?}", d.users().await.unwrap());
}

fn has_user(users: &[serde_json::Value], i: u64) -> bool {
    let subject = format!("user-{i:05}");
    users.iter().any(|u| u["subject"] == subject.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_switch_retire_then_the_new_key_applies_and_the_old_is_refused() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let mut d = Deployment::create(&Options::default()).await.unwrap();
    let old = SignerPublicKey::load(&d.path().join("keys/signer.pub.pem"))
        .unwrap()
        .kid;
    let sender_bin = supervisor::binary("airlock-sender").unwrap();
    let keys2 = d.path().join("keys2").display().to_string();
    supervisor::run_ok(
        &sender_bin,
        &["keygen", "--out", &keys2],
        &[],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let new_pub = d.path().join("keys2/signer.pub.pem");
    let new = SignerPublicKey::load(&new_pub).unwrap().kid;
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;

    // The old key signs a first approval and the announcement of its successor.
    d.submit("a.jsonl", &[provision_record(0, until)])
        .await
        .unwrap();
    // Retiring the key the daemon signs with is refused before anything is queued.
    let own = d.sender_cli(&["keys", "retire", &old]).await.unwrap_err();
    assert!(format!("{own:?}").contains("key_retire_self"), "{own:?}");
    let out = d
        .sender_cli(&["keys", "announce", &new_pub.display().to_string()])
        .await
        .unwrap();
    assert!(out.stdout.contains(&new), "{}", out.stdout);
    d.submit("b.jsonl", &[provision_record(1, until)])
        .await
        .unwrap();
    wait_user_count(&d, 2).await;

    // The new key signs from here on, and retires the old one.
    switch_signer(&mut d, "keys/signer.pem", "keys2/signer.pem").await;
    d.submit("c.jsonl", &[provision_record(2, until)])
        .await
        .unwrap();
    wait_user_count(&d, 3).await;
    d.sender_cli(&["keys", "retire", &old]).await.unwrap();
    d.submit("d.jsonl", &[provision_record(3, until)])
        .await
        .unwrap();
    wait_user_count(&d, 4).await;
    let users = d.users().await.unwrap();
    let by_new = users
        .iter()
        .filter(|u| u["last"]["signer_kid"] == new.as_str())
        .count();
    assert_eq!(by_new, 2, "{users:?}");

    // A sender started again on the retired key: its frames are refused. Back on the new
    // key, a later approval arrives (the link is in order), so the one between was seen.
    let refused_before = untrusted(&d).await;
    switch_signer(&mut d, "keys2/signer.pem", "keys/signer.pem").await;
    d.submit("e.jsonl", &[provision_record(4, until)])
        .await
        .unwrap();
    d.wait_sender_idle(Duration::from_secs(60)).await.unwrap();
    switch_signer(&mut d, "keys/signer.pem", "keys2/signer.pem").await;
    d.submit("f.jsonl", &[provision_record(5, until)])
        .await
        .unwrap();
    wait_user_count(&d, 5).await;
    let users = d.users().await.unwrap();
    assert!(has_user(&users, 5), "{users:?}");
    assert!(
        !has_user(&users, 4),
        "signed by the retired kid, yet applied: {users:?}"
    );
    assert!(
        untrusted(&d).await > refused_before,
        "frames of the retired kid counted as untrusted_signer"
    );
}

async fn untrusted(d: &Deployment) -> f64 {
    let m = d.receiver_metrics().await.unwrap();
    airlock_tests::ops::metric_sum(
        &m,
        "airlock_frames_rejected_total",
        &[("reason", "untrusted_signer")],
    )
}
