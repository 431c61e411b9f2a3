//! `airlock-sender backup` / `restore`: online (through the running daemon) and offline, the
//! witness check that refuses an outbox older than the receiver has seen, and bad input
//! (a read-only or full target, a corrupt backup, restore over a live outbox).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use airlock_protocol::checkpoint::{Checkpoint, VerifierKey, seq_extension};
use airlock_tests::mountns::{self, Mount};
use ed25519_dalek::SigningKey;

use crate::common::{BIN, Fixture, provision_record, run, text, write_input};

struct Sender {
    fx: Fixture,
    _sink: std::net::UdpSocket,
    cfg: String,
}

impl Sender {
    fn new() -> Self {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fx = Fixture::udp(sink.local_addr().unwrap().port());
        let cfg = fx.config_path.to_str().unwrap().to_string();
        Self {
            fx,
            _sink: sink,
            cfg,
        }
    }

    fn submit(&self, name: &str, n: usize) {
        let lines: Vec<String> = (0..n)
            .map(|i| provision_record(&format!("{name}-{i}")))
            .collect();
        let file = write_input(self.fx.dir.path(), name, &lines.join("\n"));
        let out = run(&["submit", "--config", &self.cfg, &file]);
        assert!(out.status.success(), "submit: {}", text(&out.stderr));
    }

    fn start(&self, extra: &[&str]) -> Child {
        Command::new(BIN)
            .args(["run", "--config", &self.cfg])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the running daemon has sealed everything queued.
    fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run(&["status", "--config", &self.cfg]);
            let s = text(&out.stdout);
            if out.status.success() && s.contains(" 0 pending record(s), 0 spool file(s)") {
                return;
            }
            assert!(Instant::now() < deadline, "daemon never went idle: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&self, mut child: Child) {
        airlock_tests::supervisor::sigterm(child.id()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    fn backup(&self, out: &Path) -> Output {
        run(&[
            "backup",
            "--config",
            &self.cfg,
            "--out",
            out.to_str().unwrap(),
        ])
    }

    fn restore(&self, from: &Path) -> Output {
        run(&[
            "restore",
            "--config",
            &self.cfg,
            "--from",
            from.to_str().unwrap(),
        ])
    }

    fn outbox(&self) -> PathBuf {
        self.fx.path("data/outbox.sled")
    }

    fn move_outbox_aside(&self, name: &str) {
        std::fs::rename(self.outbox(), self.fx.path(&format!("data/{name}"))).unwrap();
    }

    /// Records a checkpoint, signed by a receiver checkpoint key, saying the receiver has
    /// accepted `seq` of signer `kid`.
    fn witness(&self, kid: &str, seq: u64) {
        let k = SigningKey::from_bytes(&[7; 32]);
        let vk = VerifierKey::new("rx.example/log", k.verifying_key()).unwrap();
        let key_file = self.fx.path("checkpoint.pub");
        std::fs::write(&key_file, format!("{vk}\n")).unwrap();
        let note = Checkpoint {
            origin: "rx.example/log".into(),
            size: seq,
            root: [1; 32],
            extensions: vec!["time 2026-12-03T10:00:00Z".into(), seq_extension(kid, seq)],
        }
        .sign(&k)
        .unwrap();
        let file = self.fx.path("carried.checkpoint");
        std::fs::write(&file, note).unwrap();
        let out = run(&[
            "witness",
            "record",
            "--config",
            &self.cfg,
            "--key",
            key_file.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "witness record: {}",
            text(&out.stderr)
        );
    }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn last_seq(m: &serde_json::Value) -> u64 {
    m["next_seq"].as_u64().unwrap() - 1
}

fn sums(m: &serde_json::Value) -> Vec<(String, String)> {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn online_backup_restores_and_an_outbox_older_than_the_receiver_has_seen_is_refused() {
    let s = Sender::new();
    s.submit("a", 40);
    let child = s.start(&[]);
    s.wait_idle();
    let b1 = s.fx.path("b1");
    let out = s.backup(&b1);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("exported by the running daemon"),
        "{}",
        text(&out.stdout)
    );
    s.submit("b", 30);
    s.wait_idle();
    let b2 = s.fx.path("b2");
    let out = s.backup(&b2);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    s.stop(child);
    // The staging copy is gone; the last backup is remembered for the gauge.
    assert!(
        std::fs::read_dir(s.fx.path("data/backup-staging"))
            .unwrap()
            .next()
            .is_none()
    );
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.fx.path("data/last-backup.json")).unwrap())
            .unwrap();
    let (m1, m2) = (manifest(&b1), manifest(&b2));
    assert_eq!(last["last_seq"].as_u64(), Some(last_seq(&m2)));
    let kid = m2["chain_kid"].as_str().unwrap().to_owned();
    assert!(!kid.is_empty());
    assert!(
        last_seq(&m1) + 30 <= last_seq(&m2),
        "{} {}",
        last_seq(&m1),
        last_seq(&m2)
    );

    // No checkpoint carried out yet: the older backup is as good as any.
    s.move_outbox_aside("outbox.live");
    let out = s.restore(&b1);
    assert!(out.status.success(), "restore b1: {}", text(&out.stderr));

    // The receiver has accepted everything in b2; a person carries that out.
    s.witness(&kid, last_seq(&m2));
    // `run` on the restored b1 refuses to start...
    let child = s.start(&[]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("refusing the outbox"), "{err}");
    assert!(err.contains(&kid), "{err}");
    assert!(
        err.contains(&format!("ends at seq {}", last_seq(&m1))),
        "{err}"
    );
    assert!(
        err.contains(&format!("accepted seq {}", last_seq(&m2))),
        "{err}"
    );
    // ...unless told to, dangerously.
    let child = s.start(&["--allow-stale-outbox"]);
    s.wait_idle();
    s.stop(child);

    // Restore refuses the older backup, and leaves the path empty.
    s.move_outbox_aside("outbox.stale");
    let out = s.restore(&b1);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("refusing the outbox"), "{err}");
    assert!(err.contains("Restore a newer backup"), "{err}");
    assert!(!s.outbox().exists());
    // The current one is accepted, and backs up again to the same bytes.
    let out = s.restore(&b2);
    assert!(out.status.success(), "restore b2: {}", text(&out.stderr));
    let b3 = s.fx.path("b3");
    let out = s.backup(&b3);
    assert!(
        out.status.success(),
        "offline backup: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("read directly"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(sums(&manifest(&b3)), sums(&m2));
    // And `run` starts on it.
    let child = s.start(&[]);
    s.wait_idle();
    s.stop(child);
}

#[test]
fn restore_refuses_a_corrupt_backup_and_a_live_outbox() {
    let s = Sender::new();
    s.submit("c", 20);
    let child = s.start(&[]);
    s.wait_idle();
    s.stop(child);
    let b = s.fx.path("b");
    let out = s.backup(&b);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    // Over the outbox in place: refused.
    let out = s.restore(&b);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("holds an outbox already"),
        "{}",
        text(&out.stderr)
    );
    // Into a non-empty backup directory: refused.
    let out = s.backup(&b);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not empty"));
    // One flipped byte in the log file: refused, nothing restored.
    s.move_outbox_aside("outbox.live");
    let log = b.join("tree-log.kv");
    let mut bytes = std::fs::read(&log).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&log, bytes).unwrap();
    let out = s.restore(&b);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not match its SHA-256"),
        "{}",
        text(&out.stderr)
    );
    assert!(!s.outbox().exists());
    assert!(!s.fx.path("data/outbox.sled.restoring").exists());
}

#[test]
fn backup_to_a_full_or_read_only_filesystem_fails_cleanly_and_leaves_nothing() {
    let s = Sender::new();
    s.submit("d", 200);
    let child = s.start(&[]);
    s.wait_idle();
    s.stop(child);
    let full = s.fx.path("full");
    std::fs::create_dir(&full).unwrap();
    // A 16 KiB tmpfs: the outbox's files do not fit.
    let all = mountns::run(
        Mount::Full,
        &full,
        r#"RUST_LOG=warn "$2" backup --config "$3" --out "$1/b"; echo "rc=$?"; echo "left:$(ls -A "$1")""#,
        &[BIN, &s.cfg],
    );
    assert!(all.contains("rc=2"), "{all}");
    assert!(all.contains("No space left on device"), "{all}");
    assert!(all.contains("the partial backup was removed"), "{all}");
    assert!(all.contains("left:\n") || all.ends_with("left:"), "{all}");
    let ro = s.fx.path("ro");
    std::fs::create_dir(&ro).unwrap();
    let all = mountns::run(
        Mount::ReadOnly,
        &ro,
        r#"RUST_LOG=warn "$2" backup --config "$3" --out "$1/b"; echo "rc=$?""#,
        &[BIN, &s.cfg],
    );
    assert!(all.contains("rc=2"), "{all}");
    assert!(all.contains("Read-only file system"), "{all}");
    // The outbox is untouched: a backup to a good directory still works.
    let out = s.backup(&s.fx.path("good"));
    assert!(out.status.success(), "{}", text(&out.stderr));
}
