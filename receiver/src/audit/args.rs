//! Command-line arguments shared by the audit commands.

use std::path::PathBuf;

use clap::Args;

/// Where the data directory comes from.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// A COPY of the receiver's data directory (the directory holding `store.sled`), or the
    /// `store.sled` directory itself. Never point this at the directory of a running receiver.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub data_dir: Option<PathBuf>,
    /// The receiver's config file: its `data_dir` (unless --data-dir is given) and its trusted
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
