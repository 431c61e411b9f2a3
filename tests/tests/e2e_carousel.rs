//! The carousel as anti-entropy: approvals sent while the receiver was down (a long outage,
//! nobody runs `resend`) still arrive, because the sender periodically re-seals and re-sends
//! all currently valid Provision state.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;

const USERS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carousel_delivers_what_an_outage_lost() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        repetitions: 1,
        carousel_secs: 10, // the smallest the sender allows
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    // The receiver is down while the approvals go out.
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    d.wait_sender_idle(Duration::from_secs(60)).await.unwrap();
    d.start_receiver().await.unwrap();

    let users = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(15),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let gaps = d.gaps().await.unwrap();
    eprintln!(
        "carousel: {users} of {USERS} users without any resend; the chain still shows {} missing seqs",
        gaps.missing_count()
    );
    assert_eq!(
        users, USERS as usize,
        "the carousel re-sent every valid approval"
    );
    assert!(
        gaps.missing_count() >= USERS,
        "the original frames were lost: {gaps:?}"
    );
}
