//! The ops listener's `/status`: one HTML page a person reads at a glance — health, heartbeat
//! age, frames, open gaps, users, the frame-signing key schedule (which signer kids are
//! trusted, from when, until which retirement), and the frames refused by reason over the
//! last hour as a bar chart drawn server-side in inline SVG. No script, no external asset.

use airlock_daemon::html::DOCTYPE;
use airlock_protocol::seal::OpenError;
use maud::{PreEscaped, html};

use crate::metrics::RejectSample;

/// What the page shows, gathered by the ops listener.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub healthy: bool,
    pub health: String,
    pub heartbeat_age_secs: Option<u64>,
    pub alarm_after_secs: u64,
    pub frames_accepted: u64,
    pub log_entries: u64,
    pub gap_ranges: u64,
    pub missing_seqs: u64,
    pub users: usize,
    pub store_readable: bool,
    pub history: Vec<RejectSample>,
    /// The frame-signing keys: configured and announced over the link.
    pub signers: Vec<SignerRow>,
}

/// One frame-signing key and when the receiver trusts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerRow {
    pub kid: String,
    pub fingerprint: String,
    /// Why it is trusted: a configured file, or an announcement by another signer.
    pub source: String,
    /// From when its signatures count.
    pub from: String,
    /// Until when: "until retired", or the retirement or removal that ended it.
    pub until: String,
    pub trusted: bool,
}

/// The page's own style (inline: the ops listener serves no assets).
const STYLE: &str = "body{font:15px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}.ok{color:#0a6b2d}.bad{color:#b00020;font-weight:bold}\
svg{border:1px solid #ccc;background:#fafafa}";

/// Refusals per minute (the differences of consecutive samples) and per reason over the
/// whole window.
fn rejects(history: &[RejectSample]) -> (Vec<u64>, Vec<(&'static str, u64)>) {
    let per_minute = history
        .windows(2)
        .map(|w| {
            w[1].counts
                .iter()
                .zip(&w[0].counts)
                .map(|(b, a)| b.saturating_sub(*a))
                .sum()
        })
        .collect();
    let by_reason = match (history.first(), history.last()) {
        (Some(first), Some(last)) => OpenError::REASONS
            .iter()
            .zip(last.counts.iter().zip(&first.counts))
            .map(|(r, (b, a))| (*r, b.saturating_sub(*a)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        _ => Vec::new(),
    };
    (per_minute, by_reason)
}

/// The page.
pub fn render(v: &StatusView) -> String {
    let (per_minute, by_reason) = rejects(&v.history);
    let state = if v.healthy { "ok" } else { "unhealthy" };
    let heartbeat = match v.heartbeat_age_secs {
        Some(a) => format!("{a} s ago (alarm after {} s)", v.alarm_after_secs),
        None => format!("none since start-up (alarm after {} s)", v.alarm_after_secs),
    };
    let rows = [
        (
            "Link state",
            if v.healthy { "up" } else { "see above" }.to_string(),
        ),
        ("Last heartbeat", heartbeat),
        (
            "Store",
            format!(
                "{}, {} log entries",
                if v.store_readable {
                    "readable"
                } else {
                    "NOT readable"
                },
                v.log_entries
            ),
        ),
        ("Frames accepted", v.frames_accepted.to_string()),
        (
            "Open gaps",
            format!("{} ranges, {} missing seqs", v.gap_ranges, v.missing_seqs),
        ),
        ("Users provisioned", v.users.to_string()),
    ];
    // One bar per minute, scaled to the busiest minute.
    let (w, h) = (600u64, 120u64);
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let n = per_minute.len().max(1) as u64;
    let bar = (w / 60).max(1);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Airlock receiver: " (state) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Airlock receiver" }
                p class=(if v.healthy { "ok" } else { "bad" }) { (v.health.trim()) }
                table { @for (k, val) in &rows { tr { th { (k) } td { (val) } } } }
                h2 { "Frame signing keys" }
                table {
                    @if v.signers.is_empty() {
                        tr { td { "none" } }
                    } @else {
                        tr { th { "kid" } th { "fingerprint" } th { "trusted because" } th { "from" } th { "until" } th { "now" } }
                    }
                    @for r in &v.signers {
                        tr {
                            td { (r.kid) } td { (r.fingerprint) } td { (r.source) } td { (r.from) } td { (r.until) }
                            @if r.trusted { td class="ok" { "trusted" } } @else { td class="bad" { "not trusted" } }
                        }
                    }
                }
                h2 { "Frames refused, last hour" }
                svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="frames refused per minute" {
                    @for (i, count) in per_minute.iter().enumerate() {
                        @let bh = count * (h - 10) / max;
                        rect x=(w - (n - i as u64) * bar) y=(h - bh) width=(bar.saturating_sub(1).max(1)) height=(bh) fill="#b00020" { title { (count) } }
                    }
                    text x="4" y="12" font-size="11" { "max " (max) "/min" }
                }
                table {
                    @if by_reason.is_empty() { tr { td { "none" } } }
                    @for (reason, count) in &by_reason { tr { th { (reason) } td { (count) } } }
                }
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, stale: u64) -> RejectSample {
        let mut counts = vec![0; OpenError::REASONS.len()];
        let i = OpenError::REASONS
            .iter()
            .position(|r| *r == "stale")
            .unwrap();
        counts[i] = stale;
        RejectSample { at_ms, counts }
    }

    #[test]
    fn rejects_per_minute_and_by_reason_over_the_window() {
        let (per_minute, by_reason) =
            rejects(&[sample(0, 2), sample(60_000, 5), sample(120_000, 5)]);
        assert_eq!(per_minute, vec![3, 0]);
        assert_eq!(by_reason, vec![("stale", 3)]);
    }

    #[test]
    fn the_page_escapes_and_draws_bars() {
        let page = render(&StatusView {
            healthy: false,
            health: "unhealthy: <x>".into(),
            heartbeat_age_secs: None,
            alarm_after_secs: 60,
            frames_accepted: 1,
            log_entries: 1,
            gap_ranges: 0,
            missing_seqs: 0,
            users: 0,
            store_readable: true,
            history: vec![sample(0, 0), sample(60_000, 4)],
            signers: vec![SignerRow {
                kid: "k<1>".into(),
                fingerprint: "AB CD".into(),
                source: "configured".into(),
                from: "the start of the log".into(),
                until: "retired".into(),
                trusted: false,
            }],
        });
        assert!(page.contains("unhealthy: &lt;x&gt;"));
        assert!(page.contains("<td>k&lt;1&gt;</td>"));
        assert!(page.contains("<td class=\"bad\">not trusted</td>"));
        assert!(page.contains("<rect "));
        assert!(page.contains("<th>stale</th><td>4</td>"));
        assert!(!page.contains("<script"));
    }
}
