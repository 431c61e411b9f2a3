//! The sealing engine: the single writer of the outbox, on a thread of its own (sled and
//! Ed25519 are blocking work).
//!
//! Loop: spool commands -> sign pending records -> heartbeat when due ->
//! carousel when idle -> housekeeping. Signing is the sequential part of sealing (each
//! frame's `prev` is the hash of the one before), so this thread only signs; the commit
//! thread makes each batch durable (log entry, seq, chain head, flushed), then encrypts it
//! and hands it to the link task.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use airlock_protocol::codec::{self, EncodedBody};
use airlock_protocol::message::{Body, ENVELOPE_VERSION, Heartbeat, KeyRetire};
use airlock_protocol::seal::{SealError, Sealer};
use tokio::sync::mpsc;

pub use crate::clock::unix_now;
use crate::committer::{CommitLink, Committer, Work};
use crate::cores::Placement;
pub use crate::engine_error::EngineError;
use crate::ingester::{IngestLink, Ingester, quarantine};
use crate::link::sendloop::{Outbound, SendKind};
use crate::metrics::Metrics;
use crate::outbox::{ChainState, LogEntry, Outbox, SealCommit, StateChange};
use crate::prefetch::{Prefetch, Prepared};
use crate::spool::{self, Command, Entry};
use crate::status::{self, Status};

/// Records sealed per outbox transaction (one flush each).
const SEAL_BATCH: usize = 1024;
/// Spool scans for commands at most this often while busy.
const SPOOL_SCAN: Duration = Duration::from_millis(50);
const IDLE_SLEEP: Duration = Duration::from_millis(10);

/// Engine settings from the config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub session_id: u64,
    pub heartbeat_secs: u32,
    pub carousel: Option<Duration>,
    pub retention_secs: u64,
    pub spool_dir: PathBuf,
    pub status_file: PathBuf,
    /// The data directory: backups are staged and recorded there.
    pub data_dir: PathBuf,
    /// Set by the link task when it has sent its last block; the final "sent through"
    /// mark is persisted after that.
    pub link_done: Arc<AtomicBool>,
    /// Where the signing thread and its helpers run.
    pub placement: Placement,
}

pub struct Engine {
    outbox: Arc<Outbox>,
    sealer: Arc<Sealer>,
    chain: ChainState,
    committer: Committer,
    prefetch: Prefetch,
    ingester: Ingester,
    /// Pending keys below this are sealed (their commit may still be in flight).
    next_pending: u64,
    metrics: Arc<Metrics>,
    settings: EngineSettings,
    shutdown: Arc<AtomicBool>,
    sent_through: Arc<AtomicU64>,
    carousel: VecDeque<Vec<u8>>,
    next_heartbeat: Instant,
    next_carousel: Option<Instant>,
    next_spool_scan: Instant,
    next_housekeeping: Instant,
    next_prune: Instant,
    status: Status,
}

impl Engine {
    pub fn new(
        outbox: Outbox,
        sealer: Sealer,
        link: mpsc::Sender<Vec<Outbound>>,
        metrics: Arc<Metrics>,
        settings: EngineSettings,
        shutdown: Arc<AtomicBool>,
        sent_through: Arc<AtomicU64>,
    ) -> Result<Self, EngineError> {
        let (chain, started) =
            outbox.chain_for(sealer.signer_kid(), crate::clock::unix_now_ms())?;
        if let Some(start) = started {
            // A new outbox, a lost one, or a new signer key: a chain of its own, above every
            // seq used before (the receiver opens no gap below a chain start).
            tracing::info!(
                signer_kid = sealer.signer_kid(),
                first_seq = start,
                "new chain: seqs start at a clock-derived base"
            );
        }
        let outbox = Arc::new(outbox);
        let sealer = Arc::new(sealer);
        let committer = Committer::start(CommitLink {
            outbox: outbox.clone(),
            sealer: sealer.clone(),
            link,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            placement: settings.placement.clone(),
        })?;
        let prefetch = Prefetch::start(outbox.clone(), SEAL_BATCH, settings.placement.clone())?;
        let ingester = Ingester::start(IngestLink {
            outbox: outbox.clone(),
            spool_dir: settings.spool_dir.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            placement: settings.placement.clone(),
        })?;
        let now = Instant::now();
        let status = Status::new(settings.session_id, sealer.signer_kid());
        Ok(Self {
            chain,
            next_heartbeat: now,
            next_carousel: settings.carousel.map(|d| now + d),
            next_spool_scan: now,
            next_housekeeping: now,
            next_prune: now,
            outbox,
            sealer,
            committer,
            prefetch,
            ingester,
            next_pending: 0,
            metrics,
            settings,
            shutdown,
            sent_through,
            carousel: VecDeque::new(),
            status,
        })
    }

    /// Runs until the shutdown flag is set; leaves the outbox flushed.
    pub fn run(mut self) -> Result<(), EngineError> {
        let sent = self.outbox.sent_through()?;
        self.sent_through.store(sent, Relaxed);
        self.resend_unsent(sent)?;
        tracing::info!(
            next_seq = self.chain.next_seq,
            sent_through = sent,
            pending = self.outbox.pending_len(),
            "engine started"
        );
        let result = self.main_loop();
        self.shutdown.store(true, Relaxed);
        let ingested = self.ingester.finish();
        let committed = self.committer.finish();
        self.wait_for_link();
        let finish = self.housekeeping(true);
        result.and(ingested).and(committed).and(finish)
    }

    fn main_loop(&mut self) -> Result<(), EngineError> {
        while !self.shutdown.load(Relaxed) {
            let now = Instant::now();
            let mut busy = false;
            if now >= self.next_spool_scan {
                busy |= self.run_commands()?;
                self.next_spool_scan = now + SPOOL_SCAN;
                if self.ingester.is_finished() {
                    // It only stops early on an error: the daemon stops with it.
                    self.ingester.finish()?;
                    return Err(EngineError::Thread("the spool thread stopped".into()));
                }
            }
            busy |= self.seal_pending()? > 0;
            if now >= self.next_heartbeat {
                self.seal_heartbeat()?;
                self.next_heartbeat =
                    now + Duration::from_secs(u64::from(self.settings.heartbeat_secs));
            }
            if !busy {
                busy |= self.carousel_step(now)?;
            }
            if !busy {
                // Deferred per-identity state writes, one commit's worth at a time.
                busy |= self.outbox.fold_state(1)? > 0;
            }
            if now >= self.next_housekeeping {
                self.housekeeping(false)?;
                self.next_housekeeping = now + Duration::from_secs(1);
            }
            if !busy {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
        Ok(())
    }

    /// Waits (bounded) for the link task to send its last block, so the persisted
    /// "sent through" mark includes it. Without it, a restart only re-sends a bit more.
    fn wait_for_link(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.settings.link_done.load(Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Frames sealed before the last stop whose first transmission may not have left.
    fn resend_unsent(&mut self, sent_through: u64) -> Result<(), EngineError> {
        if self.chain.next_seq <= sent_through + 1 {
            return Ok(());
        }
        // As first transmissions: repeated like new frames, and they move "sent through".
        let n = self.resend(sent_through + 1, self.chain.next_seq - 1, SendKind::New)?;
        tracing::info!(
            from = sent_through + 1,
            frames = n,
            "re-sending frames sealed but possibly unsent before the last stop"
        );
        Ok(())
    }

    /// Runs every spool command (batches are the spool thread's); true if any was found.
    fn run_commands(&mut self) -> Result<bool, EngineError> {
        let mut found = false;
        for entry in spool::list(&self.settings.spool_dir)? {
            if let Entry::Command { id, path } = entry {
                found = true;
                self.run_command(&id, &path)?;
            }
            if self.shutdown.load(Relaxed) {
                break;
            }
        }
        Ok(found)
    }

    fn run_command(&mut self, id: &str, path: &std::path::Path) -> Result<(), EngineError> {
        match spool::read_command(path) {
            Ok(Command::Resend { from, to }) => {
                let to = to.min(self.chain.next_seq.saturating_sub(1));
                let n = if from <= to {
                    self.resend(from, to, SendKind::Resend)?
                } else {
                    0
                };
                let wanted = if from <= to { to - from + 1 } else { 0 };
                if (n as u64) < wanted {
                    tracing::warn!(
                        command = id,
                        from,
                        to,
                        found = n,
                        "some requested seqs are no longer in the outbound log (retention)"
                    );
                }
                tracing::info!(command = id, from, to, frames = n, "resend done");
                spool::remove(path)?;
            }
            Ok(Command::Backup) => {
                // Removed first: a crash mid-export must not export again at every start.
                spool::remove(path)?;
                crate::backup::serve(
                    self.outbox.clone(),
                    self.settings.data_dir.clone(),
                    id.to_owned(),
                );
            }
            Err(e) => quarantine(&self.metrics, path, &e),
        }
        Ok(())
    }

    /// Hands the logged Sign1 of `from..=to` to the committer, which re-encrypts it.
    fn resend(&mut self, from: u64, to: u64, kind: SendKind) -> Result<usize, EngineError> {
        let mut n = 0;
        let mut batch = Vec::new();
        let outbox = self.outbox.clone();
        for entry in outbox.log_range(from, to) {
            batch.push(entry?);
            n += 1;
            if batch.len() >= SEAL_BATCH {
                self.hand_over(std::mem::take(&mut batch), kind)?;
            }
        }
        self.hand_over(batch, kind)?;
        self.metrics
            .frames_resent_total
            .fetch_add(n as u64, Relaxed);
        Ok(n)
    }

    /// Frames that are already durable (resends) go through the committer too, in order.
    fn hand_over(&mut self, entries: Vec<LogEntry>, kind: SendKind) -> Result<(), EngineError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.committer.submit(Work::Resend { entries, kind })
    }

    /// Seals one batch of pending records; returns how many were consumed.
    fn seal_pending(&mut self) -> Result<usize, EngineError> {
        let batch = self.prefetch.next(self.next_pending)?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        self.next_pending = last.key + 1;
        let now = unix_now();
        let mut commit = SealCommit::default();
        let consumed = batch.len();
        for Prepared {
            key,
            item,
            change,
            encoded,
        } in batch
        {
            commit.consumed.push(key);
            if let Some(until) = expiry(&item.body).filter(|&t| t <= now) {
                Metrics::inc(&self.metrics.expired_dropped_total);
                tracing::warn!(source = %item.source, kind = item.body.kind(), expired_at = until, "queued record expired before it could be sent; dropped");
                continue;
            }
            if retires_itself(&item.body, self.sealer.signer_kid()) {
                // `keys retire` refuses this; a daemon restarted on the retired key since
                // must not cut itself off either.
                tracing::error!(source = %item.source, kid = self.sealer.signer_kid(), "queued KeyRetire names the key this sender signs with; dropped: switch [keys] signer to its successor and retire it from there");
                continue;
            }
            let signed = encoded
                .map_err(SealError::from)
                .and_then(|body| self.sign_encoded(&body, item.body.kind(), &item.source, now));
            match signed {
                Ok(entry) => {
                    commit.state.extend(change);
                    commit.entries.push(entry);
                }
                // Only a record that breaks the protocol's limits fails here; policy checks
                // those at submit, so this is a record from an older, laxer version.
                Err(e) => {
                    tracing::error!(source = %item.source, error = %e, "record cannot be sealed; dropped");
                }
            }
        }
        self.commit(commit)?;
        Ok(consumed)
    }

    fn seal_heartbeat(&mut self) -> Result<(), EngineError> {
        let body = Body::Heartbeat(Heartbeat {
            session_id: self.settings.session_id,
            interval_secs: self.settings.heartbeat_secs,
        });
        let entry = self.sign(body, "heartbeat", unix_now())?;
        let commit = SealCommit {
            entries: vec![entry],
            ..SealCommit::default()
        };
        self.commit(commit)
    }

    /// Re-seals a slice of the valid Provision state when the carousel is due.
    fn carousel_step(&mut self, now: Instant) -> Result<bool, EngineError> {
        if self.carousel.is_empty() {
            match self.next_carousel {
                Some(at) if now >= at => {
                    self.carousel = self.outbox.state_keys()?.into();
                    self.next_carousel = self.settings.carousel.map(|d| now + d);
                    tracing::info!(identities = self.carousel.len(), "carousel round started");
                }
                _ => return Ok(false),
            }
        }
        // The state must reflect every sealed frame (a Revoke in flight removes an identity).
        self.committer.wait_idle();
        let unix = unix_now();
        let mut commit = SealCommit::default();
        while commit.entries.len() < SEAL_BATCH {
            let Some(key) = self.carousel.pop_front() else {
                break;
            };
            // Read at seal time: a Revoke sealed since the round began has removed the entry.
            let Some(p) = self.outbox.state_get(&key)? else {
                continue;
            };
            if p.valid_until <= unix {
                commit.state.push(StateChange::Remove {
                    issuer: p.issuer,
                    subject: p.subject,
                });
                continue;
            }
            let entry = self.sign(Body::Provision(p), "carousel", unix)?;
            commit.entries.push(entry);
        }
        let n = commit.entries.len() as u64;
        if commit.entries.is_empty() && !commit.state.is_empty() {
            // Expired entries only: no frame, but the state still shrinks.
            let hb = Body::Heartbeat(Heartbeat {
                session_id: self.settings.session_id,
                interval_secs: self.settings.heartbeat_secs,
            });
            let entry = self.sign(hb, "heartbeat", unix)?;
            commit.entries.push(entry);
        }
        self.commit(commit)?;
        self.metrics.carousel_frames_total.fetch_add(n, Relaxed);
        Ok(true)
    }

    /// Signs one body at the head of the chain (advancing it in memory only).
    fn sign(&mut self, body: Body, origin: &str, now: u64) -> Result<LogEntry, SealError> {
        let encoded = codec::encode_body(&body)?;
        self.sign_encoded(&encoded, body.kind(), origin, now)
    }

    /// Signs a body encoded ahead of time (pending records are, by the reader thread): only
    /// the chain fields are written here, on the signing thread.
    fn sign_encoded(
        &mut self,
        body: &EncodedBody,
        kind: &str,
        origin: &str,
        now: u64,
    ) -> Result<LogEntry, SealError> {
        let ChainState {
            next_seq: seq,
            head: prev,
        } = self.chain;
        let kid = self.sealer.signer_kid();
        let payload =
            codec::encode_envelope_with_body(ENVELOPE_VERSION, kid, seq, &prev, now, body)?;
        let signed = self.sealer.sign_payload(&payload);
        self.chain = ChainState {
            next_seq: seq + 1,
            head: signed.hash,
        };
        Ok(LogEntry {
            seq,
            hash: signed.hash,
            prev,
            issued_at: now,
            kind: kind.to_string(),
            origin: origin.to_string(),
            sign1: signed.sign1,
        })
    }

    /// Queues the batch for the committer, which makes it durable before sending it.
    /// On a storage error the daemon stops; a restart continues from what is durable.
    fn commit(&mut self, commit: SealCommit) -> Result<(), EngineError> {
        self.committer.submit(Work::Seal(commit))
    }

    /// Persists the sent watermark, refreshes status.json, prunes the log when due.
    fn housekeeping(&mut self, last: bool) -> Result<(), EngineError> {
        let sent = self.sent_through.load(Relaxed);
        self.outbox.set_sent_through(sent)?;
        if last {
            self.outbox.flush()?;
        }
        let pending = self.outbox.pending_len();
        self.metrics.pending_records.store(pending as u64, Relaxed);
        self.status.update(
            &self.metrics,
            self.chain,
            pending,
            self.outbox.state_len(),
            !last,
        );
        // Written by `backup` (this daemon's or a direct one): the gauge survives restarts.
        if let Some(b) = crate::backup::last_backup(&self.settings.data_dir) {
            self.metrics
                .backup_last_timestamp_seconds
                .store(b.unix_secs, Relaxed);
        }
        if let Err(e) = status::write(&self.settings.status_file, &self.status) {
            tracing::warn!(error = %e, "cannot write status file");
        }
        if Instant::now() >= self.next_prune && !last {
            let cutoff = unix_now().saturating_sub(self.settings.retention_secs);
            let removed = self.outbox.prune_log(cutoff)?;
            if removed > 0 {
                tracing::info!(removed, "pruned outbound log entries past retention");
            }
            self.next_prune = Instant::now() + Duration::from_secs(600);
        }
        Ok(())
    }
}

/// A KeyRetire of the very key that would sign it.
fn retires_itself(body: &Body, own_kid: &str) -> bool {
    matches!(body, Body::KeyRetire(KeyRetire::Signer { kid }) if kid == own_kid)
}

/// When a queued body stops being worth sending.
fn expiry(body: &Body) -> Option<u64> {
    match body {
        Body::Provision(p) => Some(p.valid_until),
        Body::LoginTicket(t) => Some(t.expires_at),
        _ => None,
    }
}
