//! `airlock-receiver audit ...`: the auditor's tools.
//!
//! Every command works on a COPY of a data directory (or, `--pg-url`, read-only on the
//! PostgreSQL database of an HA deployment) and public signer keys only: no link key, no
//! private key, and no network beyond that database. The log format is `crate::frame_log`; the state machine
//! is `crate::apply` (reused, never re-implemented). Guide: docs/audit.md.

mod args;
mod error;
mod events;
mod export;
mod keys;
mod progress;
mod reconcile;
mod record;
mod replay_cmd;
mod show;
mod source;
pub mod timefmt;
pub mod transparency;
mod verify;
mod walk;

use clap::Subcommand;

use self::transparency::{CheckpointVerifyArgs, ConsistencyArgs, InclusionArgs};

pub use args::{KeyArgs, OutputArgs, SourceArgs};
pub use error::AuditError;
pub use events::EventsArgs;
pub use export::ExportArgs;
pub use reconcile::{ReconcileArgs, ReconcileReport};
pub use record::EntryRecord;
pub use replay_cmd::{ReplayArgs, ReplayReport, replay};
pub use show::{ShowArgs, ShowReport};
pub use verify::{VerifyArgs, VerifyReport, failure_line as verify_failure_line, verify};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry's hash link, every signature (against the signers in force at that
    /// point), the recorded head, and the sender's chain (missing seqs, broken prev links).
    Verify(VerifyArgs),
    /// Rebuild the state from the frame log alone into a scratch store and diff it against
    /// the live store (users, claims, validity, revocations, tickets).
    Replay(ReplayArgs),
    /// JSON Lines, one object per log entry (seq, signer, receive time, verdict, body type,
    /// issuer, subject, local sub, approver, ticket ref, claims), for SIEM ingestion.
    Export(ExportArgs),
    /// The provenance of one user: every frame that touched it, its record, its sessions.
    Show(ShowArgs),
    /// Compare the sender's outbound log (`airlock-sender export-log`) with this log.
    Reconcile(ReconcileArgs),
    /// The provider's security event log: passkey enrolments, removals, sign-ins, refused
    /// attempts (text, or JSON lines with --json).
    Events(EventsArgs),
    /// Signed checkpoints (tree heads) of the frame log's Merkle tree.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointAuditCommand,
    },
    /// Prove from the stored log that the tree at OLD is a prefix of the tree at NEW
    /// (RFC 9162 consistency proof, printable), checking checkpoint files given for either.
    Consistency(ConsistencyArgs),
    /// Prove that a frame is in the log under a checkpoint (RFC 9162 inclusion proof).
    Inclusion(InclusionArgs),
}

#[derive(Debug, Subcommand)]
pub enum CheckpointAuditCommand {
    /// Check checkpoints (given files, or those stored in the log): the signature by the
    /// receiver's checkpoint key, and that the log's Merkle tree has each one's root at its
    /// size; names where the log departs from them.
    Verify(CheckpointVerifyArgs),
}

/// Runs an audit command; Ok(text) to print on stdout. When an audit finds problems the
/// report is printed here and [`AuditError::Findings`] makes the exit status non-zero.
pub fn run(cmd: AuditCommand) -> Result<String, AuditError> {
    match cmd {
        AuditCommand::Verify(a) => {
            let r = verify::verify(&a)?;
            finish(
                a.output.json,
                &r,
                verify::render(&r),
                r.ok,
                verify::failure_line(&r),
            )
        }
        AuditCommand::Replay(a) => {
            let r = replay_cmd::replay(&a)?;
            let line = format!(
                "{} difference(s) between the live store and the replay of its log",
                r.differences.len()
            );
            finish(a.output.json, &r, replay_cmd::render(&r), r.ok, line)
        }
        AuditCommand::Export(a) => export::export(&a),
        AuditCommand::Events(a) => events::events(&a),
        AuditCommand::Show(a) => {
            let r = show::show(&a)?;
            let found = !r.frames.is_empty() || !r.users.is_empty();
            let line = format!("no frame and no record mentions {}", r.query);
            finish(a.output.json, &r, show::render(&r), found, line)
        }
        AuditCommand::Checkpoint {
            command: CheckpointAuditCommand::Verify(a),
        } => {
            let r = transparency::checkpoint_verify(&a)?;
            let line = format!(
                "checkpoint verify failed: {}",
                r.problems.first().cloned().unwrap_or_default()
            );
            finish(
                a.output.json,
                &r,
                transparency::render_checkpoint_verify(&r),
                r.ok,
                line,
            )
        }
        AuditCommand::Consistency(a) => {
            let r = transparency::consistency(&a)?;
            let line = format!(
                "consistency failed: {}",
                r.problems.first().cloned().unwrap_or_default()
            );
            finish(
                a.output.json,
                &r,
                transparency::render_consistency(&r),
                r.ok,
                line,
            )
        }
        AuditCommand::Inclusion(a) => {
            let r = transparency::inclusion(&a)?;
            let line = format!(
                "inclusion failed: {}",
                r.problems.first().cloned().unwrap_or_default()
            );
            finish(
                a.output.json,
                &r,
                transparency::render_inclusion(&r),
                r.ok,
                line,
            )
        }
        AuditCommand::Reconcile(a) => {
            let r = reconcile::reconcile(&a)?;
            let line = format!(
                "reconcile failed: {} sent but never received, {} received but never sent, {} sender log problem(s)",
                r.sent_not_received_count,
                r.received_not_sent_count,
                r.sender_log_problems.len()
            );
            finish(a.output.json, &r, reconcile::render(&r), r.ok, line)
        }
    }
}

fn finish<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: String,
    ok: bool,
    failure: String,
) -> Result<String, AuditError> {
    let out = if json {
        serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| AuditError::Write(std::io::Error::other(e)))?
    } else {
        text
    };
    if ok {
        return Ok(out);
    }
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Err(AuditError::Findings(failure))
}
