//! Runs a test's scenario inside an unprivileged network namespace of its own.
//!
//! `unshare --user --map-root-user --net --pid --fork --kill-child` gives root inside a
//! fresh network (only `lo`, down) without privileges outside; a setup script (with `ip`)
//! shapes it, then the test binary re-executes itself in there, running only the named
//! test with an environment variable that tells it it is inside. Its output streams into
//! the calling test's output, each line prefixed with `ns| `. When the run ends, or is
//! killed, nothing started in the namespace survives it (its pid namespace dies with it).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::supervisor;

/// One namespace run.
pub struct NamespaceRun<'a> {
    /// The test (its function name) to run again inside.
    pub test_name: &'a str,
    /// `module_path!()` where the test is: the test binary names it by that path.
    pub module: &'a str,
    /// Set to `inner_value` inside, so the test knows where it runs.
    pub inner_env: &'a str,
    pub inner_value: &'a str,
    /// Shell script that sets the network up, then must end with `exec "$0" "$@"`; `ip` is
    /// "$AIRLOCK_NS_IP".
    pub setup: &'a str,
    /// The line the inner run prints last on success (an inner filter that matches no
    /// test also exits 0, so success alone proves nothing).
    pub done_marker: &'a str,
    /// A backstop: the inner side should have its own, shorter deadline.
    pub deadline: Duration,
}

impl NamespaceRun<'_> {
    /// Whether this process is the inner run.
    pub fn is_inner(&self) -> bool {
        std::env::var_os(self.inner_env).is_some_and(|v| v == self.inner_value)
    }

    /// Runs the test again inside a fresh namespace and panics unless it passed.
    pub fn run_outside(&self) {
        let unshare = find_tool("unshare").unwrap_or_else(|| {
            panic!(
                "`unshare` not found (searched PATH, /usr/sbin, /sbin): this test runs in an \
                 unprivileged network namespace; install Debian's util-linux (`apt-get install util-linux`)"
            )
        });
        let ip = find_tool("ip").unwrap_or_else(|| {
            panic!(
                "`ip` not found (searched PATH, /usr/sbin, /sbin): this test sets up its \
                 network namespace with it; install Debian's iproute2 \
                 (`apt-get install iproute2`, or run scripts/install-test-deps)"
            )
        });
        // Build here, where cargo has everything it may need; the inner side only runs binaries.
        supervisor::ensure_daemons_built().unwrap();
        let exe = std::env::current_exe().unwrap();
        // The test binary's names leave out its own crate name (`integration::`).
        let exact = match self.module.split_once("::") {
            Some((_, path)) => format!("{path}::{}", self.test_name),
            None => self.test_name.to_string(),
        };
        let started = Instant::now();
        // "$0" is this test binary, "$@" its arguments.
        let mut child = Command::new(&unshare)
            .args([
                "--user",
                "--map-root-user",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
            ])
            .args(["--", "sh", "-c", self.setup])
            .arg(&exe)
            .args([exact.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(self.inner_env, self.inner_value)
            .env("AIRLOCK_NS_IP", &ip)
            .env("AIRLOCK_TEST_NO_BUILD", "1")
            .env("RUST_BACKTRACE", "1")
            // Plain daemon logs (tracing honours NO_COLOR), readable when a failure prints them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", unshare.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let relays = [
            relay(child.stdout.take().unwrap(), output.clone()),
            relay(child.stderr.take().unwrap(), output.clone()),
        ];
        let deadline = started + self.deadline;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // SIGKILL to unshare; --kill-child then kills the namespace's init, and with
                // it every process in the namespace.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for r in relays {
            let _ = r.join();
        }
        let output = output.lock().unwrap().clone();
        let Some(status) = status else {
            panic!(
                "the namespace run did not finish within {:?}; its output is above (`ns| ` lines)",
                self.deadline
            );
        };
        assert!(
            status.success() && output.contains(self.done_marker),
            "the scenario in the namespace failed ({status}); its output is above \
             (`ns| ` lines). If `unshare` itself failed (e.g. \"write failed /proc/self/uid_map\" \
             or \"Operation not permitted\"), unprivileged user namespaces are disabled on this \
             machine: `sysctl kernel.unprivileged_userns_clone=1` (Debian) or \
             `sysctl kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu)."
        );
        eprintln!(
            "namespace run of {} passed in {:.1} s",
            self.test_name,
            started.elapsed().as_secs_f64()
        );
    }
}

/// The runtime an inner scenario runs on (two workers, like the machine).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Copies a pipe of the inner run, line by line, into this test's output and into `all`.
fn relay(pipe: impl Read + Send + 'static, all: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            eprintln!("ns| {line}");
            let mut all = all.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    })
}

/// An executable named `name` on PATH, or in the sbin directories a non-root PATH may lack.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Prints the last lines of each named log in a directory when the scenario panics.
pub struct LogTails {
    pub dir: PathBuf,
    pub logs: &'static [&'static str],
}

impl Drop for LogTails {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in self.logs {
            let log = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- last lines of {name} ----");
            for l in &lines[lines.len().saturating_sub(25)..] {
                eprintln!("{l}");
            }
        }
    }
}
