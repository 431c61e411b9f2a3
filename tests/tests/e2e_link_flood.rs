//! Forged datagrams against the receiver's link decoder, with the real binaries: a flood
//! meant to hold reassembly memory (symbol size 8, the largest blocks, many block ids) and a
//! poisoning of the block ids the real session is about to use. The decoder's memory stays
//! within `link.max_pending_bytes` (its metric, and the process's peak RSS with room to
//! spare), and the real frames still arrive: at most delayed, never thrown away.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_tests::datagram::{self, Peek};
use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::ops::{self, metric_sum};
use airlock_tests::peer::unix_now;
use rand::SeedableRng;

/// The receiver's default `link.max_pending_bytes` and `link.max_block_bytes`.
const MAX_PENDING_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
const MAX_BLOCK_BYTES: u32 = 256 * 1024;

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

async fn submit_users(d: &Deployment, name: &str, from: u64, n: u64) {
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (from..from + n)
        .map(|i| provision_record(i, until))
        .collect();
    d.submit(name, &records).await.unwrap();
}

/// Every approval arrives. With `resend`, a frame the flood delayed (its block evicted while
/// incomplete) may come with a resend of the receiver's gap report, as an operator would run
/// it; without, everything must arrive on its own.
async fn all_users_arrive(d: &Deployment, n: usize, resend: bool) {
    let last = d.wait_sender_idle(Duration::from_secs(120)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    for _ in 0..if resend { 5 } else { 0 } {
        if d.wait_no_gaps(last, Duration::from_secs(20)).await.is_ok() {
            break;
        }
        d.resend_gaps().await.unwrap();
    }
    d.wait_no_gaps(last, Duration::from_secs(60)).await.unwrap();
    let got = d
        .wait_users(n, Duration::from_secs(30), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got, n, "real approvals lost to the forgeries");
}

fn m(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    metric_sum(metrics, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_datagram_flood_keeps_decoder_memory_bounded_and_real_frames_arrive() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let mut d = Deployment::create(&Options::default()).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    submit_users(&d, "a.jsonl", 0, 20).await;
    all_users_arrive(&d, 20, false).await;
    let pid = d.receiver.as_ref().and_then(|c| c.pid()).unwrap();
    let rss_before = peak_rss(pid);
    let relay = d.relay().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);

    // 1. Symbol size 8 and 256 KiB blocks, one datagram per (session, block): once held
    //    hundreds of MB (a RaptorQ decoder of 32,768 symbols each); now refused by size.
    for i in 0..2048u32 {
        let p = Peek {
            session_id: 0xF100_0000 + u64::from(i % 256),
            block_id: i,
            block_len: MAX_BLOCK_BYTES,
            symbol_size: 8,
            esi: 0,
        };
        relay
            .inject(&datagram::build(&p, &datagram::random_bytes(&mut rng, 8)))
            .await
            .unwrap();
    }
    // 2. The smallest symbol size accepted, the largest blocks, thousands of block ids over
    //    three sessions (the real one keeps its place among the four tracked): every one an
    //    incomplete block the decoder must hold or drop.
    for i in 0..3000u32 {
        let p = Peek {
            session_id: 0xF200_0000 + u64::from(i % 3),
            block_id: i / 3,
            block_len: MAX_BLOCK_BYTES,
            symbol_size: 64,
            esi: i % 7,
        };
        relay
            .inject(&datagram::build(&p, &datagram::random_bytes(&mut rng, 64)))
            .await
            .unwrap();
    }
    // Real approvals during and after the flood.
    submit_users(&d, "b.jsonl", 20, 50).await;
    all_users_arrive(&d, 70, true).await;

    let metrics = d.receiver_metrics().await.unwrap();
    let refused = m(&metrics, "airlock_link_symbol_size_refused_total");
    assert!(refused >= 2048.0, "symbol size 8 refused: {refused}");
    let peak = m(&metrics, "airlock_link_pending_bytes_peak");
    assert!(
        peak > 0.0 && peak <= MAX_PENDING_BYTES,
        "decoder memory peak {peak} within link.max_pending_bytes {MAX_PENDING_BYTES}"
    );
    assert!(
        m(&metrics, "airlock_blocks_evicted_total") > 0.0,
        "the byte bound dropped forged blocks"
    );
    let rss_after = peak_rss(pid);
    // Generous: the bound, twice over, plus 64 MiB of allocator slack and the real work.
    let allowed = rss_before + 2 * MAX_PENDING_BYTES as u64 + 64 * 1024 * 1024;
    eprintln!(
        "receiver peak RSS {} MiB before the flood, {} MiB after (allowed {} MiB); decoder peak {} MiB",
        rss_before >> 20,
        rss_after >> 20,
        allowed >> 20,
        (peak as u64) >> 20
    );
    assert!(rss_after <= allowed, "peak RSS {rss_after} above {allowed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_upcoming_block_ids_delay_nothing_and_show_in_the_metrics() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        record_limit: 1_000_000,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    submit_users(&d, "a.jsonl", 0, 10).await;
    all_users_arrive(&d, 10, false).await;
    let relay = d.relay().unwrap();
    let recorded = relay.recorded();
    let real = recorded
        .iter()
        .filter_map(|g| datagram::peek(g))
        .max_by_key(|p| p.block_id)
        .unwrap();
    let m0 = d.receiver_metrics().await.unwrap();

    // One forged datagram for each of the next 3,000 block ids of the real session: right
    // header and CRC, a one-symbol block whose content is no frame of the sender's. Once,
    // each settled its id and the real block of that id was dropped as a duplicate.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for id in real.block_id + 1..=real.block_id + 3000 {
        let garbage = vec![datagram::random_bytes(&mut rng, 120)];
        let block = datagram::forge_frames_block(real.session_id, id, 1200, &garbage).unwrap();
        relay.inject(&block[0]).await.unwrap();
    }
    // The real session carries on through those ids: everything arrives.
    submit_users(&d, "b.jsonl", 10, 100).await;
    all_users_arrive(&d, 110, false).await;

    let m1 = d.receiver_metrics().await.unwrap();
    let forged = m(&m1, "airlock_blocks_unauthenticated_total")
        - m(&m0, "airlock_blocks_unauthenticated_total");
    assert!(forged >= 1000.0, "forged blocks counted: {forged}");
    let health = ops::http_get(d.receiver_ops, "/healthz").await.unwrap();
    assert!(
        health.body.contains("forged FEC blocks"),
        "/healthz names the forgeries: {}",
        health.body
    );
}
