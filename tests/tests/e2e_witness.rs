//! Witnessing by hand across the diode, with both real binaries: the receiver's `checkpoint
//! export` writes its latest checkpoint and public key to removable media, and the sender's
//! `witness record` takes exactly those files (key pinned, seq lines kept); an altered copy
//! is refused.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_receiver_exports_is_what_the_sender_records() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let mut d = Deployment::create(&Options {
        receiver_extra:
            "[transparency]\norigin = \"rx.e2e.example/log\"\nevery_entries = 5\nevery_secs = 1\n"
                .into(),
        ..Options::default()
    })
    .await
    .unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..6).map(|i| provision_record(i, until)).collect();
    d.submit("batch.jsonl", &records).await.unwrap();
    let users = d
        .wait_users(6, Duration::from_secs(30), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(users, 6);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d
        .receiver_metrics()
        .await
        .unwrap()
        .get("airlock_checkpoint_tree_size")
        .copied()
        .unwrap_or(0.0)
        < 6.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of the provisions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let media = d.path().join("usb");
    std::fs::create_dir_all(&media).unwrap();
    let file = media.join("airlock.checkpoint");
    let key = media.join("airlock.checkpoint.pub");
    let out = d
        .receiver_cli(&["checkpoint", "export", "--out", file.to_str().unwrap()])
        .await
        .unwrap();
    assert!(out.status.success(), "export: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("fingerprint"), "{}", out.stdout);
    let size: u64 = out
        .stdout
        .strip_prefix("checkpoint: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {}", out.stdout));

    let rec = d
        .sender_cli(&[
            "witness",
            "record",
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert!(rec.status.success(), "record: {}{}", rec.stdout, rec.stderr);
    let list = d.sender_cli(&["witness", "list"]).await.unwrap();
    assert!(list.status.success(), "{}", list.stderr);
    assert!(
        list.stdout.contains("log rx.e2e.example/log"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains(&format!("{size} entries")),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("receiver had accepted seq"),
        "{}",
        list.stdout
    );

    // The same media, one line changed on the way: refused, nothing recorded.
    let note = std::fs::read_to_string(&file).unwrap();
    let altered = media.join("altered.checkpoint");
    std::fs::write(
        &altered,
        note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1),
    )
    .unwrap();
    let refused = d
        .sender_cli(&["witness", "record", altered.to_str().unwrap()])
        .await
        .expect_err("an altered checkpoint is refused")
        .to_string();
    assert!(refused.contains("altered or forged"), "{refused}");
    let again = d.sender_cli(&["witness", "list"]).await.unwrap();
    assert_eq!(again.stdout, list.stdout);
}
