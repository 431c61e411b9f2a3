//! The pending reader: reads and decodes the next batch of pending records on a thread of
//! its own while the engine signs the current one.
//!
//! Signing is sequential and bounds the sender, so the signing thread does as little else
//! as it can: reading sled, decoding JSON, checking and CBOR-encoding each body and copying
//! each Provision for the carousel state happen here, on the other core, one batch ahead.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use airlock_protocol::codec::{self, CodecError, EncodedBody};
use airlock_protocol::message::Body;

use crate::engine_error::EngineError;
use crate::outbox::{Outbox, OutboxError, PendingItem, StateChange};

/// A pending record ready for signing.
pub struct Prepared {
    pub key: u64,
    pub item: PendingItem,
    /// What the record does to the carousel state once it is sealed.
    pub change: Option<StateChange>,
    /// The body as it goes into the envelope (an error if it breaks the protocol limits).
    pub encoded: Result<EncodedBody, CodecError>,
}

type Batch = Result<Vec<Prepared>, OutboxError>;

pub struct Prefetch {
    request: Option<SyncSender<u64>>,
    reply: Receiver<Batch>,
    /// The `from` of the batch being read ahead, if any.
    ahead: Option<u64>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts the reader; each batch holds about `max` records.
    pub fn start(
        outbox: Arc<Outbox>,
        max: usize,
        placement: crate::cores::Placement,
    ) -> Result<Self, EngineError> {
        let (request, requests) = sync_channel::<u64>(1);
        let (replies, reply) = sync_channel::<Batch>(1);
        let handle = std::thread::Builder::new()
            .name("airlock-pending".into())
            .spawn(move || {
                placement.enter_helper();
                for from in requests {
                    if replies.send(read(&outbox, from, max)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        Ok(Self {
            request: Some(request),
            reply,
            ahead: None,
            handle: Some(handle),
        })
    }

    /// The pending records from key `from` on (empty if none), and starts reading the
    /// batch after them.
    pub fn next(&mut self, from: u64) -> Result<Vec<Prepared>, EngineError> {
        if let Some(ahead) = self.ahead.take() {
            let batch = self.receive()?;
            if ahead != from {
                // Not the batch asked for (cannot happen while keys only grow): read anew.
                return self.next(from);
            }
            return self.read_ahead_after(batch);
        }
        self.ask(from)?;
        let batch = self.receive()?;
        self.read_ahead_after(batch)
    }

    fn read_ahead_after(&mut self, batch: Vec<Prepared>) -> Result<Vec<Prepared>, EngineError> {
        // After an empty batch nothing is read ahead: the next call asks again.
        if let Some(last) = batch.last() {
            let from = last.key + 1;
            self.ask(from)?;
            self.ahead = Some(from);
        }
        Ok(batch)
    }

    fn ask(&self, from: u64) -> Result<(), EngineError> {
        let sent = self.request.as_ref().is_some_and(|r| r.send(from).is_ok());
        if sent {
            Ok(())
        } else {
            Err(EngineError::Thread("the pending reader stopped".into()))
        }
    }

    fn receive(&self) -> Result<Vec<Prepared>, EngineError> {
        match self.reply.recv() {
            Ok(batch) => Ok(batch?),
            Err(_) => Err(EngineError::Thread("the pending reader stopped".into())),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.request = None;
        // Unblocks a reader waiting to hand over a batch nobody will take.
        while self.reply.try_recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn read(outbox: &Outbox, from: u64, max: usize) -> Batch {
    let batch = outbox.pending_batch(from, max)?;
    Ok(batch
        .into_iter()
        .map(|(key, item)| Prepared {
            key,
            change: state_change(&item.body),
            encoded: codec::encode_body(&item.body),
            item,
        })
        .collect())
}

fn state_change(body: &Body) -> Option<StateChange> {
    match body {
        Body::Provision(p) => Some(StateChange::Upsert(Box::new(p.clone()))),
        Body::Revoke(r) => Some(StateChange::Remove {
            issuer: r.issuer.clone(),
            subject: r.subject.clone(),
        }),
        _ => None,
    }
}
