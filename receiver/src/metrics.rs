//! Counters and gauges, rendered in the Prometheus text format (no extra dependency).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_daemon::metrics_text::{Exposition, Family, Kind, Metric};
use airlock_protocol::link::{LinkError, LinkStats};
use airlock_protocol::replay::ReplayError;
use airlock_protocol::seal::OpenError;

/// Why the receiver itself drops a datagram or a byte run before the decoder.
const RECEIVER_LINK_REASONS: [&str; 4] = [
    "cobs",
    "oversize_datagram",
    "serial_io",
    "source_not_allowed",
];

/// Every reason a datagram is refused on the link: the decoder's ([`LinkError::REASONS`])
/// and the receiver's own. One list, so the metric label and the log line's `reason` of a
/// refusal are the same word.
pub const LINK_REASONS: [&str; LinkError::REASONS.len() + RECEIVER_LINK_REASONS.len()] =
    concat_reasons(LinkError::REASONS, RECEIVER_LINK_REASONS);

const fn concat_reasons<const A: usize, const B: usize, const N: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < B {
        out[A + j] = b[j];
        j += 1;
    }
    out
}

/// Why a sealed frame was refused: the `reason` label of `airlock_frames_rejected_total`.
/// Variants are in the order of [`OpenError::REASONS`], which is the order of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRejection {
    TooLarge,
    BadCbor,
    BadAlgorithm,
    UnknownLinkKey,
    AeadFailure,
    BadInnerCbor,
    BadSignerAlgorithm,
    UntrustedSigner,
    BadSignature,
    BadPayload,
    SignerMismatch,
    UnsupportedVersion,
    Stale,
    FromFuture,
    Replay,
    SeqConflict,
}

impl FrameRejection {
    /// The label word (what logs and the status page say too).
    pub fn label(self) -> &'static str {
        OpenError::REASONS[self as usize]
    }
}

impl From<&OpenError> for FrameRejection {
    fn from(e: &OpenError) -> Self {
        use FrameRejection as R;
        match e {
            OpenError::TooLarge { .. } => R::TooLarge,
            OpenError::Cbor(_) => R::BadCbor,
            OpenError::Algorithm => R::BadAlgorithm,
            OpenError::UnknownLinkKey { .. } => R::UnknownLinkKey,
            OpenError::Aead => R::AeadFailure,
            OpenError::InnerCbor(_) => R::BadInnerCbor,
            OpenError::SignerAlgorithm => R::BadSignerAlgorithm,
            OpenError::UntrustedSigner { .. } => R::UntrustedSigner,
            OpenError::BadSignature => R::BadSignature,
            OpenError::Payload(_) => R::BadPayload,
            OpenError::SignerMismatch { .. } => R::SignerMismatch,
            OpenError::Version { .. } => R::UnsupportedVersion,
            OpenError::Stale { .. } => R::Stale,
            OpenError::Future { .. } => R::FromFuture,
            OpenError::Replay(ReplayError::Conflict { .. }) => R::SeqConflict,
            OpenError::Replay(_) => R::Replay,
        }
    }
}

/// Why a datagram or byte run was refused on the link: the `reason` label of
/// `airlock_link_errors_total` and the `reason` of the log line. Variants are in the
/// order of [`LINK_REASONS`]: the decoder's first, then the receiver's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    ShortDatagram,
    Crc,
    BadMagic,
    BadLinkVersion,
    BadHeader,
    BlockTooLarge,
    BadBlock,
    BadParams,
    /// A serial byte run that is not valid COBS.
    Cobs,
    /// A datagram longer than `link.datagram_size`.
    OversizeDatagram,
    /// The serial device failed to read.
    SerialIo,
    /// A datagram from an address outside `link.udp.allowed_sources`.
    SourceNotAllowed,
}

impl LinkRefusal {
    /// The label word.
    pub fn label(self) -> &'static str {
        LINK_REASONS[self as usize]
    }
}

impl From<&LinkError> for LinkRefusal {
    fn from(e: &LinkError) -> Self {
        use LinkRefusal as R;
        match e {
            LinkError::Short { .. } => R::ShortDatagram,
            LinkError::Crc => R::Crc,
            LinkError::Magic => R::BadMagic,
            LinkError::Version(_) => R::BadLinkVersion,
            LinkError::Header(_) => R::BadHeader,
            LinkError::BlockTooLarge { .. } => R::BlockTooLarge,
            LinkError::Block(_) => R::BadBlock,
            LinkError::Params(_) => R::BadParams,
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub frames_received: AtomicU64,
    pub frames_accepted: AtomicU64,
    pub frames_no_effect: AtomicU64,
    pub duplicates: AtomicU64,
    rejected: [AtomicU64; OpenError::REASONS.len()],
    link_errors: [AtomicU64; LINK_REASONS.len()],
    pub batches: AtomicU64,
    pub log_entries: AtomicU64,
    pub missing_seqs: AtomicU64,
    pub gap_ranges: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Unix ms of the last heartbeat frame applied (0: none yet).
    pub last_heartbeat_ms: AtomicU64,
    pub queue_dropped: AtomicU64,
    /// Checkpoints of the Merkle tree this receiver signed since it started.
    pub checkpoints_signed: AtomicU64,
    /// Tree size of the latest checkpoint this receiver signed or found at start.
    pub checkpoint_size: AtomicU64,
    /// Backups streamed to the end through `GET /backup`.
    pub backups_served: AtomicU64,
    /// Unix seconds of the last backup served (0: none since start).
    pub backup_last_unix_secs: AtomicU64,
    /// How long the last backup held the ingest (microseconds).
    pub backup_last_pause_us: AtomicU64,
    link: Mutex<LinkStats>,
    /// Rejection counters once a minute over the last hour (for the status page's chart).
    reject_history: Mutex<std::collections::VecDeque<RejectSample>>,
}

/// Samples kept: one an hour ago, and one a minute since.
const REJECT_HISTORY: usize = 61;

/// The rejection counters (cumulative, per [`OpenError::REASONS`]) at a moment.
#[derive(Debug, Clone)]
pub struct RejectSample {
    pub at_ms: u64,
    pub counts: Vec<u64>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a refused frame under its reason.
    pub fn reject(&self, reason: FrameRejection) {
        if let Some(c) = self.rejected.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn link_errors(&self, reason: &str) -> u64 {
        LINK_REASONS
            .iter()
            .zip(self.link_errors.iter())
            .find(|(r, _)| **r == reason)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        OpenError::REASONS
            .iter()
            .zip(self.rejected.iter())
            .find(|(r, _)| **r == reason)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    /// Counts a refused datagram under its reason.
    pub fn link_error(&self, reason: LinkRefusal) {
        if let Some(c) = self.link_errors.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the rejection counters now; the daemon calls it once a minute.
    pub fn sample_rejects(&self, now_ms: u64) {
        let counts = self
            .rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        if let Ok(mut h) = self.reject_history.lock() {
            if h.len() == REJECT_HISTORY {
                h.pop_front();
            }
            h.push_back(RejectSample {
                at_ms: now_ms,
                counts,
            });
        }
    }

    /// The minute samples of the last hour, oldest first, then the counters now.
    pub fn reject_history(&self, now_ms: u64) -> Vec<RejectSample> {
        let mut out: Vec<RejectSample> = self
            .reject_history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        out.push(RejectSample {
            at_ms: now_ms,
            counts: self
                .rejected
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        });
        out
    }

    /// Publishes the decoder's counters.
    pub fn set_link_stats(&self, stats: &LinkStats) {
        if let Ok(mut l) = self.link.lock() {
            *l = stats.clone();
        }
    }

    pub fn link_stats(&self) -> LinkStats {
        self.link.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The Prometheus exposition text. `scrape` holds what the ops listener judges at the
    /// moment of the scrape (heartbeat silence, the store probe).
    pub fn render(&self, scrape: &Scrape) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let l = self.link_stats();
        let mut out = Exposition::with_capacity(4096);
        out.metrics(&[
            Metric::counter(
                "airlock_frames_received_total",
                "Sealed frames handed to verification.",
                g(&self.frames_received),
            ),
            Metric::counter(
                "airlock_frames_accepted_total",
                "Frames verified, logged and applied (durably).",
                g(&self.frames_accepted),
            ),
            Metric::counter(
                "airlock_frames_no_effect_total",
                "Accepted and logged frames that changed nothing (superseded).",
                g(&self.frames_no_effect),
            ),
            Metric::counter(
                "airlock_frames_duplicate_total",
                "Copies of frames already in the log (repetition, carousel, resend).",
                g(&self.duplicates),
            ),
        ]);
        out.family(
            &Family {
                name: "airlock_frames_rejected_total",
                kind: Kind::Counter,
                help: Some("Frames refused, by reason; never applied."),
                label: "reason",
            },
            OpenError::REASONS
                .iter()
                .zip(self.rejected.iter())
                .map(|(r, c)| (*r, g(c))),
        );
        out.family(
            &Family {
                name: "airlock_link_errors_total",
                kind: Kind::Counter,
                help: Some("Datagrams or bytes refused on the link, by reason."),
                label: "reason",
            },
            LINK_REASONS
                .iter()
                .zip(self.link_errors.iter())
                .map(|(r, c)| (*r, g(c))),
        );
        out.metrics(&[
            Metric::counter(
                "airlock_link_datagrams_total",
                "Datagrams received.",
                l.datagrams,
            ),
            Metric::counter(
                "airlock_link_bytes_total",
                "Datagram bytes received.",
                l.bytes,
            ),
            Metric::counter(
                "airlock_link_duplicate_symbols_total",
                "RaptorQ symbols received twice.",
                l.duplicate_symbols,
            ),
            Metric::counter(
                "airlock_blocks_decoded_total",
                "FEC blocks decoded.",
                l.blocks_decoded,
            ),
            Metric::counter(
                "airlock_blocks_lost_total",
                "FEC blocks given up on (too few symbols, window overflow).",
                l.blocks_lost,
            ),
            Metric::counter(
                "airlock_blocks_unauthenticated_total",
                "Decoded FEC blocks none of whose frames pass the AEAD (forged): their block id stays open for the real block.",
                l.blocks_unauthenticated,
            ),
            Metric::counter(
                "airlock_blocks_evicted_total",
                "Incomplete FEC blocks dropped for a memory bound (pending blocks or bytes).",
                l.blocks_evicted,
            ),
            Metric::counter(
                "airlock_link_symbol_size_refused_total",
                "Datagrams refused for a symbol size below link.min_symbol_size.",
                l.symbol_size_refused,
            ),
            Metric::gauge(
                "airlock_link_pending_bytes",
                "Reassembly memory held now (estimated bytes).",
                l.pending_bytes,
            ),
            Metric::gauge(
                "airlock_link_pending_bytes_peak",
                "The most reassembly memory held since start (estimated bytes); stays at or below link.max_pending_bytes.",
                l.pending_bytes_peak,
            ),
            Metric::counter(
                "airlock_link_session_resets_total",
                "Sender sessions started or evicted.",
                l.session_resets,
            ),
            Metric::counter(
                "airlock_ingest_queue_dropped_total",
                "Frames dropped because verification fell behind.",
                g(&self.queue_dropped),
            ),
            Metric::counter(
                "airlock_ingest_batches_total",
                "Store transactions (one flush each).",
                g(&self.batches),
            ),
            Metric::counter(
                "airlock_heartbeats_total",
                "Heartbeat frames applied.",
                g(&self.heartbeats),
            ),
            Metric::gauge(
                "airlock_log_entries",
                "Entries in the frame log.",
                g(&self.log_entries),
            ),
            Metric::counter(
                "airlock_checkpoints_signed_total",
                "Checkpoints (signed tree heads) of the frame log's Merkle tree signed by this receiver.",
                g(&self.checkpoints_signed),
            ),
            Metric::gauge(
                "airlock_checkpoint_tree_size",
                "Tree size of the latest checkpoint signed (or found at start); compare with airlock_log_entries.",
                g(&self.checkpoint_size),
            ),
            Metric::counter(
                "airlock_backups_served_total",
                "Online backups streamed to the end through GET /backup (`airlock-receiver backup`).",
                g(&self.backups_served),
            ),
            Metric::gauge(
                "airlock_backup_last_timestamp_seconds",
                "Unix time of the last completed backup (0: none; kept in <data_dir>/last-backup across restarts).",
                g(&self.backup_last_unix_secs),
            ),
            Metric::gauge(
                "airlock_backup_last_ingest_pause_microseconds",
                "How long the last backup held the ingest to copy the tables it overwrites.",
                g(&self.backup_last_pause_us),
            ),
            Metric::gauge(
                "airlock_gap_missing_seqs",
                "Seqs below a signer's highest that never arrived.",
                g(&self.missing_seqs),
            ),
            Metric::gauge(
                "airlock_gap_ranges",
                "Ranges of missing seqs (see `airlock-receiver gaps`).",
                g(&self.gap_ranges),
            ),
        ]);
        if let Some(age) = scrape.heartbeat_age_secs {
            out.metrics(&[Metric::gauge(
                "airlock_heartbeat_age_seconds",
                "Seconds since the last heartbeat.",
                age,
            )]);
        }
        out.metrics(&[
            Metric::gauge(
                "airlock_heartbeat_silent_seconds",
                "Seconds without a heartbeat: since the last one, or since start-up when none arrived (what /healthz judges).",
                scrape.heartbeat_silent_secs,
            ),
            Metric::gauge(
                "airlock_heartbeat_alarm_after_seconds",
                "heartbeat.alarm_after_secs: /healthz turns 503 when the silence is longer.",
                scrape.alarm_after_secs,
            ),
            Metric::gauge(
                "airlock_store_readable",
                "1 when the store answered the probe of this scrape (the one /healthz makes), 0 when it failed or took over 2 s.",
                u64::from(scrape.store_readable),
            ),
        ]);
        if let Some(rss) = resident_memory_bytes() {
            out.metrics(&[Metric::gauge(
                "process_resident_memory_bytes",
                "Resident memory of the receiver process, in bytes (Linux /proc/self/status VmRSS).",
                rss,
            )]);
        }
        out.finish()
    }
}

/// What the ops listener measures when it is scraped, beside the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    /// Seconds since the last heartbeat; None before the first one.
    pub heartbeat_age_secs: Option<u64>,
    /// Seconds since the last heartbeat, or since start-up when none arrived.
    pub heartbeat_silent_secs: u64,
    pub alarm_after_secs: u64,
    pub store_readable: bool,
}

/// Resident set size of this process, from the `VmRSS` line of `/proc/self/status` (in
/// KiB whatever the page size). Absent where there is no such file.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Allows at most `per_sec` events a second; counts what it suppressed.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: u32,
    window_start_ms: u64,
    used: u32,
    pub suppressed: u64,
}

impl RateLimiter {
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            window_start_ms: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether an event at `now_ms` may be logged.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 {
            self.window_start_ms = now_ms;
            self.used = 0;
        }
        if self.used < self.per_sec {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_and_rendered() {
        let m = Metrics::new();
        m.reject(FrameRejection::Stale);
        m.reject(FrameRejection::Stale);
        assert_eq!(m.rejected("stale"), 2);
        let text = m.render(&Scrape {
            heartbeat_age_secs: Some(3),
            heartbeat_silent_secs: 3,
            alarm_after_secs: 60,
            store_readable: false,
        });
        assert!(text.contains("airlock_frames_rejected_total{reason=\"stale\"} 2"));
        assert!(text.contains("airlock_heartbeat_age_seconds 3"));
        assert!(text.contains("airlock_heartbeat_silent_seconds 3\n"));
        assert!(text.contains("airlock_heartbeat_alarm_after_seconds 60\n"));
        assert!(text.contains("airlock_store_readable 0\n"));
    }

    /// The enums index the label arrays: each variant's label is its own word.
    #[test]
    fn reason_enums_follow_the_label_lists() {
        use FrameRejection as F;
        let frames = [
            F::TooLarge,
            F::BadCbor,
            F::BadAlgorithm,
            F::UnknownLinkKey,
            F::AeadFailure,
            F::BadInnerCbor,
            F::BadSignerAlgorithm,
            F::UntrustedSigner,
            F::BadSignature,
            F::BadPayload,
            F::SignerMismatch,
            F::UnsupportedVersion,
            F::Stale,
            F::FromFuture,
            F::Replay,
            F::SeqConflict,
        ];
        assert_eq!(frames.map(F::label), OpenError::REASONS);
        for e in [
            OpenError::Stale { age: 1 },
            OpenError::Aead,
            OpenError::Replay(ReplayError::Zero),
            OpenError::Payload("x".into()),
        ] {
            assert_eq!(F::from(&e).label(), e.reason());
        }
        use LinkRefusal as L;
        let link = [
            L::ShortDatagram,
            L::Crc,
            L::BadMagic,
            L::BadLinkVersion,
            L::BadHeader,
            L::BlockTooLarge,
            L::BadBlock,
            L::BadParams,
            L::Cobs,
            L::OversizeDatagram,
            L::SerialIo,
            L::SourceNotAllowed,
        ];
        assert_eq!(link.map(L::label), LINK_REASONS);
        for e in [LinkError::Crc, LinkError::Magic, LinkError::Version(9)] {
            assert_eq!(L::from(&e).label(), e.reason());
        }
    }

    #[test]
    fn limiter_caps_per_second() {
        let mut l = RateLimiter::new(2);
        assert!(l.allow(1000));
        assert!(l.allow(1001));
        assert!(!l.allow(1002));
        assert!(l.allow(2001));
        assert_eq!(l.suppressed, 1);
    }
}
