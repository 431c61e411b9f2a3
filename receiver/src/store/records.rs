//! What the identity store holds, as serialisable records (JSON values in the store).
//!
//! JSON, not CBOR: these bytes never cross the diode, and keeping serde_cbor to the
//! protocol crate's one codec module is a rule.

use std::collections::{BTreeMap, BTreeSet};

use airlock_protocol::message::{Approval, Claims};
use serde::{Deserialize, Serialize};

/// Where a user's state came from: the last frame that changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub signer_kid: String,
    pub seq: u64,
    pub issued_at: u64,
    pub log_index: u64,
}

impl Provenance {
    /// Whether a frame (kid, seq, issued_at) is older than this provenance and must not
    /// override it. Same signer: seq order. Different signers: issue time, ties go to the later
    /// arrival (log order).
    pub fn supersedes(&self, kid: &str, seq: u64, issued_at: u64) -> bool {
        if self.signer_kid == kid {
            seq < self.seq
        } else {
            issued_at < self.issued_at
        }
    }
}

/// A provisioned (or revoked) outside identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The local `sub`: `local_subject(issuer, subject)`.
    pub local_sub: String,
    pub issuer: String,
    pub subject: String,
    pub claims: Claims,
    pub approval: Approval,
    pub valid_until: u64,
    /// Seq of the Provision or LoginTicket that created or last updated the user.
    pub provisioned_seq: u64,
    pub revoked: bool,
    /// The last frame that changed this record (Provision, Revoke or LoginTicket).
    pub last: Provenance,
    /// How many frames changed this record: with the log, proves each was applied once.
    pub applied_frames: u64,
    /// Created by a LoginTicket and admitted by no Provision since: `valid_until` is then
    /// the last ticket's code expiry, not an approval window. Written only when true, so a
    /// provisioned user's record reads as it did before this mark existed; a record
    /// written before it counts as provisioned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ticket_only: bool,
}

/// A just-in-time login ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub code_hash: String,
    pub issuer: String,
    pub subject: String,
    pub claims: Claims,
    pub approval: Approval,
    pub expires_at: u64,
    pub seq: u64,
    pub log_index: u64,
    /// Set once by the OpenID provider; never by the ingest (a re-sent ticket keeps it).
    pub used: bool,
}

/// One applied Revoke frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub local_sub: String,
    pub issuer: String,
    pub subject: String,
    pub approval: Approval,
    pub reason: String,
    pub signer_kid: String,
    pub seq: u64,
    pub log_index: u64,
}

/// An outside IdP's discovery document and JWKS, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRecord {
    pub issuer: String,
    pub discovery: Vec<u8>,
    pub jwks: Vec<u8>,
    pub fetched_at: u64,
    pub seq: u64,
    pub log_index: u64,
}

/// The latest heartbeat of one signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRecord {
    pub signer_kid: String,
    pub seq: u64,
    pub session_id: u64,
    pub interval_secs: u32,
    pub issued_at: u64,
    pub received_at_ms: u64,
    pub log_index: u64,
}

/// A signer key added over the link by KeyAnnounce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedSigner {
    /// Raw Ed25519 public key, hex.
    pub public_key: String,
    pub not_before: u64,
    /// The signer that vouched for it, and where.
    pub announced_by: String,
    pub log_index: u64,
}

/// Key changes that arrived over the link (on top of the configured trust).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub signers: BTreeMap<String, AnnouncedSigner>,
    pub retired_signers: BTreeSet<String>,
    /// Link kid -> not_before of its announced activation (the key itself comes on paper).
    pub link_activations: BTreeMap<u32, u64>,
    pub retired_links: BTreeSet<u32>,
    /// The KeyRetire frame of each retired signer kid (the latest), for `trust list` and
    /// for telling which retirement an operator's reinstatement lifted.
    #[serde(default)]
    pub signer_retired_by: BTreeMap<String, Provenance>,
    #[serde(default)]
    pub link_retired_by: BTreeMap<u32, Provenance>,
}

/// Missing seqs of one signer: everything in 1..=highest that did not arrive, except the
/// seqs just below a chain start (a frame whose prev is the genesis hash), which the sender
/// never sealed: a new chain (a new outbox or a new key) starts at a clock-derived seq.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerGaps {
    pub highest: u64,
    /// Disjoint, sorted, inclusive ranges.
    pub missing: Vec<(u64, u64)>,
}

impl SignerGaps {
    /// Records that `seq` arrived.
    pub fn saw(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.highest {
            // seq > highest >= 0, so highest + 1 <= seq cannot overflow.
            if seq - self.highest > 1 {
                self.missing.push((self.highest + 1, seq - 1));
            }
            self.highest = seq;
            return;
        }
        let Some(pos) = self.missing.iter().position(|&(a, b)| a <= seq && seq <= b) else {
            return;
        };
        let (a, b) = self.missing.remove(pos);
        let mut at = pos;
        if a < seq {
            self.missing.insert(at, (a, seq - 1));
            at += 1;
        }
        if seq < b {
            self.missing.insert(at, (seq + 1, b));
        }
    }

    /// Records that `seq`, the first frame of a chain, arrived: the seqs between the
    /// previous chain's last frame and it are no gap.
    pub fn saw_chain_start(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.highest {
            self.highest = seq;
            return;
        }
        // Later frames of its chain came first and opened a gap down to the previous chain's
        // end: only the part above the chain start is missing.
        let Some(pos) = self.missing.iter().position(|&(a, b)| a <= seq && seq <= b) else {
            return;
        };
        let (_, b) = self.missing.remove(pos);
        if seq < b {
            self.missing.insert(pos, (seq + 1, b));
        }
    }

    pub fn missing_count(&self) -> u64 {
        // Saturating: a signer may jump to an absurd seq; counting must not overflow.
        self.missing.iter().fold(0u64, |n, &(a, b)| {
            n.saturating_add(b.saturating_sub(a).saturating_add(1))
        })
    }
}

/// Gap state of every signer.
pub type GapState = BTreeMap<String, SignerGaps>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_only_mark_is_written_only_when_set() {
        let old = r#"{"local_sub":"s","issuer":"i","subject":"u","claims":{},"approval":{"approver":"a","approved_at":1,"ticket_ref":"t"},"valid_until":5,"provisioned_seq":1,"revoked":false,"last":{"signer_kid":"k","seq":1,"issued_at":1,"log_index":0},"applied_frames":1}"#;
        let mut u: UserRecord = serde_json::from_str(old).unwrap();
        assert!(
            !u.ticket_only,
            "a record from before the mark counts as provisioned"
        );
        let bytes = serde_json::to_vec(&u).unwrap();
        assert_eq!(
            bytes,
            old.as_bytes(),
            "a provisioned user's bytes are unchanged"
        );
        u.ticket_only = true;
        let text = serde_json::to_string(&u).unwrap();
        assert!(text.ends_with(r#""ticket_only":true}"#), "{text}");
        assert_eq!(serde_json::from_str::<UserRecord>(&text).unwrap(), u);
    }

    #[test]
    fn gaps_open_and_close() {
        let mut g = SignerGaps::default();
        for s in [1, 2, 5, 9, 7] {
            g.saw(s);
        }
        assert_eq!(g.missing, vec![(3, 4), (6, 6), (8, 8)]);
        g.saw(3);
        g.saw(6);
        assert_eq!(g.missing, vec![(4, 4), (8, 8)]);
        assert_eq!(g.missing_count(), 2);
        g.saw(4);
        g.saw(8);
        g.saw(8);
        assert!(g.missing.is_empty());
        assert_eq!(g.highest, 9);
        g.saw(u64::MAX);
        g.saw(3);
        assert_eq!(g.missing_count(), u64::MAX - 10);
    }

    #[test]
    fn a_chain_start_opens_no_gap_below_it() {
        let base = 1_800_000_000_000 * 1024;
        let mut g = SignerGaps::default();
        for s in [1, 2, 4] {
            g.saw(s);
        }
        // The outbox was lost: a new chain at a clock base, its start first.
        g.saw_chain_start(base);
        g.saw(base + 2);
        assert_eq!(g.missing, vec![(3, 3), (base + 1, base + 1)]);
        // A new key's chain whose first frames arrive after later ones.
        let mut late = SignerGaps::default();
        late.saw(base + 3);
        assert_eq!(late.missing, vec![(1, base + 2)]);
        late.saw_chain_start(base);
        assert_eq!(late.missing, vec![(base + 1, base + 2)]);
        late.saw(base + 1);
        late.saw(base + 2);
        assert!(late.missing.is_empty());
        assert_eq!(late.highest, base + 3);
    }

    #[test]
    fn provenance_order() {
        let p = Provenance {
            signer_kid: "a".into(),
            seq: 10,
            issued_at: 100,
            log_index: 3,
        };
        assert!(p.supersedes("a", 9, 200));
        assert!(!p.supersedes("a", 11, 50));
        assert!(p.supersedes("b", 99, 99));
        assert!(!p.supersedes("b", 1, 100));
    }
}
