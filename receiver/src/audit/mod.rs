//! `airlock-receiver audit ...`: the auditor's tools (issue 6 extends this module).
//!
//! Every command here works on a copy of a data directory and public keys only.
//! Add a variant to [`AuditCommand`] and its handler below.

use std::path::PathBuf;

use clap::Subcommand;
use thiserror::Error;

use crate::config::Config;
use crate::replay::{ReplayLogError, diff_stores, replay_log_into};
use crate::store::{SledStore, StoreError};
use crate::trust_set::{BaseTrust, TrustError};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Rebuild the state from the frame log alone (checking the hash chain and every
    /// signature) into a scratch store and diff it against the live store.
    Replay {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Replay(#[from] ReplayLogError),
    #[error("{0} difference(s) between the live store and the replay of its log")]
    Differences(usize),
}

/// Runs an audit command; Ok(text) to print.
pub fn run(cmd: AuditCommand) -> Result<String, AuditError> {
    match cmd {
        AuditCommand::Replay { config } => {
            let cfg = Config::load(&config)?;
            let live = SledStore::open(&cfg.store_path())?;
            let base = BaseTrust::load(&cfg.trust)?;
            let scratch = SledStore::temporary()?;
            let summary = replay_log_into(&live, &base, &scratch, |_| {})?;
            let diffs = diff_stores(&live, &scratch)?;
            for d in &diffs {
                eprintln!("difference: {d}");
            }
            if !diffs.is_empty() {
                return Err(AuditError::Differences(diffs.len()));
            }
            Ok(format!(
                "replayed {} log entries (chain head {}): the live store equals the replay\n",
                summary.entries,
                hex::encode(summary.head)
            ))
        }
    }
}
