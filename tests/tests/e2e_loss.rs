//! 10,000 approvals through a link that loses 10% of datagrams at random, with the
//! sender's default FEC settings and repetition. Every approval must arrive; the test reports
//! how many needed an operator resend (the carousel is off, so none rode on it).

use std::time::{Duration, Instant};

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::impair::ImpairConfig;
use airlock_tests::peer::unix_now;

const USERS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_ten_thousand_approvals_at_ten_percent_loss() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let started = Instant::now();
    let opts = Options {
        impair: ImpairConfig {
            loss: 0.10,
            ..ImpairConfig::seeded(7)
        },
        // The sender's defaults: [fec] untouched, every frame twice, 500 ms apart.
        fec: None,
        repetitions: 2,
        repetition_spacing_ms: 500,
        // A diode-like steady rate (about 40 Mbit/s) instead of an unpaced burst.
        pacing_bytes_per_sec: 5_000_000,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();

    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    let status = d.wait_sender_idle(Duration::from_secs(300)).await.unwrap();
    let last_seq = status["last_seq"].as_u64().unwrap();

    // First pass: FEC and repetition alone.
    let first_pass = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(5),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    let gaps = d.gaps().await.unwrap();
    // Only then the operator's answer to the gap report.
    let resent = d.resend_gaps().await.unwrap();
    let resent_seqs: u64 = resent.iter().map(|(a, b)| b - a + 1).sum();
    let users = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(30),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    d.wait_no_gaps(last_seq, Duration::from_secs(60))
        .await
        .unwrap();

    let relay = d.relay().unwrap().stats();
    let metrics = d.receiver_metrics().await.unwrap();
    let m = |k: &str| metrics.get(k).copied().unwrap_or(0.0);
    eprintln!(
        "e2e 10k @ 10% loss: {USERS} approvals, last seq {last_seq}; arrived on the first pass: \
         {first_pass}; seqs missing after FEC + repetition: {} (resent: {resent_seqs} in {} range(s)); \
         needed the carousel: 0 (off); blocks decoded {}, blocks lost {}; relay: {relay}; {:.1}s",
        gaps.missing_count(),
        resent.len(),
        m("airlock_blocks_decoded_total"),
        m("airlock_blocks_lost_total"),
        started.elapsed().as_secs_f64()
    );

    assert_eq!(users, USERS as usize, "every approval arrived");
    let rate = relay.impair.lost_random as f64 / relay.received as f64;
    assert!(
        (0.08..0.12).contains(&rate),
        "the link really lost ~10%: {rate}"
    );
    // Nothing applied twice: repetitions are recognised as duplicates.
    let all = d.users().await.unwrap();
    let twice: Vec<_> = all
        .iter()
        .filter(|u| u["applied_frames"].as_u64() != Some(1))
        .collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
}
