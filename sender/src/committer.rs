//! The committer thread: makes signed batches durable, then encrypts their frames and hands
//! them to the link, one `Vec` per batch.
//!
//! Signing is sequential (each frame's `prev` is the hash of the one before), so the engine
//! thread does nothing else; committing and encrypting run here, on the other core, on
//! the batch before. The rule "durable before it leaves" holds because only this thread
//! hands frames to the link, and only after the batch's commit and flush returned.
//! Batches are committed in the order they were signed (one FIFO channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use airlock_protocol::seal::Sealer;
use tokio::sync::mpsc;

use crate::engine_error::EngineError;
use crate::link::sendloop::{Outbound, SendKind};
use crate::metrics::Metrics;
use crate::outbox::{LogEntry, Outbox, SealCommit};

/// Batches sealed ahead of the one being committed.
const QUEUE: usize = 2;

/// One unit of work, in signing order.
pub enum Work {
    /// Newly signed frames: committed and flushed, then encrypted and sent as first
    /// transmissions.
    Seal(SealCommit),
    /// Logged (already durable) frames to send again under a fresh encryption.
    Resend {
        entries: Vec<LogEntry>,
        kind: SendKind,
    },
}

/// What the commit thread needs besides its queue.
pub struct CommitLink {
    pub outbox: Arc<Outbox>,
    pub sealer: Arc<Sealer>,
    pub link: mpsc::Sender<Vec<Outbound>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub placement: crate::cores::Placement,
}

pub struct Committer {
    tx: Option<SyncSender<Work>>,
    handle: Option<JoinHandle<Result<(), EngineError>>>,
    in_flight: Arc<AtomicUsize>,
}

impl Committer {
    /// Once `shutdown` is set, batches are still committed but their frames are no longer
    /// handed to the link: they go out after the next start (above "sent through").
    pub fn start(ctx: CommitLink) -> Result<Self, EngineError> {
        let (tx, rx) = sync_channel::<Work>(QUEUE);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let handle = std::thread::Builder::new()
            .name("airlock-commit".into())
            .spawn(move || {
                ctx.placement.enter_helper();
                for work in rx {
                    ctx.process(work)?;
                    counter.fetch_sub(1, SeqCst);
                }
                Ok(())
            })
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            in_flight,
        })
    }

    /// Queues a batch; blocks while the queue is full.
    pub fn submit(&mut self, work: Work) -> Result<(), EngineError> {
        self.in_flight.fetch_add(1, SeqCst);
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(work).is_ok())
            .unwrap_or(false);
        if sent {
            return Ok(());
        }
        // The thread stopped: its error is the one to report.
        self.finish()?;
        Err(EngineError::LinkClosed)
    }

    /// Waits until every queued batch is durable (and handed to the link).
    pub fn wait_idle(&self) {
        while self.in_flight.load(SeqCst) > 0 {
            if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Commits what is queued and stops the thread.
    pub fn finish(&mut self) -> Result<(), EngineError> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| EngineError::Thread("the commit thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl CommitLink {
    fn process(&self, work: Work) -> Result<(), EngineError> {
        let (entries, kind) = match &work {
            Work::Seal(commit) => {
                if let Err(e) = self.outbox.commit(commit) {
                    Metrics::inc(&self.metrics.storage_errors_total);
                    return Err(e.into());
                }
                count(&self.metrics, commit);
                (&commit.entries, SendKind::New)
            }
            Work::Resend { entries, kind } => (entries, *kind),
        };
        if entries.is_empty() || self.shutdown.load(Relaxed) {
            return Ok(());
        }
        let frames = self.encrypt(entries, kind)?;
        if self.link.blocking_send(frames).is_err() && !self.shutdown.load(Relaxed) {
            return Err(EngineError::LinkClosed);
        }
        Ok(())
    }

    /// Cannot fail for a logged Sign1: its envelope is at most `MAX_ENVELOPE` bytes, which
    /// leaves room for the COSE overhead below `MAX_SEALED_FRAME`. Should it fail anyway,
    /// the daemon stops with the frames durable, as for a storage error.
    fn encrypt(&self, entries: &[LogEntry], kind: SendKind) -> Result<Vec<Outbound>, EngineError> {
        let sealed = self
            .sealer
            .encrypt_batch(entries.iter().map(|e| e.sign1.as_slice()))?;
        let frames = entries.iter().zip(sealed).map(|(e, sealed)| Outbound {
            seq: e.seq,
            sealed: Arc::new(sealed),
            kind,
        });
        Ok(frames.collect())
    }
}

fn count(m: &Metrics, commit: &SealCommit) {
    for entry in &commit.entries {
        Metrics::inc(&m.frames_sealed_total);
        let c = match entry.kind.as_str() {
            "provision" => &m.provision_frames_total,
            "revoke" => &m.revoke_frames_total,
            "login_ticket" => &m.ticket_frames_total,
            "heartbeat" => &m.heartbeat_frames_total,
            _ => continue,
        };
        Metrics::inc(c);
    }
    if let Some(last) = commit.entries.last() {
        m.last_seq.store(last.seq, Relaxed);
    }
}
