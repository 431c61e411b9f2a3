//! The `airlock-sender` command line: parsing, dispatch and what each command prints.
//! Each command's logic lives in its own module.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_daemon::log_format::{self, LogFormat};
use airlock_protocol::keys::KeyError;
use clap::{Parser, Subcommand};
use thiserror::Error;

use crate::clock::unix_now;
use crate::config::{Config, ConfigError};
use crate::daemon::DaemonError;
use crate::export::ExportError;
use crate::key_change::KeyChangeError;
use crate::outbox::{Outbox, OutboxError};
use crate::spool::{self, Command, SpoolError};
use crate::submit::SubmitError;
use crate::{backup, daemon, export, key_change, keygen, status, submit, timefmt, witness};

/// Airlock's outside half: takes approved identities in, filters them through policy, and
/// sends them signed and encrypted over a one-way link (UDP or serial) to airlock-receiver.
#[derive(Debug, Parser)]
#[command(name = "airlock-sender", version)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, default "info").
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Same as `--log-format json` (kept for existing unit files).
    #[arg(long, global = true, hide = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Why a command failed; printed as `error: ...` with exit code 2.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot read the daemon status {file}: {source}")]
    Status {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; stop the daemon (SIGTERM) to export, or export from a copy")]
    OutboxLocked(#[source] OutboxError),
    #[error(transparent)]
    Outbox(OutboxError),
    #[error("cannot create {file}: {source}")]
    Create {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    KeyChange(#[from] KeyChangeError),
    #[error("--from {from} --to {to}: seqs start at 1 and --to must not be below --from")]
    SeqRange { from: u64, to: u64 },
    #[error(transparent)]
    Witness(#[from] crate::witness::WitnessError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Generate a signer key pair and a link key into DIR (never overwrites), and print
    /// their fingerprints for the key-ceremony record. Copy signer.pub.pem and link.key to the
    /// receiver; keep signer.pem on the sender only.
    Keygen {
        /// Directory for signer.pem (0600), signer.pub.pem and link.key (0600).
        #[arg(long)]
        out: PathBuf,
        /// Key id of the new link key (pick the next unused number when rotating).
        #[arg(long, default_value_t = 1)]
        link_kid: u32,
    },
    /// Run the daemon: ingest submitted records, seal them, and send them paced over the
    /// link, with heartbeats and the carousel. Stops cleanly on SIGINT/SIGTERM.
    Run {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// DANGEROUS: start even though a recorded witness checkpoint says the receiver has
        /// accepted seqs beyond this outbox's chain (an old outbox restored). Its frames up
        /// to the seen seq reuse seqs; the receiver refuses them (seq_conflict). Use only
        /// when told to by docs/operations.md, "Sender backup and restore".
        #[arg(long)]
        allow_stale_outbox: bool,
    },
    /// Back the outbox up into DIR (new or empty): one file per tree, a manifest with
    /// SHA-256 sums. While `run` runs, the daemon exports a consistent snapshot itself (via
    /// a spool command); when it is stopped, the outbox is read directly.
    Backup {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// The backup directory (must be new or empty; the backup never overwrites).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore the outbox from a backup directory, only into an absent or empty outbox path
    /// (the daemon stopped). Checks every SHA-256 first, and refuses an outbox older than a
    /// recorded witness checkpoint says the receiver has accepted (it would reuse seqs).
    Restore {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// The backup directory written by `airlock-sender backup`.
        #[arg(long)]
        from: PathBuf,
    },
    /// Validate records against the policy and queue them for sending. Works while `run` is
    /// running. Inputs are JSON approval records (one object, an array or JSON lines) or a
    /// file holding just an ID token; "-" reads stdin. If any record is refused, nothing is
    /// queued and the exit code is 1. Transfer codes of login tickets are printed once.
    Submit {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// Files to read; "-" (or none) is stdin.
        inputs: Vec<String>,
    },
    /// Ask the running daemon to re-encrypt and re-send logged frames FROM..=TO (the
    /// answer to a gap report of the receiver). Without --to, only FROM.
    Resend {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// First seq to re-send (from the receiver's gap report).
        #[arg(long)]
        from: u64,
        /// Last seq to re-send (default: FROM).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Signer key changes sent over the link, signed by the key the daemon signs with:
    /// announce a successor, then (after switching to it) retire the old kid.
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Show the daemon's state: last seq, queue depth, link rate, errors.
    Status {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the outbound log as JSON lines (seq, hash, prev, kind, issued_at, origin,
    /// sign1 base64) for auditors. Needs the daemon stopped (the outbox is single-process).
    ExportLog {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// Output file; "-" is stdout.
        #[arg(long)]
        out: PathBuf,
        /// First seq to export.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last seq to export (default: the last one logged).
        #[arg(long, default_value_t = u64::MAX)]
        to: u64,
    },
    /// Checkpoints of the receiver's transparency log carried out of the inside domain
    /// (`airlock-receiver checkpoint export`): record and list them, so both domains hold
    /// the same tree heads.
    Witness {
        #[command(subcommand)]
        command: WitnessCmd,
    },
}

/// `airlock-sender witness ...`.
#[derive(Debug, Subcommand)]
pub enum WitnessCmd {
    /// Verify a checkpoint file (signature by the receiver's checkpoint key, for its log;
    /// no fork with a recorded checkpoint of the same size) and record it under
    /// `<data_dir>/witness/`.
    Record {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// The receiver's checkpoint public key (checkpoint.pub, or the .pub file written
        /// beside the export); needed at the first record, which pins it.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The checkpoint file carried out.
        file: PathBuf,
    },
    /// List the recorded checkpoints.
    List {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// `airlock-sender keys ...`: the key ceremony's frames (docs/operations.md, "Rotation").
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Queue a KeyAnnounce of a new signer public key, signed by the current key: the
    /// receiver trusts the new key from --not-before on. Then point `[keys] signer` at the
    /// new private key and restart `run`.
    Announce {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// The new key's public key, SPKI PEM (signer.pub.pem written by `keygen`).
        file: PathBuf,
        /// Unix seconds from which the receiver counts the new key's signatures (default:
        /// now).
        #[arg(long)]
        not_before: Option<u64>,
    },
    /// Queue a KeyRetire of signer KID: the receiver stops trusting it (keys it announced
    /// stay trusted). The key the daemon signs with cannot retire itself: switch to its
    /// successor first.
    Retire {
        /// The sender's config file (sender.toml).
        #[arg(long)]
        config: PathBuf,
        /// The signer kid to retire (16 hex digits, as `keygen` and `trust list` print it).
        kid: String,
    },
}

/// Parses the command line, runs the command, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.log_json {
        LogFormat::Json
    } else {
        cli.log_format
    };
    log_format::init(format);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, CliError> {
    match cmd {
        Cmd::Keygen { out, link_kid } => cmd_keygen(&out, link_kid),
        Cmd::Run {
            config,
            allow_stale_outbox,
        } => cmd_run(&load(&config)?, allow_stale_outbox),
        Cmd::Backup { config, out } => cmd_backup(&load(&config)?, &out),
        Cmd::Restore { config, from } => cmd_restore(&load(&config)?, &from),
        Cmd::Submit { config, inputs } => cmd_submit(&load(&config)?, inputs),
        Cmd::Resend { config, from, to } => cmd_resend(&load(&config)?, from, to.unwrap_or(from)),
        Cmd::Status { config } => cmd_status(&load(&config)?),
        Cmd::Keys { command } => cmd_keys(command),
        Cmd::ExportLog {
            config,
            out,
            from,
            to,
        } => cmd_export(&load(&config)?, &out, from, to),
        Cmd::Witness { command } => cmd_witness(command),
    }
}

fn cmd_witness(cmd: WitnessCmd) -> Result<ExitCode, CliError> {
    match cmd {
        WitnessCmd::Record { config, key, file } => {
            let cfg = load(&config)?;
            let (outcome, cp) = witness::record(&cfg.data_dir, &file, key.as_deref())?;
            let root = {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(cp.root)
            };
            match outcome {
                witness::Outcome::Recorded(p) => println!(
                    "recorded: log {}, {} entries, root {root} -> {}",
                    cp.origin,
                    cp.size,
                    p.display()
                ),
                witness::Outcome::AlreadyRecorded(p) => println!(
                    "already recorded: log {}, {} entries, root {root} ({})",
                    cp.origin,
                    cp.size,
                    p.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        WitnessCmd::List { config } => {
            let cfg = load(&config)?;
            print!("{}", witness::list(&cfg.data_dir)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cmd_keygen(out: &Path, link_kid: u32) -> Result<ExitCode, CliError> {
    let g = keygen::keygen(out, link_kid)?;
    println!(
        "signer private key: {} (keep on the sender only)",
        g.signer_file.display()
    );
    println!("signer public key:  {}", g.public_file.display());
    println!("signer kid:         {}", g.signer_kid);
    println!("signer fingerprint: {}", g.signer_fingerprint);
    println!(
        "link key:           {} (secret: sender and receiver only)",
        g.link_file.display()
    );
    println!("link kid:           {}", g.link_kid);
    println!("link fingerprint:   {}", g.link_fingerprint);
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(config: &Config, allow_stale_outbox: bool) -> Result<ExitCode, CliError> {
    let rt = daemon::runtime(config).map_err(CliError::Runtime)?;
    rt.block_on(daemon::run_until_signal(config, allow_stale_outbox))?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_backup(config: &Config, out: &Path) -> Result<ExitCode, CliError> {
    let done = backup::backup(config, out, daemon_running(config))?;
    let m = &done.manifest;
    println!(
        "backup written to {}: chain of signer {} through seq {}, {} file(s), {} bytes, in {:.1} s ({}; writers held {} us)",
        out.display(),
        if m.chain_kid.is_empty() {
            "-"
        } else {
            &m.chain_kid
        },
        m.last_seq(),
        m.files.len(),
        m.bytes(),
        done.took.as_secs_f64(),
        if done.online {
            "exported by the running daemon"
        } else {
            "read directly, daemon stopped"
        },
        m.pause_us
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_restore(config: &Config, from: &Path) -> Result<ExitCode, CliError> {
    let m = backup::restore(config, from)?;
    println!(
        "restored into {}: chain of signer {} through seq {} (backup of {}); start `airlock-sender run`",
        config.db_dir().display(),
        if m.chain_kid.is_empty() {
            "-"
        } else {
            &m.chain_kid
        },
        m.last_seq(),
        timefmt::utc(m.created_unix_secs)
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_submit(config: &Config, mut inputs: Vec<String>) -> Result<ExitCode, CliError> {
    if inputs.is_empty() {
        inputs.push("-".into());
    }
    let mut read = Vec::new();
    for name in inputs {
        let bytes = submit::read_input(&name)?;
        read.push((name, bytes));
    }
    let report = submit::submit(config, &read, unix_now())?;
    for line in &report.errors {
        eprintln!("refused: {line}");
    }
    let Some(batch) = report.batch_id else {
        if report.errors.is_empty() {
            eprintln!("nothing to submit");
        } else {
            eprintln!("nothing was queued: fix the refused record(s) and submit again");
        }
        return Ok(ExitCode::from(1));
    };
    for a in &report.accepted {
        if !a.dropped_claims.is_empty() {
            eprintln!(
                "note: {}: claims not on the allow-list were dropped: {}",
                a.source,
                a.dropped_claims.join(", ")
            );
        }
        match &a.transfer_code {
            Some(code) => println!(
                "{} {} {} {}: transfer code {code} (valid until {})",
                a.source,
                a.kind,
                a.issuer,
                a.subject,
                a.expires_at.map_or_else(|| "-".to_owned(), timefmt::utc)
            ),
            None => println!("{} {} {} {}: queued", a.source, a.kind, a.issuer, a.subject),
        }
    }
    eprintln!(
        "queued {} record(s) as batch {batch}",
        report.accepted.len()
    );
    warn_if_not_running(config);
    Ok(ExitCode::SUCCESS)
}

fn daemon_running(config: &Config) -> bool {
    status::read(&config.status_file())
        .is_ok_and(|s| s.running && unix_now().saturating_sub(s.updated_at) <= 5)
}

fn warn_if_not_running(config: &Config) {
    if !daemon_running(config) {
        eprintln!(
            "note: `airlock-sender run` does not seem to be running; queued work goes out when it starts"
        );
    }
}

fn cmd_resend(config: &Config, from: u64, to: u64) -> Result<ExitCode, CliError> {
    if from == 0 || to < from {
        return Err(CliError::SeqRange { from, to });
    }
    let id = spool::write_command(&config.spool_dir(), &Command::Resend { from, to })?;
    println!("resend of seqs {from}..={to} queued as command {id}");
    warn_if_not_running(config);
    Ok(ExitCode::SUCCESS)
}

fn cmd_keys(command: KeysCmd) -> Result<ExitCode, CliError> {
    let config = match command {
        KeysCmd::Announce {
            config,
            file,
            not_before,
        } => {
            let config = load(&config)?;
            let q = key_change::announce(&config, &file, not_before.unwrap_or_else(unix_now))?;
            println!(
                "KeyAnnounce of signer {} (signed by {}) queued as batch {}",
                q.kid, q.signed_by, q.batch_id
            );
            println!(
                "next: when the receiver's `trust list` shows {}, point [keys] signer at its private key, restart `run`, then `keys retire {}`",
                q.kid, q.signed_by
            );
            config
        }
        KeysCmd::Retire { config, kid } => {
            let config = load(&config)?;
            let q = key_change::retire(&config, &kid)?;
            println!(
                "KeyRetire of signer {} (signed by {}) queued as batch {}",
                q.kid, q.signed_by, q.batch_id
            );
            config
        }
    };
    warn_if_not_running(&config);
    Ok(ExitCode::SUCCESS)
}

fn cmd_status(config: &Config) -> Result<ExitCode, CliError> {
    let waiting = spool::list(&config.spool_dir())?.len();
    if daemon_running(config) {
        let file = config.status_file();
        let s = status::read(&file).map_err(|source| CliError::Status { file, source })?;
        println!(
            "daemon:             running (pid {}, session {}, signer kid {})",
            s.pid, s.session_id, s.signer_kid
        );
        println!(
            "last seq:           {} (sent through {})",
            s.last_seq, s.sent_through
        );
        println!("chain head:         {}", s.chain_head);
        println!(
            "queue:              {} pending record(s), {waiting} spool file(s) waiting",
            s.pending_records
        );
        println!(
            "provisioned:        {} identities in the carousel",
            s.provisioned_identities
        );
        println!(
            "frames:             {} sealed, {} resent",
            s.frames_sealed, s.frames_resent
        );
        println!(
            "link:               {} datagrams, {} bytes, {} B/s now (pacing {} B/s, 0 = off)",
            s.datagrams_sent, s.bytes_sent, s.link_rate_bytes_per_sec, s.pacing_bytes_per_sec
        );
        println!(
            "errors:             send {}, spool {}, storage {}; expired unsent {}",
            s.send_errors, s.spool_errors, s.storage_errors, s.expired_dropped
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Never open the outbox here: sled allows one process, and a daemon starting at
    // this moment would fail. The last status.json (written at shutdown) says enough.
    println!("daemon:             not running");
    match status::read(&config.status_file()) {
        Ok(s) => {
            println!(
                "last run:           pid {}, stopped or last seen at {}",
                s.pid,
                timefmt::utc(s.updated_at)
            );
            println!(
                "last seq:           {} (sent through {})",
                s.last_seq, s.sent_through
            );
            println!("chain head:         {}", s.chain_head);
            println!(
                "queue:              {} pending record(s) at that time, {waiting} spool file(s) waiting",
                s.pending_records
            );
        }
        Err(_) => println!(
            "queue:              {waiting} spool file(s) waiting (no status.json yet: never run)"
        ),
    }
    Ok(ExitCode::from(3))
}

fn cmd_export(config: &Config, out: &Path, from: u64, to: u64) -> Result<ExitCode, CliError> {
    let ob = Outbox::open(&config.db_dir()).map_err(|e| match e {
        OutboxError::Locked { .. } => CliError::OutboxLocked(e),
        other => CliError::Outbox(other),
    })?;
    let n = if out == Path::new("-") {
        export::export(&ob, from, to, &mut std::io::stdout().lock())
    } else {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(|source| {
            CliError::Create {
                file: out.to_path_buf(),
                source,
            }
        })?);
        export::export(&ob, from, to, &mut f)
    }?;
    eprintln!("exported {n} frame(s)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_and_command_has_help_text() {
        airlock_tests::cli_help::assert_every_flag_and_command_has_help_text(Cli::command());
    }

    #[test]
    fn log_format_is_one_flag_with_the_old_spelling_kept() {
        let c = Cli::try_parse_from([
            "airlock-sender",
            "--log-format",
            "json",
            "status",
            "--config",
            "x",
        ])
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let c = Cli::try_parse_from(["airlock-sender", "--log-json", "status", "--config", "x"])
            .unwrap();
        assert!(c.log_json);
    }
}
