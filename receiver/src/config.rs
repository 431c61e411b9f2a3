//! The receiver's TOML configuration.
//!
//! Every struct denies unknown keys; every error names the file, the key and what to do.
//! Relative paths are resolved against the directory of the config file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use airlock_daemon::config_check::ConfigError;
use airlock_daemon::config_check::{self, Key, KeyProblem};
use serde::Deserialize;

use crate::link::source_filter::{IpNet, SourceFilter};
use crate::oidc::config::OidcConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store (sled) lives.
    pub data_dir: PathBuf,
    pub link: LinkConfig,
    pub trust: TrustConfig,
    #[serde(default)]
    pub freshness: FreshnessConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The Merkle tree over the frame log and its signed checkpoints.
    #[serde(default)]
    pub transparency: TransparencyConfig,
    /// The OpenID provider; absent means an ingest-only receiver.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Set by [`Config::load`]: the file this came from (for error messages).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    #[serde(default)]
    pub udp: Option<UdpConfig>,
    #[serde(default)]
    pub serial: Option<SerialConfig>,
    /// Largest datagram (UDP payload, or serial datagram before COBS) accepted.
    #[serde(default = "defaults::datagram_size")]
    pub datagram_size: usize,
    /// FEC reassembly window: blocks being reassembled at once; older ones are dropped (lost).
    #[serde(default = "defaults::max_pending_blocks")]
    pub max_pending_blocks: usize,
    /// Largest block accepted from a datagram header.
    #[serde(default = "defaults::max_block_bytes")]
    pub max_block_bytes: usize,
    /// Reassembly memory over all sessions (estimated bytes); the least recently touched
    /// incomplete block is dropped beyond it.
    #[serde(default = "defaults::max_pending_bytes")]
    pub max_pending_bytes: usize,
    /// Smallest symbol size accepted: the sender's is `floor((link.mtu - 30) / 8) * 8`.
    #[serde(default = "defaults::min_symbol_size")]
    pub min_symbol_size: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    /// Address and port to bind, e.g. "0.0.0.0:47000" (use the group's port for multicast).
    pub listen: SocketAddr,
    /// Join this multicast group, IPv4 or IPv6 (several receivers can hear one diode).
    #[serde(default)]
    pub multicast_group: Option<IpAddr>,
    /// The interface to join on: for an IPv4 group its local IPv4 address, for an IPv6
    /// group its name (or index); default: the one the routing table picks.
    #[serde(default)]
    pub multicast_interface: Option<String>,
    /// SO_RCVBUF to ask for; the kernel may cap it (raise net.core.rmem_max).
    #[serde(default = "defaults::receive_buffer")]
    pub receive_buffer_bytes: usize,
    /// Source addresses or networks datagrams are taken from (the diode's output); others
    /// are dropped before the decoder and counted. Empty: any source.
    #[serde(default)]
    pub allowed_sources: Vec<String>,
}

/// A checked multicast membership: what `[link.udp] multicast_group` and
/// `multicast_interface` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MulticastJoin {
    /// `interface` is the local address of the interface; unspecified = the route's.
    V4 {
        group: Ipv4Addr,
        interface: Ipv4Addr,
    },
    /// IPv6 joins name the interface (by name or index); None = the route's.
    V6 {
        group: Ipv6Addr,
        interface: Option<Ipv6Interface>,
    },
}

/// An interface for an IPv6 multicast join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv6Interface {
    Name(String),
    Index(u32),
}

impl UdpConfig {
    /// The multicast membership to take, if any; the error names the key and the fix.
    pub fn multicast_join(&self) -> Result<Option<MulticastJoin>, (&'static str, String)> {
        const GROUP: &str = "link.udp.multicast_group";
        const IFACE: &str = "link.udp.multicast_interface";
        let Some(group) = self.multicast_group else {
            return match &self.multicast_interface {
                Some(_) => Err((IFACE, "set multicast_group too, or remove it".into())),
                None => Ok(None),
            };
        };
        if !group.is_multicast() {
            let range = if group.is_ipv4() {
                "224.0.0.0/4"
            } else {
                "ff00::/8"
            };
            return Err((
                GROUP,
                format!("{group} is not a multicast address ({range})"),
            ));
        }
        if group.is_ipv4() != self.listen.is_ipv4() {
            let example = if group.is_ipv4() {
                "0.0.0.0:47000"
            } else {
                "[::]:47000"
            };
            return Err((
                "link.udp.listen",
                format!("{group} needs a listen address of the same family, e.g. \"{example}\""),
            ));
        }
        let interface = self.multicast_interface.as_deref();
        match group {
            IpAddr::V4(group) => {
                let interface = match interface {
                    None => Ipv4Addr::UNSPECIFIED,
                    Some(text) => text.parse().map_err(|_| {
                        (IFACE, format!("{text:?}: for an IPv4 group, give the interface's local IPv4 address, e.g. \"10.0.0.5\""))
                    })?,
                };
                Ok(Some(MulticastJoin::V4 { group, interface }))
            }
            IpAddr::V6(group) => {
                let interface = match interface {
                    None => None,
                    Some(text) if text.parse::<IpAddr>().is_ok() => {
                        return Err((
                            IFACE,
                            format!(
                                "{text:?}: for an IPv6 group, give the interface's name (e.g. \"eth1\") or index, not an address"
                            ),
                        ));
                    }
                    Some("") => {
                        return Err((
                            IFACE,
                            "empty: give the interface's name, e.g. \"eth1\"".into(),
                        ));
                    }
                    Some(text) => Some(match text.parse::<u32>() {
                        Ok(index) => Ipv6Interface::Index(index),
                        Err(_) => Ipv6Interface::Name(text.to_string()),
                    }),
                };
                Ok(Some(MulticastJoin::V6 { group, interface }))
            }
        }
    }

    /// The parsed `allowed_sources` (checked at start-up by [`Config::load`]).
    pub fn source_filter(&self) -> Result<SourceFilter, String> {
        let nets = self
            .allowed_sources
            .iter()
            .map(|s| IpNet::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SourceFilter::new(nets))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub device: PathBuf,
    pub baud: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Signer public key files (SPKI PEM), trusted from the start.
    #[serde(default)]
    pub signers: Vec<PathBuf>,
    /// Link key files (secret).
    #[serde(default)]
    pub link_keys: Vec<PathBuf>,
    /// Directory that `trust add-signer` / `trust add-link-key` write into; every
    /// `*.pub` (signer) and `*.linkkey` (link key) file in it is trusted too.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    /// Frames issued longer ago than this are refused as stale.
    #[serde(default = "defaults::max_age")]
    pub max_age_secs: u64,
    /// Frames issued further in the future than this are refused.
    #[serde(default = "defaults::max_skew")]
    pub max_skew_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// /healthz turns unhealthy when no heartbeat arrived for this long.
    #[serde(default = "defaults::alarm")]
    pub alarm_after_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Sled,
    /// Shared by several receivers (HA): needs `[store.postgres]`.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    /// Connection settings when `backend = "postgres"`.
    #[serde(default)]
    pub postgres: Option<crate::store::postgres::settings::PostgresConfig>,
    /// sled's page cache, in MiB (the largest part of the receiver's memory on sled).
    #[serde(default = "defaults::cache_mib")]
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::default(),
            postgres: None,
            cache_mib: defaults::cache_mib(),
        }
    }
}

impl StoreConfig {
    /// The smallest page cache a receiver runs with: below it sled spends its time evicting
    /// the pages one ingest batch touches.
    pub const MIN_CACHE_MIB: u64 = 4;
    /// The largest accepted (a typo guard: 1 TiB).
    pub const MAX_CACHE_MIB: u64 = 1 << 20;

    /// The page cache in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mib.saturating_mul(1024 * 1024)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// /healthz and /metrics (and the live `gaps`/`users` answers for the CLI).
    #[serde(default = "defaults::ops_listen")]
    pub listen: SocketAddr,
    /// The token `GET /backup` requires, written (mode 0600) at every start. Default:
    /// `<data_dir>/ops.token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Frames committed in one store transaction and one flush, at most.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Frames queued between the link and the verifier (bounded memory).
    #[serde(default = "defaults::queue")]
    pub queue_frames: usize,
    /// Rejection log lines per second, at most (the counters always count).
    #[serde(default = "defaults::log_rate")]
    pub reject_log_per_sec: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransparencyConfig {
    /// Keep the Merkle tree and sign checkpoints. Off only to measure what the tree costs:
    /// a log kept without the tree has no checkpoints an auditor can hold it to.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// The checkpoint private key (created at first start when absent; its public half is
    /// written beside it with the extension `.pub`). Default: `<data_dir>/checkpoint.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The log's name, the first line of every checkpoint. Default: the key's name.
    #[serde(default)]
    pub origin: Option<String>,
    /// Sign a checkpoint once the tree grew by this many entries.
    #[serde(default = "defaults::checkpoint_entries")]
    pub every_entries: u64,
    /// Sign a checkpoint at most this long after the tree grew.
    #[serde(default = "defaults::checkpoint_secs")]
    pub every_secs: u64,
    /// At start, rebuild the tree from the whole log and check it against the stored tree
    /// and the latest stored checkpoint (refusing to start on a fork). Costs one pass over
    /// the log.
    #[serde(default = "defaults::yes")]
    pub verify_on_start: bool,
}

impl Default for TransparencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            origin: None,
            every_entries: defaults::checkpoint_entries(),
            every_secs: defaults::checkpoint_secs(),
            verify_on_start: true,
        }
    }
}

mod defaults {
    use std::net::SocketAddr;
    pub fn yes() -> bool {
        true
    }
    pub fn checkpoint_entries() -> u64 {
        1000
    }
    pub fn checkpoint_secs() -> u64 {
        60
    }
    pub fn datagram_size() -> usize {
        1400
    }
    pub fn max_pending_blocks() -> usize {
        64
    }
    pub fn max_block_bytes() -> usize {
        256 * 1024
    }
    pub fn max_pending_bytes() -> usize {
        32 * 1024 * 1024
    }
    pub fn min_symbol_size() -> u16 {
        64
    }
    pub fn receive_buffer() -> usize {
        8 * 1024 * 1024
    }
    pub fn max_age() -> u64 {
        7 * 24 * 3600
    }
    pub fn max_skew() -> u64 {
        300
    }
    pub fn alarm() -> u64 {
        60
    }
    pub fn ops_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9464))
    }
    pub fn max_batch() -> usize {
        512
    }
    pub fn queue() -> usize {
        8192
    }
    pub fn cache_mib() -> u64 {
        crate::store::sled_store::DEFAULT_CACHE_BYTES / (1024 * 1024)
    }
    pub fn log_rate() -> u32 {
        10
    }
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        Self {
            max_age_secs: defaults::max_age(),
            max_skew_secs: defaults::max_skew(),
        }
    }
}
impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            alarm_after_secs: defaults::alarm(),
        }
    }
}
impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: defaults::ops_listen(),
            token_file: None,
        }
    }
}
impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch: defaults::max_batch(),
            queue_frames: defaults::queue(),
            reject_log_per_sec: defaults::log_rate(),
        }
    }
}

impl Config {
    /// Reads, parses, resolves relative paths and validates.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = config_check::read(file)?;
        Self::parse(&text, file)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config = config_check::parse_toml(text, file)?;
        cfg.source = file.to_owned();
        let base = file.parent().map(Path::to_owned).unwrap_or_default();
        cfg.resolve_paths(&base);
        cfg.validate().map_err(|p| p.in_file(file))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        self.trust.signers.iter_mut().for_each(fix);
        self.trust.link_keys.iter_mut().for_each(fix);
        if let Some(d) = self.trust.dir.as_mut() {
            fix(d);
        }
        if let Some(s) = self.link.serial.as_mut() {
            fix(&mut s.device);
        }
        if let Some(pg) = self.store.postgres.as_mut() {
            pg.resolve_paths(base);
        }
        if let Some(k) = self.transparency.key_file.as_mut() {
            fix(k);
        }
        if let Some(ca) = self
            .oidc
            .as_mut()
            .and_then(|o| o.backchannel_ca_file.as_mut())
        {
            fix(ca);
        }
        if let Some(t) = self.ops.token_file.as_mut() {
            fix(t);
        }
    }

    fn validate(&self) -> Result<(), KeyProblem> {
        if let Some(t) = &self.ops.token_file
            && (t.file_name().is_none() || t.as_os_str().to_string_lossy().ends_with('/'))
        {
            return Err(KeyProblem::new(
                "ops.token_file",
                "must name a file, e.g. \"/var/lib/airlock-receiver/ops.token\"",
            ));
        }
        self.validate_link()?;
        if self.trust.signers.is_empty() && self.trust.dir.is_none() {
            return Err(KeyProblem::missing(
                "trust.signers",
                "no signer key configured: list the sender's public key file(s) or set trust.dir",
            ));
        }
        if self.trust.link_keys.is_empty() && self.trust.dir.is_none() {
            return Err(KeyProblem::missing(
                "trust.link_keys",
                "no link key configured: list the link key file(s) or set trust.dir",
            ));
        }
        Key::new("freshness.max_age_secs").at_least(self.freshness.max_age_secs, 1)?;
        Key::new("heartbeat.alarm_after_secs").at_least(self.heartbeat.alarm_after_secs, 1)?;
        Key::new("ingest.max_batch").range(self.ingest.max_batch, 1..=100_000)?;
        Key::new("ingest.queue_frames").at_least(self.ingest.queue_frames, 1)?;
        let min_cache = StoreConfig::MIN_CACHE_MIB;
        Key::new("store.cache_mib")
            .unit("MiB")
            .why(&format!(
                "the receiver needs a page cache of at least {min_cache} MiB"
            ))
            .range(self.store.cache_mib, min_cache..=StoreConfig::MAX_CACHE_MIB)?;
        match (self.store.backend, &self.store.postgres) {
            (StoreBackend::Postgres, None) => {
                return Err(KeyProblem::missing(
                    "store.postgres",
                    "backend = \"postgres\" needs a [store.postgres] table with `url` (or `host`, `user`, `dbname`)",
                ));
            }
            (StoreBackend::Postgres, Some(pg)) => {
                pg.validate().map_err(|p| p.under("store.postgres"))?
            }
            (StoreBackend::Sled, Some(_)) => {
                return Err(KeyProblem::new(
                    "store.postgres",
                    "is set but store.backend is \"sled\": set backend = \"postgres\" or remove [store.postgres]",
                ));
            }
            (StoreBackend::Sled, None) => {}
        }
        let t = &self.transparency;
        Key::new("transparency.every_entries")
            .why("a checkpoint every N entries")
            .at_least(t.every_entries, 1)?;
        Key::new("transparency.every_secs").at_least(t.every_secs, 1)?;
        if let Some(o) = &t.origin
            && let Err(e) = airlock_protocol::checkpoint::check_key_name(o)
        {
            return Err(KeyProblem::new("transparency.origin", e.to_string()));
        }
        if let Some(oidc) = &self.oidc {
            oidc.validate().map_err(|p| p.under("oidc"))?;
        }
        Ok(())
    }

    fn validate_link(&self) -> Result<(), KeyProblem> {
        let link = &self.link;
        match (&link.udp, &link.serial) {
            (Some(_), Some(_)) => {
                return Err(KeyProblem::new(
                    "link",
                    "configure either [link.udp] or [link.serial], not both",
                ));
            }
            (None, None) => {
                return Err(KeyProblem::missing(
                    "link",
                    "no link configured: add [link.udp] with `listen = \"0.0.0.0:47000\"` or [link.serial] with `device` and `baud`",
                ));
            }
            _ => {}
        }
        if let Some(udp) = &link.udp {
            udp.multicast_join()
                .map_err(|(key, problem)| KeyProblem::new(key, problem))?;
            Key::new("link.udp.receive_buffer_bytes")
                .unit("bytes")
                .at_least(udp.receive_buffer_bytes, 64 * 1024)?;
            udp.source_filter()
                .map_err(|e| KeyProblem::new("link.udp.allowed_sources", e))?;
        }
        if let Some(s) = &link.serial {
            Key::new("link.serial.baud")
                .why("e.g. 115200")
                .at_least(s.baud, 1)?;
        }
        Key::new("link.datagram_size")
            .unit("bytes")
            .range(link.datagram_size, 64..=65_507)?;
        Key::new("link.max_pending_blocks").range(link.max_pending_blocks, 1..=100_000)?;
        Key::new("link.max_block_bytes")
            .unit("bytes")
            .range(link.max_block_bytes, 1024..=64 * 1024 * 1024)?;
        Key::new("link.max_pending_bytes")
            .unit("bytes")
            .why("at least twice link.max_block_bytes")
            .range(
                link.max_pending_bytes,
                link.max_block_bytes.saturating_mul(2)..=4 * 1024 * 1024 * 1024,
            )?;
        Key::new("link.min_symbol_size")
            .why("the sender's smallest symbol")
            .at_least(link.min_symbol_size, 64)?;
        if !link.min_symbol_size.is_multiple_of(8) {
            return Err(KeyProblem::new(
                "link.min_symbol_size",
                format!(
                    "must be a multiple of 8 (the sender's symbols are), got {}",
                    link.min_symbol_size
                ),
            ));
        }
        Ok(())
    }

    /// Where the sled database lives.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.sled")
    }

    /// The ops token file (`GET /backup`).
    pub fn ops_token_file(&self) -> PathBuf {
        self.ops
            .token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ops.token"))
    }

    /// The checkpoint private key file.
    pub fn checkpoint_key_file(&self) -> PathBuf {
        self.transparency
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("checkpoint.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
data_dir = "data"
[link.udp]
listen = "127.0.0.1:47000"
[trust]
signers = ["signer.pub"]
link_keys = ["link.key"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/airlock/receiver.toml"))
    }

    #[test]
    fn minimal_config_resolves_paths() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/airlock/data"));
        assert_eq!(c.trust.signers[0], PathBuf::from("/etc/airlock/signer.pub"));
        assert_eq!(c.freshness.max_skew_secs, 300);
    }

    #[test]
    fn transparency_keys_default_and_are_checked() {
        let c = parse(MIN).unwrap();
        assert!(c.transparency.enabled);
        assert_eq!(
            c.checkpoint_key_file(),
            PathBuf::from("/etc/airlock/data/checkpoint.key")
        );
        let c = parse(&format!(
            "{MIN}\n[transparency]\nkey_file = \"keys/cp.key\"\nevery_entries = 10\n"
        ))
        .unwrap();
        assert_eq!(
            c.checkpoint_key_file(),
            PathBuf::from("/etc/airlock/keys/cp.key")
        );
        for (bad, key) in [
            ("every_entries = 0", "transparency.every_entries"),
            ("every_secs = 0", "transparency.every_secs"),
            ("origin = \"has space\"", "transparency.origin"),
        ] {
            let e = parse(&format!("{MIN}\n[transparency]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    /// The sender's guide names the receiver's block bound; it must be this default.
    #[test]
    fn the_sender_readme_states_the_receivers_block_bound() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sender/README.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let needle = format!(
            "(receiver bound: its link.max_block_bytes, default {} KiB)",
            defaults::max_block_bytes() / 1024
        );
        assert!(
            text.contains(&needle),
            "sender/README.md should say `{needle}`"
        );
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let text = std::fs::read_to_string(&here).unwrap();
        let needle = format!("max_block_bytes = {} ", defaults::max_block_bytes());
        assert!(
            text.contains(&needle),
            "receiver/README.md should say `{needle}`"
        );
    }

    #[test]
    fn ops_token_file_defaults_to_the_data_dir_and_is_checked() {
        let c = parse(MIN).unwrap();
        assert_eq!(
            c.ops_token_file(),
            PathBuf::from("/etc/airlock/data/ops.token")
        );
        let c = parse(&format!("{MIN}\n[ops]\ntoken_file = \"run/ops.token\"\n")).unwrap();
        assert_eq!(
            c.ops_token_file(),
            PathBuf::from("/etc/airlock/run/ops.token")
        );
        let e = parse(&format!("{MIN}\n[ops]\ntoken_file = \"run/\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ops.token_file"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse(&format!("{MIN}\n[freshness]\nmax_age = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/airlock/receiver.toml"), "{e}");
        assert!(e.contains("max_age"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = parse(&MIN.replace(
            "[link.udp]",
            "[link.serial]\ndevice = \"/dev/ttyS0\"\nbaud = 0\n[link.udp]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `link`"), "{e}");
        let e = parse(&format!("{MIN}\n[heartbeat]\nalarm_after_secs = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat.alarm_after_secs"), "{e}");
        let e = parse(&MIN.replace(
            "listen = \"127.0.0.1:47000\"",
            "listen = \"127.0.0.1:47000\"\nmulticast_group = \"10.0.0.1\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("link.udp.multicast_group"), "{e}");
        let e = parse(&MIN.replace(
            "listen = \"127.0.0.1:47000\"",
            "listen = \"127.0.0.1:47000\"\nallowed_sources = [\"10.0.0.5\", \"10.0.0.0/40\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("link.udp.allowed_sources"), "{e}");
        assert!(e.contains("0 to 32"), "{e}");
    }

    #[test]
    fn a_page_cache_below_the_minimum_is_refused_naming_the_minimum() {
        let e = parse(&format!("{MIN}\n[store]\ncache_mib = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.cache_mib"), "{e}");
        assert!(e.contains("at least 4 MiB"), "{e}");
        let ok = parse(&format!("{MIN}\n[store]\ncache_mib = 4\n")).unwrap();
        assert_eq!(ok.store.cache_bytes(), 4 * 1024 * 1024);
        assert_eq!(parse(MIN).unwrap().store.cache_mib, 16, "the default");
    }

    fn udp(listen: &str, group: Option<&str>, interface: Option<&str>) -> UdpConfig {
        let mut text = format!("listen = \"{listen}\"\n");
        if let Some(g) = group {
            text.push_str(&format!("multicast_group = \"{g}\"\n"));
        }
        if let Some(i) = interface {
            text.push_str(&format!("multicast_interface = \"{i}\"\n"));
        }
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn multicast_joins_of_both_families() {
        use MulticastJoin::*;
        let join = |l, g, i| udp(l, g, i).multicast_join();
        assert_eq!(join("0.0.0.0:1", None, None), Ok(None));
        let v4 = join("0.0.0.0:1", Some("239.1.2.3"), None).unwrap();
        let any = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            v4,
            Some(V4 {
                group: Ipv4Addr::new(239, 1, 2, 3),
                interface: any
            })
        );
        let v4 = join("0.0.0.0:1", Some("239.1.2.3"), Some("10.0.0.5")).unwrap();
        let want = Ipv4Addr::new(10, 0, 0, 5);
        assert!(matches!(v4, Some(V4 { interface, .. }) if interface == want));
        let group: Ipv6Addr = "ff05::1:3".parse().unwrap();
        let v6 = join("[::]:1", Some("ff05::1:3"), Some("eth1")).unwrap();
        let name = Some(Ipv6Interface::Name("eth1".into()));
        assert_eq!(
            v6,
            Some(V6 {
                group,
                interface: name
            })
        );
        let v6 = join("[::]:1", Some("ff05::1:3"), Some("3")).unwrap();
        assert_eq!(
            v6,
            Some(V6 {
                group,
                interface: Some(Ipv6Interface::Index(3))
            })
        );
        assert_eq!(
            join("[::]:1", Some("ff05::1:3"), None).unwrap(),
            Some(V6 {
                group,
                interface: None
            })
        );
    }

    #[test]
    fn multicast_mistakes_name_the_key_and_the_fix() {
        let key = |l, g, i| udp(l, g, i).multicast_join().unwrap_err().0;
        let why = |l, g, i| udp(l, g, i).multicast_join().unwrap_err().1;
        assert_eq!(
            key("0.0.0.0:1", Some("10.0.0.1"), None),
            "link.udp.multicast_group"
        );
        assert!(why("[::]:1", Some("fe80::1"), None).contains("ff00::/8"));
        assert_eq!(key("[::]:1", Some("239.1.2.3"), None), "link.udp.listen");
        assert!(why("0.0.0.0:1", Some("ff05::1"), None).contains("[::]:47000"));
        let iface = "link.udp.multicast_interface";
        assert_eq!(key("0.0.0.0:1", Some("239.1.2.3"), Some("eth1")), iface);
        assert!(why("[::]:1", Some("ff05::1"), Some("fe80::1")).contains("name"));
        assert_eq!(key("[::]:1", Some("ff05::1"), Some("")), iface);
        assert_eq!(key("0.0.0.0:1", None, Some("10.0.0.5")), iface);
    }
}
