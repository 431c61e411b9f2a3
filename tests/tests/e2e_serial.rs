//! The serial link end to end: the real binaries open the two pty devices of the harness by
//! path, as they would /dev/ttyS0; COBS frames are lost and corrupted on the way.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Link, Options, provision_record};
use airlock_tests::impair::ImpairConfig;
use airlock_tests::peer::unix_now;

const USERS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_cross_a_noisy_serial_line() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        serial: true,
        impair: ImpairConfig {
            loss: 0.05,
            corrupt: 0.02,
            ..ImpairConfig::seeded(115_200)
        },
        repetitions: 2,
        repetition_spacing_ms: 300,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    let last = d.wait_sender_idle(Duration::from_secs(120)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    let mut users = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(5),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let mut resent = Vec::new();
    if users < USERS as usize {
        resent = d.resend_gaps().await.unwrap();
        users = d
            .wait_users(
                USERS as usize,
                Duration::from_secs(10),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
    }
    let Link::Serial(path) = &d.link else {
        unreachable!("serial deployment")
    };
    let stats = path.stats();
    let m = d.receiver_metrics().await.unwrap();
    eprintln!(
        "serial: {users} of {USERS} users, resent {resent:?}; line: {stats}; receiver link errors: {:?}",
        m.iter()
            .filter(|(k, _)| k.starts_with("airlock_link_errors"))
            .collect::<Vec<_>>()
    );
    assert_eq!(users, USERS as usize);
    assert!(
        stats.impair.corrupted > 0 && stats.impair.lost_random > 0,
        "{stats}"
    );
    d.wait_no_gaps(last, Duration::from_secs(30)).await.unwrap();

    // The receiver dies and comes back: it reopens its device and the line carries on
    // (as root: see serial_pty's module doc on TIOCEXCL).
    d.kill_receiver().await.unwrap();
    d.restart_receiver().await.unwrap();
    let more: Vec<_> = (USERS..2 * USERS)
        .map(|i| provision_record(i, until))
        .collect();
    d.submit("more.jsonl", &more).await.unwrap();
    let last = d.wait_sender_idle(Duration::from_secs(120)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    let mut users = d
        .wait_users(
            2 * USERS as usize,
            Duration::from_secs(5),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    if users < 2 * USERS as usize {
        d.resend_gaps().await.unwrap();
        users = d
            .wait_users(
                2 * USERS as usize,
                Duration::from_secs(10),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
    }
    assert_eq!(users, 2 * USERS as usize);
    d.wait_no_gaps(last, Duration::from_secs(30)).await.unwrap();
}
