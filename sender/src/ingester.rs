//! The spool reader: moves submitted batches from the spool directory into the outbox, on
//! a thread of its own.
//!
//! Reading a batch (JSON) and writing it to the outbox is work the signing thread, which
//! bounds the sender's throughput, should not do: a steady stream of submissions would take
//! its CPU. Batches become pending records in one outbox transaction each (with their
//! batch id, so a crash between ingest and deleting the file never ingests twice), and the
//! engine finds them at its next turn. Spool *commands* (`resend`) act on the chain, so the
//! engine runs those itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::unix_now;
use crate::cores::Placement;
use crate::engine_error::EngineError;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::spool::{self, Entry, SpoolError};

/// How often the spool directory is scanned when it was empty.
const SCAN_INTERVAL: Duration = Duration::from_millis(20);

/// The running spool reader.
pub struct Ingester {
    handle: Option<JoinHandle<Result<(), EngineError>>>,
}

/// What the spool reader needs.
pub struct IngestLink {
    pub outbox: Arc<Outbox>,
    pub spool_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub placement: Placement,
}

impl Ingester {
    /// Starts the thread; it runs until `shutdown` is set or the outbox fails.
    pub fn start(link: IngestLink) -> Result<Self, EngineError> {
        let handle = std::thread::Builder::new()
            .name("airlock-spool".into())
            .spawn(move || {
                link.placement.enter_helper();
                link.run()
            })
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        Ok(Self {
            handle: Some(handle),
        })
    }

    /// True once the thread has stopped (on shutdown, or on an error [`Self::finish`]
    /// returns).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the thread (after `shutdown` was set) and returns its error, if any.
    pub fn finish(&mut self) -> Result<(), EngineError> {
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| EngineError::Thread("the spool thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl IngestLink {
    fn run(&self) -> Result<(), EngineError> {
        while !self.shutdown.load(Relaxed) {
            if !self.drain()? {
                std::thread::sleep(SCAN_INTERVAL);
            }
        }
        Ok(())
    }

    /// Ingests every complete batch file, oldest first; true if there was any.
    fn drain(&self) -> Result<bool, EngineError> {
        let mut found = false;
        for entry in spool::list(&self.spool_dir)? {
            if let Entry::Batch { id, path } = entry {
                found = true;
                self.ingest(&id, &path)?;
            }
            if self.shutdown.load(Relaxed) {
                break;
            }
        }
        Ok(found)
    }

    fn ingest(&self, id: &str, path: &Path) -> Result<(), EngineError> {
        if self.outbox.is_ingested(id)? {
            return Ok(spool::remove(path)?);
        }
        match spool::read_batch(path) {
            Ok(batch) => {
                self.outbox.ingest(id, &batch.items, unix_now())?;
                self.metrics
                    .records_ingested_total
                    .fetch_add(batch.items.len() as u64, Relaxed);
                tracing::info!(
                    batch = id,
                    records = batch.items.len(),
                    "ingested spool batch"
                );
                spool::remove(path)?;
            }
            Err(e) => quarantine(&self.metrics, path, &e),
        }
        Ok(())
    }
}

/// Moves a damaged spool file aside (batch or command), counted and logged.
pub fn quarantine(metrics: &Metrics, path: &Path, error: &SpoolError) {
    Metrics::inc(&metrics.spool_errors_total);
    match spool::quarantine(path) {
        Ok(dest) => {
            tracing::error!(%error, moved_to = %dest.display(), "damaged spool file moved aside")
        }
        Err(e) => {
            tracing::error!(%error, move_error = %e, "damaged spool file could not be moved aside")
        }
    }
}
