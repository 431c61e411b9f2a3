//! SIGKILL the receiver, and the sender, in the middle of a stream, restart them:
//! nothing accepted is lost (every submitted approval arrives, nothing the receiver had is
//! gone after its restart), nothing is applied twice, and the receiver's state equals a
//! replay of its log.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;

const BATCH_A: u64 = 2_000;
const BATCH_B: u64 = 1_000;

async fn wait_for_users(d: &Deployment, at_least: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = d.users().await.unwrap().len();
        if n >= at_least {
            return n;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck at {n} users");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sigkill_receiver_and_sender_mid_stream() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let opts = Options {
        repetitions: 1,
        // Slow enough (about 8 s for all approvals) that every kill lands mid-stream.
        pacing_bytes_per_sec: 300_000,
        ..Options::default()
    };
    let mut d = Deployment::create(&opts).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let a: Vec<_> = (0..BATCH_A).map(|i| provision_record(i, until)).collect();
    d.submit("batch-a.jsonl", &a).await.unwrap();

    // Receiver killed mid-stream; what it had must still be there after the restart.
    let had = wait_for_users(&d, 300).await;
    d.kill_receiver().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await; // frames fall into the void
    d.restart_receiver().await.unwrap();
    let kept = d.users().await.unwrap().len();
    assert!(kept >= had, "receiver lost accepted users: {kept} < {had}");

    // Sender killed mid-stream with approvals still queued in its outbox.
    wait_for_users(&d, 900).await;
    d.kill_sender().await.unwrap();
    d.restart_sender().await.unwrap();
    let b: Vec<_> = (BATCH_A..BATCH_A + BATCH_B)
        .map(|i| provision_record(i, until))
        .collect();
    d.submit("batch-b.jsonl", &b).await.unwrap();

    // Receiver killed again, straight back up.
    let had = wait_for_users(&d, 2_200).await;
    d.kill_receiver().await.unwrap();
    d.restart_receiver().await.unwrap();
    let kept = d.users().await.unwrap().len();
    assert!(kept >= had, "receiver lost accepted users: {kept} < {had}");

    // The stream ends; the operator closes the gaps the outages left.
    let total = (BATCH_A + BATCH_B) as usize;
    let last = d.wait_sender_idle(Duration::from_secs(180)).await.unwrap()["last_seq"]
        .as_u64()
        .unwrap();
    let mut resent = Vec::new();
    let mut users = d
        .wait_users(total, Duration::from_secs(3), Duration::from_secs(120))
        .await
        .unwrap();
    for _ in 0..3 {
        if users == total {
            break;
        }
        // Heartbeats after the stream tell the receiver where the chain ends.
        tokio::time::sleep(Duration::from_secs(2)).await;
        resent.extend(d.resend_gaps().await.unwrap());
        users = d
            .wait_users(total, Duration::from_secs(5), Duration::from_secs(120))
            .await
            .unwrap();
    }
    eprintln!(
        "after 2 receiver and 1 sender SIGKILLs: {users} of {total} users; resent ranges {resent:?}"
    );
    assert_eq!(users, total, "every accepted approval arrived");
    d.wait_no_gaps(last, Duration::from_secs(60)).await.unwrap();
    let all = d.users().await.unwrap();
    let twice: Vec<_> = all.iter().filter(|u| u["applied_frames"] != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");

    // The sender's outbound log: every approval exactly once, seqs counting up by one from
    // the chain's clock-derived start, never reused.
    d.stop_sender().await.unwrap();
    let sender_log = d.path().join("sender-log.jsonl");
    let sender_log_arg = sender_log.display().to_string();
    d.sender_cli(&["export-log", "--out", &sender_log_arg])
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&sender_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + seqs.len() as u64).collect::<Vec<_>>(),
        "seqs strictly increasing"
    );
    let provisions: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "provision")
        .map(|l| l["origin"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&str> = provisions.iter().copied().collect();
    assert_eq!(provisions.len(), total, "each approval sealed once");
    assert_eq!(unique.len(), total, "{:?}", &provisions[..5]);

    // The auditor's checks on the stopped receiver, once it holds the sender's last frame:
    // the log verifies with no missing seq, the state equals a replay of the log, and the
    // log reconciles with the sender's outbound log.
    let last_sent = first + seqs.len() as u64 - 1;
    if d.wait_no_gaps(last_sent, Duration::from_secs(10))
        .await
        .is_err()
    {
        // The last heartbeats before the sender stopped may have been lost: resend them.
        d.restart_sender().await.unwrap();
        d.resend_gaps().await.unwrap();
        d.wait_no_gaps(last_sent, Duration::from_secs(30))
            .await
            .unwrap();
        d.stop_sender().await.unwrap();
        d.sender_cli(&["export-log", "--out", &sender_log_arg])
            .await
            .unwrap();
    }
    d.stop_receiver().await.unwrap();
    for (what, args) in [
        ("audit verify", vec!["audit", "verify", "--json"]),
        ("audit replay", vec!["audit", "replay", "--json"]),
        (
            "audit reconcile",
            vec![
                "audit",
                "reconcile",
                "--json",
                "--sender-log",
                &sender_log_arg,
            ],
        ),
    ] {
        let out = d.receiver_cli(&args).await.unwrap();
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "{what}: {}", out.stdout);
    }
}
