//! Counters and gauges, rendered in the Prometheus text format (no extra dependency).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_protocol::link::{LinkError, LinkStats};
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

    /// Counts a refused frame by its stable reason label.
    pub fn reject(&self, reason: &str) {
        if let Some(c) = OpenError::REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejected.get(i))
        {
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

    /// Counts a refused datagram by its reason label (one of [`LINK_REASONS`]).
    pub fn link_error(&self, reason: &str) {
        if let Some(c) = LINK_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.link_errors.get(i))
        {
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
        let heartbeat_age_secs = scrape.heartbeat_age_secs;
        let mut out = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "airlock_frames_received_total",
            "Sealed frames handed to verification.",
            g(&self.frames_received),
        );
        counter(
            &mut out,
            "airlock_frames_accepted_total",
            "Frames verified, logged and applied (durably).",
            g(&self.frames_accepted),
        );
        counter(
            &mut out,
            "airlock_frames_no_effect_total",
            "Accepted and logged frames that changed nothing (superseded).",
            g(&self.frames_no_effect),
        );
        counter(
            &mut out,
            "airlock_frames_duplicate_total",
            "Copies of frames already in the log (repetition, carousel, resend).",
            g(&self.duplicates),
        );
        let _ = writeln!(
            out,
            "# HELP airlock_frames_rejected_total Frames refused, by reason; never applied."
        );
        let _ = writeln!(out, "# TYPE airlock_frames_rejected_total counter");
        for (r, c) in OpenError::REASONS.iter().zip(self.rejected.iter()) {
            let _ = writeln!(
                out,
                "airlock_frames_rejected_total{{reason=\"{r}\"}} {}",
                g(c)
            );
        }
        let l = self.link_stats();
        let _ = writeln!(
            out,
            "# HELP airlock_link_errors_total Datagrams or bytes refused on the link, by reason."
        );
        let _ = writeln!(out, "# TYPE airlock_link_errors_total counter");
        for (r, c) in LINK_REASONS.iter().zip(self.link_errors.iter()) {
            let _ = writeln!(out, "airlock_link_errors_total{{reason=\"{r}\"}} {}", g(c));
        }
        counter(
            &mut out,
            "airlock_link_datagrams_total",
            "Datagrams received.",
            l.datagrams,
        );
        counter(
            &mut out,
            "airlock_link_bytes_total",
            "Datagram bytes received.",
            l.bytes,
        );
        counter(
            &mut out,
            "airlock_link_duplicate_symbols_total",
            "RaptorQ symbols received twice.",
            l.duplicate_symbols,
        );
        counter(
            &mut out,
            "airlock_blocks_decoded_total",
            "FEC blocks decoded.",
            l.blocks_decoded,
        );
        counter(
            &mut out,
            "airlock_blocks_lost_total",
            "FEC blocks given up on (too few symbols, window overflow).",
            l.blocks_lost,
        );
        counter(
            &mut out,
            "airlock_blocks_unauthenticated_total",
            "Decoded FEC blocks none of whose frames pass the AEAD (forged): their block id stays open for the real block.",
            l.blocks_unauthenticated,
        );
        counter(
            &mut out,
            "airlock_blocks_evicted_total",
            "Incomplete FEC blocks dropped for a memory bound (pending blocks or bytes).",
            l.blocks_evicted,
        );
        counter(
            &mut out,
            "airlock_link_symbol_size_refused_total",
            "Datagrams refused for a symbol size below link.min_symbol_size.",
            l.symbol_size_refused,
        );
        gauge(
            &mut out,
            "airlock_link_pending_bytes",
            "Reassembly memory held now (estimated bytes).",
            l.pending_bytes,
        );
        gauge(
            &mut out,
            "airlock_link_pending_bytes_peak",
            "The most reassembly memory held since start (estimated bytes); stays at or below link.max_pending_bytes.",
            l.pending_bytes_peak,
        );
        counter(
            &mut out,
            "airlock_link_session_resets_total",
            "Sender sessions started or evicted.",
            l.session_resets,
        );
        counter(
            &mut out,
            "airlock_ingest_queue_dropped_total",
            "Frames dropped because verification fell behind.",
            g(&self.queue_dropped),
        );
        counter(
            &mut out,
            "airlock_ingest_batches_total",
            "Store transactions (one flush each).",
            g(&self.batches),
        );
        counter(
            &mut out,
            "airlock_heartbeats_total",
            "Heartbeat frames applied.",
            g(&self.heartbeats),
        );
        gauge(
            &mut out,
            "airlock_log_entries",
            "Entries in the frame log.",
            g(&self.log_entries),
        );
        counter(
            &mut out,
            "airlock_checkpoints_signed_total",
            "Checkpoints (signed tree heads) of the frame log's Merkle tree signed by this receiver.",
            g(&self.checkpoints_signed),
        );
        gauge(
            &mut out,
            "airlock_checkpoint_tree_size",
            "Tree size of the latest checkpoint signed (or found at start); compare with airlock_log_entries.",
            g(&self.checkpoint_size),
        );
        counter(
            &mut out,
            "airlock_backups_served_total",
            "Online backups streamed to the end through GET /backup (`airlock-receiver backup`).",
            g(&self.backups_served),
        );
        gauge(
            &mut out,
            "airlock_backup_last_timestamp_seconds",
            "Unix time of the last completed backup (0: none; kept in <data_dir>/last-backup across restarts).",
            g(&self.backup_last_unix_secs),
        );
        gauge(
            &mut out,
            "airlock_backup_last_ingest_pause_microseconds",
            "How long the last backup held the ingest to copy the tables it overwrites.",
            g(&self.backup_last_pause_us),
        );
        gauge(
            &mut out,
            "airlock_gap_missing_seqs",
            "Seqs below a signer's highest that never arrived.",
            g(&self.missing_seqs),
        );
        gauge(
            &mut out,
            "airlock_gap_ranges",
            "Ranges of missing seqs (see `airlock-receiver gaps`).",
            g(&self.gap_ranges),
        );
        if let Some(age) = heartbeat_age_secs {
            gauge(
                &mut out,
                "airlock_heartbeat_age_seconds",
                "Seconds since the last heartbeat.",
                age,
            );
        }
        gauge(
            &mut out,
            "airlock_heartbeat_silent_seconds",
            "Seconds without a heartbeat: since the last one, or since start-up when none arrived (what /healthz judges).",
            scrape.heartbeat_silent_secs,
        );
        gauge(
            &mut out,
            "airlock_heartbeat_alarm_after_seconds",
            "heartbeat.alarm_after_secs: /healthz turns 503 when the silence is longer.",
            scrape.alarm_after_secs,
        );
        gauge(
            &mut out,
            "airlock_store_readable",
            "1 when the store answered the probe of this scrape (the one /healthz makes), 0 when it failed or took over 2 s.",
            u64::from(scrape.store_readable),
        );
        if let Some(rss) = resident_memory_bytes() {
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory of the receiver process, in bytes (Linux /proc/self/status VmRSS).",
                rss,
            );
        }
        out
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

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
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
        m.reject("stale");
        m.reject("stale");
        m.reject("no_such_reason");
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
