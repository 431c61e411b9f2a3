//! A complete sender + receiver deployment in a temporary directory, for end-to-end tests:
//! keys, both TOML configs, the link (UDP through a [`UdpRelay`], or serial through a
//! [`SerialPath`]), and supervised daemons.
//!
//! Keys come from `airlock-sender keygen` (signer.pem, signer.pub.pem, link.key), as in the
//! real key ceremony.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::impair::ImpairConfig;
use crate::ops::{self, free_tcp_port, free_udp_port, parse_metrics};
use crate::serial_pty::{SerialPath, SerialPathConfig};
use crate::supervisor::{self, Child, ChildSpec, Output};
use crate::udp_relay::{RelayConfig, UdpRelay};

pub const ISSUER: &str = "https://login.example.org";

/// How to set a deployment up.
#[derive(Debug, Clone)]
pub struct Options {
    pub serial: bool,
    /// UDP straight to this multicast group and port, no relay (and no impairment): the
    /// sender's `link.udp.target` is the group (an IPv4 group is sent on the 127.0.0.1
    /// interface, an IPv6 group where the route says), the receiver joins it (interface:
    /// the route's). Needs a network where multicast is routed (e2e_multicast runs in its
    /// own network namespace).
    pub multicast: Option<SocketAddr>,
    pub impair: ImpairConfig,
    /// Datagrams the relay keeps for replay tests.
    pub record_limit: usize,
    /// `[fec]` repair_ratio and min_repair; None = the sender's defaults.
    pub fec: Option<(f64, u32)>,
    pub repetitions: u32,
    pub repetition_spacing_ms: u64,
    pub heartbeat_secs: u32,
    /// 0 = no carousel.
    pub carousel_secs: u64,
    /// 0 = no pacing.
    pub pacing_bytes_per_sec: u64,
    /// Extra TOML appended to the sender / receiver config (tests of one setting).
    pub sender_extra: String,
    pub receiver_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            serial: false,
            multicast: None,
            impair: ImpairConfig::default(),
            record_limit: 0,
            fec: None,
            repetitions: 1,
            repetition_spacing_ms: 200,
            heartbeat_secs: 1,
            carousel_secs: 0,
            pacing_bytes_per_sec: 0,
            sender_extra: String::new(),
            receiver_extra: String::new(),
        }
    }
}

/// The link between the halves.
pub enum Link {
    Udp(UdpRelay),
    Serial(SerialPath),
    /// Sender and receiver(s) meet on a multicast group, nothing in between.
    Multicast(SocketAddr),
}

pub struct Deployment {
    /// Kept (and its path printed) when a test fails, or always with AIRLOCK_KEEP_TEST_DIRS=1.
    pub dir: tempfile::TempDir,
    pub sender_config: PathBuf,
    pub receiver_config: PathBuf,
    pub sender_metrics: SocketAddr,
    pub receiver_ops: SocketAddr,
    pub link: Link,
    pub sender: Option<Child>,
    pub receiver: Option<Child>,
    sender_bin: PathBuf,
    receiver_bin: PathBuf,
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl Deployment {
    /// Writes keys and configs and starts the link (not the daemons).
    pub async fn create(opts: &Options) -> Result<Self> {
        supervisor::ensure_daemons_built()?;
        let sender_bin = supervisor::binary("airlock-sender")?;
        let receiver_bin = supervisor::binary("airlock-receiver")?;
        let dir = tempfile::Builder::new()
            .prefix("airlock-e2e-")
            .tempdir()
            .context("temp dir")?;
        // The real key ceremony's first step: `airlock-sender keygen`.
        let keys = dir.path().join("keys");
        let keys_arg = keys.display().to_string();
        supervisor::run_ok(
            &sender_bin,
            &["keygen", "--out", &keys_arg],
            &[],
            Duration::from_secs(60),
        )
        .await?;

        let sender_metrics = free_tcp_port()?;
        let receiver_ops = free_tcp_port()?;
        let (link, sender_link, receiver_link) = if opts.serial {
            let path = SerialPath::start(SerialPathConfig {
                impair: opts.impair,
                record_limit: opts.record_limit,
                ..SerialPathConfig::default()
            })?;
            let s = format!(
                "[link.serial]\ndevice = {}\nbaud = 115200\n",
                toml_str(path.sender_device())
            );
            let r = format!(
                "[link.serial]\ndevice = {}\nbaud = 115200\n",
                toml_str(path.receiver_device())
            );
            (Link::Serial(path), s, r)
        } else if let Some(group) = opts.multicast {
            let (s_iface, any) = match group {
                SocketAddr::V4(_) => ("multicast_interface = \"127.0.0.1\"\n", "0.0.0.0"),
                SocketAddr::V6(_) => ("", "[::]"),
            };
            let s = format!("[link.udp]\ntarget = \"{group}\"\nmulticast_ttl = 1\n{s_iface}");
            let r = format!(
                "[link.udp]\nlisten = \"{any}:{}\"\nmulticast_group = \"{}\"\n",
                group.port(),
                group.ip()
            );
            (Link::Multicast(group), s, r)
        } else {
            let receiver_udp = free_udp_port()?;
            let relay = UdpRelay::start(RelayConfig {
                impair: opts.impair,
                record_limit: opts.record_limit,
                ..RelayConfig::to(receiver_udp)
            })
            .await?;
            let s = format!("[link.udp]\ntarget = \"{}\"\n", relay.local_addr());
            let r = format!("[link.udp]\nlisten = \"{receiver_udp}\"\n");
            (Link::Udp(relay), s, r)
        };
        let fec = opts
            .fec
            .map(|(ratio, min)| format!("[fec]\nrepair_ratio = {ratio:?}\nmin_repair = {min}\n"))
            .unwrap_or_default();
        let sender_toml = format!(
            r#"data_dir = "sender-data"

[keys]
signer = "keys/signer.pem"
link = "keys/link.key"

[link]
mtu = 1200
{sender_link}
{fec}
[send]
repetitions = {rep}
repetition_spacing_ms = {spacing}
pacing_bytes_per_sec = {pacing}
heartbeat_secs = {hb}
carousel_secs = {carousel}

[metrics]
listen = "{sender_metrics}"

[policy]
claim_allow_list = ["email", "email_verified", "name", "groups"]

[[policy.issuers]]
issuer = "{ISSUER}"
email_domains = ["example.org"]
{extra}"#,
            rep = opts.repetitions,
            spacing = opts.repetition_spacing_ms,
            pacing = opts.pacing_bytes_per_sec,
            hb = opts.heartbeat_secs,
            carousel = opts.carousel_secs,
            extra = opts.sender_extra,
        );
        let receiver_toml = format!(
            r#"data_dir = "receiver-data"

[link]
datagram_size = 1400
{receiver_link}
[trust]
signers = ["keys/signer.pub.pem"]
link_keys = ["keys/link.key"]

[ops]
listen = "{receiver_ops}"
{extra}"#,
            extra = opts.receiver_extra,
        );
        let sender_config = dir.path().join("sender.toml");
        let receiver_config = dir.path().join("receiver.toml");
        std::fs::write(&sender_config, sender_toml)?;
        std::fs::write(&receiver_config, receiver_toml)?;
        Ok(Self {
            dir,
            sender_config,
            receiver_config,
            sender_metrics,
            receiver_ops,
            link,
            sender: None,
            receiver: None,
            sender_bin,
            receiver_bin,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn relay(&self) -> Option<&UdpRelay> {
        match &self.link {
            Link::Udp(r) => Some(r),
            Link::Serial(_) | Link::Multicast(_) => None,
        }
    }

    fn spec(&self, name: &str, bin: &Path, config: &Path) -> ChildSpec {
        ChildSpec::new(
            name,
            bin.to_path_buf(),
            self.path().join(format!("{name}.log")),
        )
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .cwd(self.path())
    }

    /// Starts `airlock-receiver run` and waits until its ops port answers.
    pub async fn start_receiver(&mut self) -> Result<()> {
        let spec = self.spec("receiver", &self.receiver_bin, &self.receiver_config);
        let mut child = Child::start(spec)?;
        child
            .wait_for_port(self.receiver_ops, Duration::from_secs(30))
            .await?;
        self.receiver = Some(child);
        Ok(())
    }

    /// Starts `airlock-sender run` and waits until its metrics port answers.
    pub async fn start_sender(&mut self) -> Result<()> {
        let spec = self.spec("sender", &self.sender_bin, &self.sender_config);
        let mut child = Child::start(spec)?;
        child
            .wait_for_port(self.sender_metrics, Duration::from_secs(30))
            .await?;
        self.sender = Some(child);
        Ok(())
    }

    /// Stops the sender with SIGTERM (it flushes) and waits up to 10 s for it to exit.
    pub async fn stop_sender(&mut self) -> Result<()> {
        if let Some(sender) = self.sender.as_mut() {
            sender.terminate(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Stops the receiver with SIGTERM and waits up to 10 s for it to exit.
    pub async fn stop_receiver(&mut self) -> Result<()> {
        if let Some(receiver) = self.receiver.as_mut() {
            receiver.terminate(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// SIGKILLs the receiver (no flush, no cleanup).
    pub async fn kill_receiver(&mut self) -> Result<()> {
        let c = self
            .receiver
            .as_mut()
            .context("receiver was never started")?;
        c.kill9().await?;
        Ok(())
    }

    /// Starts the receiver again (SIGKILLing it first if it runs) and waits for its port.
    pub async fn restart_receiver(&mut self) -> Result<()> {
        let ops = self.receiver_ops;
        let c = self
            .receiver
            .as_mut()
            .context("receiver was never started")?;
        c.restart().await?;
        c.wait_for_port(ops, Duration::from_secs(30)).await?;
        Ok(())
    }

    /// SIGKILLs the sender.
    pub async fn kill_sender(&mut self) -> Result<()> {
        let c = self.sender.as_mut().context("sender was never started")?;
        c.kill9().await?;
        Ok(())
    }

    /// Starts the sender again (SIGKILLing it first if it runs) and waits for its port.
    pub async fn restart_sender(&mut self) -> Result<()> {
        let port = self.sender_metrics;
        let c = self.sender.as_mut().context("sender was never started")?;
        c.restart().await?;
        c.wait_for_port(port, Duration::from_secs(30)).await?;
        Ok(())
    }

    /// Runs `airlock-sender ARGS --config sender.toml` to completion.
    pub async fn sender_cli(&self, args: &[&str]) -> Result<Output> {
        cli(&self.sender_bin, args, &self.sender_config).await
    }

    /// Runs `airlock-receiver ARGS --config receiver.toml` to completion.
    pub async fn receiver_cli(&self, args: &[&str]) -> Result<Output> {
        cli(&self.receiver_bin, args, &self.receiver_config).await
    }

    /// The receiver's metrics, parsed.
    pub async fn receiver_metrics(&self) -> Result<std::collections::BTreeMap<String, f64>> {
        let r = ops::http_get(self.receiver_ops, "/metrics").await?;
        Ok(parse_metrics(&r.body))
    }

    /// The sender's metrics, parsed.
    pub async fn sender_metrics(&self) -> Result<std::collections::BTreeMap<String, f64>> {
        let r = ops::http_get(self.sender_metrics, "/metrics").await?;
        Ok(parse_metrics(&r.body))
    }

    /// Writes approval records (JSON lines) to a file and submits them.
    pub async fn submit(&self, name: &str, records: &[serde_json::Value]) -> Result<Output> {
        let file = self.path().join(name);
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(&file, text)?;
        let file = file.display().to_string();
        self.sender_cli(&["submit", &file]).await
    }
}

/// The receiver's gap report (`gaps --json`): missing seq ranges per signer kid.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Gaps {
    pub signers: std::collections::BTreeMap<String, SignerGaps>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SignerGaps {
    pub highest: u64,
    pub missing: Vec<(u64, u64)>,
}

impl Gaps {
    /// Every missing range of every signer.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.signers
            .values()
            .flat_map(|g| g.missing.iter().copied())
            .collect()
    }

    pub fn missing_count(&self) -> u64 {
        self.ranges().iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn highest(&self) -> u64 {
        self.signers.values().map(|g| g.highest).max().unwrap_or(0)
    }
}

impl Deployment {
    /// `airlock-receiver users --json`.
    pub async fn users(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.receiver_cli(&["users", "--json"]).await?;
        serde_json::from_str(&out.stdout).with_context(|| format!("users --json: {}", out.stdout))
    }

    /// `airlock-receiver gaps --json`.
    pub async fn gaps(&self) -> Result<Gaps> {
        let out = self.receiver_cli(&["gaps", "--json"]).await?;
        serde_json::from_str(&out.stdout).with_context(|| format!("gaps --json: {}", out.stdout))
    }

    /// The sender daemon's status.json.
    pub fn sender_status(&self) -> Result<serde_json::Value> {
        let path = self.path().join("sender-data").join("status.json");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Waits until the sender has sealed and sent everything queued so far (heartbeats keep
    /// being sealed meanwhile, so "sent" means: through the last seq seen once the queue was
    /// empty). Returns the status then.
    pub async fn wait_sender_idle(&self, timeout: Duration) -> Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut target: Option<u64> = None;
        loop {
            let status = self.sender_status().ok();
            if let Some(s) = &status {
                let seq = |k: &str| s[k].as_u64().unwrap_or(0);
                let spool = std::fs::read_dir(self.path().join("sender-data").join("spool"))
                    .map(|d| d.count())
                    .unwrap_or(0);
                if target.is_none() && seq("pending_records") == 0 && spool == 0 {
                    target = Some(seq("last_seq"));
                }
                if let Some(t) = target
                    && seq("sent_through") >= t
                {
                    return Ok(s.clone());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("sender not idle after {timeout:?}: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `users` until `n` users are there, or until the count has not grown for
    /// `stall` (returns the count then), or `timeout`.
    pub async fn wait_users(&self, n: usize, stall: Duration, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = (0usize, tokio::time::Instant::now());
        loop {
            let count = self.users().await?.len();
            let now = tokio::time::Instant::now();
            if count >= n {
                return Ok(count);
            }
            if count != last.0 {
                last = (count, now);
            }
            if now - last.1 >= stall || now >= deadline {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Carries every range of the gap report to `airlock-sender resend`; returns the ranges.
    pub async fn resend_gaps(&self) -> Result<Vec<(u64, u64)>> {
        let ranges = self.gaps().await?.ranges();
        for (a, b) in &ranges {
            let (a, b) = (a.to_string(), b.to_string());
            self.sender_cli(&["resend", "--from", &a, "--to", &b])
                .await?;
        }
        Ok(ranges)
    }

    /// Waits until the gap report is empty and the receiver has seen at least `seq`.
    pub async fn wait_no_gaps(&self, seq: u64, timeout: Duration) -> Result<Gaps> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let g = self.gaps().await?;
            if g.missing_count() == 0 && g.highest() >= seq {
                return Ok(g);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("gaps remain after {timeout:?}: {g:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Children die first (their own Drop), then the directory goes unless kept.
        self.sender = None;
        self.receiver = None;
        let keep = std::env::var_os("AIRLOCK_KEEP_TEST_DIRS").is_some_and(|v| v == "1");
        if keep || std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "deployment kept for inspection: {} (logs: sender.log, receiver.log)",
                self.dir.path().display()
            );
        }
    }
}

async fn cli(bin: &Path, args: &[&str], config: &Path) -> Result<Output> {
    let config = config.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config]);
    Ok(supervisor::run_ok(bin, &all, &[], Duration::from_secs(120)).await?)
}

/// A provision approval record for user number `i` (subject `user-{i:05}`).
pub fn provision_record(i: u64, valid_until: u64) -> serde_json::Value {
    serde_json::json!({
        "kind": "provision",
        "issuer": ISSUER,
        "subject": format!("user-{i:05}"),
        "claims": {
            "email": format!("user-{i:05}@example.org"),
            "email_verified": true,
            "name": format!("User {i}"),
            "groups": ["airlock-users"],
        },
        "approver": "grace.hopper@example.org",
        "ticket_ref": format!("CHG-{i}"),
        "valid_until": valid_until,
    })
}
