//! Command-line arguments shared by the audit commands.

use std::path::PathBuf;

use clap::Args;

/// Where the store comes from: a copy of a sled data directory, or a PostgreSQL database.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// A COPY of the receiver's data directory (the directory holding `store.sled`), or the
    /// `store.sled` directory itself. Never point this at the directory of a running receiver.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["config", "pg_url"],
        conflicts_with = "pg_url"
    )]
    pub data_dir: Option<PathBuf>,
    /// The PostgreSQL database of an HA deployment (`postgres://auditor@host:port/dbname`),
    /// instead of --data-dir. Use a read-only role or a replica: the audit only reads
    /// (its connections are read-only and it never migrates).
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// A file (mode 0600) holding the password of the --pg-url role, if it needs one
    /// (never put the password in the URL: it would show in the process list).
    #[arg(long, value_name = "FILE", requires = "pg_url")]
    pub pg_password_file: Option<PathBuf>,
    /// The receiver's config file: its store (`data_dir`, or `[store.postgres]` when
    /// `backend = "postgres"`; unless --data-dir or --pg-url is given) and its trusted
    /// signer keys (unless --trust-dir or --signer is given). Link keys are never read.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The public keys the auditor trusts at the start of the log.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// A directory of signer public keys (`*.pub`, SPKI PEM), e.g. a copy of the trust dir.
    #[arg(long, value_name = "DIR")]
    pub trust_dir: Option<PathBuf>,
    /// A signer public key file (SPKI PEM); repeat for several.
    #[arg(long = "signer", value_name = "FILE")]
    pub signers: Vec<PathBuf>,
}

/// Output selection.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Print one JSON document (export: JSON lines are always used) instead of text.
    #[arg(long)]
    pub json: bool,
}
