//! The state machine: how an accepted frame changes the store.
//!
//! One function, [`apply_batch`], used by the live ingest and by [`crate::replay`]
//! (`replay_log_into`), so the store always equals a replay of the log. It runs inside one
//! store transaction: the log append and every state change of a frame commit together,
//! and it is idempotent (a frame whose hash or (signer, seq) is already logged is skipped).

use airlock_protocol::keys::SignerPublicKey;
use airlock_protocol::merkle::Frontier;
use airlock_protocol::message::{
    Body, Envelope, Heartbeat, IdpMirror, KeyAnnounce, KeyRetire, LoginTicket, Provision, Revoke,
    local_subject,
};
use airlock_protocol::replay::ReplayState;
use sha2::{Digest, Sha256};

use crate::frame_log::{GENESIS, LogEntry, Verdict, tree_leaf};
use crate::store::records::{
    AnnouncedSigner, GapState, HeartbeatRecord, KeySet, MirrorRecord, Provenance, RevocationRecord,
    TicketRecord, UserRecord,
};
use crate::store::{SeqRecord, StateTx, StateTxExt, StoreError, Table, TxError, meta, seq_key};

/// A frame that passed every check and is about to be logged and applied.
#[derive(Debug, Clone)]
pub struct AcceptedFrame {
    pub envelope: Envelope,
    pub sign1: Vec<u8>,
    /// SHA-256 of `sign1`.
    pub hash: [u8; 32],
    pub received_at_ms: u64,
}

impl AcceptedFrame {
    pub fn new(envelope: Envelope, sign1: Vec<u8>, received_at_ms: u64) -> Self {
        let hash = Sha256::digest(&sign1).into();
        Self {
            envelope,
            sign1,
            hash,
            received_at_ms,
        }
    }

    pub fn kid(&self) -> &str {
        &self.envelope.sender_kid
    }
}

/// The log head and the small pieces of state every frame touches, loaded once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub next_index: u64,
    pub head: [u8; 32],
    pub replay: ReplayState,
    pub keys: KeySet,
    pub gaps: GapState,
    /// The Merkle tree over the log, when the store keeps one (see `meta::TREE`).
    pub tree: Option<Frontier>,
}

impl Ledger {
    pub fn load(tx: &dyn StateTx) -> Result<Self, TxError> {
        let (next_index, head) = match tx.get(Table::Meta, meta::HEAD)? {
            None => (0, GENESIS),
            Some(v) => decode_head(&v).map_err(TxError::Store)?,
        };
        let replay = match tx.get(Table::Meta, meta::REPLAY)? {
            None => ReplayState::new(),
            Some(v) => ReplayState::from_bytes(&v).map_err(|e| {
                TxError::Store(StoreError::Corrupt {
                    table: "meta",
                    key: "replay_state".into(),
                    detail: e.to_string(),
                })
            })?,
        };
        let keys = tx.get_json(Table::Meta, meta::KEYS)?.unwrap_or_default();
        let gaps = tx.get_json(Table::Meta, meta::GAPS)?.unwrap_or_default();
        let tree = match tx.get(Table::Meta, meta::TREE)? {
            None => None,
            Some(v) => Some(decode_tree(&v, next_index).map_err(TxError::Store)?),
        };
        Ok(Self {
            next_index,
            head,
            replay,
            keys,
            gaps,
            tree,
        })
    }

    fn save(&self, tx: &dyn StateTx, keys_changed: bool) -> Result<(), TxError> {
        let mut head = self.next_index.to_be_bytes().to_vec();
        head.extend_from_slice(&self.head);
        tx.put(Table::Meta, meta::HEAD, &head)?;
        tx.put(Table::Meta, meta::REPLAY, &self.replay.to_bytes())?;
        tx.put_json(Table::Meta, meta::GAPS, &self.gaps)?;
        if keys_changed {
            tx.put_json(Table::Meta, meta::KEYS, &self.keys)?;
        }
        if let Some(tree) = &self.tree {
            tx.put(Table::Meta, meta::TREE, &tree.to_bytes())?;
        }
        Ok(())
    }
}

/// The stored tree frontier, which must cover exactly the `entries` of the log.
pub fn decode_tree(v: &[u8], entries: u64) -> Result<Frontier, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "meta",
        key: "tree_frontier".into(),
        detail,
    };
    let tree = Frontier::from_bytes(v).map_err(|e| corrupt(e.to_string()))?;
    if tree.size() != entries {
        return Err(corrupt(format!(
            "the Merkle tree covers {} entries but the log has {entries}: the tree is stale; restart the receiver with [transparency] enabled to rebuild it from the log",
            tree.size()
        )));
    }
    Ok(tree)
}

pub fn decode_head(v: &[u8]) -> Result<(u64, [u8; 32]), StoreError> {
    let corrupt = || StoreError::Corrupt {
        table: "meta",
        key: "log_head".into(),
        detail: "not 40 bytes".into(),
    };
    let idx: [u8; 8] = v
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(corrupt)?;
    let head: [u8; 32] = v
        .get(8..40)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(corrupt)?;
    if v.len() != 40 {
        return Err(corrupt());
    }
    Ok((u64::from_be_bytes(idx), head))
}

/// What happened to one frame of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Logged(Applied),
    /// Its hash is already in the log.
    Duplicate,
    /// Another frame with its (signer, seq) is already in the log.
    Replay,
}

/// A logged frame and the effects the daemon acts on after the commit is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub verdict: Verdict,
    pub kind: &'static str,
    pub signer_kid: String,
    pub seq: u64,
    /// Local sub of a user a Revoke just revoked (the provider kills its sessions).
    pub revoked_sub: Option<String>,
    /// The trusted key set changed.
    pub keys_changed: bool,
    pub heartbeat: Option<HeartbeatRecord>,
}

/// Logs and applies `frames` in order inside `tx`; returns one outcome per frame and the
/// ledger after the batch.
pub fn apply_batch(
    tx: &dyn StateTx,
    frames: &[AcceptedFrame],
) -> Result<(Vec<Outcome>, Ledger), TxError> {
    prefetch(tx, frames)?;
    let mut ledger = Ledger::load(tx)?;
    let mut outcomes = Vec::with_capacity(frames.len());
    let mut keys_changed = false;
    for frame in frames {
        let outcome = apply_one(tx, &mut ledger, frame)?;
        if let Outcome::Logged(a) = &outcome {
            keys_changed |= a.keys_changed;
        }
        outcomes.push(outcome);
    }
    ledger.save(tx, keys_changed)?;
    Ok((outcomes, ledger))
}

/// Reads ahead every key the batch will look up: the ledger, each frame's seq and the user,
/// ticket or mirror it touches. On PostgreSQL that is one round trip per table for the whole
/// batch instead of two or three per frame.
fn prefetch(tx: &dyn StateTx, frames: &[AcceptedFrame]) -> Result<(), TxError> {
    let ledger = [meta::HEAD, meta::REPLAY, meta::KEYS, meta::GAPS, meta::TREE];
    tx.prefetch(Table::Meta, &ledger.map(|k| k.to_vec()))?;
    let mut seqs = Vec::with_capacity(frames.len());
    let mut users = Vec::with_capacity(frames.len());
    let mut tickets = Vec::new();
    let mut mirrors = Vec::new();
    for f in frames {
        let env = &f.envelope;
        seqs.push(seq_key(&env.sender_kid, env.seq));
        match &env.body {
            Body::Provision(p) => users.push(local_subject(&p.issuer, &p.subject).into_bytes()),
            Body::Revoke(r) => users.push(local_subject(&r.issuer, &r.subject).into_bytes()),
            Body::LoginTicket(t) => {
                tickets.push(t.locator.to_vec());
                users.push(local_subject(&t.issuer, &t.subject).into_bytes());
            }
            Body::IdpMirror(m) => mirrors.push(m.issuer.as_bytes().to_vec()),
            Body::KeyAnnounce(_) | Body::KeyRetire(_) | Body::Heartbeat(_) => {}
        }
    }
    for (table, keys) in [
        (Table::Seqs, seqs),
        (Table::Users, users),
        (Table::Tickets, tickets),
        (Table::Mirrors, mirrors),
    ] {
        if !keys.is_empty() {
            tx.prefetch(table, &keys)?;
        }
    }
    Ok(())
}

fn apply_one(
    tx: &dyn StateTx,
    ledger: &mut Ledger,
    frame: &AcceptedFrame,
) -> Result<Outcome, TxError> {
    let env = &frame.envelope;
    if env.seq == 0 {
        return Ok(Outcome::Replay);
    }
    let skey = seq_key(&env.sender_kid, env.seq);
    if let Some(v) = tx.get(Table::Seqs, &skey)? {
        // The frame hash covers the signer and the seq: the same hash is the same frame.
        let logged = SeqRecord::decode(&v).map_err(TxError::Store)?;
        return Ok(if logged.frame_hash == frame.hash {
            Outcome::Duplicate
        } else {
            Outcome::Replay
        });
    }
    let index = ledger.next_index;
    let mut applied = Applied {
        index,
        verdict: Verdict::Applied,
        kind: env.body.kind(),
        signer_kid: env.sender_kid.clone(),
        seq: env.seq,
        revoked_sub: None,
        keys_changed: false,
        heartbeat: None,
    };
    let at = Provenance {
        signer_kid: env.sender_kid.clone(),
        seq: env.seq,
        issued_at: env.issued_at,
        log_index: index,
    };
    let effect = match &env.body {
        Body::Provision(p) => provision(tx, p, &at)?,
        Body::Revoke(r) => revoke(tx, r, &at, &mut applied)?,
        Body::LoginTicket(t) => login_ticket(tx, t, &at)?,
        Body::KeyAnnounce(k) => key_announce(&mut ledger.keys, k, &at, &mut applied),
        Body::KeyRetire(k) => key_retire(&mut ledger.keys, k, &at, &mut applied),
        Body::Heartbeat(h) => heartbeat(tx, h, env, frame.received_at_ms, index, &mut applied)?,
        Body::IdpMirror(m) => mirror(tx, m, &at)?,
    };
    if !effect {
        applied.verdict = Verdict::NoEffect;
    }
    let entry = LogEntry {
        index,
        received_at_ms: frame.received_at_ms,
        verdict: applied.verdict,
        signer_kid: env.sender_kid.clone(),
        seq: env.seq,
        sign1: frame.sign1.clone(),
        prev_entry_hash: ledger.head,
    };
    let (value, entry_hash) = entry
        .encode()
        .map_err(|e| TxError::Store(StoreError::Apply(e.to_string())))?;
    tx.put(Table::Log, &LogEntry::key(index), &value)?;
    let seq_record = SeqRecord {
        index,
        frame_hash: frame.hash,
    };
    tx.put(Table::Seqs, &skey, &seq_record.encode())?;
    // A seq below the replay window (an old gap being filled) is already guarded by Seqs.
    let _ = ledger.replay.accept(&env.sender_kid, env.seq);
    let gaps = ledger.gaps.entry(env.sender_kid.clone()).or_default();
    if env.prev == airlock_protocol::chain::GENESIS {
        gaps.saw_chain_start(env.seq);
    } else {
        gaps.saw(env.seq);
    }
    ledger.next_index = index + 1;
    ledger.head = entry_hash;
    if let Some(tree) = ledger.tree.as_mut() {
        tree.append_leaf_hash(tree_leaf(&entry_hash));
    }
    Ok(Outcome::Logged(applied))
}

fn provision(tx: &dyn StateTx, p: &Provision, at: &Provenance) -> Result<bool, TxError> {
    let sub = local_subject(&p.issuer, &p.subject);
    let old: Option<UserRecord> = tx.get_json(Table::Users, sub.as_bytes())?;
    if old
        .as_ref()
        .is_some_and(|u| u.last.supersedes(&at.signer_kid, at.seq, at.issued_at))
    {
        return Ok(false);
    }
    let user = UserRecord {
        local_sub: sub.clone(),
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
        claims: p.claims.clone(),
        approval: p.approval.clone(),
        valid_until: p.valid_until,
        provisioned_seq: at.seq,
        revoked: false,
        last: at.clone(),
        applied_frames: old.map_or(0, |u| u.applied_frames) + 1,
        ticket_only: false,
    };
    tx.put_json(Table::Users, sub.as_bytes(), &user)?;
    Ok(true)
}

fn revoke(
    tx: &dyn StateTx,
    r: &Revoke,
    at: &Provenance,
    applied: &mut Applied,
) -> Result<bool, TxError> {
    let sub = local_subject(&r.issuer, &r.subject);
    let old: Option<UserRecord> = tx.get_json(Table::Users, sub.as_bytes())?;
    if old
        .as_ref()
        .is_some_and(|u| u.last.supersedes(&at.signer_kid, at.seq, at.issued_at))
    {
        return Ok(false);
    }
    // A Revoke for an unknown user still leaves a tombstone, so that an older Provision
    // arriving later (resend, carousel) cannot bring the user back.
    let user = match old {
        Some(mut u) => {
            u.revoked = true;
            u.last = at.clone();
            u.applied_frames += 1;
            u
        }
        None => UserRecord {
            local_sub: sub.clone(),
            issuer: r.issuer.clone(),
            subject: r.subject.clone(),
            claims: Default::default(),
            approval: r.approval.clone(),
            valid_until: 0,
            provisioned_seq: 0,
            revoked: true,
            last: at.clone(),
            applied_frames: 1,
            ticket_only: false,
        },
    };
    tx.put_json(Table::Users, sub.as_bytes(), &user)?;
    let rec = RevocationRecord {
        local_sub: sub.clone(),
        issuer: r.issuer.clone(),
        subject: r.subject.clone(),
        approval: r.approval.clone(),
        reason: r.reason.clone(),
        signer_kid: at.signer_kid.clone(),
        seq: at.seq,
        log_index: at.log_index,
    };
    tx.put_json(Table::Revocations, &at.log_index.to_be_bytes(), &rec)?;
    applied.revoked_sub = Some(sub);
    Ok(true)
}

/// A ticket is stored once (a re-sent ticket never resets `used`); it also creates or
/// refreshes the user's claims, but never lifts a revocation (that takes a Provision).
/// A user it creates is marked ticket-only (their `valid_until` is the code's expiry, no
/// approval window); a ticket never changes that mark, only a Provision clears it.
fn login_ticket(tx: &dyn StateTx, t: &LoginTicket, at: &Provenance) -> Result<bool, TxError> {
    let mut changed = false;
    if !tx.contains(Table::Tickets, &t.locator)? {
        let rec = TicketRecord {
            code_hash: t.code_hash.clone(),
            issuer: t.issuer.clone(),
            subject: t.subject.clone(),
            claims: t.claims.clone(),
            approval: t.approval.clone(),
            expires_at: t.expires_at,
            seq: at.seq,
            log_index: at.log_index,
            used: false,
        };
        tx.put_json(Table::Tickets, &t.locator, &rec)?;
        changed = true;
    }
    let sub = local_subject(&t.issuer, &t.subject);
    let old: Option<UserRecord> = tx.get_json(Table::Users, sub.as_bytes())?;
    if old
        .as_ref()
        .is_some_and(|u| u.last.supersedes(&at.signer_kid, at.seq, at.issued_at))
    {
        return Ok(changed);
    }
    let user = match old {
        Some(mut u) => {
            u.claims = t.claims.clone();
            u.valid_until = u.valid_until.max(t.expires_at);
            u.provisioned_seq = at.seq;
            u.last = at.clone();
            u.applied_frames += 1;
            u
        }
        None => UserRecord {
            local_sub: sub.clone(),
            issuer: t.issuer.clone(),
            subject: t.subject.clone(),
            claims: t.claims.clone(),
            approval: t.approval.clone(),
            valid_until: t.expires_at,
            provisioned_seq: at.seq,
            revoked: false,
            last: at.clone(),
            applied_frames: 1,
            ticket_only: true,
        },
    };
    tx.put_json(Table::Users, sub.as_bytes(), &user)?;
    Ok(true)
}

fn key_announce(
    keys: &mut KeySet,
    k: &KeyAnnounce,
    at: &Provenance,
    applied: &mut Applied,
) -> bool {
    match k {
        KeyAnnounce::Signer {
            kid,
            public_key,
            not_before,
        } => {
            // The kid is derived from the key: an announcement whose kid does not match is refused.
            let derived = SignerPublicKey::from_raw(public_key).map(|p| p.kid).ok();
            if derived.as_deref() != Some(kid.as_str()) || keys.retired_signers.contains(kid) {
                return false;
            }
            let new = AnnouncedSigner {
                public_key: hex::encode(public_key),
                not_before: *not_before,
                announced_by: at.signer_kid.clone(),
                log_index: at.log_index,
            };
            if keys
                .signers
                .get(kid)
                .is_some_and(|s| s.public_key == new.public_key && s.not_before == new.not_before)
            {
                return false;
            }
            keys.signers.insert(kid.clone(), new);
        }
        KeyAnnounce::Link { kid, not_before } => {
            if keys.retired_links.contains(kid)
                || keys.link_activations.get(kid) == Some(not_before)
            {
                return false;
            }
            keys.link_activations.insert(*kid, *not_before);
        }
    }
    applied.keys_changed = true;
    true
}

fn key_retire(keys: &mut KeySet, k: &KeyRetire, at: &Provenance, applied: &mut Applied) -> bool {
    let changed = match k {
        // Every KeyRetire takes effect, a repeated one too: it bans again a kid that an
        // operator reinstated after the earlier retirement.
        KeyRetire::Signer { kid } => {
            keys.signers.remove(kid);
            keys.retired_signers.insert(kid.clone());
            keys.signer_retired_by.insert(kid.clone(), at.clone());
            true
        }
        KeyRetire::Link { kid } => {
            keys.link_activations.remove(kid);
            keys.retired_links.insert(*kid);
            keys.link_retired_by.insert(*kid, at.clone());
            true
        }
    };
    applied.keys_changed |= changed;
    changed
}

fn heartbeat(
    tx: &dyn StateTx,
    h: &Heartbeat,
    env: &Envelope,
    received_at_ms: u64,
    index: u64,
    applied: &mut Applied,
) -> Result<bool, TxError> {
    let mut key = meta::HEARTBEAT_PREFIX.to_vec();
    key.extend_from_slice(env.sender_kid.as_bytes());
    let old: Option<HeartbeatRecord> = tx.get_json(Table::Meta, &key)?;
    let rec = HeartbeatRecord {
        signer_kid: env.sender_kid.clone(),
        seq: env.seq,
        session_id: h.session_id,
        interval_secs: h.interval_secs,
        issued_at: env.issued_at,
        received_at_ms,
        log_index: index,
    };
    applied.heartbeat = Some(rec.clone());
    if old.is_some_and(|o| o.seq > env.seq) {
        return Ok(false);
    }
    tx.put_json(Table::Meta, &key, &rec)?;
    Ok(true)
}

fn mirror(tx: &dyn StateTx, m: &IdpMirror, at: &Provenance) -> Result<bool, TxError> {
    let old: Option<MirrorRecord> = tx.get_json(Table::Mirrors, m.issuer.as_bytes())?;
    if old.is_some_and(|o| o.fetched_at > m.fetched_at) {
        return Ok(false);
    }
    let rec = MirrorRecord {
        issuer: m.issuer.clone(),
        discovery: m.discovery.clone(),
        jwks: m.jwks.clone(),
        fetched_at: m.fetched_at,
        seq: at.seq,
        log_index: at.log_index,
    };
    tx.put_json(Table::Mirrors, m.issuer.as_bytes(), &rec)?;
    Ok(true)
}
