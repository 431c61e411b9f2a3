//! A loss burst that defeats FEC (every datagram of some blocks gone, no repetition)
//! -> the receiver's `gaps` names exactly the missing seqs -> the operator runs the sender's
//! `resend` with those ranges -> every approval is there and `gaps` is empty.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_tests::datagram;
use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;

const USERS: u64 = 2_000;

/// Drops every datagram of the 3rd and 4th (one burst) and the 10th block that carries
/// approvals (blocks over 4 KiB; heartbeats travel in small blocks of their own).
fn burst_filter() -> impl FnMut(&[u8]) -> bool + Send {
    let mut order: BTreeMap<u32, usize> = BTreeMap::new();
    move |d: &[u8]| {
        let Some(p) = datagram::peek(d) else {
            return false;
        };
        if p.block_len < 4096 {
            return false;
        }
        let n = order.len();
        let index = *order.entry(p.block_id).or_insert(n);
        [2, 3, 9].contains(&index)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_loss_gaps_then_resend_fills_them() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        repetitions: 1,
        pacing_bytes_per_sec: 5_000_000,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.relay().unwrap().set_drop_filter(burst_filter());
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();

    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..USERS).map(|i| provision_record(i, until)).collect();
    d.submit("approvals.jsonl", &records).await.unwrap();
    let last_seq = d.wait_sender_idle(Duration::from_secs(120)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    let arrived = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(3),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(
        arrived < USERS as usize,
        "the burst must defeat FEC for some approvals"
    );

    // A heartbeat after the stream tells the receiver how far the chain goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let gaps = loop {
        let g = d.gaps().await.unwrap();
        if g.highest() >= last_seq {
            break g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat past {last_seq}: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ranges = gaps.ranges();
    let missing_users = USERS - arrived as u64;
    eprintln!(
        "gaps after the burst: {ranges:?} ({} seqs; {missing_users} approvals missing); relay: {}",
        gaps.missing_count(),
        d.relay().unwrap().stats()
    );
    // One range per burst (a heartbeat that slipped between the two adjacent lost blocks in a
    // block of its own would split the first).
    assert!(
        (2..=3).contains(&ranges.len()),
        "one range per burst: {ranges:?}"
    );
    // Exactly the missing seqs: each missing approval is in a range (heartbeats sealed inside
    // a lost block may be too), and no approval that arrived is.
    assert!(gaps.missing_count() >= missing_users);
    assert!(gaps.missing_count() <= missing_users + 3, "{gaps:?}");
    let users = d.users().await.unwrap();
    for u in &users {
        let seq = u["provisioned_seq"].as_u64().unwrap();
        assert!(
            !ranges.iter().any(|(a, b)| (*a..=*b).contains(&seq)),
            "seq {seq} arrived but is reported missing"
        );
    }

    // The operator carries the ranges to the sender.
    let resent = d.resend_gaps().await.unwrap();
    assert_eq!(resent, ranges);
    let after = d
        .wait_users(
            USERS as usize,
            Duration::from_secs(20),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(after, USERS as usize);
    let g = d
        .wait_no_gaps(last_seq, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(g.missing_count(), 0);
    // status.json is rewritten every few seconds: wait for the resend to show in it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = d.sender_status().unwrap_or_default();
        if status["frames_resent"].as_u64().unwrap_or(0) >= gaps.missing_count() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let gaps_text = d.receiver_cli(&["gaps"]).await.unwrap().stdout;
    assert!(gaps_text.contains("no gaps"), "{gaps_text}");

    // The auditor's view agrees: on the stopped receiver the log verifies with no missing seq.
    d.stop_sender().await.unwrap();
    d.stop_receiver().await.unwrap();
    let out = d
        .receiver_cli(&["audit", "verify", "--json"])
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{}", out.stdout);
    assert_eq!(report["missing_seqs"], 0, "{}", out.stdout);
}
