//! The smallest end-to-end run: real sender and receiver over the UDP relay, a few users.

use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options, provision_record};
use airlock_tests::peer::unix_now;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cross_a_clean_link() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let mut d = Deployment::create(&Options::default()).await.unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    let until = unix_now() + 30 * 86_400;
    let records: Vec<_> = (0..10).map(|i| provision_record(i, until)).collect();
    let out = d.submit("batch.jsonl", &records).await.unwrap();
    eprintln!("{}{}", out.stdout, out.stderr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = d.receiver_cli(&["users", "--json"]).await.unwrap();
        let users: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        if users.len() == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} users; {}",
            users.len(),
            out.stdout
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gaps = d.receiver_cli(&["gaps"]).await.unwrap();
    eprintln!("{}", gaps.stdout);
}
