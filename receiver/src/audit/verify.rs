//! `audit verify`: the hash chain, every signature, duplicates, the recorded head, and the
//! sender's chain (missing seqs, broken prev links) per signer.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use airlock_protocol::chain::{ChainCheck, format_ranges};
use clap::Args;
use serde::Serialize;

use super::args::{KeyArgs, OutputArgs, SourceArgs};
use super::error::AuditError;
use super::source::{load_keys, open_store};
use super::transparency::TreeCheck;
use super::walk::{ChainFault, WalkEnd, Walked, walk};

/// Problems listed in full; beyond this only the count grows.
const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Missing sender seqs (lost in transit, not yet resent) do not fail the audit; they are
    /// still reported.
    #[arg(long)]
    pub allow_gaps: bool,
    /// An entry hash recorded by an earlier audit: the log must still contain it (proves the
    /// log was not cut back or rewritten before that point).
    #[arg(long, value_name = "HEX")]
    pub expect_head: Option<String>,
    /// A checkpoint the auditor trusts (from `checkpoint export`, a witness record): the
    /// log must be an extension of it — its Merkle tree at the checkpoint's size must have
    /// the checkpoint's root — or the audit fails naming the first differing entry.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub checkpoint_key: super::transparency::CheckpointKeyArgs,
}

/// One thing that does not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Log index of the entry (its position when unreadable).
    pub index: u64,
    pub kind: &'static str,
    pub detail: String,
}

/// A signer's chain as the log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SignerChain {
    pub kid: String,
    pub frames: u64,
    pub highest_seq: u64,
    /// Inclusive ranges of seqs below the highest one that are not in the log.
    pub missing: Vec<(u64, u64)>,
    pub missing_count: u64,
    pub broken_prev_links: Vec<BrokenPrev>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokenPrev {
    pub seq: u64,
    pub expected_prev: String,
    pub found_prev: String,
}

/// The whole result, also printed as `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries: u64,
    pub head: String,
    pub recorded_entries: Option<u64>,
    pub recorded_head: Option<String>,
    pub problem_count: u64,
    pub first_problem: Option<Problem>,
    pub problems: Vec<Problem>,
    /// Oddities that do not fail the audit by themselves (see docs/audit.md).
    pub warnings: Vec<Problem>,
    pub signers: Vec<SignerChain>,
    pub missing_seqs: u64,
    pub broken_prev_links: u64,
    pub gaps_allowed: bool,
    pub seconds: f64,
    pub entries_per_second: f64,
}

#[derive(Default)]
struct Collector {
    problems: Vec<Problem>,
    count: u64,
    chains: BTreeMap<String, ChainCheck>,
    frames: BTreeMap<String, u64>,
    /// (kid, seq) -> index of the first entry that logged it.
    seen: HashMap<String, HashMap<u64, u64>>,
    expect_head: Option<[u8; 32]>,
    expect_found: bool,
    warnings: Vec<Problem>,
    prev_received_ms: Option<u64>,
}

impl Collector {
    fn add(&mut self, index: u64, kind: &'static str, detail: String) {
        self.count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(Problem {
                index,
                kind,
                detail,
            });
        }
    }

    fn visit(&mut self, w: &Walked) {
        let index = w.index();
        for f in &w.chain {
            // A gap is named at its first missing entry.
            let at = match f {
                ChainFault::Sequence { expected, found } if found > expected => *expected,
                ChainFault::Moved { key, .. } => key.parse().unwrap_or(index),
                _ => index,
            };
            self.add(at, f.kind(), f.describe());
        }
        if self.expect_head.is_some() && w.stored_hash == self.expect_head {
            self.expect_found = true;
        }
        self.check_clock(w);
        let env = match &w.frame {
            Ok(env) => env,
            Err(f) => {
                self.add(index, f.kind(), f.describe());
                return;
            }
        };
        let seqs = self.seen.entry(env.sender_kid.clone()).or_default();
        if let Some(first) = seqs.insert(env.seq, index) {
            seqs.insert(env.seq, first);
            self.add(
                index,
                "duplicate_frame",
                format!(
                    "signer {} seq {} is already logged at entry {first}: a frame is never logged twice",
                    env.sender_kid, env.seq
                ),
            );
            return;
        }
        let hash = match (w.frame_hash, &w.entry) {
            (Some(h), _) => h,
            (None, Some(e)) => e.frame_hash(),
            (None, None) => return,
        };
        self.chains
            .entry(env.sender_kid.clone())
            .or_default()
            .add(env.seq, env.prev, hash);
        *self.frames.entry(env.sender_kid.clone()).or_default() += 1;
    }

    /// Entries are logged in arrival order, so receive times only go forward unless the
    /// receiver's clock stepped back, or entries were reordered and re-linked.
    fn check_clock(&mut self, w: &Walked) {
        let Some(e) = &w.entry else { return };
        if let Some(prev) = self.prev_received_ms
            && e.received_at_ms < prev
            && self.warnings.len() < MAX_LISTED
        {
            self.warnings.push(Problem {
                index: e.index,
                kind: "receive_time_backwards",
                detail: format!(
                    "received {} ms before the entry preceding it: the receiver's clock stepped back, or entries were reordered and the chain rewritten",
                    prev - e.received_at_ms
                ),
            });
        }
        self.prev_received_ms = Some(e.received_at_ms);
    }

    fn check_end(&mut self, end: &WalkEnd) {
        let next = end.last_index.map_or(0, |i| i.saturating_add(1));
        match end.recorded {
            None if end.entries > 0 => self.add(
                next,
                "no_head_record",
                "the store has log entries but no head record (meta log_head)".into(),
            ),
            None => {}
            Some((n, h)) if n == next && h == end.head => {}
            Some((n, _)) if n > next => self.add(
                next,
                "truncated_tail",
                format!(
                    "the store's head record says {n} entries but the log has only {next}: entries {next}..={} were cut off",
                    n - 1
                ),
            ),
            Some((n, _)) if n < next => self.add(
                n,
                "appended_entries",
                format!(
                    "the store's head record says {n} entries but the log has {next}: entries {n}..={} were added outside the receiver",
                    next - 1
                ),
            ),
            Some((n, h)) => self.add(
                n.saturating_sub(1),
                "head_mismatch",
                format!(
                    "the log's last entry hash {} differs from the recorded head {}: the tail was replaced",
                    hex::encode(end.head),
                    hex::encode(h)
                ),
            ),
        }
        if self.expect_head.is_some() && !self.expect_found {
            self.add(
                next,
                "expected_head_missing",
                "the entry hash given with --expect-head is not in this log: it was cut back or rewritten since that audit".into(),
            );
        }
    }
}

fn signer_chains(c: &Collector) -> Vec<SignerChain> {
    c.chains
        .iter()
        .map(|(kid, chain)| {
            let highest = chain.highest();
            let missing: Vec<(u64, u64)> = chain
                .missing(highest)
                .into_iter()
                .map(|r| (*r.start(), *r.end()))
                .collect();
            let missing_count = missing.iter().map(|(a, b)| b - a + 1).sum();
            SignerChain {
                kid: kid.clone(),
                frames: c.frames.get(kid).copied().unwrap_or(0),
                highest_seq: highest,
                missing,
                missing_count,
                broken_prev_links: chain
                    .broken_links()
                    .into_iter()
                    .map(|b| BrokenPrev {
                        seq: b.seq,
                        expected_prev: hex::encode(b.expected_prev),
                        found_prev: hex::encode(b.found_prev),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn parse_head(hex_text: &str) -> Result<[u8; 32], AuditError> {
    hex::decode(hex_text.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(AuditError::Usage {
            arg: "--expect-head",
            detail: "must be 64 hex digits (an entry hash printed by an earlier `audit verify`)"
                .into(),
        })
}

/// Runs the verification and returns the report (printing is the caller's).
pub fn verify(args: &VerifyArgs) -> Result<VerifyReport, AuditError> {
    let expect_head = args.expect_head.as_deref().map(parse_head).transpose()?;
    let base = load_keys(&args.source, &args.keys)?;
    let mut tree = match &args.checkpoint {
        Some(f) => Some(TreeCheck::new(f, &args.checkpoint_key, &args.source)?),
        None => None,
    };
    let store = open_store(&args.source)?;
    let started = Instant::now();
    let mut c = Collector {
        expect_head,
        ..Collector::default()
    };
    let end = walk(&store, &base, "verify", |w| {
        c.visit(w);
        if let Some(t) = tree.as_mut() {
            t.push(w.entry.as_ref(), w.stored_hash);
        }
        Ok(())
    })?;
    c.check_end(&end);
    if let Some(t) = &tree
        && let Some((index, detail)) = t.finish(&store)?
    {
        // The tree check decides: it is the one a rebuilt chain cannot pass.
        c.count += 1;
        c.problems.insert(
            0,
            Problem {
                index,
                kind: "not_an_extension_of_checkpoint",
                detail,
            },
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let signers = signer_chains(&c);
    let missing_seqs = signers.iter().map(|s| s.missing_count).sum();
    let broken: u64 = signers
        .iter()
        .map(|s| s.broken_prev_links.len() as u64)
        .sum();
    let ok = c.count == 0 && broken == 0 && (args.allow_gaps || missing_seqs == 0);
    Ok(VerifyReport {
        ok,
        entries: end.entries,
        head: hex::encode(end.head),
        recorded_entries: end.recorded.map(|(n, _)| n),
        recorded_head: end.recorded.map(|(_, h)| hex::encode(h)),
        problem_count: c.count,
        first_problem: c.problems.first().cloned(),
        problems: c.problems,
        warnings: c.warnings,
        signers,
        missing_seqs,
        broken_prev_links: broken,
        gaps_allowed: args.allow_gaps,
        seconds,
        entries_per_second: if seconds > 0.0 {
            end.entries as f64 / seconds
        } else {
            0.0
        },
    })
}

/// The report for people.
pub fn render(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "log: {} entries, head {}", r.entries, r.head);
    if let Some(p) = &r.first_problem {
        let _ = writeln!(
            out,
            "FIRST PROBLEM at entry {}: {} ({})",
            p.index, p.detail, p.kind
        );
    }
    if !r.problems.is_empty() {
        let _ = writeln!(out, "problems ({}):", r.problem_count);
        for p in &r.problems {
            let _ = writeln!(out, "  entry {}: {}: {}", p.index, p.kind, p.detail);
        }
        if r.problem_count > r.problems.len() as u64 {
            let _ = writeln!(
                out,
                "  ... {} more (use --json for the first {MAX_LISTED})",
                r.problem_count - r.problems.len() as u64
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: entry {}: {}: {}", w.index, w.kind, w.detail);
    }
    for s in &r.signers {
        let _ = writeln!(
            out,
            "signer {}: {} frames, highest seq {}, {} missing{}",
            s.kid,
            s.frames,
            s.highest_seq,
            s.missing_count,
            if s.missing.is_empty() {
                String::new()
            } else {
                let ranges: Vec<_> = s.missing.iter().map(|&(a, b)| a..=b).collect();
                format!(": {}", format_ranges(&ranges))
            }
        );
        for b in &s.broken_prev_links {
            let _ = writeln!(
                out,
                "  BROKEN PREV LINK at seq {}: prev {} but seq {} hashes to {}",
                b.seq,
                b.found_prev,
                b.seq.saturating_sub(1),
                b.expected_prev
            );
        }
    }
    let verdict = if r.ok { "OK" } else { "FAIL" };
    let _ = writeln!(
        out,
        "summary: {verdict}: {} entries, {} problem(s), {} missing seq(s){}, {} broken prev link(s); {:.2} s, {:.0} entries/s",
        r.entries,
        r.problem_count,
        r.missing_seqs,
        if r.gaps_allowed { " (allowed)" } else { "" },
        r.broken_prev_links,
        r.seconds,
        r.entries_per_second
    );
    out
}

/// Summary for the error line when verification fails.
pub fn failure_line(r: &VerifyReport) -> String {
    match &r.first_problem {
        Some(p) => format!(
            "verification failed: first problem at entry {}: {}",
            p.index, p.kind
        ),
        None => format!(
            "verification failed: {} missing seq(s), {} broken prev link(s)",
            r.missing_seqs, r.broken_prev_links
        ),
    }
}
