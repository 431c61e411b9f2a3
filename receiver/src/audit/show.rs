//! `audit show --user SUBJECT`: the provenance of one user: every frame that touched it
//! (who approved what, when), its current record, and the login sessions and token
//! families the OpenID provider holds for it.

use std::fmt::Write as _;

use airlock_protocol::message::local_subject;
use clap::Args;
use serde::Serialize;

use super::args::{KeyArgs, OutputArgs, SourceArgs};
use super::error::AuditError;
use super::record::EntryRecord;
use super::source::{AuditStore, load_keys, open_store};
use super::timefmt::format_secs;
use super::walk::walk;
use crate::oidc::pg_store::PgOidcStore;
use crate::oidc::sled_store::SledOidcStore;
use crate::oidc::store::OidcStore;
use crate::store::records::{TicketRecord, UserRecord};
use crate::store::{Store, Table, decode_json};

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The local `sub` (as inside apps see it) or the outside subject.
    #[arg(long, value_name = "SUBJECT")]
    pub user: String,
    /// Only this outside issuer (when one subject exists at several IdPs).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionLine {
    pub sid: String,
    pub auth_time: String,
    pub expires_at: String,
    pub amr: Vec<String>,
    pub clients: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyLine {
    pub id: String,
    pub client_id: String,
    pub sid: String,
    pub auth_time: String,
    pub expires_at: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    pub query: String,
    pub frames: Vec<EntryRecord>,
    pub users: Vec<UserRecord>,
    pub tickets: Vec<TicketRecord>,
    pub sessions: Vec<SessionLine>,
    pub token_families: Vec<FamilyLine>,
    /// Why sessions could not be read, if they could not.
    pub sessions_note: Option<String>,
}

pub fn show(args: &ShowArgs) -> Result<ShowReport, AuditError> {
    let base = load_keys(&args.source, &args.keys)?;
    let store = open_store(&args.source)?;
    let matches = |iss: &str, sub: &str| {
        args.issuer.as_deref().is_none_or(|i| i == iss)
            && (sub == args.user || local_subject(iss, sub) == args.user)
    };
    let mut frames = Vec::new();
    walk(&store, &base, "show", |w| {
        let r = EntryRecord::from_walked(w);
        if let (Some(iss), Some(sub)) = (&r.issuer, &r.subject)
            && r.local_sub.is_some()
            && matches(iss, sub)
        {
            frames.push(r);
        }
        Ok(())
    })?;
    let users: Vec<UserRecord> = scan::<UserRecord>(&store, Table::Users)?
        .into_iter()
        .filter(|u| matches(&u.issuer, &u.subject))
        .collect();
    let tickets: Vec<TicketRecord> = scan::<TicketRecord>(&store, Table::Tickets)?
        .into_iter()
        .filter(|t| matches(&t.issuer, &t.subject))
        .collect();
    let mut subs: Vec<String> = users.iter().map(|u| u.local_sub.clone()).collect();
    subs.extend(frames.iter().filter_map(|f| f.local_sub.clone()));
    subs.sort();
    subs.dedup();
    let (sessions, token_families, sessions_note) = match oidc_state(&store, &subs) {
        Ok((s, f)) => (s, f, None),
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    Ok(ShowReport {
        query: args.user.clone(),
        frames,
        users,
        tickets,
        sessions,
        token_families,
        sessions_note,
    })
}

fn scan<T: serde::de::DeserializeOwned>(
    store: &AuditStore,
    table: Table,
) -> Result<Vec<T>, AuditError> {
    let mut out = Vec::new();
    for row in store.scan_from(table, &[]) {
        let (k, v) = row?;
        out.push(decode_json(table, &k, &v)?);
    }
    Ok(out)
}

/// Sessions and token families the provider currently holds. Ended sessions are deleted by
/// the provider, so this is the present, not the history.
fn oidc_state(
    store: &AuditStore,
    subs: &[String],
) -> Result<(Vec<SessionLine>, Vec<FamilyLine>), AuditError> {
    match store {
        AuditStore::Sled(s) => {
            let oidc = SledOidcStore::open(s.db()).map_err(|e| AuditError::Oidc(e.to_string()))?;
            oidc_lines(&oidc, subs)
        }
        // Reads only (the connections are read-only besides).
        AuditStore::Pg(p) => oidc_lines(&PgOidcStore::new(p), subs),
    }
}

fn oidc_lines<O: OidcStore>(
    oidc: &O,
    subs: &[String],
) -> Result<(Vec<SessionLine>, Vec<FamilyLine>), AuditError> {
    let err = |e: crate::oidc::OidcError| AuditError::Oidc(e.to_string());
    let (mut sessions, mut families) = (Vec::new(), Vec::new());
    for sub in subs {
        for s in oidc.sessions_of(sub).map_err(err)? {
            sessions.push(SessionLine {
                sid: s.sid,
                auth_time: format_secs(s.auth_time),
                expires_at: format_secs(s.expires_at),
                amr: s.amr,
                clients: s.clients,
            });
        }
        for id in oidc.families_of_sub(sub).map_err(err)? {
            if let Some(f) = oidc.family(&id).map_err(err)? {
                families.push(FamilyLine {
                    id: f.id,
                    client_id: f.client_id,
                    sid: f.sid,
                    auth_time: format_secs(f.auth_time),
                    expires_at: format_secs(f.expires_at),
                    revoked: f.revoked,
                });
            }
        }
    }
    Ok((sessions, families))
}

pub fn render(r: &ShowReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "frames that touched {} ({}):", r.query, r.frames.len());
    for f in &r.frames {
        let _ = writeln!(out, "  {}", f.line());
    }
    for u in &r.users {
        let _ = writeln!(
            out,
            "current record: sub {} ({} {}): {}, valid until {}, last changed by seq {} (entry {}), {} frame(s) applied",
            u.local_sub,
            u.issuer,
            u.subject,
            match (u.revoked, u.ticket_only) {
                (true, _) => "REVOKED",
                (false, true) =>
                    "active, ticket-only (no Provision: valid until is its last code's expiry)",
                (false, false) => "active",
            },
            if u.valid_until == 0 {
                "(never provisioned)".to_owned()
            } else {
                format_secs(u.valid_until)
            },
            u.last.seq,
            u.last.log_index,
            u.applied_frames
        );
    }
    for t in &r.tickets {
        let _ = writeln!(
            out,
            "login ticket from seq {} (entry {}): expires {}, {}",
            t.seq,
            t.log_index,
            format_secs(t.expires_at),
            if t.used { "used" } else { "unused" }
        );
    }
    match &r.sessions_note {
        Some(note) => {
            let _ = writeln!(out, "login sessions: cannot be read: {note}");
        }
        None => {
            let _ = writeln!(
                out,
                "login sessions held now ({}; ended sessions are not kept):",
                r.sessions.len()
            );
            for s in &r.sessions {
                let _ = writeln!(
                    out,
                    "  sid {} logged in {} (amr {}), expires {}, clients {}",
                    s.sid,
                    s.auth_time,
                    s.amr.join(","),
                    s.expires_at,
                    s.clients.join(",")
                );
            }
            for f in &r.token_families {
                let _ = writeln!(
                    out,
                    "  token grant {} for client {} (session {}), since {}, until {}{}",
                    f.id,
                    f.client_id,
                    f.sid,
                    f.auth_time,
                    f.expires_at,
                    if f.revoked { ", REVOKED" } else { "" }
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "summary: {} frame(s), {} user record(s), {} ticket(s), {} live session(s) for {}",
        r.frames.len(),
        r.users.len(),
        r.tickets.len(),
        r.sessions.len(),
        r.query
    );
    out
}
