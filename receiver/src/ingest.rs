//! Verification and commit: sealed frames in, durable log entries and state changes out.
//!
//! A burst of frames is opened (one Ed25519 batch verification per half, a half per core:
//! signatures are the bottleneck), classified in
//! order (refused / duplicate / replay / accepted), and the accepted ones are logged and
//! applied in ONE store transaction followed by ONE flush. Only after the flush does the
//! daemon act on them (revocations to the provider, metrics, in-memory replay state), so
//! nothing is visible before it is durable. Frames are never applied before `open` passed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use airlock_protocol::message::Body;
use airlock_protocol::open_batch::{ToOpen, open_batch};
use airlock_protocol::replay::{ReplayError, ReplayState};
use airlock_protocol::seal::{Freshness, OpenError, Opened};
use airlock_protocol::trust::TrustStore;
use sha2::{Digest, Sha256};

use crate::seen_frames::{self, SealedDigest, SeenFrames};
use thiserror::Error;

use crate::apply::{AcceptedFrame, Applied, Ledger, Outcome, apply_batch};
use crate::frame_log::Verdict;
use crate::metrics::{FrameRejection, Metrics, RateLimiter};
use crate::store::records::{GapState, KeySet};
use crate::store::{SeqRecord, Store, StoreError, Table, seq_key};
use crate::trust_set::{BaseTrust, TrustError};

/// A sealed frame as it came off the link.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub sealed: Vec<u8>,
    /// Where it came from (UDP source address of the datagram that completed its block, or
    /// the serial device), for logs.
    pub source: String,
    pub received_at_ms: u64,
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// Effects the daemon carries out once a batch is durable.
pub trait IngestHooks: Send {
    /// A Revoke was applied: the provider ends the user's sessions and tokens.
    fn revoked(&self, local_sub: &str);
}

/// No hooks (CLI tools, tests).
pub struct NoHooks;
impl IngestHooks for NoHooks {
    fn revoked(&self, _local_sub: &str) {}
}

/// What one call of [`Ingest::process`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub accepted: u64,
    pub no_effect: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

enum Class {
    Refused(OpenError),
    Duplicate,
    Accept(Box<AcceptedFrame>),
}

/// The trust in force with a generation number, shared with a verifier thread that opens
/// the next burst while the current one commits. A frame opened under an older generation
/// is opened again before it is classified.
#[derive(Clone)]
pub struct SharedTrust(Arc<RwLock<(u64, Arc<TrustStore>)>>);

impl SharedTrust {
    fn new(trust: TrustStore) -> Self {
        Self(Arc::new(RwLock::new((0, Arc::new(trust)))))
    }

    pub fn get(&self) -> (u64, Arc<TrustStore>) {
        match self.0.read() {
            Ok(g) => (g.0, g.1.clone()),
            Err(poisoned) => {
                let g = poisoned.into_inner();
                (g.0, g.1.clone())
            }
        }
    }

    fn set(&self, trust: TrustStore) {
        let mut g = match self.0.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = (g.0 + 1, Arc::new(trust));
    }
}

/// Opens bursts of frames (AEAD, signature, envelope, freshness): the CPU-heavy half of
/// ingest, safe to run on another thread than the commit.
#[derive(Clone)]
pub struct Verifier {
    trust: SharedTrust,
    fresh: Freshness,
    seen: Arc<SeenFrames>,
}

/// A burst opened by a [`Verifier`], ready for [`Ingest::process_opened`].
pub struct OpenedBatch {
    batch: Vec<Incoming>,
    results: Vec<Opening>,
    generation: u64,
}

/// What the verifier made of one sealed frame.
// Boxing the large variant would cost an allocation per frame on the ingest hot path; the
// vector of these lives for one burst only.
#[allow(clippy::large_enum_variant)]
pub enum Opening {
    /// Byte-identical to a frame already logged: a duplicate, not opened again.
    Known,
    Opened {
        digest: SealedDigest,
        result: Result<Opened, OpenError>,
    },
}

impl OpenedBatch {
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Frames recognised as byte-identical to logged ones, without opening them.
    pub fn known(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Opening::Known))
            .count()
    }
}

impl Verifier {
    pub fn open(&self, batch: Vec<Incoming>) -> OpenedBatch {
        let (generation, trust) = self.trust.get();
        let results = open_all(&trust, &self.fresh, &self.seen, &batch);
        OpenedBatch {
            batch,
            results,
            generation,
        }
    }
}

fn open_all(
    trust: &TrustStore,
    fresh: &Freshness,
    seen: &SeenFrames,
    batch: &[Incoming],
) -> Vec<Opening> {
    let digests: Vec<SealedDigest> = batch
        .iter()
        .map(|i| seen_frames::digest(&i.sealed))
        .collect();
    // Repetitions of logged frames are recognised by digest and never opened again.
    let fresh_frames: Vec<usize> = (0..batch.len())
        .filter(|i| !seen.contains(&digests[*i]))
        .collect();
    let burst: Vec<ToOpen> = fresh_frames
        .iter()
        .map(|i| ToOpen {
            sealed: &batch[*i].sealed,
            now: batch[*i].received_at_ms / 1000,
        })
        .collect();
    let mut opened = open_split(&burst, trust, fresh).into_iter();
    let mut fresh_frames = fresh_frames.into_iter().peekable();
    digests
        .into_iter()
        .enumerate()
        .map(|(i, digest)| match fresh_frames.next_if_eq(&i) {
            Some(_) => match opened.next() {
                Some(result) => Opening::Opened { digest, result },
                // open_batch returns one result per frame; never reached.
                None => Opening::Known,
            },
            None => Opening::Known,
        })
        .collect()
}

/// Batch-opens a burst; a big one in two halves, one per core.
fn open_split(
    burst: &[ToOpen<'_>],
    trust: &TrustStore,
    fresh: &Freshness,
) -> Vec<Result<Opened, OpenError>> {
    let open_part = |part: &[ToOpen<'_>]| open_batch(part, trust, fresh, no_replay());
    // Below this a second thread costs more than it saves (batches shrink too).
    if burst.len() < 128 {
        return open_part(burst);
    }
    let (a, b) = burst.split_at(burst.len() / 2);
    std::thread::scope(|s| {
        let h = s.spawn(|| open_part(b));
        let mut first = open_part(a);
        match h.join() {
            Ok(second) => first.extend(second),
            // Unreachable in practice (opening does not panic); fall back to doing it here.
            Err(_) => first.extend(open_part(b)),
        }
        first
    })
}

/// The committer. Single-threaded owner of the in-memory replay state.
pub struct Ingest<S: Store> {
    store: Arc<S>,
    base: BaseTrust,
    trust: SharedTrust,
    replay: ReplayState,
    fresh: Freshness,
    metrics: Arc<Metrics>,
    hooks: Box<dyn IngestHooks>,
    limiter: RateLimiter,
    gaps: GapState,
    seen: Arc<SeenFrames>,
    /// The logged key changes the current trust was built from.
    keys: KeySet,
    /// When the key set was last re-read after an untrusted-key refusal (unix ms).
    keys_checked_ms: u64,
    /// Signs checkpoints of the Merkle tree (None: `[transparency]` disabled).
    checkpointer: Option<crate::transparency::Checkpointer>,
}

/// An empty replay state: `open` then checks everything but the seq, which
/// [`Ingest::classify`] checks itself so that it can tell duplicates from replays.
fn no_replay() -> &'static ReplayState {
    static EMPTY: std::sync::OnceLock<ReplayState> = std::sync::OnceLock::new();
    EMPTY.get_or_init(ReplayState::new)
}

impl<S: Store> Ingest<S> {
    pub fn new(
        store: Arc<S>,
        base: BaseTrust,
        fresh: Freshness,
        metrics: Arc<Metrics>,
        hooks: Box<dyn IngestHooks>,
        reject_log_per_sec: u32,
    ) -> Result<Self, IngestError> {
        let ledger = store.transact(|tx| Ledger::load(tx))?;
        let trust = base.effective(&ledger.keys)?;
        let ingest = Self {
            store,
            base,
            trust: SharedTrust::new(trust),
            replay: ledger.replay.clone(),
            fresh,
            metrics,
            hooks,
            limiter: RateLimiter::new(reject_log_per_sec),
            gaps: ledger.gaps.clone(),
            seen: Arc::new(SeenFrames::default()),
            keys: ledger.keys.clone(),
            keys_checked_ms: 0,
            checkpointer: None,
        };
        ingest.publish(&ledger);
        Ok(ingest)
    }

    /// Signs checkpoints from now on.
    pub fn set_checkpointer(&mut self, c: crate::transparency::Checkpointer) {
        self.checkpointer = Some(c);
    }

    /// The timer of the checkpoint time rule: signs the stored tree when it grew and the
    /// last checkpoint is older than `every_secs`. A failure is logged, not fatal: the
    /// frames are logged and applied whether or not a checkpoint follows.
    pub fn tick(&mut self) {
        if let Some(c) = self.checkpointer.as_mut()
            && let Err(e) = c.tick(&*self.store, crate::clock::now_ms())
        {
            tracing::error!(error = %e, "cannot sign a checkpoint");
        }
    }

    /// The trust in force (configured keys plus logged key changes).
    pub fn trust(&self) -> Arc<TrustStore> {
        self.trust.get().1
    }

    /// A verifier sharing this ingest's trust (for a pipelining thread).
    pub fn verifier(&self) -> Verifier {
        Verifier {
            trust: self.trust.clone(),
            fresh: self.fresh,
            seen: self.seen.clone(),
        }
    }

    pub fn gaps(&self) -> &GapState {
        &self.gaps
    }

    fn publish(&self, ledger: &Ledger) {
        // Release: the identity directory reads this as the durable log length.
        self.metrics
            .log_entries
            .store(ledger.next_index, Ordering::Release);
        let missing: u64 = ledger.gaps.values().map(|g| g.missing_count()).sum();
        let ranges: usize = ledger.gaps.values().map(|g| g.missing.len()).sum();
        self.metrics.missing_seqs.store(missing, Ordering::Relaxed);
        self.metrics
            .gap_ranges
            .store(ranges as u64, Ordering::Relaxed);
    }

    /// Verifies, logs and applies a burst of frames; durable when it returns Ok.
    pub fn process(&mut self, batch: Vec<Incoming>) -> Result<BatchReport, IngestError> {
        let opened = self.verifier().open(batch);
        self.process_opened(opened)
    }

    /// Classifies, logs and applies a burst opened by a [`Verifier`]; durable when Ok.
    pub fn process_opened(&mut self, opened: OpenedBatch) -> Result<BatchReport, IngestError> {
        let mut report = BatchReport::default();
        let mut current = opened;
        loop {
            if current.generation != self.trust.get().0 {
                // The keys changed since this burst was opened: open it again.
                current = self.verifier().open(current.batch);
            }
            let rest = self.process_once(current.batch, current.results, &mut report)?;
            if rest.is_empty() {
                return Ok(report);
            }
            current = self.verifier().open(rest);
        }
    }

    /// One transaction. Stops after a frame that changes the trusted keys and returns the
    /// frames after it, which must be opened again under the new trust.
    fn process_once(
        &mut self,
        batch: Vec<Incoming>,
        opened: Vec<Opening>,
        report: &mut BatchReport,
    ) -> Result<Vec<Incoming>, IngestError> {
        let mut accepted: Vec<AcceptedFrame> = Vec::new();
        let mut known: Vec<SealedDigest> = Vec::new();
        let mut accepted_digests: Vec<SealedDigest> = Vec::new();
        let mut sources: Vec<usize> = Vec::new();
        let mut hashes: HashSet<[u8; 32]> = HashSet::new();
        let mut seqs: HashSet<(String, u64)> = HashSet::new();
        let mut cut = batch.len();
        for (i, (inc, opening)) in batch.iter().zip(opened).enumerate() {
            self.metrics.frames_received.fetch_add(1, Ordering::Relaxed);
            let (digest, res) = match opening {
                Opening::Known => {
                    report.duplicates += 1;
                    self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Opening::Opened { digest, result } => (digest, result),
            };
            match self.classify(inc, res, &mut hashes, &mut seqs)? {
                Class::Refused(e) => {
                    report.rejected += 1;
                    self.refuse(inc, &e);
                    if matches!(
                        e,
                        OpenError::UntrustedSigner { .. } | OpenError::UnknownLinkKey { .. }
                    ) {
                        self.reload_keys_if_changed(inc.received_at_ms)?;
                    }
                }
                Class::Duplicate => {
                    report.duplicates += 1;
                    self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                    known.push(digest);
                }
                Class::Accept(frame) => {
                    accepted_digests.push(digest);
                    let rekey = matches!(
                        frame.envelope.body,
                        Body::KeyAnnounce(_) | Body::KeyRetire(_)
                    );
                    accepted.push(*frame);
                    sources.push(i);
                    if rekey {
                        cut = i + 1;
                        break;
                    }
                }
            }
        }
        if !accepted.is_empty() {
            let logged = self.commit(&accepted, report)?;
            known.extend(
                accepted_digests
                    .into_iter()
                    .zip(logged)
                    .filter_map(|(d, in_log)| in_log.then_some(d)),
            );
        }
        // In the log and durable (or duplicates of logged frames): identical bytes need no
        // second open.
        self.seen.insert_all(known);
        Ok(batch.into_iter().skip(cut).collect())
    }

    /// The hash of the frame logged under (kid, seq), if any.
    fn logged_hash(&self, kid: &str, seq: u64) -> Result<Option<[u8; 32]>, IngestError> {
        match self.store.get(Table::Seqs, &seq_key(kid, seq))? {
            Some(v) => Ok(Some(SeqRecord::decode(&v)?.frame_hash)),
            None => Ok(None),
        }
    }

    fn classify(
        &mut self,
        inc: &Incoming,
        res: Result<Opened, OpenError>,
        hashes: &mut HashSet<[u8; 32]>,
        seqs: &mut HashSet<(String, u64)>,
    ) -> Result<Class, IngestError> {
        let o = match res {
            Ok(o) => o,
            Err(e) => return Ok(Class::Refused(e)),
        };
        if hashes.contains(&o.hash) {
            return Ok(Class::Duplicate);
        }
        let kid = o.signer_kid.clone();
        let seq = o.envelope.seq;
        let replay = |e| Ok(Class::Refused(OpenError::Replay(e)));
        if seqs.contains(&(kid.clone(), seq)) {
            return replay(ReplayError::Seen { seq });
        }
        // A seq the window has not seen needs no store lookup: the common case under load.
        if let Err(e) = self.replay.check(&kid, seq) {
            let logged = match e {
                ReplayError::Seen { .. } | ReplayError::TooOld { .. } => {
                    self.logged_hash(&kid, seq)?
                }
                ReplayError::Zero | ReplayError::Conflict { .. } => None,
            };
            match (logged, &e) {
                (Some(hash), _) if hash == o.hash => return Ok(Class::Duplicate),
                // The seq is logged with another hash: new content under a used seq.
                (Some(_), _) => return replay(ReplayError::Conflict { seq }),
                // Below the window and never logged: an old gap being filled.
                (None, ReplayError::TooOld { .. }) => {}
                (None, _) => return replay(e),
            }
        }
        hashes.insert(o.hash);
        seqs.insert((kid, seq));
        Ok(Class::Accept(Box::new(AcceptedFrame {
            envelope: o.envelope,
            sign1: o.sign1,
            hash: o.hash,
            received_at_ms: inc.received_at_ms,
        })))
    }

    /// On a shared store (several receivers), a key change logged by another node reaches
    /// this one as a duplicate. A refusal for an unknown key re-reads the stored key set (at
    /// most once a second) so that the next copies of such frames open.
    fn reload_keys_if_changed(&mut self, now_ms: u64) -> Result<(), IngestError> {
        if now_ms.saturating_sub(self.keys_checked_ms) < 1000 {
            return Ok(());
        }
        self.keys_checked_ms = now_ms;
        let ledger = self.store.transact(|tx| Ledger::load(tx))?;
        if ledger.keys != self.keys {
            let trust = self.base.effective(&ledger.keys)?;
            tracing::info!("trusted keys changed in the shared store; reloaded");
            self.keys = ledger.keys;
            self.trust.set(trust);
        }
        Ok(())
    }

    /// Counts a refused frame under its reason label and logs it (rate-limited) with the
    /// same word: the one place both happen.
    fn refuse(&mut self, inc: &Incoming, e: &OpenError) {
        self.metrics.reject(FrameRejection::from(e));
        if self.limiter.allow(inc.received_at_ms) {
            let digest = Sha256::digest(&inc.sealed);
            tracing::warn!(
                reason = e.reason(),
                source = %inc.source,
                frame_sha256 = %hex::encode(&digest[..8]),
                len = inc.sealed.len(),
                suppressed = self.limiter.suppressed,
                "frame refused: {e}"
            );
        }
    }

    /// Logs and applies, flushes, then acts on the effects. Returns, per frame, whether it
    /// is in the log now (logged, or a duplicate of a logged frame).
    fn commit(
        &mut self,
        accepted: &[AcceptedFrame],
        report: &mut BatchReport,
    ) -> Result<Vec<bool>, IngestError> {
        let (outcomes, ledger) = self.store.transact(|tx| apply_batch(tx, accepted))?;
        self.store.flush()?;
        // Durable from here on: act on the effects.
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        let mut keys_changed = false;
        let mut in_log = Vec::with_capacity(accepted.len());
        for (frame, outcome) in accepted.iter().zip(outcomes) {
            in_log.push(!matches!(outcome, Outcome::Replay));
            match outcome {
                Outcome::Logged(a) => {
                    keys_changed |= a.keys_changed;
                    self.after_logged(frame, &a, report);
                }
                Outcome::Duplicate => {
                    report.duplicates += 1;
                    self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Replay => {
                    report.rejected += 1;
                    self.metrics.reject(FrameRejection::Replay);
                }
            }
        }
        self.replay = ledger.replay.clone();
        self.gaps = ledger.gaps.clone();
        // Another receiver on a shared store may have logged a key change this one only saw
        // as a duplicate: the stored key set decides, not what this node applied.
        if keys_changed || ledger.keys != self.keys {
            self.keys = ledger.keys.clone();
            let trust = self.base.effective(&ledger.keys)?;
            tracing::info!(
                signers = ?trust.signer_kids().collect::<Vec<_>>(),
                link_keys = ?trust.link_kids().collect::<Vec<_>>(),
                "trusted keys changed by a logged KeyAnnounce/KeyRetire"
            );
            self.trust.set(trust);
        }
        self.publish(&ledger);
        if let (Some(c), Some(tree)) = (self.checkpointer.as_mut(), ledger.tree.as_ref())
            && let Err(e) = c.after_commit(&*self.store, tree, crate::clock::now_ms())
        {
            tracing::error!(error = %e, "cannot sign a checkpoint");
        }
        Ok(in_log)
    }

    fn after_logged(&mut self, frame: &AcceptedFrame, a: &Applied, report: &mut BatchReport) {
        match a.verdict {
            Verdict::Applied => {
                report.accepted += 1;
                self.metrics.frames_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::NoEffect => {
                report.accepted += 1;
                report.no_effect += 1;
                self.metrics.frames_accepted.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .frames_no_effect
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(sub) = &a.revoked_sub {
            tracing::info!(local_sub = %sub, seq = a.seq, "user revoked");
            self.hooks.revoked(sub);
        }
        if a.heartbeat.is_some() {
            // The time first, then the count: a scrape that sees the count sees the time.
            self.metrics
                .last_heartbeat_ms
                .fetch_max(frame.received_at_ms, Ordering::Release);
            self.metrics.heartbeats.fetch_add(1, Ordering::Release);
        }
        tracing::debug!(index = a.index, kind = a.kind, kid = %a.signer_kid, seq = a.seq, verdict = a.verdict.as_str(), "frame logged");
    }
}
