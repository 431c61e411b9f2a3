//! What `gaps` and `users` print, from the store or from a running daemon's ops listener.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::store::records::{GapState, UserRecord};
use crate::store::{Store, StoreError, Table, decode_json, meta};

/// The gap report: missing seq ranges per signer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapReport {
    pub signers: GapState,
}

impl GapReport {
    pub fn from_store<S: Store>(store: &S) -> Result<Self, StoreError> {
        let signers = match store.get(Table::Meta, meta::GAPS)? {
            Some(v) => decode_json(Table::Meta, meta::GAPS, &v)?,
            None => GapState::default(),
        };
        Ok(Self { signers })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.values().all(|g| g.missing.is_empty())
    }

    /// For the operator to carry to the sender on paper.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.signers.is_empty() {
            out.push_str("no frames received yet\n");
            return out;
        }
        for (kid, g) in &self.signers {
            let _ = writeln!(
                out,
                "signer {kid}: highest seq {}, {} missing in {} range(s)",
                g.highest,
                g.missing_count(),
                g.missing.len()
            );
            for (a, b) in &g.missing {
                let _ = writeln!(
                    out,
                    "  missing {a}..={b}    airlock-sender resend --from {a} --to {b}"
                );
            }
        }
        if self.is_empty() {
            out.push_str(
                "no gaps: every seq up to the latest one received (heartbeats included) is here\n",
            );
        }
        out
    }
}

/// All users, in local-sub order.
pub fn users_from_store<S: Store>(store: &S) -> Result<Vec<UserRecord>, StoreError> {
    store
        .scan_from(Table::Users, &[])
        .map(|r| r.and_then(|(k, v)| decode_json(Table::Users, &k, &v)))
        .collect()
}

/// The `users` table for a person.
pub fn render_users(users: &[UserRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<8}  {:<20}  {:<12}  {:<30}  issuer / subject",
        "local sub", "status", "valid until", "provenance", "email"
    );
    for u in users {
        // A ticket-only person's "valid until" is their last transfer code's expiry.
        let status = match (u.revoked, u.ticket_only) {
            (true, _) => "revoked",
            (false, true) => "ticket",
            (false, false) => "active",
        };
        let _ = writeln!(
            out,
            "{:<32}  {:<8}  {:<20}  {:<12}  {:<30}  {} / {}",
            u.local_sub,
            status,
            crate::audit::timefmt::format_secs(u.valid_until),
            format!("seq {}", u.last.seq),
            u.claims.email.as_deref().unwrap_or("-"),
            u.issuer,
            u.subject
        );
    }
    let _ = writeln!(out, "{} user(s)", users.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::Provenance;

    #[test]
    fn users_show_dates_a_person_reads() {
        let u = UserRecord {
            local_sub: "s1".into(),
            issuer: "https://idp".into(),
            subject: "alice".into(),
            claims: Default::default(),
            approval: Default::default(),
            valid_until: 1_800_000_000,
            provisioned_seq: 3,
            revoked: false,
            last: Provenance {
                signer_kid: "k".into(),
                seq: 3,
                issued_at: 1,
                log_index: 0,
            },
            applied_frames: 1,
            ticket_only: false,
        };
        let text = render_users(&[u]);
        assert!(text.contains("2027-01-15T08:00:00Z"), "{text}");
        assert!(!text.contains("1800000000"), "{text}");
    }
}
