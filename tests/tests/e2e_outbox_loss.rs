//! A sender that loses its outbox (disk failure, an old backup) starts a new chain above
//! every seq it used (a clock-derived base, prev GENESIS), under the same key: every later
//! approval arrives and is applied, and the receiver's gap report shows nothing missing.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::ops::{self, metric_sum};
use airlock_tests::peer::unix_now;

async fn submit_and_wait(d: &Deployment, name: &str, from: u64, to: u64) -> u64 {
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (from..to).map(|i| provision_record(i, until)).collect();
    d.submit(name, &records).await.unwrap();
    let got = d
        .wait_users(
            to as usize,
            Duration::from_secs(30),
            Duration::from_secs(90),
        )
        .await
        .unwrap();
    assert_eq!(got, to as usize, "approvals after the outbox loss applied");
    let last = d.wait_sender_idle(Duration::from_secs(60)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    d.wait_no_gaps(last, Duration::from_secs(60)).await.unwrap();
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_outbox_starts_a_new_chain_and_every_later_approval_is_applied() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let mut d = Deployment::create(&Options::default()).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let before = submit_and_wait(&d, "a.jsonl", 0, 10).await;

    // The outbox is gone: stop the sender, delete it, start again.
    d.stop_sender().await.unwrap();
    std::fs::remove_dir_all(d.path().join("sender-data").join("outbox.sled")).unwrap();
    d.restart_sender().await.unwrap();
    let after = submit_and_wait(&d, "b.jsonl", 10, 30).await;
    assert!(after > before, "seqs went back: {before} then {after}");

    // Nothing was refused as a reused seq, nothing is missing, and the receiver is healthy.
    let m = d.receiver_metrics().await.unwrap();
    let conflicts = metric_sum(
        &m,
        "airlock_frames_rejected_total",
        &[("reason", "seq_conflict")],
    );
    assert_eq!(conflicts, 0.0);
    let gaps = d.gaps().await.unwrap();
    assert_eq!(gaps.missing_count(), 0, "{gaps:?}");
    let health = ops::http_get(d.receiver_ops, "/healthz").await.unwrap();
    assert!(health.body.starts_with("ok"), "{}", health.body);
    let users = d.users().await.unwrap();
    assert_eq!(users.len(), 30);
}
