//! The command line: parsing and dispatch. Each command's logic lives in its own module.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_daemon::log_format::{self, LogFormat};
use clap::{Parser, Subcommand};
use thiserror::Error;

use crate::audit::{self, AuditCommand, AuditError};
use crate::config::{Config, ConfigError};
use crate::daemon::{self, RunError};
use crate::reports::{GapReport, render_users, users_from_store};
use crate::store::records::{KeySet, UserRecord};
use crate::store::{SledStore, Store, StoreError, Table, decode_json, meta};
use crate::trust_cmd::{self, RemoveTarget, TrustCmdError};

#[derive(Debug, Parser)]
#[command(
    name = "airlock-receiver",
    version,
    about = "Airlock's inside half: ingest over the diode, frame log, identity store, OpenID provider"
)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, default "info").
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the receiver: link ingest, ops listener (/healthz, /metrics, /checkpoint) and the
    /// OpenID provider.
    Run {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the missing seq ranges per signer, to carry to the sender's `resend`.
    Gaps {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List provisioned users, their validity and the seq that last changed them.
    Users {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Show the running daemon's state at a glance: health, heartbeat, store, frames,
    /// rejections by reason, open gaps and users (asks its ops listener). Exit code 1 when
    /// /healthz says unhealthy.
    Status {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Back up the running receiver's store while it ingests: a consistent snapshot (all
    /// trees, cut between two ingest batches) streamed from its ops listener, written to DIR
    /// with a manifest of SHA-256 sums, plus the checkpoint key. Needs the ops token file
    /// (run as the receiver's user). PostgreSQL stores: use pg_dump (docs/operations.md).
    Backup {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// A new or empty directory for the backup (created mode 0700; it holds private keys).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Restore a backup into the config's data directory, which must be new or empty: checks
    /// every file's SHA-256, then the frame log's hash chain and signatures, its Merkle tree
    /// and checkpoints, and the replayed state (audit verify, checkpoint verify, replay);
    /// refuses and leaves nothing behind when any check fails.
    Restore {
        /// The receiver's config file (receiver.toml) naming the data directory to fill.
        #[arg(long)]
        config: PathBuf,
        /// The directory `backup --out` wrote.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The checkpoint public key from the key ceremony to check the backup's checkpoints
        /// with (default: the checkpoint.pub in the backup).
        #[arg(long, value_name = "FILE")]
        checkpoint_key: Option<PathBuf>,
    },
    /// Inspect and install trusted keys (the inside half of the key ceremony).
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Check a config file and exit.
    CheckConfig {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Read a client secret on stdin and print its argon2id hash for `[[oidc.clients]]`.
    HashSecret,
    /// OpenID provider signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Signed checkpoints of the frame log's Merkle tree: export for removable media, list,
    /// the checkpoint key ceremony.
    Checkpoint {
        #[command(subcommand)]
        command: crate::transparency::cmd::CheckpointCommand,
    },
    /// Auditor tools: they work on a copy of the data directory and public keys only.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Show every trusted key with its fingerprint.
    List {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Install a signer public key (SPKI PEM) into the trust directory.
    AddSigner {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// The signer's public key file (signer.pub.pem from `airlock-sender keygen`).
        file: PathBuf,
        /// The kid was retired over the link and the key ceremony re-approved it: lift that
        /// retirement (a later KeyRetire bans it again).
        #[arg(long)]
        reinstate: bool,
    },
    /// Install a link key file into the trust directory.
    AddLinkKey {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// The link key file (link.key from `airlock-sender keygen`, carried by hand).
        file: PathBuf,
        /// The link kid was retired over the link and the key ceremony re-approved it: lift
        /// that retirement (a later KeyRetire bans it again).
        #[arg(long)]
        reinstate: bool,
    },
    /// Stop trusting a key: an installed file, or any signer kid announced over the link
    /// (and the keys it announced).
    Remove {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
        /// Signer kid (16 hex digits).
        #[arg(long, conflicts_with = "link", required_unless_present = "link")]
        signer: Option<String>,
        /// Link key kid.
        #[arg(long)]
        link: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key per algorithm: published now, used after
    /// `key_rotation_delay_secs` (asks the running daemon when it holds the store).
    Rotate {
        /// The receiver's config file (receiver.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Trust(#[from] TrustCmdError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Checkpoint(#[from] crate::transparency::cmd::CheckpointCmdError),
    #[error(
        "the store is in use by the running receiver and its ops listener at {addr} did not answer: {detail}"
    )]
    Ops { addr: String, detail: String },
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error(transparent)]
    Backup(#[from] crate::backup::cmd::BackupError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Parses the command line, runs the command, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    log_format::init(cli.log_format);
    if let Command::Status { config } = &cli.command {
        return status(config);
    }
    match dispatch(cli.command) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `status`: the summary on stdout; exit code 1 when the daemon says it is unhealthy (the
/// summary is printed all the same) or cannot be asked.
fn status(config: &Path) -> ExitCode {
    let summary = Config::load(config)
        .map_err(CliError::from)
        .and_then(|cfg| Ok(crate::status::status(cfg.ops.listen)?));
    match summary {
        Ok(s) => {
            print!("{}", s.text);
            if s.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Command) -> Result<String, CliError> {
    match cmd {
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            rt.block_on(daemon::run(cfg))?;
            Ok(String::new())
        }
        Command::Gaps { config, json } => {
            let cfg = Config::load(&config)?;
            let report: GapReport = read_live(&cfg, "/gaps", GapReport::from_store)?;
            Ok(if json {
                to_json(&report)
            } else {
                report.render()
            })
        }
        Command::Users { config, json } => {
            let cfg = Config::load(&config)?;
            let users: Vec<UserRecord> = read_live(&cfg, "/users", users_from_store)?;
            Ok(if json {
                to_json(&users)
            } else {
                render_users(&users)
            })
        }
        Command::Status { config } => {
            // main() runs it (its exit code depends on the daemon's health).
            let cfg = Config::load(&config)?;
            Ok(crate::status::status(cfg.ops.listen)?.text)
        }
        Command::Backup { config, out } => Ok(crate::backup::cmd::backup(&config, &out)?),
        Command::Restore {
            config,
            from,
            checkpoint_key,
        } => Ok(crate::backup::cmd::restore(
            &config,
            &from,
            checkpoint_key.as_deref(),
        )?),
        Command::Trust { command } => trust(command),
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            crate::trust_set::BaseTrust::load(&cfg.trust).map_err(TrustCmdError::from)?;
            Ok(format!("{}: ok\n", config.display()))
        }
        Command::HashSecret => hash_secret(),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => rotate_keys(&config),
        Command::Audit { command } => Ok(audit::run(command)?),
        Command::Checkpoint { command } => Ok(crate::transparency::cmd::run(command)?),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v)
        .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n")
}

/// Reads from the store, or, when the daemon holds it, from the daemon's ops listener.
fn read_live<T: serde::de::DeserializeOwned>(
    cfg: &Config,
    path: &str,
    from_store: impl Fn(&SledStore) -> Result<T, StoreError>,
) -> Result<T, CliError> {
    // PostgreSQL (HA): the daemons never lock it, but their ops listener has the live view.
    let on_postgres = cfg.store.backend == crate::config::StoreBackend::Postgres;
    let opened = if on_postgres {
        Err(StoreError::Locked {
            path: "PostgreSQL".into(),
        })
    } else {
        SledStore::open(&cfg.store_path())
    };
    match opened {
        Ok(store) => Ok(from_store(&store)?),
        Err(StoreError::Locked { .. }) => {
            let addr = cfg.ops.listen;
            let ops = |detail: String| CliError::Ops {
                addr: addr.to_string(),
                detail,
            };
            let (status, body) =
                crate::ops_client::get(addr, path).map_err(|e| ops(e.to_string()))?;
            if status != 200 {
                return Err(ops(format!("HTTP {status}: {body}")));
            }
            serde_json::from_str(&body).map_err(|e| ops(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn trust(cmd: TrustCommand) -> Result<String, CliError> {
    match cmd {
        TrustCommand::List { config } => {
            let cfg = Config::load(&config)?;
            let logged = logged_keys(&cfg);
            Ok(trust_cmd::list(&cfg, logged.as_ref())?)
        }
        TrustCommand::AddSigner {
            config,
            file,
            reinstate,
        } => {
            let cfg = Config::load(&config)?;
            let logged = logged_keys(&cfg);
            Ok(trust_cmd::add_signer(
                &cfg,
                &file,
                logged.as_ref(),
                reinstate,
            )?)
        }
        TrustCommand::AddLinkKey {
            config,
            file,
            reinstate,
        } => {
            let cfg = Config::load(&config)?;
            let logged = logged_keys(&cfg);
            Ok(trust_cmd::add_link_key(
                &cfg,
                &file,
                logged.as_ref(),
                reinstate,
            )?)
        }
        TrustCommand::Remove {
            config,
            signer,
            link,
        } => {
            let target = match (signer, link) {
                (Some(kid), None) => RemoveTarget::Signer(kid),
                (None, Some(kid)) => RemoveTarget::Link(kid),
                _ => {
                    return Err(CliError::Usage(
                        "give exactly one of --signer KID or --link KID".into(),
                    ));
                }
            };
            let cfg = Config::load(&config)?;
            let logged = logged_keys(&cfg);
            Ok(trust_cmd::remove(&cfg, &target, logged.as_ref())?)
        }
    }
}

/// Key changes logged over the link, if the store can be read now.
fn logged_keys(cfg: &Config) -> Option<KeySet> {
    let store = SledStore::open(&cfg.store_path()).ok()?;
    let v = store.get(Table::Meta, meta::KEYS).ok()??;
    decode_json(Table::Meta, meta::KEYS, &v).ok()
}

fn hash_secret() -> Result<String, CliError> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .map_err(|e| CliError::Usage(format!("cannot read the secret from stdin: {e}")))?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.len() < 16 {
        return Err(CliError::Usage(
            "the client secret must be at least 16 characters".into(),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| CliError::Usage(format!("cannot hash: {e}")))?;
    Ok(format!("{hash}\n"))
}

fn rotate_keys(config: &Path) -> Result<String, CliError> {
    let cfg = Config::load(config)?;
    let oidc = cfg.oidc.as_ref().ok_or_else(|| {
        CliError::Usage(format!("{}: there is no [oidc] section", config.display()))
    })?;
    let now = crate::clock::now_ms() / 1000;
    if let (crate::config::StoreBackend::Postgres, Some(pg)) =
        (cfg.store.backend, cfg.store.postgres.as_ref())
    {
        // One rotation for the whole cluster: every receiver picks it up within a minute.
        let store = crate::store::postgres::PgStore::open(pg)?;
        let kids = crate::oidc::pg_store::rotate_cluster_keys(&store, oidc, now)
            .map_err(|e| CliError::Usage(format!("key rotation failed: {e}")))?;
        return Ok(format!("signing keys now: {}\n", kids.join(", ")));
    }
    let store = match SledStore::open(&cfg.store_path()) {
        Ok(s) => s,
        // The daemon holds the store: it rotates, through its ops listener.
        Err(StoreError::Locked { .. }) => return rotate_keys_live(&cfg),
        Err(e) => return Err(e.into()),
    };
    let kids = crate::oidc::rotate_keys_in_db(store.db(), oidc, now)
        .map_err(|e| CliError::Usage(format!("key rotation failed: {e}")))?;
    store.flush()?;
    Ok(format!("signing keys now: {}\n", kids.join(", ")))
}

/// `keys rotate` against the running daemon (`POST /keys/rotate` on its ops listener).
fn rotate_keys_live(cfg: &Config) -> Result<String, CliError> {
    let addr = cfg.ops.listen;
    let ops = |detail: String| CliError::Ops {
        addr: addr.to_string(),
        detail,
    };
    let (status, body) =
        crate::ops_client::post(addr, "/keys/rotate").map_err(|e| ops(e.to_string()))?;
    if status != 200 {
        return Err(CliError::Usage(format!(
            "the running receiver did not rotate the keys (HTTP {status} from its ops listener at {addr}): {}",
            body.trim_end()
        )));
    }
    let answer: crate::ops::RotateAnswer =
        serde_json::from_str(&body).map_err(|e| ops(e.to_string()))?;
    Ok(format!(
        "signing keys now: {} (rotated by the running daemon: published now, signing from {} Unix seconds)\n",
        answer.kids.join(", "),
        answer.sign_from
    ))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_and_command_has_help_text() {
        airlock_tests::cli_help::assert_every_flag_and_command_has_help_text(Cli::command());
    }

    /// The same words as the sender's `--log-format` (one type in airlock-daemon).
    #[test]
    fn log_format_is_the_shared_flag() {
        let c = Cli::try_parse_from([
            "airlock-receiver",
            "--log-format",
            "json",
            "status",
            "--config",
            "x",
        ])
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            Cli::try_parse_from([
                "airlock-receiver",
                "--log-format",
                "yaml",
                "status",
                "--config",
                "x"
            ])
            .is_err()
        );
    }
}
