//! Runs the real binaries as child processes: logs to a file, waits for a log line or a TCP
//! port, SIGKILLs and restarts them, and never leaves one behind (children die with the
//! [`Child`] value, even when a test fails).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "binary {path} not found: run `cargo build --workspace` (or `cargo build -p {name}`) first"
    )]
    MissingBinary { name: String, path: PathBuf },
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} is not running")]
    NotRunning { name: String },
    #[error("cannot signal {name}: {source}")]
    Signal { name: String, source: nix::Error },
    #[error("{name}: timed out after {waited:?} waiting for {what}; last log lines:\n{tail}")]
    Timeout {
        name: String,
        what: String,
        waited: Duration,
        tail: String,
    },
    #[error("{name} exited ({status}) while waiting for {what}; last log lines:\n{tail}")]
    Exited {
        name: String,
        what: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("`{command}` failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error(
        "building the daemons failed (`cargo build -p airlock-sender -p airlock-receiver`):\n{stderr}"
    )]
    Build { stderr: String },
    #[error("`{command}` did not finish within {waited:?}")]
    CommandTimeout { command: String, waited: Duration },
}

/// Sends SIGTERM to process `pid` (a clean stop of a daemon).
pub fn sigterm(pid: u32) -> Result<(), nix::Error> {
    kill(
        Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
        Signal::SIGTERM,
    )
}

/// SIGTERM to a child started with `std::process::Command`, then SIGKILL if it is still
/// running after `grace`; returns how it ended.
pub fn stop_std(child: &mut std::process::Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if sigterm(child.id()).is_ok() {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Already gone, or deaf to SIGTERM: wait() tells which.
    let _ = child.kill();
    child.wait()
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// `target/debug/<name>` of the workspace, or an error saying how to build it.
pub fn binary(name: &str) -> Result<PathBuf, SupervisorError> {
    let path = workspace_root().join("target").join("debug").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(SupervisorError::MissingBinary {
            name: name.to_string(),
            path,
        })
    }
}

/// Builds the daemons once per test process (`cargo build -p airlock-sender -p
/// airlock-receiver`), so the end-to-end tests never run a stale or missing binary: `cargo
/// test -p airlock-tests` does not build other packages' binaries by itself. Set
/// AIRLOCK_TEST_NO_BUILD=1 to use whatever is in target/debug.
pub fn ensure_daemons_built() -> Result<(), SupervisorError> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if std::env::var_os("AIRLOCK_TEST_NO_BUILD").is_some_and(|v| v == "1") {
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "build",
                "-p",
                "airlock-sender",
                "-p",
                "airlock-receiver",
                "--bins",
            ])
            .current_dir(workspace_root())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    result
        .clone()
        .map_err(|stderr| SupervisorError::Build { stderr })
}

/// How to start a child: program, arguments, environment, working directory, log file.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// A short name for messages ("receiver").
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr of every run are appended here.
    pub log: PathBuf,
}

impl ChildSpec {
    pub fn new(name: &str, program: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// A supervised child process. Dropping it SIGKILLs the child.
pub struct Child {
    spec: ChildSpec,
    child: Option<tokio::process::Child>,
    /// Where in the log the current run started, so waits only see this run's lines.
    run_offset: u64,
    starts: u32,
}

impl Child {
    /// Starts the child (first run).
    pub fn start(spec: ChildSpec) -> Result<Self, SupervisorError> {
        let mut c = Self {
            spec,
            child: None,
            run_offset: 0,
            starts: 0,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<(), SupervisorError> {
        let log_err = |source| SupervisorError::Log {
            path: self.spec.log.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(log_err)?;
        self.run_offset = log.metadata().map_err(log_err)?.len();
        let err_log = log.try_clone().map_err(log_err)?;
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(true);
        if let Some(dir) = &self.spec.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
            name: self.spec.name.clone(),
            source,
        })?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &ChildSpec {
        &self.spec
    }

    /// How many times the child was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// True if the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The whole log (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// The log of the current run only.
    pub fn run_log(&self) -> String {
        read_from(&self.spec.log, self.run_offset)
    }

    /// The last `n` lines of the log, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until a line of the current run contains `needle`; returns that line.
    pub async fn wait_for_log(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, SupervisorError> {
        let what = format!("log line containing {needle:?}");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.run_log().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            self.check_alive_or_deadline(&what, deadline, timeout)?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub async fn wait_for_port(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        let what = format!("TCP port {addr}");
        let deadline = Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            self.check_alive_or_deadline(&what, deadline, timeout)?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive_or_deadline(
        &mut self,
        what: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            return Err(SupervisorError::Exited {
                name: self.spec.name.clone(),
                what: what.to_string(),
                status,
                tail: self.tail(30),
            });
        }
        if Instant::now() >= deadline {
            return Err(SupervisorError::Timeout {
                name: self.spec.name.clone(),
                what: what.to_string(),
                waited: timeout,
                tail: self.tail(30),
            });
        }
        Ok(())
    }

    /// SIGKILL: the process gets no chance to flush or clean up. Waits until it is gone.
    pub async fn kill9(&mut self) -> Result<ExitStatus, SupervisorError> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| SupervisorError::NotRunning {
                name: self.spec.name.clone(),
            })?;
        // Ignore an error here: the child may have exited on its own; wait() tells.
        let _ = child.start_kill();
        child.wait().await.map_err(|source| SupervisorError::Spawn {
            name: self.spec.name.clone(),
            source,
        })
    }

    /// SIGTERM, then SIGKILL if the child is still running after `grace`.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, SupervisorError> {
        let pid = self.pid().ok_or_else(|| SupervisorError::NotRunning {
            name: self.spec.name.clone(),
        })?;
        sigterm(pid).map_err(|source| SupervisorError::Signal {
            name: self.spec.name.clone(),
            source,
        })?;
        if let Some(child) = self.child.as_mut()
            && let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await
        {
            self.child = None;
            return Ok(status);
        }
        self.kill9().await
    }

    /// Waits for the child to exit by itself.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, SupervisorError> {
        let name = self.spec.name.clone();
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| SupervisorError::NotRunning { name: name.clone() })?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                self.child = None;
                Ok(status)
            }
            Ok(Err(source)) => Err(SupervisorError::Spawn { name, source }),
            Err(_) => Err(SupervisorError::Timeout {
                name,
                what: "exit".into(),
                waited: timeout,
                tail: self.tail(30),
            }),
        }
    }

    /// Starts the child again with the same spec (after a kill, or kills it first).
    pub async fn restart(&mut self) -> Result<(), SupervisorError> {
        if self.child.is_some() {
            let _ = self.kill9().await;
        }
        self.spawn()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_ok() {
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    s
}

/// The output of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion (e.g. `airlock-receiver gaps`), killing it after `timeout`.
pub async fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, SupervisorError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| SupervisorError::CommandTimeout {
            command: command.clone(),
            waited: timeout,
        })?
        .map_err(|source| SupervisorError::Spawn {
            name: command.clone(),
            source,
        })?;
    Ok(Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`run`], but a non-zero exit is an error carrying both outputs.
pub async fn run_ok(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, SupervisorError> {
    let out = run(program, args, env, timeout).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(SupervisorError::CommandFailed {
            command: format!("{} {}", program.display(), args.join(" ")),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
