//! `audit reconcile`: the sender's outbound log (`airlock-sender export-log`, JSON lines
//! `{seq, hash, prev, kind, issued_at, origin, sign1}`) against the receiver's frame log.
//!
//! Frames are matched by frame hash (SHA-256 of the Sign1), which both sides compute from
//! the same signed bytes. With public keys, every sender line's Sign1 is verified too.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use airlock_protocol::chain::{ChainCheck, format_ranges};
use airlock_protocol::seal::{frame_hash, verify_sign1};
use airlock_protocol::trust::TrustStore;
use base64::Engine as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::args::{KeyArgs, OutputArgs, SourceArgs};
use super::error::AuditError;
use super::progress;
use super::source::{load_keys, open_store};
use super::walk::expected_len;
use crate::frame_log::decode;
use crate::store::{Store, Table};

/// Listed items per category; counts are always complete.
const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Optional here: with keys, every sender line's Sign1 is verified as well.
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The sender's `airlock-sender export-log` output (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub sender_log: PathBuf,
}

/// One line of the sender's export.
#[derive(Debug, Clone, Deserialize)]
struct SenderLine {
    seq: u64,
    hash: String,
    prev: String,
    kind: String,
    issued_at: u64,
    sign1: String,
}

#[derive(Debug, Clone)]
struct SentFrame {
    seq: u64,
    hash: [u8; 32],
    prev: [u8; 32],
    kind: String,
    issued_at: u64,
    kid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameRef {
    pub seq: u64,
    pub hash: String,
    pub kind: String,
    /// The sender's issue time, for sent frames.
    pub issued_at: Option<u64>,
    /// Receiver log index, for received frames.
    pub index: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutOfOrder {
    pub seq: u64,
    pub index: u64,
    /// The highest seq logged before it.
    pub after_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub ok: bool,
    pub sender_kid: Option<String>,
    pub sender_frames: u64,
    pub sender_seq_range: Option<(u64, u64)>,
    pub sender_log_problems: Vec<String>,
    pub receiver_entries: u64,
    pub matched: u64,
    pub sent_not_received_count: u64,
    pub sent_not_received_ranges: String,
    pub sent_not_received: Vec<FrameRef>,
    pub received_not_sent_count: u64,
    pub received_not_sent: Vec<FrameRef>,
    /// Frames of this signer logged with a seq above the export's last one (sent after the
    /// export was taken): not an error.
    pub received_after_export: u64,
    pub out_of_order_count: u64,
    pub out_of_order: Vec<OutOfOrder>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Reads and checks the sender's export.
fn read_sender_log(
    path: &Path,
    trust: Option<&TrustStore>,
    problems: &mut Vec<String>,
) -> Result<Vec<SentFrame>, AuditError> {
    let file = std::fs::File::open(path).map_err(|source| AuditError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |line: usize, detail: String| AuditError::SenderLog {
        path: path.to_owned(),
        line,
        detail,
    };
    let mut out = Vec::new();
    for (i, text) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let text = text.map_err(|e| bad(n, e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        let l: SenderLine = serde_json::from_str(&text)
            .map_err(|e| bad(n, format!("not an `airlock-sender export-log` line: {e}")))?;
        let sign1 = base64::engine::general_purpose::STANDARD
            .decode(l.sign1.trim())
            .map_err(|e| bad(n, format!("sign1 is not base64: {e}")))?;
        let (hash, prev) = match (hex32(&l.hash), hex32(&l.prev)) {
            (Some(h), Some(p)) => (h, p),
            _ => return Err(bad(n, "hash and prev must be 64 hex digits".into())),
        };
        if frame_hash(&sign1) != hash {
            problems.push(format!(
                "line {n} (seq {}): its hash is not the SHA-256 of its sign1",
                l.seq
            ));
        }
        let mut kid = None;
        if let Some(t) = trust {
            match verify_sign1(&sign1, t) {
                Ok(env) if env.seq == l.seq && env.prev == prev => kid = Some(env.sender_kid),
                Ok(env) => problems.push(format!(
                    "line {n}: says seq {} but its signed frame is seq {}",
                    l.seq, env.seq
                )),
                Err(e) => problems.push(format!("line {n} (seq {}): {e}", l.seq)),
            }
        }
        out.push(SentFrame {
            seq: l.seq,
            hash: frame_hash(&sign1),
            prev,
            kind: l.kind,
            issued_at: l.issued_at,
            kid,
        });
    }
    Ok(out)
}

/// The sender's own chain: contiguous seqs and intact prev links.
fn check_sender_chain(sent: &[SentFrame], problems: &mut Vec<String>) {
    let mut chain = ChainCheck::new();
    for f in sent {
        chain.add(f.seq, f.prev, f.hash);
    }
    let lo = sent.iter().map(|f| f.seq).min().unwrap_or(1);
    let hi = chain.highest();
    let gaps: Vec<_> = chain
        .missing(hi)
        .into_iter()
        .filter(|r| *r.start() >= lo)
        .collect();
    if !gaps.is_empty() {
        problems.push(format!(
            "the export itself skips seqs {}",
            format_ranges(&gaps)
        ));
    }
    for b in chain.broken_links() {
        if b.seq > lo {
            problems.push(format!(
                "the sender's chain breaks at seq {}: its prev is not the hash of seq {}",
                b.seq,
                b.seq.saturating_sub(1)
            ));
        }
    }
}

/// One receiver log entry, as reconcile needs it (no body decoding: hashes suffice).
struct Received {
    index: u64,
    kid: String,
    seq: u64,
    hash: [u8; 32],
}

fn read_receiver_log(args: &ReconcileArgs) -> Result<Vec<Received>, AuditError> {
    let store = open_store(&args.source)?;
    let bar = progress::bar(expected_len(&store), "reconcile");
    let mut out = Vec::new();
    for (pos, row) in store.scan_from(Table::Log, &[]).enumerate() {
        let (_, v) = row?;
        // Damaged entries are `audit verify`'s business; reconcile skips them.
        if let Ok(s) = decode(&v, pos as u64) {
            out.push(Received {
                index: s.entry.index,
                hash: s.entry.frame_hash(),
                kid: s.entry.signer_kid,
                seq: s.entry.seq,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

pub fn reconcile(args: &ReconcileArgs) -> Result<ReconcileReport, AuditError> {
    let trust = if args.keys.trust_dir.is_some() || !args.keys.signers.is_empty() {
        let base = load_keys(&args.source, &args.keys)?;
        Some(base.effective(&Default::default())?)
    } else {
        None
    };
    let mut problems = Vec::new();
    let sent = read_sender_log(&args.sender_log, trust.as_ref(), &mut problems)?;
    check_sender_chain(&sent, &mut problems);
    let received = read_receiver_log(args)?;
    let by_hash: HashMap<[u8; 32], &Received> = received.iter().map(|r| (r.hash, r)).collect();

    // The sender's kid: from verified lines, else from the frames both logs share.
    let mut kids: BTreeMap<String, u64> = BTreeMap::new();
    for f in &sent {
        let k = f
            .kid
            .clone()
            .or_else(|| by_hash.get(&f.hash).map(|r| r.kid.clone()));
        if let Some(k) = k {
            *kids.entry(k).or_default() += 1;
        }
    }
    if kids.len() > 1 {
        problems.push(format!(
            "the export mixes signers {}: export one sender at a time",
            kids.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let sender_kid = kids.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k);
    let range = sent
        .iter()
        .map(|f| f.seq)
        .min()
        .zip(sent.iter().map(|f| f.seq).max());

    let mut sent_not_received = Vec::new();
    let mut missing_seqs = Vec::new();
    let mut matched = 0u64;
    for f in &sent {
        if by_hash.contains_key(&f.hash) {
            matched += 1;
        } else {
            missing_seqs.push(f.seq);
            if sent_not_received.len() < MAX_LISTED {
                sent_not_received.push(FrameRef {
                    seq: f.seq,
                    hash: hex::encode(f.hash),
                    kind: f.kind.clone(),
                    issued_at: Some(f.issued_at),
                    index: None,
                });
            }
        }
    }
    let sent_hashes: HashMap<[u8; 32], u64> = sent.iter().map(|f| (f.hash, f.seq)).collect();
    let mut received_not_sent = Vec::new();
    let (mut rns_count, mut after_export) = (0u64, 0u64);
    let mut out_of_order = Vec::new();
    let (mut ooo_count, mut max_seq) = (0u64, 0u64);
    for r in &received {
        if Some(&r.kid) != sender_kid.as_ref() {
            continue;
        }
        match (sent_hashes.get(&r.hash), range) {
            (Some(_), _) => {
                if r.seq < max_seq {
                    ooo_count += 1;
                    if out_of_order.len() < MAX_LISTED {
                        out_of_order.push(OutOfOrder {
                            seq: r.seq,
                            index: r.index,
                            after_seq: max_seq,
                        });
                    }
                }
                max_seq = max_seq.max(r.seq);
            }
            (None, Some((_, hi))) if r.seq > hi => after_export += 1,
            (None, Some((lo, _))) if r.seq < lo => {}
            (None, _) => {
                rns_count += 1;
                if received_not_sent.len() < MAX_LISTED {
                    received_not_sent.push(FrameRef {
                        seq: r.seq,
                        hash: hex::encode(r.hash),
                        kind: "?".into(),
                        issued_at: None,
                        index: Some(r.index),
                    });
                }
            }
        }
    }
    let snr_ranges = compress(&missing_seqs);
    if sender_kid.is_none() && !sent.is_empty() {
        problems.push(
            "no frame of the export is in the receiver's log and no key was given: pass --signer FILE so the sender's frames can be identified".into(),
        );
    }
    let ok = problems.is_empty() && missing_seqs.is_empty() && rns_count == 0;
    Ok(ReconcileReport {
        ok,
        sender_kid,
        sender_frames: sent.len() as u64,
        sender_seq_range: range,
        sender_log_problems: problems,
        receiver_entries: received.len() as u64,
        matched,
        sent_not_received_count: missing_seqs.len() as u64,
        sent_not_received_ranges: snr_ranges,
        sent_not_received,
        received_not_sent_count: rns_count,
        received_not_sent,
        received_after_export: after_export,
        out_of_order_count: ooo_count,
        out_of_order,
    })
}

/// `3, 7-9` from sorted-or-not seqs.
fn compress(seqs: &[u64]) -> String {
    let mut s = seqs.to_vec();
    s.sort_unstable();
    s.dedup();
    let mut ranges: Vec<std::ops::RangeInclusive<u64>> = Vec::new();
    for q in s {
        match ranges.last_mut() {
            Some(r) if r.end().checked_add(1) == Some(q) => *r = *r.start()..=q,
            _ => ranges.push(q..=q),
        }
    }
    format_ranges(&ranges)
}

pub fn render(r: &ReconcileReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sender {}: {} frame(s) exported{}; receiver log: {} entries; {} matched",
        r.sender_kid.as_deref().unwrap_or("(unknown)"),
        r.sender_frames,
        r.sender_seq_range
            .map(|(a, b)| format!(" (seqs {a}..={b})"))
            .unwrap_or_default(),
        r.receiver_entries,
        r.matched
    );
    for p in &r.sender_log_problems {
        let _ = writeln!(out, "SENDER LOG PROBLEM: {p}");
    }
    if r.sent_not_received_count > 0 {
        let _ = writeln!(
            out,
            "SENT BUT NEVER RECEIVED ({}): seqs {}",
            r.sent_not_received_count, r.sent_not_received_ranges
        );
        for f in &r.sent_not_received {
            let _ = writeln!(out, "  seq {} {} {}", f.seq, f.kind, f.hash);
        }
    }
    if r.received_not_sent_count > 0 {
        let _ = writeln!(
            out,
            "RECEIVED BUT NEVER SENT ({}) — the sender's log does not contain these frames:",
            r.received_not_sent_count
        );
        for f in &r.received_not_sent {
            let _ = writeln!(
                out,
                "  entry {} seq {} {}",
                f.index.unwrap_or(0),
                f.seq,
                f.hash
            );
        }
    }
    if r.out_of_order_count > 0 {
        let _ = writeln!(
            out,
            "ordering: {} frame(s) were logged after a higher seq (resends, repetition or FEC blocks arriving late):",
            r.out_of_order_count
        );
        for o in r.out_of_order.iter().take(20) {
            let _ = writeln!(
                out,
                "  seq {} at entry {} (after seq {})",
                o.seq, o.index, o.after_seq
            );
        }
    }
    if r.received_after_export > 0 {
        let _ = writeln!(
            out,
            "{} frame(s) in the receiver's log are newer than the export (sent after it was taken)",
            r.received_after_export
        );
    }
    let _ = writeln!(
        out,
        "summary: {}: {} sent, {} matched, {} sent but never received, {} received but never sent, {} out of order",
        if r.ok { "OK" } else { "FAIL" },
        r.sender_frames,
        r.matched,
        r.sent_not_received_count,
        r.received_not_sent_count,
        r.out_of_order_count
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_ranges() {
        assert_eq!(compress(&[9, 3, 7, 8, 3]), "3, 7-9");
        assert_eq!(compress(&[]), "");
    }
}
