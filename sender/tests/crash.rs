//! kill -9 of `airlock-sender run` while 10,000 records are being submitted: after a
//! restart, the outbound log holds every accepted record exactly once, seqs strictly
//! increasing without holes, the hash chain intact and every signature valid.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_protocol::message::Body;
use airlock_protocol::seal::{frame_hash, verify_sign1};
use airlock_sender::status;
use base64::Engine as _;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_airlock-sender");
const RECORDS: usize = 10_000;
const PER_SUBMIT: usize = 100;

fn start(config: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

fn submit(config: &Path, dir: &Path, batch: usize) -> bool {
    let lines: Vec<String> = (0..PER_SUBMIT)
        .map(|i| provision_record(&format!("crash-{}", batch * PER_SUBMIT + i)))
        .collect();
    let input = write_input(dir, &format!("batch-{batch}.json"), &lines.join("\n"));
    let out = Command::new(BIN)
        .args(["submit", "--config"])
        .arg(config)
        .arg(&input)
        .output()
        .unwrap();
    out.status.success()
}

/// Waits until the daemon reports nothing pending and the spool is empty.
fn wait_drained(fx: &Fixture) {
    let cfg = fx.config();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let spool_empty = airlock_sender::spool::list(&cfg.spool_dir())
            .unwrap()
            .is_empty();
        let idle =
            status::read(&cfg.status_file()).is_ok_and(|s| s.running && s.pending_records == 0);
        if spool_empty && idle {
            // One more status period, so that a batch ingested just now is also sealed.
            std::thread::sleep(Duration::from_millis(1500));
            let s = status::read(&cfg.status_file()).unwrap();
            if s.pending_records == 0
                && airlock_sender::spool::list(&cfg.spool_dir())
                    .unwrap()
                    .is_empty()
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "daemon did not drain");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sigterm(child: &mut Child) {
    airlock_tests::supervisor::sigterm(child.id()).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "run should exit cleanly on SIGTERM"
    );
}

#[test]
fn kill_9_during_submission_loses_nothing_and_reuses_no_seq() {
    // A bound socket nobody reads: the link works, datagrams are dropped by the kernel.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fx = Fixture::udp(sink.local_addr().unwrap().port());
    let config = fx.config_path.clone();
    let inputs = fx.path("inputs");
    std::fs::create_dir_all(&inputs).unwrap();

    let mut child = start(&config);
    let batches = RECORDS / PER_SUBMIT;
    let mut accepted = 0usize;
    let mut kills = 0;
    for b in 0..batches {
        assert!(submit(&config, &inputs, b), "submit {b} failed");
        accepted += PER_SUBMIT;
        // Kill at three points while the daemon is busy ingesting and sealing.
        if b == batches / 4 || b == batches / 2 || b == 3 * batches / 4 {
            std::thread::sleep(Duration::from_millis(30 * (kills + 1)));
            kill9(&mut child);
            kills += 1;
            // Submitting continues while the daemon is down.
            assert!(
                submit(&config, &inputs, batches + kills as usize),
                "submit while down failed"
            );
            accepted += PER_SUBMIT;
            child = start(&config);
        }
    }
    wait_drained(&fx);
    sigterm(&mut child);

    let export = fx.path("export.jsonl");
    let out = Command::new(BIN)
        .args(["export-log", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trust = fx.trust();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut prev_seq: Option<u64> = None;
    let mut prev_hash = [0u8; 32];
    for line in std::fs::read_to_string(&export).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        // One chain: a clock-derived first seq, then no hole.
        if let Some(p) = prev_seq {
            assert_eq!(seq, p + 1, "seqs strictly increasing without holes");
        }
        let sign1 = base64::engine::general_purpose::STANDARD
            .decode(v["sign1"].as_str().unwrap())
            .unwrap();
        let hash = frame_hash(&sign1);
        assert_eq!(v["hash"].as_str().unwrap(), hex::encode(hash));
        assert_eq!(
            v["prev"].as_str().unwrap(),
            hex::encode(prev_hash),
            "chain broken at {seq}"
        );
        let env = verify_sign1(&sign1, &trust).expect("signature");
        assert_eq!((env.seq, env.prev), (seq, prev_hash));
        if let Body::Provision(p) = env.body {
            assert!(v["origin"].as_str().unwrap().contains("batch-"), "{v}");
            *seen.entry(p.subject).or_default() += 1;
        }
        prev_seq = Some(seq);
        prev_hash = hash;
    }
    assert_eq!(seen.len(), accepted, "every accepted record is in the log");
    assert!(
        seen.values().all(|&n| n == 1),
        "no record twice: {:?}",
        seen.iter().find(|(_, n)| **n > 1)
    );
    assert!(accepted >= RECORDS);
}
