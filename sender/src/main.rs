#![forbid(unsafe_code)]
//! The `airlock-sender` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_sender::clock::unix_now;
use airlock_sender::config::Config;
use airlock_sender::outbox::{Outbox, OutboxError};
use airlock_sender::spool::{self, Command};
use airlock_sender::{daemon, export, keygen, status, submit};
use clap::{Parser, Subcommand};

/// Airlock's outside half: takes approved identities in, filters them through policy, and
/// sends them signed and encrypted over a one-way link (UDP or serial) to airlock-receiver.
#[derive(Debug, Parser)]
#[command(name = "airlock-sender", version)]
struct Cli {
    /// Log as JSON lines instead of text (filter with RUST_LOG, default "info").
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate records against the policy and queue them for sending. Works while `run` is
    /// running. Inputs are JSON approval records (one object, an array or JSON lines) or a
    /// file holding just an ID token; "-" reads stdin. If any record is refused, nothing is
    /// queued and the exit code is 1. Transfer codes of login tickets are printed once.
    Submit {
        #[arg(long)]
        config: PathBuf,
        /// Files to read; "-" (or none) is stdin.
        inputs: Vec<String>,
    },
    /// Ask the running daemon to re-encrypt and re-send logged frames FROM..=TO (the
    /// answer to a gap report of the receiver). Without --to, only FROM.
    Resend {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Show the daemon's state: last seq, queue depth, link rate, errors.
    Status {
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the outbound log as JSON lines (seq, hash, prev, kind, issued_at, origin,
    /// sign1 base64) for auditors. Needs the daemon stopped (the outbox is single-process).
    ExportLog {
        #[arg(long)]
        config: PathBuf,
        /// Output file; "-" is stdout.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = u64::MAX)]
        to: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Keygen { out, link_kid } => cmd_keygen(&out, link_kid),
        Cmd::Run { config } => cmd_run(&load(&config)?),
        Cmd::Submit { config, inputs } => cmd_submit(&load(&config)?, inputs),
        Cmd::Resend { config, from, to } => cmd_resend(&load(&config)?, from, to.unwrap_or(from)),
        Cmd::Status { config } => cmd_status(&load(&config)?),
        Cmd::ExportLog {
            config,
            out,
            from,
            to,
        } => cmd_export(&load(&config)?, &out, from, to),
    }
}

fn cmd_keygen(out: &std::path::Path, link_kid: u32) -> Result<ExitCode, String> {
    let g = keygen::keygen(out, link_kid).map_err(|e| e.to_string())?;
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

fn cmd_run(config: &Config) -> Result<ExitCode, String> {
    let rt = daemon::runtime(config).map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(daemon::run_until_signal(config))
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_submit(config: &Config, mut inputs: Vec<String>) -> Result<ExitCode, String> {
    if inputs.is_empty() {
        inputs.push("-".into());
    }
    let mut read = Vec::new();
    for name in inputs {
        let bytes = submit::read_input(&name).map_err(|e| e.to_string())?;
        read.push((name, bytes));
    }
    let report = submit::submit(config, &read, unix_now()).map_err(|e| e.to_string())?;
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
                "{} {} {} {}: transfer code {code} (valid until unix {})",
                a.source,
                a.kind,
                a.issuer,
                a.subject,
                a.expires_at.unwrap_or(0)
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

fn cmd_resend(config: &Config, from: u64, to: u64) -> Result<ExitCode, String> {
    if from == 0 || to < from {
        return Err(format!(
            "--from {from} --to {to}: seqs start at 1 and --to must not be below --from"
        ));
    }
    let id = spool::write_command(&config.spool_dir(), &Command::Resend { from, to })
        .map_err(|e| e.to_string())?;
    println!("resend of seqs {from}..={to} queued as command {id}");
    warn_if_not_running(config);
    Ok(ExitCode::SUCCESS)
}

fn cmd_status(config: &Config) -> Result<ExitCode, String> {
    let waiting = spool::list(&config.spool_dir())
        .map_err(|e| e.to_string())?
        .len();
    if daemon_running(config) {
        let s = status::read(&config.status_file()).map_err(|e| e.to_string())?;
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
                "last run:           pid {}, stopped or last seen at unix {}",
                s.pid, s.updated_at
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

fn cmd_export(
    config: &Config,
    out: &std::path::Path,
    from: u64,
    to: u64,
) -> Result<ExitCode, String> {
    let ob = Outbox::open(&config.db_dir()).map_err(|e| match e {
        OutboxError::Locked { .. } => {
            format!("{e}; stop the daemon (SIGTERM) to export, or export from a copy")
        }
        other => other.to_string(),
    })?;
    let n = if out == std::path::Path::new("-") {
        export::export(&ob, from, to, &mut std::io::stdout().lock())
    } else {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?,
        );
        export::export(&ob, from, to, &mut f)
    }
    .map_err(|e| e.to_string())?;
    eprintln!("exported {n} frame(s)");
    Ok(ExitCode::SUCCESS)
}
