//! The binary's commands as an operator uses them.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn keygen_writes_private_files_0600_prints_fingerprints_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("k");
    let out = run(&[
        "keygen",
        "--out",
        out_dir.to_str().unwrap(),
        "--link-kid",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("signer fingerprint:") && stdout.contains("link kid:           4"),
        "{stdout}"
    );
    for (f, mode) in [
        ("signer.pem", 0o600),
        ("link.key", 0o600),
        ("signer.pub.pem", 0o644),
    ] {
        let m = std::fs::metadata(out_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    let again = run(&["keygen", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("never overwritten"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn submit_prints_one_line_per_refused_record_and_exits_1() {
    let fx = Fixture::udp(9);
    let cfg = fx.config_path.to_str().unwrap();
    let bad = write_input(
        fx.dir.path(),
        "bad.json",
        &format!(
            "{}\n{{\"kind\":\"provision\",\"issuer\":1}}\n{{oops",
            provision_record("ok")
        ),
    );
    let out = run(&["submit", "--config", cfg, &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("refused: "))
        .collect();
    assert_eq!(refused.len(), 2, "{stderr}");
    assert!(
        refused[0].contains("bad.json#2: not an approval record"),
        "{stderr}"
    );
    assert!(
        refused[1].contains("bad.json#3: malformed JSON"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was queued"));
    assert!(
        airlock_sender::spool::list(&fx.config().spool_dir())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn submit_from_stdin_queues_and_prints_transfer_codes() {
    let fx = Fixture::udp(9);
    let cfg = fx.config_path.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["submit", "--config", cfg, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sign_token(&good_claims("cli")).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let code = stdout
        .split("transfer code ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        airlock_sender::transfer_code::TransferCode::parse(code).is_ok(),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("does not seem to be running"));
    assert_eq!(
        airlock_sender::spool::list(&fx.config().spool_dir())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn config_errors_exit_2_with_the_file_and_key() {
    let fx = Fixture::udp(9);
    let text_cfg = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("mtu = 1200", "mtu = 7");
    std::fs::write(&fx.config_path, text_cfg).unwrap();
    for cmd in ["run", "submit", "status"] {
        let out = run(&[cmd, "--config", fx.config_path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("sender.toml") && stderr.contains("key `link.mtu`"),
            "{stderr}"
        );
    }
}

#[test]
fn resend_validates_its_range_and_status_reports_a_stopped_daemon() {
    let fx = Fixture::udp(9);
    let cfg = fx.config_path.to_str().unwrap();
    let out = run(&["resend", "--config", cfg, "--from", "5", "--to", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["resend", "--config", cfg, "--from", "2", "--to", "5"]);
    assert!(out.status.success());
    let out = run(&["status", "--config", cfg]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("not running") && stdout.contains("1 spool file(s) waiting"),
        "{stdout}"
    );
}

#[test]
fn status_of_a_running_daemon_and_clean_sigterm() {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fx = Fixture::udp(sink.local_addr().unwrap().port());
    let cfg = fx.config_path.to_str().unwrap().to_string();
    let mut child = Command::new(BIN)
        .args(["run", "--config", &cfg])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stdout = loop {
        let out = run(&["status", "--config", &cfg]);
        if out.status.success() {
            break text(&out.stdout);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon never reported running"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(stdout.contains("daemon:             running"), "{stdout}");
    // The start-up heartbeat is the first frame of a new chain, at a clock-derived seq.
    let last: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("last seq:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        last >= airlock_protocol::chain::seq_base(1_700_000_000_000),
        "the start-up heartbeat: {stdout}"
    );
    airlock_tests::supervisor::sigterm(child.id()).unwrap();
    assert!(child.wait().unwrap().success());
    let out = run(&["status", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(3), "stopped after SIGTERM");
}
