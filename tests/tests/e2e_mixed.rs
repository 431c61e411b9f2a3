//! Every impairment at once through the real binaries: random and burst loss, duplication,
//! reordering and corruption. Every approval arrives (after a resend if FEC and repetition
//! were not enough), exactly once, and the receiver counts the damage it saw.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::impair::{GilbertElliott, ImpairConfig};
use airlock_tests::ops::metric_sum;
use airlock_tests::peer::unix_now;

const USERS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_impairment_at_once() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        impair: ImpairConfig {
            loss: 0.03,
            burst: Some(GilbertElliott::bursts(0.005, 6.0)),
            duplicate: 0.05,
            reorder: 0.05,
            reorder_depth: 4,
            corrupt: 0.03,
            ..ImpairConfig::seeded(31337)
        },
        repetitions: 2,
        repetition_spacing_ms: 300,
        pacing_bytes_per_sec: 2_000_000,
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
    let first = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(5),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let mut users = first;
    let mut resent = Vec::new();
    for _ in 0..3 {
        if users == USERS as usize {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        resent.extend(d.resend_gaps().await.unwrap());
        users = d
            .wait_users(
                USERS as usize,
                Duration::from_secs(5),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    let relay = d.relay().unwrap().stats();
    let m = d.receiver_metrics().await.unwrap();
    let crc = metric_sum(&m, "airlock_link_errors_total", &[("reason", "crc")]);
    let dup = metric_sum(&m, "airlock_link_duplicate_symbols_total", &[]);
    eprintln!(
        "mixed impairments: {first} of {USERS} on the first pass, resent {resent:?}; relay {relay}; \
         receiver crc errors {crc}, duplicate symbols {dup}"
    );
    assert_eq!(users, USERS as usize);
    let i = relay.impair;
    assert!(
        i.lost_burst > 0 && i.duplicated > 0 && i.reordered > 0 && i.corrupted > 0,
        "{relay}"
    );
    // Every corrupted datagram that reached the receiver failed its CRC (a corrupted copy may
    // also have been lost, or duplicated).
    assert!(
        crc > 0.0 && crc <= 2.0 * i.corrupted as f64,
        "crc {crc} vs {}",
        i.corrupted
    );
    assert!(dup > 0.0);
    d.wait_no_gaps(last, Duration::from_secs(60)).await.unwrap();
    let all = d.users().await.unwrap();
    assert!(
        all.iter().all(|u| u["applied_frames"] == 1),
        "nothing applied twice"
    );
}
