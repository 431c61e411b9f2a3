//! UDP segmentation offload refused: the real sender falls back to one datagram per call
//! and everything still arrives.
//!
//! The sender hands runs of equal-size datagrams to the kernel in one `sendmsg` with
//! UDP_SEGMENT. A kernel refuses that when a segment does not fit the route's MTU (here:
//! loopback at MTU 1100 while the link's datagrams are 1200 bytes, which plain sends
//! deliver as IP fragments). The scenario runs in a network namespace of its own (see
//! [`airlock_tests::netns`]) so the MTU can be lowered without touching the machine: the
//! sender must log the refusal once, keep sending, and the receiver must end with every
//! user and no gap.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::netns::{LogTails, NamespaceRun};
use airlock_tests::peer::unix_now;

const TEST_NAME: &str = "a_refused_segmented_send_falls_back_and_everything_arrives";
const DONE: &str = "segmentation fallback scenario passed";
const USERS: u64 = 40;
/// Below the deployment's 1,200-byte datagrams (plus 28 bytes of IP and UDP headers).
const SETUP: &str = r#"set -e
"$AIRLOCK_NS_IP" link set lo up
"$AIRLOCK_NS_IP" link set lo mtu 1100
echo "namespace ready: $("$AIRLOCK_NS_IP" -o link show lo)"
exec "$0" "$@""#;

#[test]
fn a_refused_segmented_send_falls_back_and_everything_arrives() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let ns = NamespaceRun {
        test_name: TEST_NAME,
        module: module_path!(),
        inner_env: "AIRLOCK_SEGMENTATION_INNER",
        inner_value: "1",
        setup: SETUP,
        done_marker: DONE,
        deadline: Duration::from_secs(180),
    };
    if ns.is_inner() {
        inner();
    } else {
        ns.run_outside();
    }
}

fn inner() {
    airlock_tests::netns::runtime().block_on(async {
        let opts = Options {
            heartbeat_secs: 1,
            ..Options::default()
        };
        let mut d = Deployment::create(&opts).await.unwrap();
        let _tails = LogTails {
            dir: d.path().to_path_buf(),
            logs: &["sender.log", "receiver.log"],
        };
        tokio::time::timeout(Duration::from_secs(90), scenario(&mut d))
            .await
            .expect("the scenario did not finish within 90 s");
        eprintln!("{DONE}");
    });
}

async fn scenario(d: &mut Deployment) {
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let users = d.users().await.unwrap().len() as u64;
        if users == USERS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 30 s the receiver has {users} of {USERS} users"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the receiver has all {USERS} users");

    d.stop_sender().await.unwrap();
    let status = d.sender_status().unwrap();
    let last_seq = status["last_seq"].as_u64().unwrap();
    d.wait_no_gaps(last_seq, Duration::from_secs(15))
        .await
        .unwrap();
    eprintln!("no gaps through seq {last_seq}");

    let log = std::fs::read_to_string(d.path().join("sender.log")).unwrap();
    let refusals = log
        .lines()
        .filter(|l| l.contains("UDP segmentation offload refused"))
        .count();
    assert_eq!(
        refusals, 1,
        "the sender must have tried segmented sends, been refused, and said so once:\n{log}"
    );
    let failed = log
        .lines()
        .filter(|l| l.contains("link send failed"))
        .count();
    assert_eq!(failed, 0, "no send may fail after the fallback:\n{log}");
}
