//! `audit events`: the OpenID provider's security event log (passkey enrolments, removals,
//! sign-ins, refused attempts, passkeys switched off by a Revoke), beside the frame log.
//! Text, or `--json` for JSON lines (one event per line, as stored).

use std::fmt::Write as _;

use clap::Args;

use super::args::SourceArgs;
use super::error::AuditError;
use super::source::{AuditStore, open_store};
use super::timefmt::format_secs;
use crate::oidc::passkey::events::json_line;
use crate::oidc::pg_store::PgOidcStore;
use crate::oidc::sled_store::SledOidcStore;
use crate::oidc::store::{OidcStore, SecurityEvent};

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only the events of this local `sub` (as inside apps see it).
    #[arg(long, value_name = "SUB")]
    pub user: Option<String>,
    /// Only events after this id (to continue an earlier export).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub after: u64,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Events read per store call.
const PAGE: usize = 1000;

fn all(oidc: &dyn OidcStore, a: &EventsArgs) -> Result<Vec<SecurityEvent>, AuditError> {
    let mut out = Vec::new();
    let mut after = a.after;
    loop {
        let page = oidc
            .events(after, PAGE)
            .map_err(|e| AuditError::Oidc(e.to_string()))?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let n = page.len();
        out.extend(
            page.into_iter()
                .filter(|e| a.user.as_ref().is_none_or(|u| e.sub.as_ref() == Some(u))),
        );
        if n < PAGE {
            break;
        }
    }
    Ok(out)
}

pub fn events(a: &EventsArgs) -> Result<String, AuditError> {
    let store = open_store(&a.source)?;
    let list = match &store {
        AuditStore::Sled(s) => {
            let oidc = SledOidcStore::open(s.db()).map_err(|e| AuditError::Oidc(e.to_string()))?;
            all(&oidc, a)?
        }
        AuditStore::Pg(p) => all(&PgOidcStore::new(p), a)?,
    };
    Ok(render(&list, a.json))
}

pub fn render(list: &[SecurityEvent], json: bool) -> String {
    let mut out = String::new();
    if json {
        for e in list {
            let _ = writeln!(out, "{}", json_line(e));
        }
        return out;
    }
    let _ = writeln!(out, "{} security event(s)", list.len());
    for e in list {
        let _ = writeln!(
            out,
            "#{} {} {} sub={} credential={} {}{}",
            e.id,
            format_secs(e.at),
            e.kind,
            e.sub.as_deref().unwrap_or("-"),
            e.credential.as_deref().unwrap_or("-"),
            e.detail.as_deref().unwrap_or(""),
            e.address
                .as_deref()
                .map(|a| format!(" from {a}"))
                .unwrap_or_default(),
        );
    }
    out
}
