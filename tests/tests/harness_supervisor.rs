//! The process supervisor: log capture, waits, SIGKILL, restart, cleanup on drop.

use std::path::PathBuf;
use std::time::Duration;

use airlock_tests::supervisor::{self, Child, ChildSpec, SupervisorError};

fn sh(dir: &tempfile::TempDir, name: &str, script: &str) -> ChildSpec {
    ChildSpec::new(
        name,
        PathBuf::from("/bin/sh"),
        dir.path().join(format!("{name}.log")),
    )
    .arg("-c")
    .arg(script)
}

#[tokio::test]
async fn waits_for_log_kills_and_restarts() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut c = Child::start(sh(&dir, "sleeper", "echo run $$ ready; exec sleep 30")).unwrap();
    let line = c
        .wait_for_log("ready", Duration::from_secs(10))
        .await
        .unwrap();
    let first_pid = c.pid().unwrap();
    assert!(line.contains(&first_pid.to_string()), "{line}");
    assert!(c.is_running());

    let status = c.kill9().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    assert!(!c.is_running());

    c.restart().await.unwrap();
    c.wait_for_log("ready", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(c.starts(), 2);
    assert_ne!(c.pid().unwrap(), first_pid);
    // The current run's log holds only the second run; the whole log holds both.
    assert_eq!(c.run_log().matches("ready").count(), 1);
    assert_eq!(c.log().matches("ready").count(), 2);

    let status = c.terminate(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status.signal(), Some(15));
}

#[tokio::test]
async fn reports_a_child_that_exits_while_waited_for() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut c = Child::start(sh(&dir, "quitter", "echo oops >&2; exit 3")).unwrap();
    let err = c
        .wait_for_log("never printed", Duration::from_secs(10))
        .await
        .unwrap_err();
    match err {
        SupervisorError::Exited { status, tail, .. } => {
            assert_eq!(status.code(), Some(3));
            assert!(tail.contains("oops"), "stderr is captured: {tail}");
        }
        other => panic!("expected Exited, got {other}"),
    }
}

#[tokio::test]
async fn times_out_and_waits_for_a_port() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut c = Child::start(sh(&dir, "idle", "exec sleep 30")).unwrap();
    let err = c
        .wait_for_log("x", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, SupervisorError::Timeout { .. }), "{err}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    c.wait_for_port(addr, Duration::from_secs(5)).await.unwrap();
    drop(listener);
    let err = c
        .wait_for_port(addr, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, SupervisorError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn dropping_the_handle_kills_the_child() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let c = Child::start(sh(&dir, "orphan", "exec sleep 30")).unwrap();
    let pid = c.pid().unwrap();
    drop(c);
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting to be reaped: either way no longer running.
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s)
                if s.split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z')) =>
            {
                break;
            }
            Ok(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn run_captures_output_and_failures() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let sh = std::path::Path::new("/bin/sh");
    let out = supervisor::run_ok(sh, &["-c", "echo hi"], &[], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout, "hi\n");
    let err = supervisor::run_ok(
        sh,
        &["-c", "echo bad >&2; exit 4"],
        &[],
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("bad"), "{err}");
    let err = supervisor::run(sh, &["-c", "sleep 5"], &[], Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, SupervisorError::CommandTimeout { .. }));
}

#[test]
fn missing_binary_says_how_to_build_it() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let err = supervisor::binary("airlock-no-such-binary").unwrap_err();
    assert!(err.to_string().contains("cargo build --workspace"), "{err}");
    assert!(supervisor::workspace_root().join("Cargo.toml").is_file());
}
