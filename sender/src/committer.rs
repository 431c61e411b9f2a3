//! The committer thread: makes sealed batches durable, then hands their frames to the link.
//!
//! Signing (on the engine thread) and committing (here) overlap, so the two cores work
//! on different batches. The rule "durable before it leaves" holds because only this
//! thread hands frames to the link, and only after the batch's commit and flush returned.
//! Batches are committed in the order they were sealed (one FIFO channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::EngineError;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, OutboxError, SealCommit};
use crate::sendloop::Outbound;

/// Batches sealed ahead of the one being committed.
const QUEUE: usize = 2;

/// One unit of work: what to commit, then what to send.
pub struct Work {
    pub commit: SealCommit,
    pub frames: Vec<Outbound>,
}

pub struct Committer {
    tx: Option<SyncSender<Work>>,
    handle: Option<JoinHandle<Result<(), EngineError>>>,
    in_flight: Arc<AtomicUsize>,
}

impl Committer {
    /// Once `shutdown` is set, batches are still committed but their frames are no longer
    /// handed to the link: they go out after the next start (above "sent through").
    pub fn start(
        outbox: Arc<Outbox>,
        link: mpsc::Sender<Outbound>,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, EngineError> {
        let (tx, rx) = sync_channel::<Work>(QUEUE);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let handle = std::thread::Builder::new()
            .name("airlock-commit".into())
            .spawn(move || {
                for work in rx {
                    if let Err(e) = apply(&outbox, &work.commit) {
                        Metrics::inc(&metrics.storage_errors_total);
                        return Err(e.into());
                    }
                    count(&metrics, &work.commit);
                    for frame in work.frames {
                        if shutdown.load(Relaxed) {
                            break;
                        }
                        if link.blocking_send(frame).is_err() && !shutdown.load(Relaxed) {
                            return Err(EngineError::LinkClosed);
                        }
                    }
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

fn apply(outbox: &Outbox, commit: &SealCommit) -> Result<(), OutboxError> {
    outbox.commit(commit)?;
    if commit.entries.is_empty() && !commit.consumed.is_empty() {
        // Only expired records in this batch: drop them durably, nothing to send.
        outbox.discard_pending(&commit.consumed)?;
        outbox.flush()?;
    }
    Ok(())
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
