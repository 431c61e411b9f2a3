//! status.json: the daemon's snapshot for `airlock-sender status` (which cannot open the
//! outbox while `run` holds it). Written every second, atomically (temp file + rename).

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use crate::clock::unix_now;
use crate::metrics::Metrics;
use crate::outbox::ChainState;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub running: bool,
    pub session_id: String,
    pub signer_kid: String,
    pub started_at: u64,
    pub updated_at: u64,
    pub last_seq: u64,
    pub chain_head: String,
    pub sent_through: u64,
    pub pending_records: usize,
    pub provisioned_identities: usize,
    pub frames_sealed: u64,
    pub frames_resent: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Bytes per second over the last update interval.
    pub link_rate_bytes_per_sec: u64,
    pub pacing_bytes_per_sec: u64,
    pub send_errors: u64,
    pub spool_errors: u64,
    pub storage_errors: u64,
    pub expired_dropped: u64,
}

impl Status {
    pub fn new(session_id: u64, signer_kid: &str) -> Self {
        Self {
            pid: std::process::id(),
            session_id: format!("{session_id:016x}"),
            signer_kid: signer_kid.to_string(),
            started_at: unix_now(),
            ..Self::default()
        }
    }

    pub fn update(
        &mut self,
        m: &Metrics,
        chain: ChainState,
        pending: usize,
        identities: usize,
        running: bool,
    ) {
        let now = unix_now();
        let bytes = m.bytes_sent_total.load(Relaxed);
        let dt = now.saturating_sub(self.updated_at).max(1);
        self.link_rate_bytes_per_sec = bytes.saturating_sub(self.bytes_sent) / dt;
        self.running = running;
        self.updated_at = now;
        self.last_seq = chain.next_seq.saturating_sub(1);
        self.chain_head = hex::encode(chain.head);
        self.sent_through = m.sent_through_seq.load(Relaxed);
        self.pending_records = pending;
        self.provisioned_identities = identities;
        self.frames_sealed = m.frames_sealed_total.load(Relaxed);
        self.frames_resent = m.frames_resent_total.load(Relaxed);
        self.datagrams_sent = m.datagrams_sent_total.load(Relaxed);
        self.bytes_sent = bytes;
        self.pacing_bytes_per_sec = m.pacing_bytes_per_second.load(Relaxed);
        self.send_errors = m.send_errors_total.load(Relaxed);
        self.spool_errors = m.spool_errors_total.load(Relaxed);
        self.storage_errors = m.storage_errors_total.load(Relaxed);
        self.expired_dropped = m.expired_dropped_total.load(Relaxed);
    }
}

pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

pub fn read(path: &Path) -> std::io::Result<Status> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
