//! The sender's TOML configuration: structs, defaults, and the checks run at start-up.
//!
//! Every struct denies unknown keys. A parse error names the file, line and key (toml's own
//! message); a value error names the file, the dotted key and what is allowed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use airlock_daemon::config_check::ConfigError;
use airlock_daemon::config_check::{self, Key, KeyProblem};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the outbox database, the spool directory and status.json live.
    pub data_dir: PathBuf,
    pub keys: KeysConfig,
    pub link: LinkConfig,
    #[serde(default)]
    pub fec: FecConfig,
    #[serde(default)]
    pub send: SendConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// The outside portal (`airlock-sender run` serves it when present).
    #[serde(default)]
    pub portal: Option<crate::portal::PortalConfig>,
    /// The file this was read from (not a TOML key), for error messages.
    #[serde(skip)]
    pub source_file: PathBuf,
}

/// Key files, as written by `airlock-sender keygen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Ed25519 signer key, PKCS#8 PEM.
    pub signer: PathBuf,
    /// Link (encryption) key file.
    pub link: PathBuf,
}

/// The one-way link: exactly one of `udp` or `serial`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub udp: Option<UdpConfig>,
    pub serial: Option<SerialConfig>,
    /// Largest datagram (UDP payload, or serial datagram before COBS) in bytes.
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// Largest block of packed frames handed to FEC.
    #[serde(default = "default_max_block_bytes")]
    pub max_block_bytes: usize,
    /// How long a partly filled block may wait for more frames.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    /// Unicast or multicast destination, e.g. "192.0.2.10:7400" or "239.10.0.1:7400".
    pub target: SocketAddr,
    /// Local address to send from; default any address, any port.
    pub bind: Option<SocketAddr>,
    /// Multicast TTL (IPv4) or hop limit (IPv6); only for multicast targets.
    pub multicast_ttl: Option<u32>,
    /// IPv4 address of the interface to send multicast on (IPv4 groups only).
    pub multicast_interface: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub device: String,
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FecConfig {
    /// Repair symbols per block = max(min_repair, ceil(K * repair_ratio)).
    pub repair_ratio: f64,
    pub min_repair: u32,
}

impl Default for FecConfig {
    /// What the loss figures were measured with (decisions D18); docs/protocol.md section 11
    /// is checked against it.
    fn default() -> Self {
        Self {
            repair_ratio: 0.25,
            min_repair: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// How many times every frame goes out (1 = once).
    pub repetitions: u32,
    /// Time between two repetitions of a frame.
    pub repetition_spacing_ms: u64,
    /// Token-bucket rate in bytes per second on the wire; 0 turns pacing off.
    pub pacing_bytes_per_sec: u64,
    /// A Heartbeat frame every this many seconds.
    pub heartbeat_secs: u32,
    /// Re-seal all valid Provision state every this many seconds; 0 turns the carousel off.
    pub carousel_secs: u64,
    /// Give the signing thread a CPU of its own when the process may use two or more
    /// (see `cores.rs`); false leaves thread placement to the scheduler.
    #[serde(default = "yes")]
    pub dedicated_signing_core: bool,
}

fn yes() -> bool {
    true
}

impl Default for SendConfig {
    fn default() -> Self {
        Self {
            repetitions: 2,
            repetition_spacing_ms: 500,
            pacing_bytes_per_sec: 0,
            heartbeat_secs: 5,
            carousel_secs: 3600,
            dedicated_signing_core: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Sent frames stay in the outbound log at least this long (days).
    pub log_retention_days: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            log_retention_days: 400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Local address of the Prometheus endpoint; absent = no endpoint.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// What may cross, from whom, for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Claims that may cross (data minimisation); every other claim is dropped.
    pub claim_allow_list: Vec<String>,
    /// A Provision's valid_until may be at most this far in the future.
    #[serde(default = "default_max_validity_days")]
    pub max_validity_days: u64,
    /// Lifetime of a just-in-time login ticket (and its transfer code).
    #[serde(default = "default_ticket_ttl_secs")]
    pub ticket_ttl_secs: u64,
    /// Largest accepted intake record (JSON or token), in bytes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// The allowed outside issuers, each with its rules. An issuer not listed is refused.
    #[serde(default)]
    pub issuers: Vec<IssuerPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerPolicy {
    pub issuer: String,
    /// If not empty, the `email` claim must end in "@" + one of these domains.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// The user must be in every one of these groups.
    #[serde(default)]
    pub required_groups: Vec<String>,
    /// If not empty, only these subjects may cross.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Whether verified ID tokens of this issuer may become Provisions (not only tickets).
    #[serde(default)]
    pub allow_token_provision: bool,
    /// With `email_domains`, whether the email must carry `email_verified = true` (the
    /// boolean). `false` admits an absent `email_verified` (never `false` or a string):
    /// only for an issuer that verifies every address and never sends the claim.
    #[serde(default = "default_true")]
    pub require_email_verified: bool,
}

fn default_true() -> bool {
    true
}

/// An outside issuer whose ID tokens the sender verifies itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    pub issuer: String,
    /// Pinned JWKS file (the issuer's public keys, copied out of band).
    pub jwks_file: PathBuf,
    /// The `aud` tokens must carry (the client id registered for the sender).
    pub audience: String,
    /// Clock skew tolerated on exp/nbf, seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Tokens older than this (by `iat`) are refused: a ticket is for someone who logged in just now.
    #[serde(default = "default_max_token_age_secs")]
    pub max_token_age_secs: u64,
}

fn default_mtu() -> usize {
    1200
}
fn default_max_block_bytes() -> usize {
    16 * 1024
}
fn default_linger_ms() -> u64 {
    5
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_max_validity_days() -> u64 {
    90
}
fn default_ticket_ttl_secs() -> u64 {
    300
}
fn default_max_record_bytes() -> usize {
    16 * 1024
}
fn default_leeway_secs() -> u64 {
    60
}
fn default_max_token_age_secs() -> u64 {
    600
}

/// The claim names the protocol carries as named fields; others go to `extra`.
pub const STANDARD_CLAIMS: [&str; 7] = [
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "groups",
];

/// Largest block of frames handed to FEC.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024;

/// Smallest and largest datagram the link codec is configured with.
pub const MTU_RANGE: (usize, usize) = (airlock_protocol::link::MIN_DATAGRAM, 65_507);

fn check_udp(udp: &UdpConfig) -> Result<(), KeyProblem> {
    let multicast = udp.target.ip().is_multicast();
    if udp.target.port() == 0 {
        return Err(KeyProblem::new("link.udp.target", "port must not be 0"));
    }
    if !multicast && (udp.multicast_ttl.is_some() || udp.multicast_interface.is_some()) {
        return Err(KeyProblem::new(
            "link.udp.multicast_ttl",
            format!(
                "multicast_ttl/multicast_interface need a multicast target (224.0.0.0/4 or ff00::/8), got {}",
                udp.target
            ),
        ));
    }
    if udp.target.is_ipv6() && udp.multicast_interface.is_some() {
        return Err(KeyProblem::new(
            "link.udp.multicast_interface",
            format!(
                "is an IPv4 address and cannot select the interface for the IPv6 group {}: remove it (the route to the group picks the interface) or use an IPv4 group",
                udp.target
            ),
        ));
    }
    if let Some(ttl) = udp.multicast_ttl {
        Key::new("link.udp.multicast_ttl").range(ttl, 1..=255)?;
    }
    Ok(())
}

fn check_serial(serial: &SerialConfig) -> Result<(), KeyProblem> {
    if serial.device.is_empty() {
        return Err(KeyProblem::missing(
            "link.serial.device",
            "name a device, e.g. \"/dev/ttyS0\"",
        ));
    }
    Key::new("link.serial.baud").range(serial.baud, 300..=4_000_000)?;
    Key::new("link.serial.data_bits").range(serial.data_bits, 5..=8)?;
    Key::new("link.serial.stop_bits").range(serial.stop_bits, 1..=2)
}

impl Config {
    /// Reads, parses and checks a config file. Relative paths inside are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = config_check::read(path)?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and checks config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = config_check::parse_toml(text, file)?;
        config.source_file = file.to_path_buf();
        config.check().map_err(|p| p.in_file(&config.source_file))?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.keys.signer);
        fix(&mut self.keys.link);
        for t in &mut self.trusted_issuers {
            fix(&mut t.jwks_file);
        }
    }

    /// Value checks serde cannot express.
    fn check(&self) -> Result<(), KeyProblem> {
        self.check_link()?;
        self.check_send()?;
        self.check_policy()?;
        self.check_trusted_issuers()
    }

    fn check_link(&self) -> Result<(), KeyProblem> {
        let link = &self.link;
        match (&link.udp, &link.serial) {
            (Some(_), Some(_)) => {
                return Err(KeyProblem::new(
                    "link",
                    "set exactly one of [link.udp] or [link.serial], not both",
                ));
            }
            (None, None) => {
                return Err(KeyProblem::missing(
                    "link",
                    "set one of [link.udp] (target = \"host:port\") or [link.serial] (device, baud)",
                ));
            }
            _ => {}
        }
        if let Some(udp) = &link.udp {
            check_udp(udp)?;
        }
        if let Some(serial) = &link.serial {
            check_serial(serial)?;
        }
        let (lo, hi) = MTU_RANGE;
        Key::new("link.mtu")
            .unit("bytes")
            .range(link.mtu, lo..=hi)?;
        // A frame larger than a block travels alone, so blocks need not hold the largest frame;
        // the receiver's reassembly bound (`link.max_block_bytes`, 256 KiB by default) must
        // hold a block plus one frame.
        Key::new("link.max_block_bytes")
            .unit("bytes")
            .why("a block holds at least one datagram (link.mtu)")
            .range(link.max_block_bytes, link.mtu..=MAX_BLOCK_BYTES)?;
        Key::new("link.linger_ms")
            .unit("ms")
            .at_most(link.linger_ms, 10_000)?;
        let fec = &self.fec;
        Key::new("fec.repair_ratio").range(fec.repair_ratio, 0.0..=4.0)?;
        Key::new("fec.min_repair").at_most(fec.min_repair, 1000)
    }

    fn check_send(&self) -> Result<(), KeyProblem> {
        let s = &self.send;
        Key::new("send.repetitions").range(s.repetitions, 1..=10)?;
        Key::new("send.repetition_spacing_ms")
            .unit("ms (10 minutes)")
            .at_most(s.repetition_spacing_ms, 600_000)?;
        Key::new("send.heartbeat_secs").range(s.heartbeat_secs, 1..=3600)?;
        Key::new("send.carousel_secs").off_or_at_least(s.carousel_secs, 10)?;
        Key::new("send.pacing_bytes_per_sec").off_or_at_least(s.pacing_bytes_per_sec, 100)?;
        Key::new("outbox.log_retention_days")
            .why("auditors reconcile against this log")
            .at_least(self.outbox.log_retention_days, 1)
    }

    fn check_policy(&self) -> Result<(), KeyProblem> {
        let p = &self.policy;
        let max_name = airlock_protocol::limits::MAX_KID;
        for (i, name) in p.claim_allow_list.iter().enumerate() {
            let key = format!("policy.claim_allow_list[{i}]");
            if name.is_empty() || name.len() > max_name {
                return Err(KeyProblem::new(
                    key,
                    format!("claim names are 1 to {max_name} bytes, got {name:?}"),
                ));
            }
            if crate::intake::claims::REGISTERED_CLAIMS.contains(&name.as_str()) {
                return Err(KeyProblem::new(
                    key,
                    format!("{name:?} is a token-protocol claim and never crosses; remove it"),
                ));
            }
        }
        Key::new("policy.max_validity_days").range(p.max_validity_days, 1..=3650)?;
        Key::new("policy.ticket_ttl_secs").range(p.ticket_ttl_secs, 30..=86_400)?;
        Key::new("policy.max_record_bytes").range(p.max_record_bytes, 256..=1_048_576)?;
        let mut seen = BTreeSet::new();
        for (i, rule) in p.issuers.iter().enumerate() {
            if rule.issuer.is_empty() || rule.issuer.len() > airlock_protocol::limits::MAX_TEXT {
                return Err(KeyProblem::new(
                    format!("policy.issuers[{i}].issuer"),
                    "must be the issuer URL exactly as in its tokens (1 to 512 bytes)",
                ));
            }
            if !seen.insert(rule.issuer.as_str()) {
                return Err(KeyProblem::new(
                    format!("policy.issuers[{i}].issuer"),
                    format!("{:?} is listed twice; merge the two entries", rule.issuer),
                ));
            }
            for (j, d) in rule.email_domains.iter().enumerate() {
                if d.is_empty() || d.contains('@') {
                    return Err(KeyProblem::new(
                        format!("policy.issuers[{i}].email_domains[{j}]"),
                        format!("must be a bare domain such as \"example.com\", got {d:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_trusted_issuers(&self) -> Result<(), KeyProblem> {
        let mut seen = BTreeSet::new();
        for (i, t) in self.trusted_issuers.iter().enumerate() {
            let key = format!("trusted_issuers[{i}].issuer");
            if !self.policy.issuers.iter().any(|p| p.issuer == t.issuer) {
                return Err(KeyProblem::new(
                    key,
                    format!(
                        "{:?} has no [[policy.issuers]] entry; add one, or its tokens could never pass policy",
                        t.issuer
                    ),
                ));
            }
            if !seen.insert(t.issuer.as_str()) {
                return Err(KeyProblem::new(
                    key,
                    format!("{:?} is listed twice", t.issuer),
                ));
            }
            if t.audience.is_empty() {
                return Err(KeyProblem::missing(
                    format!("trusted_issuers[{i}].audience"),
                    "set the client id the tokens are issued to",
                ));
            }
            Key::new(format!("trusted_issuers[{i}].leeway_secs")).at_most(t.leeway_secs, 600)?;
        }
        Ok(())
    }

    /// The spool directory `submit` and `resend` write into and `run` drains.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// The sled outbox database.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("outbox.sled")
    }

    /// The status snapshot the daemon keeps current.
    pub fn status_file(&self) -> PathBuf {
        self.data_dir.join("status.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md states the sender's FEC defaults twice; both must be the code's.
    #[test]
    fn documented_fec_defaults_are_the_code_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let fec = FecConfig::default();
        for needle in [
            format!(
                "| repair ratio / min repair | {} / {} | sender |",
                fec.repair_ratio, fec.min_repair
            ),
            format!(
                "`repair_ratio` {}, `min_repair` {}",
                fec.repair_ratio, fec.min_repair
            ),
        ] {
            assert!(
                doc.contains(&needle),
                "docs/protocol.md should say `{needle}`"
            );
        }
    }
}
