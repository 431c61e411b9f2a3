//! `airlock-sender export-log`: the outbound log as JSON lines, for auditors to reconcile
//! with the receiver's frame log.

use std::io::Write;

use base64::Engine as _;
use serde::Serialize;

use crate::outbox::{LogEntry, Outbox, OutboxError};

#[derive(Debug, Serialize)]
pub struct ExportLine<'a> {
    pub seq: u64,
    pub hash: String,
    pub prev: String,
    pub kind: &'a str,
    pub issued_at: u64,
    pub origin: &'a str,
    /// The COSE_Sign1 bytes, standard base64: verify with the signer's public key.
    pub sign1: String,
}

impl<'a> From<&'a LogEntry> for ExportLine<'a> {
    fn from(e: &'a LogEntry) -> Self {
        Self {
            seq: e.seq,
            hash: hex::encode(e.hash),
            prev: hex::encode(e.prev),
            kind: &e.kind,
            issued_at: e.issued_at,
            origin: &e.origin,
            sign1: base64::engine::general_purpose::STANDARD.encode(&e.sign1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes entries `from..=to` as JSON lines; returns how many.
pub fn export(
    outbox: &Outbox,
    from: u64,
    to: u64,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut n = 0;
    for entry in outbox.log_range(from, to) {
        let entry = entry?;
        serde_json::to_writer(&mut *out, &ExportLine::from(&entry))
            .map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
