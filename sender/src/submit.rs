//! `airlock-sender submit`: read records, run them through the policy, queue them
//! atomically in the spool. All or nothing: if any record is refused, nothing is queued.

use std::io::Read;
use std::path::Path;

use airlock_protocol::message::Body;
use thiserror::Error;

use crate::config::Config;
use crate::intake::jwt::{JwksError, JwtVerifier};
use crate::intake::records::parse_input;
use crate::policy::{Accepted, Policy, check_body_size};
use crate::spool::{self, SpoolError, SpoolItem};
use crate::ticket::{self, TicketError};

/// Largest input read from one file or stdin.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error("cannot read {name}: {error}")]
    Read { name: String, error: std::io::Error },
    #[error("{name} is larger than {MAX_INPUT_BYTES} bytes; split it into several submits")]
    TooLarge { name: String },
}

/// One accepted record, as reported to the submitter.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    pub source: String,
    pub kind: &'static str,
    pub issuer: String,
    pub subject: String,
    /// The transfer code (login tickets only): shown once, never stored.
    pub transfer_code: Option<String>,
    pub expires_at: Option<u64>,
    pub dropped_claims: Vec<String>,
}

/// What happened to a submit.
#[derive(Debug, Default)]
pub struct SubmitReport {
    /// The spool batch id, if anything was queued.
    pub batch_id: Option<String>,
    pub accepted: Vec<AcceptedRecord>,
    /// One line per refused record ("file#n: reason").
    pub errors: Vec<String>,
}

/// Reads a named input: "-" is stdin.
pub fn read_input(name: &str) -> Result<Vec<u8>, SubmitError> {
    let mut buf = Vec::new();
    let err = |error| SubmitError::Read {
        name: name.to_string(),
        error,
    };
    if name == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(err)?;
    } else {
        std::fs::File::open(Path::new(name))
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut buf))
            .map_err(err)?;
    }
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(SubmitError::TooLarge {
            name: name.to_string(),
        });
    }
    Ok(buf)
}

/// Validates every record of every input; queues them all in one spool batch if all pass.
pub fn submit(
    config: &Config,
    inputs: &[(String, Vec<u8>)],
    now: u64,
) -> Result<SubmitReport, SubmitError> {
    let verifier = JwtVerifier::load(&config.trusted_issuers)?;
    let policy = Policy::new(config.policy.clone());
    let mut report = SubmitReport::default();
    let mut admitted = Vec::new();
    for (name, bytes) in inputs {
        let display = if name == "-" { "stdin" } else { name.as_str() };
        for candidate in parse_input(
            display,
            bytes,
            config.policy.max_record_bytes,
            &verifier,
            now,
        ) {
            match candidate
                .map_err(|e| e.to_string())
                .and_then(|c| policy.admit(c, now).map_err(|r| r.to_string()))
            {
                Ok(a) => admitted.push(a),
                Err(line) => report.errors.push(line),
            }
        }
    }
    if !report.errors.is_empty() || admitted.is_empty() {
        return Ok(report);
    }
    let mut items = Vec::with_capacity(admitted.len());
    for a in admitted {
        let (body, code) = match a.accepted {
            Accepted::Provision(p) => (Body::Provision(p), None),
            Accepted::Revoke(r) => (Body::Revoke(r), None),
            Accepted::Ticket(t) => {
                let issued = ticket::issue(t)?;
                (
                    Body::LoginTicket(issued.ticket),
                    Some(issued.code.display()),
                )
            }
        };
        if let Err(detail) = check_body_size(body.clone()) {
            report.errors.push(format!(
                "{}: rejected by policy rule `size_limit`: {detail}",
                a.source
            ));
            continue;
        }
        report
            .accepted
            .push(describe(&a.source, &body, code, a.dropped_claims));
        items.push(SpoolItem {
            source: a.source,
            body,
        });
    }
    if !report.errors.is_empty() {
        // A code was never shown for a batch that is not queued.
        report.accepted.clear();
        return Ok(report);
    }
    report.batch_id = Some(spool::write_batch(&config.spool_dir(), items)?);
    Ok(report)
}

fn describe(
    source: &str,
    body: &Body,
    transfer_code: Option<String>,
    dropped_claims: Vec<String>,
) -> AcceptedRecord {
    let (issuer, subject) = body.identity().unwrap_or(("", ""));
    let expires_at = match body {
        Body::Provision(p) => Some(p.valid_until),
        Body::LoginTicket(t) => Some(t.expires_at),
        _ => None,
    };
    AcceptedRecord {
        source: source.to_string(),
        kind: body.kind(),
        issuer: issuer.to_string(),
        subject: subject.to_string(),
        transfer_code,
        expires_at,
        dropped_claims,
    }
}
