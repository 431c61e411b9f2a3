//! Shared test harness: keys and config in a temp dir, the real `airlock-receiver` binary,
//! a sender built from the protocol crate (Sealer + BlockPacker + BlockEncoder), metrics
//! scraping.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_protocol::keys::{LinkKey, SignerKey};
use airlock_protocol::link::{BlockEncoder, BlockPacker, LinkParams};
use airlock_protocol::message::{Approval, Body, Claims, Envelope, Heartbeat, Provision};
use airlock_protocol::seal::{SealedFrame, Sealer};
use airlock_tests::peer::Chain;

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock-receiver");
pub const ISSUER: &str = "https://login.example.org";

pub use airlock_tests::ops::unix_now as now;

pub fn free_udp_port() -> u16 {
    airlock_tests::ops::free_udp_port().unwrap().port()
}

pub fn free_tcp_port() -> u16 {
    airlock_tests::ops::free_tcp_port().unwrap().port()
}

/// A receiver installation in a temp dir: keys, config, data dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub signer: SignerKey,
    pub link: LinkKey,
    pub udp_port: u16,
    pub ops: SocketAddr,
}

pub enum LinkKind {
    Udp,
    Serial(String),
}

impl Setup {
    pub fn new(link: LinkKind) -> Self {
        Self::with_extra(link, "")
    }

    pub fn with_extra(link: LinkKind, extra: &str) -> Self {
        Self::build(link, extra, "")
    }

    /// UDP, with `udp_extra` lines added to the [link.udp] table.
    pub fn with_udp_options(udp_extra: &str) -> Self {
        Self::build(LinkKind::Udp, "", udp_extra)
    }

    fn build(link: LinkKind, extra: &str, udp_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = SignerKey::generate();
        let linkkey = LinkKey::generate(7);
        let pubpem = signer.public().to_spki_pem().unwrap();
        std::fs::write(dir.path().join("signer.pub"), pubpem).unwrap();
        std::fs::write(dir.path().join("link.key"), linkkey.to_text().as_bytes()).unwrap();
        let udp_port = free_udp_port();
        let ops = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let link_section = match &link {
            LinkKind::Udp => format!(
                "[link.udp]\nlisten = \"127.0.0.1:{udp_port}\"\nreceive_buffer_bytes = 4194304\n{udp_extra}\n"
            ),
            LinkKind::Serial(dev) => format!("[link.serial]\ndevice = \"{dev}\"\nbaud = 115200\n"),
        };
        let config = dir.path().join("receiver.toml");
        let heartbeat = if extra.contains("[heartbeat]") {
            ""
        } else {
            "[heartbeat]\nalarm_after_secs = 3600\n"
        };
        let text = format!(
            "data_dir = \"data\"\n\
             [trust]\nsigners = [\"signer.pub\"]\nlink_keys = [\"link.key\"]\ndir = \"trust.d\"\n\
             [freshness]\nmax_age_secs = 3600\nmax_skew_secs = 60\n\
             {heartbeat}\
             [ops]\nlisten = \"{ops}\"\n\
             {extra}\n\
             [link]\ndatagram_size = 1400\n{link_section}"
        );
        std::fs::write(&config, text).unwrap();
        Setup {
            dir,
            config,
            signer,
            link: linkkey,
            udp_port,
            ops,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn start(&self) -> Receiver {
        Receiver::start(self)
    }

    /// Makes `other` a second receiver of this one's cluster: the same trusted signer and
    /// link key, and the same checkpoint key (made now with `checkpoint keygen` when this
    /// one has none yet): one store, one log, one key.
    pub fn share_keys_with(&self, other: &Setup) {
        if !self.path().join("data/checkpoint.key").exists() {
            let (ok, out, err) = self.cli(&["checkpoint", "keygen"]);
            assert!(ok, "checkpoint keygen: {out}{err}");
        }
        std::fs::create_dir_all(other.path().join("data")).unwrap();
        for f in [
            "signer.pub",
            "link.key",
            "data/checkpoint.key",
            "data/checkpoint.pub",
        ] {
            std::fs::copy(self.path().join(f), other.path().join(f)).unwrap();
        }
    }

    /// Runs `airlock-receiver run` expecting it to refuse to start; returns what it wrote
    /// to stderr. Panics when it comes up instead (its `/healthz` answers), exits with
    /// success, or neither within 60 s. A sled store a test has just tampered with may still
    /// be locked by sled's background thread for a moment: that case is retried.
    pub fn start_refused(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = self.path().join("refused.log");
        loop {
            let logf = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(BIN)
                .args(["run", "--config", self.config.to_str().unwrap()])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .unwrap();
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if airlock_receiver::ops_client::get(self.ops, "/healthz").is_ok()
                    || Instant::now() > deadline
                {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the receiver started (or hung) where it should have refused:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!status.success(), "exited with success: {text}");
            if text.contains("is in use by another process") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return text;
        }
    }

    /// Runs a CLI subcommand to completion; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut full: Vec<&str> = args.to_vec();
        let cfg = self.config.to_str().unwrap();
        full.push("--config");
        full.push(cfg);
        let out = Command::new(BIN).args(&full).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn users_json(&self) -> Vec<serde_json::Value> {
        let (ok, out, err) = self.cli(&["users", "--json"]);
        assert!(ok, "users failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    pub fn gaps_json(&self) -> serde_json::Value {
        let (ok, out, err) = self.cli(&["gaps", "--json"]);
        assert!(ok, "gaps failed: {err}");
        serde_json::from_str(&out).unwrap()
    }
}

/// The running binary; killed on drop.
pub struct Receiver {
    pub child: Child,
    pub ops: SocketAddr,
    pub log: PathBuf,
}

impl Receiver {
    pub fn start(setup: &Setup) -> Self {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(setup.path().join("receiver.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", setup.config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let r = Receiver {
            child,
            ops: setup.ops,
            log: setup.path().join("receiver.log"),
        };
        r.wait_ready(setup);
        r
    }

    fn wait_ready(&self, setup: &Setup) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if airlock_receiver::ops_client::get(self.ops, "/healthz").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "receiver did not come up: {}",
            std::fs::read_to_string(setup.path().join("receiver.log")).unwrap_or_default()
        );
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = airlock_receiver::ops_client::get(self.ops, "/metrics").unwrap();
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    /// Polls /metrics until `cond` holds (generous deadline: a wait, not a timing assertion).
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let m = self.metrics();
            if cond(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; metrics:\n{}", m.raw);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (clean stop); SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let _ = airlock_tests::supervisor::stop_std(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parsed Prometheus text.
pub struct Metrics {
    pub values: BTreeMap<String, f64>,
    pub raw: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Metrics {
            values: airlock_tests::ops::parse_metrics(text),
            raw: text.to_owned(),
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0.0) as u64
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.get(&format!(
            "airlock_frames_rejected_total{{reason=\"{reason}\"}}"
        ))
    }

    pub fn rejected_total(&self) -> u64 {
        self.values
            .iter()
            .filter(|(k, _)| k.starts_with("airlock_frames_rejected_total"))
            .map(|(_, v)| *v as u64)
            .sum()
    }

    pub fn accepted(&self) -> u64 {
        self.get("airlock_frames_accepted_total")
    }

    pub fn received(&self) -> u64 {
        self.get("airlock_frames_received_total")
    }

    pub fn duplicates(&self) -> u64 {
        self.get("airlock_frames_duplicate_total")
    }
}

/// A sender made of protocol-crate parts.
pub struct TestSender {
    /// Seals the frames: the test kit's [`Chain`].
    pub chain: Chain,
    pub session_id: u64,
    encoder: BlockEncoder,
    params: LinkParams,
}

pub fn claims(i: u64) -> Claims {
    Claims {
        email: Some(format!("user{i}@example.org")),
        email_verified: Some(true),
        name: Some(format!("User Number {i}")),
        given_name: Some("User".into()),
        family_name: Some(format!("Number{i}")),
        preferred_username: Some(format!("user{i}")),
        groups: vec![
            "engineering".into(),
            "inside-app-users".into(),
            "analytical-engines".into(),
        ],
        extra: [(
            "department".to_string(),
            "Research and Development".to_string(),
        )]
        .into(),
    }
}

pub fn approval() -> Approval {
    Approval {
        approver: "grace.hopper@example.org".into(),
        approved_at: now() - 60,
        ticket_ref: "CHG-2026-1142".into(),
    }
}

pub fn provision(i: u64) -> Body {
    Body::Provision(Provision {
        issuer: ISSUER.into(),
        subject: format!("subject-{i}"),
        claims: claims(i),
        approval: approval(),
        valid_until: now() + 90 * 86_400,
    })
}

pub fn heartbeat(session_id: u64) -> Body {
    Body::Heartbeat(Heartbeat {
        session_id,
        interval_secs: 5,
    })
}

impl TestSender {
    pub fn new(signer: &SignerKey, link: &LinkKey) -> Self {
        let params = LinkParams {
            datagram_size: 1400,
            ..LinkParams::default()
        };
        let session_id = rand_u64();
        Self {
            chain: Chain::new(Sealer::new(clone_signer(signer), link.clone())),
            session_id,
            encoder: BlockEncoder::new(session_id, &params).unwrap(),
            params,
        }
    }

    pub fn envelope(&self, seq: u64, body: Body, issued_at: u64) -> Envelope {
        self.chain.envelope(seq, body, issued_at)
    }

    /// Seals the next frame of the chain.
    pub fn next(&mut self, body: Body) -> SealedFrame {
        self.chain.seal_next(body, now()).unwrap()
    }

    /// Packs sealed frames into blocks and FEC-encodes them into datagrams.
    pub fn datagrams(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        let mut packer = BlockPacker::new(self.params.max_block_bytes, Duration::from_secs(3600));
        let t = Instant::now();
        let mut blocks = Vec::new();
        for f in frames {
            if let Some(b) = packer.push(f, t) {
                blocks.push(b);
            }
        }
        if let Some(b) = packer.flush() {
            blocks.push(b);
        }
        blocks
            .iter()
            .map(|b| self.encoder.encode(b).unwrap())
            .collect()
    }

    /// Sends frames over UDP, pacing per block so the loopback buffer does not overflow.
    pub fn send_udp(&mut self, port: u16, frames: &[Vec<u8>]) {
        self.send_udp_from("127.0.0.1", port, frames);
    }

    /// [`Self::send_udp`] from a chosen local address (any of 127.0.0.0/8 works on Linux).
    pub fn send_udp_from(&mut self, local: &str, port: u16, frames: &[Vec<u8>]) {
        let sock = UdpSocket::bind((local, 0)).unwrap();
        for block in self.datagrams(frames) {
            for d in block {
                sock.send_to(&d, ("127.0.0.1", port)).unwrap();
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// The COBS byte stream for a serial line.
    pub fn serial_bytes(&mut self, frames: &[Vec<u8>]) -> Vec<u8> {
        self.datagrams(frames)
            .into_iter()
            .flatten()
            .flat_map(|d| airlock_protocol::link::cobs::frame(&d))
            .collect()
    }
}

/// The tests that use the test PostgreSQL share it, and share one process: a test that drops
/// every receiver connection to it (what a PostgreSQL restart does) holds [`pg_alone`], the
/// others [`pg_shared`] (or [`pg_shared_async`] in an async test). A tokio lock, so that an
/// async test may hold it across awaits; it does not poison, so a failed test leaves nothing
/// the next one depends on.
static PG: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Use the test PostgreSQL alongside other tests (see [`pg_alone`]); not in async code.
pub fn pg_shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    PG.blocking_read()
}

/// [`pg_shared`] for an async test.
pub async fn pg_shared_async() -> tokio::sync::RwLockReadGuard<'static, ()> {
    PG.read().await
}

/// Use the test PostgreSQL with no other test connected to it; not in async code.
pub fn pg_alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    PG.blocking_write()
}

/// The test PostgreSQL (`AIRLOCK_TEST_PG_URL`), or None after saying on stderr that `test`
/// is skipped and how to run it.
pub fn pg_url(test: &str) -> Option<String> {
    let url = std::env::var("AIRLOCK_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty());
    if url.is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{test}: SKIPPED: AIRLOCK_TEST_PG_URL is not set \
             (start a cluster with `scripts/pg start DIR PORT` and export the URL it prints)"
        );
    }
    url
}

/// A schema of its own on the test database `url`, named `<tag>_<random>`: (the schema,
/// `url` with it as the search_path). Drop it with `DROP SCHEMA <schema> CASCADE`.
pub fn fresh_pg_schema(url: &str, tag: &str) -> (String, String) {
    let schema = format!("{tag}_{:x}", rand_u64() >> 16);
    let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    (
        schema.clone(),
        format!("{url}{sep}options=-c%20search_path%3D{schema}"),
    )
}

pub fn rand_u64() -> u64 {
    use rand::RngCore;
    rand::rngs::OsRng.next_u64()
}

/// Sends raw datagrams.
pub fn send_raw(port: u16, datagrams: &[Vec<u8>]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in datagrams {
        sock.send_to(d, ("127.0.0.1", port)).unwrap();
    }
}

pub fn clone_signer(k: &SignerKey) -> SignerKey {
    SignerKey::from_pkcs8_pem(&k.to_pkcs8_pem().unwrap()).unwrap()
}

/// A Provision whose sealed frame is about 600 bytes (the benchmarks' frame size).
pub fn sized_provision(tx: &TestSender, i: u64) -> Body {
    let mut body = provision(i);
    let size = |b: &Body| {
        tx.chain
            .sealer
            .seal(&tx.envelope(1, b.clone(), now()))
            .unwrap()
            .sealed
            .len()
    };
    let base = size(&body);
    if let Body::Provision(p) = &mut body {
        p.claims
            .extra
            .insert("pad".into(), "x".repeat(600usize.saturating_sub(base + 12)));
    }
    body
}

/// Sends sealed frames over UDP as fast as the receiver takes them: at most `window` frames
/// in flight (sent, not yet received), as a paced diode sender would keep it, so the
/// loopback socket buffer does not overflow. Encodes up front, so the time measured from the
/// returned instant is the receiver's. Waits until every frame was dealt with.
pub fn send_windowed(
    rx: &Receiver,
    port: u16,
    tx: &mut TestSender,
    frames: &[Vec<u8>],
    window: u64,
) -> (Instant, Metrics) {
    let chunks: Vec<Vec<Vec<Vec<u8>>>> = frames.chunks(500).map(|c| tx.datagrams(c)).collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    let start = Instant::now();
    for (chunk, n) in chunks
        .iter()
        .zip(frames.chunks(500).map(|c| c.len() as u64))
    {
        while sent.saturating_sub(rx.metrics().received()) > window {
            std::thread::sleep(Duration::from_millis(1));
        }
        for block in chunk {
            for d in block {
                sock.send_to(d, ("127.0.0.1", port)).unwrap();
            }
        }
        sent += n;
    }
    let total = frames.len() as u64;
    let m = rx.wait_for("all frames", |m| {
        m.accepted() + m.rejected_total() + m.duplicates() >= total
    });
    (start, m)
}
