//! `audit export`: JSON Lines, one object per log entry, for SIEM ingestion.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::args::{KeyArgs, SourceArgs};
use super::error::AuditError;
use super::record::EntryRecord;
use super::source::{load_keys, open_store};
use super::timefmt::parse_rfc3339_ms;
use super::walk::walk;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// First entry to export: a seq (integer) or a receive time (RFC 3339), inclusive.
    #[arg(long, value_name = "SEQ|TIME")]
    pub from: Option<String>,
    /// Last entry to export: a seq (integer) or a receive time (RFC 3339), inclusive.
    #[arg(long, value_name = "SEQ|TIME")]
    pub to: Option<String>,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A range bound: by sender seq, or by receive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Seq(u64),
    TimeMs(u64),
}

fn parse_bound(arg: &'static str, text: &str) -> Result<Bound, AuditError> {
    if let Ok(n) = text.trim().parse::<u64>() {
        return Ok(Bound::Seq(n));
    }
    parse_rfc3339_ms(text)
        .map(Bound::TimeMs)
        .ok_or_else(|| AuditError::Usage {
            arg,
            detail: format!(
                "`{text}` is neither a seq (integer) nor an RFC 3339 time like 2026-11-28T20:00:00Z"
            ),
        })
}

fn within(r: &EntryRecord, from: Option<Bound>, to: Option<Bound>) -> bool {
    let ok = |b: Option<Bound>, lower: bool| match b {
        None => true,
        Some(Bound::Seq(s)) => r.seq.is_some_and(|q| if lower { q >= s } else { q <= s }),
        Some(Bound::TimeMs(t)) => r
            .received_at_ms
            .is_some_and(|m| if lower { m >= t } else { m <= t }),
    };
    ok(from, true) && ok(to, false)
}

/// Writes the lines; returns (exported, walked, entries that do not verify).
pub fn export(args: &ExportArgs) -> Result<String, AuditError> {
    let from = args
        .from
        .as_deref()
        .map(|t| parse_bound("--from", t))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|t| parse_bound("--to", t))
        .transpose()?;
    let base = load_keys(&args.source, &args.keys)?;
    let store = open_store(&args.source)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |source| AuditError::Read {
                path: p.clone(),
                source,
            },
        )?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (mut exported, mut bad) = (0u64, 0u64);
    let end = walk(&store, &base, "export", |w| {
        let r = EntryRecord::from_walked(w);
        if !within(&r, from, to) {
            return Ok(());
        }
        if r.signature != "ok" || !r.chain_problems.is_empty() {
            bad += 1;
        }
        serde_json::to_writer(&mut out, &r).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        exported += 1;
        Ok(())
    })?;
    out.flush()?;
    drop(out);
    let summary = format!(
        "summary: exported {exported} of {} entries; {bad} exported entr{} do not verify",
        end.entries,
        if bad == 1 { "y" } else { "ies" }
    );
    eprintln!("{summary}");
    if bad > 0 {
        return Err(AuditError::Findings(format!(
            "{bad} exported entries do not verify (see their `signature` and `chain_problems` fields; run `audit verify`)"
        )));
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(parse_bound("--from", "42").ok(), Some(Bound::Seq(42)));
        assert_eq!(
            parse_bound("--from", "1970-01-01T00:00:01Z").ok(),
            Some(Bound::TimeMs(1000))
        );
        assert!(parse_bound("--from", "yesterday").is_err());
        let r = EntryRecord {
            seq: Some(5),
            received_at_ms: Some(2000),
            ..Default::default()
        };
        assert!(within(&r, Some(Bound::Seq(5)), Some(Bound::Seq(5))));
        assert!(!within(&r, Some(Bound::Seq(6)), None));
        assert!(within(
            &r,
            Some(Bound::TimeMs(1000)),
            Some(Bound::TimeMs(2000))
        ));
        assert!(!within(&r, None, Some(Bound::TimeMs(1999))));
    }
}
