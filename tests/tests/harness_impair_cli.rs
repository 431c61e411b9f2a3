//! The `airlock-impair` command: refuses bad settings with a message that says what to do,
//! relays with the given impairments, and reports its counters.

use std::time::Duration;

use airlock_tests::supervisor::{self, Child, ChildSpec};
use tokio::net::UdpSocket;

fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_airlock-impair"))
}

#[tokio::test]
async fn refuses_a_probability_above_one() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let out = supervisor::run(&bin(), &["--loss", "1.5"], &[], Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("loss = 1.5 is not a probability"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn relays_with_loss_and_prints_counters() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = sink.local_addr().unwrap();
    let listen = airlock_tests::ops::free_udp_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ChildSpec::new("impair", bin(), dir.path().join("impair.log")).args([
        "--listen".to_string(),
        listen.to_string(),
        "--target".to_string(),
        target.to_string(),
        "--loss".to_string(),
        "1.0".to_string(),
        "--stats-every".to_string(),
        "1".to_string(),
    ]);
    let mut child = Child::start(spec).unwrap();
    child
        .wait_for_log("relaying UDP", Duration::from_secs(10))
        .await
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..20 {
        client.send_to(b"hello", listen).await.unwrap();
    }
    let line = child
        .wait_for_log("received 20 forwarded 0", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(line.contains("lost 20"), "{line}");
    let mut buf = [0u8; 16];
    let got = tokio::time::timeout(Duration::from_millis(300), sink.recv(&mut buf)).await;
    assert!(got.is_err(), "a 100% lossy link delivers nothing");
    child.terminate(Duration::from_secs(5)).await.unwrap();
}
