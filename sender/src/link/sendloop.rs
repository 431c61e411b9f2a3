//! The link task: sealed frames in; blocks, FEC, repetition and pacing out to the transport.
//!
//! Frames are packed into blocks (flushed on size or after the linger), each block is
//! RaptorQ-encoded into datagrams, and every datagram waits for the token bucket before it
//! is written. Each new frame is scheduled `repetitions - 1` more times, `spacing` apart,
//! so that a burst of loss on the diode does not need an operator's resend. Repeats of
//! frames packed within a short window (spacing / 10, at most 10 ms) share one timer entry: one
//! wakeup per window instead of one per frame, at tens of thousands of frames a second.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use airlock_protocol::link::{BlockEncoder, BlockPacker, LinkError, LinkParams};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::link::pacer::Pacer;
use crate::link::transport::Transport;
use crate::metrics::Metrics;

/// Why a frame is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// First transmission of a newly sealed seq.
    New,
    /// A logged frame sent again (operator resend, or unsent at the last stop).
    Resend,
}

/// A sealed frame for the link.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub seq: u64,
    pub sealed: Arc<Vec<u8>>,
    pub kind: SendKind,
}

/// Link-task settings (from the config).
#[derive(Debug, Clone)]
pub struct SendSettings {
    pub params: LinkParams,
    pub repetitions: u32,
    pub spacing: Duration,
    pub pacing_bytes_per_sec: u64,
}

#[derive(Debug, Error)]
pub enum SendError {
    #[error("link codec: {0}")]
    Codec(#[from] LinkError),
}

/// Frames due again at the same time, each with `remaining` transmissions still to come.
struct Repeat {
    frames: Vec<Arc<Vec<u8>>>,
    remaining: u32,
}

/// A frame waiting to be packed.
struct Queued {
    sealed: Arc<Vec<u8>>,
    /// Its seq if this is a first transmission (moves "sent through"), else 0.
    new_seq: u64,
    /// Transmissions still to come after this one.
    repeats: u32,
}

/// A frame as queued for packing. A resend is repeated like a first transmission (the
/// same `repetitions`, and the same FEC as every block): a resend is the answer to loss, so
/// sending it once would need several rounds at the loss that made it necessary.
fn queued(out: Outbound, repetitions: u32) -> Queued {
    Queued {
        sealed: out.sealed,
        new_seq: match out.kind {
            SendKind::New => out.seq,
            SendKind::Resend => 0,
        },
        repeats: repetitions.saturating_sub(1),
    }
}

/// Repeats of frames packed within this window go out together, at most this much earlier
/// than `spacing` after their own first transmission.
fn coalescing(spacing: Duration) -> Duration {
    (spacing / 10).min(Duration::from_millis(10))
}

/// Where the block being filled stands, so `sent_through` only moves once a block is out.
#[derive(Default)]
struct BlockSeqs {
    current_max: u64,
}

pub struct SendLoop {
    packer: BlockPacker,
    encoder: BlockEncoder,
    pacer: Pacer,
    transport: Transport,
    settings: SendSettings,
    metrics: Arc<Metrics>,
    sent_through: Arc<AtomicU64>,
    repeats: BTreeMap<(Instant, u64), Repeat>,
    counter: u64,
    seqs: BlockSeqs,
    /// The batch being packed: frames arrive one `Vec` per committed batch.
    queue: VecDeque<Queued>,
    /// Repeats that are due; packed before `queue`.
    due: VecDeque<Queued>,
}

impl SendLoop {
    pub fn new(
        session_id: u64,
        settings: SendSettings,
        transport: Transport,
        metrics: Arc<Metrics>,
        sent_through: Arc<AtomicU64>,
    ) -> Result<Self, SendError> {
        let encoder = BlockEncoder::new(session_id, &settings.params)?;
        Ok(Self {
            packer: BlockPacker::new(settings.params.max_block_bytes, settings.params.linger),
            encoder,
            pacer: Pacer::new(settings.pacing_bytes_per_sec, std::time::Instant::now()),
            transport,
            settings,
            metrics,
            sent_through,
            repeats: BTreeMap::new(),
            counter: 0,
            seqs: BlockSeqs::default(),
            queue: VecDeque::new(),
            due: VecDeque::new(),
        })
    }

    /// Runs until the sending side of `rx` is dropped or `shutdown` is set, then sends the
    /// block being packed. Frames still queued are not waited for: they are durable, and
    /// the next start re-sends every frame above the persisted "sent through" mark. So a
    /// stop on a slow paced link takes a moment, not minutes.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Outbound>>,
        shutdown: Arc<AtomicBool>,
        done: Arc<AtomicBool>,
    ) -> Result<(), SendError> {
        let result = self.send_until_stopped(&mut rx, &shutdown).await;
        done.store(true, Relaxed);
        result
    }

    async fn send_until_stopped(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<Outbound>>,
        shutdown: &AtomicBool,
    ) -> Result<(), SendError> {
        let mut check = tokio::time::interval(Duration::from_millis(100));
        loop {
            let deadline = self.next_deadline();
            let idle = self.queue.is_empty() && self.due.is_empty();
            tokio::select! {
                // Timers first: under a full channel, due repeats and lingering blocks
                // must still go out.
                biased;
                _ = sleep_until_opt(deadline) => self.on_timer().await?,
                _ = check.tick() => if shutdown.load(Relaxed) { break },
                // At most one block per turn, so a paced link still sees timers and stops.
                () = std::future::ready(()), if !idle => self.accept_block().await?,
                msg = rx.recv(), if idle => match msg {
                    Some(batch) => self.enqueue(batch),
                    None => break,
                },
            }
        }
        if let Some(block) = self.packer.flush() {
            let max = std::mem::take(&mut self.seqs.current_max);
            self.send_block(&block, max).await?;
        }
        if let Err(e) = self.transport.flush().await {
            tracing::warn!(error = %e, "link flush failed at shutdown");
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let packer = self.packer.deadline().map(Instant::from_std);
        let repeat = self.repeats.keys().next().map(|(at, _)| *at);
        match (packer, repeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn enqueue(&mut self, batch: Vec<Outbound>) {
        let repetitions = self.settings.repetitions;
        self.queue
            .extend(batch.into_iter().map(|out| queued(out, repetitions)));
    }

    /// Packs due repeats, then queued frames, until one block has gone out or none is left.
    async fn accept_block(&mut self) -> Result<(), SendError> {
        while let Some(frame) = self.due.pop_front().or_else(|| self.queue.pop_front()) {
            if frame.repeats > 0 {
                self.schedule(frame.sealed.clone(), frame.repeats);
            }
            if self.push(&frame.sealed, frame.new_seq).await? {
                break;
            }
        }
        Ok(())
    }

    /// Schedules a frame's next transmission, in the latest group if that one is recent.
    fn schedule(&mut self, sealed: Arc<Vec<u8>>, remaining: u32) {
        let at = Instant::now() + self.settings.spacing;
        let window = coalescing(self.settings.spacing);
        if let Some(mut last) = self.repeats.last_entry() {
            let group_at = last.key().0;
            if last.get().remaining == remaining && group_at + window >= at {
                last.get_mut().frames.push(sealed);
                return;
            }
        }
        self.counter += 1;
        let frames = vec![sealed];
        self.repeats
            .insert((at, self.counter), Repeat { frames, remaining });
    }

    /// Packs a frame; sends whatever block that completes (then true).
    async fn push(&mut self, frame: &[u8], new_seq: u64) -> Result<bool, SendError> {
        let before = self.seqs.current_max;
        let Some(block) = self.packer.push(frame, std::time::Instant::now()) else {
            self.seqs.current_max = before.max(new_seq);
            return Ok(false);
        };
        // Did this frame go into the flushed block, or start the next one?
        let block_max = if self.packer.deadline().is_some() {
            self.seqs.current_max = new_seq;
            before
        } else {
            self.seqs.current_max = 0;
            before.max(new_seq)
        };
        self.send_block(&block, block_max).await?;
        Ok(true)
    }

    async fn on_timer(&mut self) -> Result<(), SendError> {
        let now = Instant::now();
        while let Some(entry) = self.repeats.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let rep = entry.remove();
            self.metrics
                .frame_repeats_total
                .fetch_add(rep.frames.len() as u64, Relaxed);
            // Packed one block per turn like new frames, so a paced link still stops.
            self.due.extend(rep.frames.into_iter().map(|sealed| Queued {
                sealed,
                new_seq: 0,
                repeats: rep.remaining.saturating_sub(1),
            }));
        }
        if let Some(block) = self.packer.poll(std::time::Instant::now()) {
            let max = std::mem::take(&mut self.seqs.current_max);
            self.send_block(&block, max).await?;
        }
        Ok(())
    }

    async fn send_block(&mut self, block: &[u8], max_new_seq: u64) -> Result<(), SendError> {
        let datagrams = self.encoder.encode(block)?;
        Metrics::inc(&self.metrics.blocks_sent_total);
        let mut rest: &[Vec<u8>] = &datagrams;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(self.admit(rest).await);
            let sent = self.transport.send(now).await;
            (self.metrics.datagrams_sent_total).fetch_add(sent.datagrams as u64, Relaxed);
            (self.metrics.bytes_sent_total).fetch_add(sent.wire_bytes as u64, Relaxed);
            if let Some(e) = sent.error {
                let failed = sent.failed as u64;
                let n = (self.metrics.send_errors_total).fetch_add(failed, Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(error = %e, errors = n + failed, "link send failed");
                }
            }
            rest = later;
        }
        if max_new_seq > 0 {
            self.sent_through.fetch_max(max_new_seq, Relaxed);
            self.metrics
                .sent_through_seq
                .fetch_max(max_new_seq, Relaxed);
        }
        Ok(())
    }

    /// Waits until the pacer lets the first of `datagrams` go, then returns how many of
    /// them (at least one) may go with it in one transport send.
    async fn admit(&mut self, datagrams: &[Vec<u8>]) -> usize {
        let first = self.transport.wire_len(&datagrams[0]);
        if let Some(at) = self.pacer.reserve(first, std::time::Instant::now()) {
            tokio::time::sleep_until(Instant::from_std(at)).await;
        }
        let batch = self.transport.batch_len(datagrams);
        let mut n = 1;
        while n < batch {
            let bytes = self.transport.wire_len(&datagrams[n]);
            if !self.pacer.try_reserve(bytes, std::time::Instant::now()) {
                break;
            }
            n += 1;
        }
        n
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_get_the_configured_repetitions_like_first_sends() {
        for kind in [SendKind::New, SendKind::Resend] {
            let out = Outbound {
                seq: 9,
                sealed: Arc::new(vec![1, 2, 3]),
                kind,
            };
            let q = queued(out, 3);
            assert_eq!(q.repeats, 2, "{kind:?}");
            assert_eq!(q.new_seq, if kind == SendKind::New { 9 } else { 0 });
        }
    }
}
