//! One log entry as a flat, self-describing JSON object: what `audit export` writes and
//! `audit show` prints.

use airlock_protocol::message::{Body, Claims, KeyAnnounce, KeyRetire, local_subject};
use serde::Serialize;

use super::timefmt::{format_ms, format_secs};
use super::walk::Walked;

#[derive(Debug, Clone, Default, Serialize)]
pub struct EntryRecord {
    pub index: u64,
    pub seq: Option<u64>,
    pub signer_kid: Option<String>,
    /// Receiver wall clock, RFC 3339 UTC.
    pub received_at: Option<String>,
    pub received_at_ms: Option<u64>,
    /// `applied` or `no_effect` (authenticated but superseded).
    pub verdict: Option<&'static str>,
    pub entry_hash: Option<String>,
    /// SHA-256 of the Sign1: the sender's `prev`/`hash` for this frame.
    pub frame_hash: Option<String>,
    /// `ok`, or why the entry does not verify (then body fields are absent).
    pub signature: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain_problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    /// Provision: valid_until; LoginTicket: expires_at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Revoke reason, or what a key frame does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl EntryRecord {
    pub fn from_walked(w: &Walked) -> Self {
        let mut r = EntryRecord {
            index: w.index(),
            entry_hash: w.stored_hash.map(hex::encode),
            chain_problems: w.chain.iter().map(|f| f.kind().to_owned()).collect(),
            ..Default::default()
        };
        if let Some(e) = &w.entry {
            r.seq = Some(e.seq);
            r.signer_kid = Some(e.signer_kid.clone());
            r.received_at = Some(format_ms(e.received_at_ms));
            r.received_at_ms = Some(e.received_at_ms);
            r.verdict = Some(e.verdict.as_str());
            r.frame_hash = Some(hex::encode(e.frame_hash()));
        }
        let env = match &w.frame {
            Ok(env) => env,
            Err(f) => {
                r.signature = format!("{}: {}", f.kind(), f.describe());
                return r;
            }
        };
        r.signature = "ok".into();
        r.body_type = Some(env.body.kind());
        r.issued_at = Some(format_secs(env.issued_at));
        if let Some((iss, sub)) = env.body.identity() {
            r.issuer = Some(iss.to_owned());
            r.subject = Some(sub.to_owned());
            r.local_sub = Some(local_subject(iss, sub));
        }
        match &env.body {
            Body::Provision(p) => {
                r.approval(&p.approval);
                r.claims = Some(p.claims.clone());
                r.valid_until = Some(format_secs(p.valid_until));
            }
            Body::Revoke(v) => {
                r.approval(&v.approval);
                r.detail = Some(v.reason.clone());
            }
            Body::LoginTicket(t) => {
                r.approval(&t.approval);
                r.claims = Some(t.claims.clone());
                r.valid_until = Some(format_secs(t.expires_at));
            }
            Body::KeyAnnounce(KeyAnnounce::Signer {
                kid, not_before, ..
            }) => {
                r.detail = Some(format!(
                    "announce signer {kid} from {}",
                    format_secs(*not_before)
                ));
            }
            Body::KeyAnnounce(KeyAnnounce::Link { kid, not_before }) => {
                r.detail = Some(format!(
                    "announce link key {kid} from {}",
                    format_secs(*not_before)
                ));
            }
            Body::KeyRetire(KeyRetire::Signer { kid }) => {
                r.detail = Some(format!("retire signer {kid}"));
            }
            Body::KeyRetire(KeyRetire::Link { kid }) => {
                r.detail = Some(format!("retire link key {kid}"));
            }
            Body::Heartbeat(h) => {
                r.detail = Some(format!(
                    "session {:016x}, every {} s",
                    h.session_id, h.interval_secs
                ));
            }
            Body::IdpMirror(m) => {
                r.issuer = Some(m.issuer.clone());
                r.detail = Some(format!("fetched {}", format_secs(m.fetched_at)));
            }
        }
        r
    }

    fn approval(&mut self, a: &airlock_protocol::message::Approval) {
        self.approver = Some(a.approver.clone());
        self.approved_at = Some(format_secs(a.approved_at));
        self.ticket_ref = Some(a.ticket_ref.clone());
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let mut s = format!(
            "#{} {} {} seq {} by {}",
            self.index,
            self.received_at.as_deref().unwrap_or("?"),
            self.body_type.unwrap_or("?"),
            self.seq.map_or_else(|| "?".into(), |q| q.to_string()),
            self.signer_kid.as_deref().unwrap_or("?"),
        );
        if let Some(v) = self.verdict {
            s.push_str(&format!(" [{v}]"));
        }
        if let Some(a) = &self.approver {
            s.push_str(&format!(
                "; approved by {a} at {} ({})",
                self.approved_at.as_deref().unwrap_or("?"),
                self.ticket_ref.as_deref().unwrap_or("")
            ));
        }
        if let Some(v) = &self.valid_until {
            s.push_str(&format!("; valid until {v}"));
        }
        if let Some(d) = &self.detail {
            s.push_str(&format!("; {d}"));
        }
        if self.signature != "ok" {
            s.push_str(&format!("; DOES NOT VERIFY: {}", self.signature));
        }
        s
    }
}
