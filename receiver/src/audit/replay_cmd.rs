//! `audit replay`: rebuild the state from the log alone (the ingest's own
//! [`replay_log_into`], so the same state machine runs) into a scratch store, then diff it
//! against the live store and name each difference with the user it concerns.

use std::fmt::Write as _;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::args::{KeyArgs, OutputArgs, SourceArgs};
use super::error::AuditError;
use super::progress;
use super::source::{AuditStore, load_keys, open_store};
use super::walk::expected_len;
use crate::replay::{Difference, diff_stores, replay_log_into};
use crate::store::{SledStore, Store, Table};

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One difference, with what it means for people.
#[derive(Debug, Clone, Serialize)]
pub struct DiffLine {
    pub table: &'static str,
    pub key: String,
    pub what: &'static str,
    /// The user concerned (local sub, issuer, subject), when the table names one.
    pub user: Option<String>,
    /// Top-level fields whose values differ (users, tickets, revocations, mirrors).
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub ok: bool,
    pub entries: u64,
    pub head: String,
    pub differences: Vec<DiffLine>,
    pub seconds: f64,
}

pub fn replay(args: &ReplayArgs) -> Result<ReplayReport, AuditError> {
    let base = load_keys(&args.source, &args.keys)?;
    let live = open_store(&args.source)?;
    let scratch = SledStore::temporary()?;
    let started = Instant::now();
    let bar = progress::bar(expected_len(&live), "replay");
    let summary = replay_log_into(&live, &base, &scratch, |done| bar.set_position(done))?;
    bar.finish_and_clear();
    let diffs = diff_stores(&live, &scratch)?;
    let differences = diffs.iter().map(|d| explain(d, &live, &scratch)).collect();
    let differences: Vec<DiffLine> = differences;
    Ok(ReplayReport {
        ok: differences.is_empty(),
        entries: summary.entries,
        head: hex::encode(summary.head),
        differences,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn table_named(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}

/// Adds the user and the differing fields to a raw difference.
fn explain(d: &Difference, live: &AuditStore, replayed: &SledStore) -> DiffLine {
    let mut line = DiffLine {
        table: d.table,
        key: d.key.clone(),
        what: d.what,
        user: None,
        fields: Vec::new(),
    };
    let Some(table) = table_named(d.table) else {
        return line;
    };
    let key = raw_key(table, &d.key);
    let a = load(live, table, &key);
    let b = load(replayed, table, &key);
    line.user = a.as_ref().or(b.as_ref()).and_then(user_of);
    if let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) = (&a, &b) {
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        names.dedup();
        line.fields = names
            .into_iter()
            .filter(|n| a.get(*n) != b.get(*n))
            .map(|n| format!("{n}: live {} / replay {}", short(a.get(n)), short(b.get(n))))
            .collect();
    }
    line
}

fn load<S: Store>(s: &S, table: Table, key: &[u8]) -> Option<serde_json::Value> {
    let v = s.get(table, key).ok()??;
    serde_json::from_slice(&v).ok()
}

/// Back from `printable_key`: UTF-8 keys are kept as text, others were hex.
fn raw_key(table: Table, printed: &str) -> Vec<u8> {
    match table {
        Table::Users | Table::Mirrors | Table::Meta => printed.as_bytes().to_vec(),
        _ => hex::decode(printed).unwrap_or_else(|_| printed.as_bytes().to_vec()),
    }
}

fn user_of(v: &serde_json::Value) -> Option<String> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let (issuer, subject) = (s("issuer")?, s("subject")?);
    let local = s("local_sub")
        .unwrap_or_else(|| airlock_protocol::message::local_subject(&issuer, &subject));
    Some(format!("{local} ({issuer} {subject})"))
}

fn short(v: Option<&serde_json::Value>) -> String {
    let s = v.map_or_else(|| "(absent)".to_owned(), |v| v.to_string());
    if s.len() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub fn render(r: &ReplayReport) -> String {
    let mut out = String::new();
    for d in &r.differences {
        let who = d
            .user
            .as_deref()
            .map(|u| format!(" user {u}"))
            .unwrap_or_default();
        let _ = writeln!(out, "DIFFERENCE {} {}:{who}: {}", d.table, d.key, d.what);
        for f in &d.fields {
            let _ = writeln!(out, "    {f}");
        }
    }
    let _ = writeln!(
        out,
        "summary: {}: replayed {} entries (head {}) in {:.2} s; {} difference(s) between the live store and the replay",
        if r.ok { "OK" } else { "FAIL" },
        r.entries,
        r.head,
        r.seconds,
        r.differences.len()
    );
    out
}
