//! The provider handle: state, identity checks, session ends. The HTTP listener is
//! [`crate::oidc::server`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::oidc::budget::{Budget, Refused};
use crate::oidc::config::OidcConfig;
use crate::oidc::directory::IdentityDirectory;
use crate::oidc::error::OidcError;
use crate::oidc::keys::KeySet;
use crate::oidc::metrics::Counter;
use crate::oidc::metrics::OidcMetrics;
use crate::oidc::sled_store::SledOidcStore;
use crate::oidc::store::{IdentitySnapshot, OidcStore, Session};
use crate::oidc::util::Clock;
use crate::oidc::{backchannel, tokens};

/// What the daemon hands the provider.
#[derive(Clone)]
pub struct OidcDeps {
    /// The daemon's database; the provider uses trees prefixed `oidc_`.
    pub db: sled::Db,
    /// Users and tickets, filled by ingest.
    pub directory: Arc<dyn IdentityDirectory>,
    /// The system clock in production; tests move a manual one.
    pub clock: Clock,
}

impl OidcDeps {
    pub fn new(db: sled::Db, directory: Arc<dyn IdentityDirectory>) -> Self {
        OidcDeps {
            db,
            directory,
            clock: Clock::system(),
        }
    }
}

/// A cheap, cloneable handle on the running provider.
#[derive(Clone)]
pub struct Provider(Arc<Inner>);

struct Inner {
    pub config: OidcConfig,
    pub store: Arc<dyn OidcStore>,
    pub directory: Arc<dyn IdentityDirectory>,
    pub keys: KeySet,
    pub clock: Clock,
    /// client_id -> SHA-256 of the secret that last passed argon2 (argon2 once per client).
    pub secret_cache: Mutex<HashMap<String, String>>,
    /// client_id -> the turn of its first secret verification (configured clients only).
    pub client_auth_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// SHA-256 of an access token -> its verified claims and expiry: resource servers
    /// introspect the same token many times; the signature is checked once.
    pub verified: Mutex<HashMap<[u8; 32], (Claims, u64)>>,
    pub metrics: OidcMetrics,
    /// The WebAuthn relying party when `[oidc.passkeys] enabled`.
    pub passkeys: Option<crate::oidc::passkey::rp::RelyingParty>,
    /// Authorization requests waiting for a login, by client address.
    pub pending_budget: Budget,
    /// Codes issued without a fresh login, by session.
    pub code_budget: Budget,
    /// Pushed authorization requests waiting for their `/authorize`, by client address.
    pub push_budget: Budget,
    /// Device authorizations waiting for their person, by client address.
    pub device_budget: Budget,
    /// Back-channel logout delivery (the worker is [`crate::oidc::outbox`]).
    pub outbox: backchannel::Outbox,
    /// Argon2 slots: transfer codes and client secrets apart.
    pub argon2: crate::oidc::login::Argon2Budgets,
}

/// Claims of a verified JWT.
pub(crate) type Claims = Arc<serde_json::Map<String, serde_json::Value>>;

/// Bound of [`Inner::verified`]; it is simply emptied when full.
const VERIFIED_CACHE: usize = 20_000;

/// Why an identity may not get tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Revoked,
    Expired,
}

impl Provider {
    /// Validates the config, opens the state, loads or creates the signing keys.
    pub fn new(config: OidcConfig, deps: OidcDeps) -> Result<Self, OidcError> {
        config.validate()?;
        let store = SledOidcStore::open(deps.db)?;
        Self::with_store(config, Arc::new(store), deps.directory, deps.clock)
    }

    /// Like [`Provider::new`], on any [`OidcStore`] (the shared PostgreSQL one of an
    /// HA cluster, see `oidc::pg_store`).
    pub fn with_store(
        config: OidcConfig,
        store: Arc<dyn OidcStore>,
        directory: Arc<dyn IdentityDirectory>,
        clock: Clock,
    ) -> Result<Self, OidcError> {
        config.validate()?;
        let now = clock.now();
        let keys = KeySet::init(&*store, now)?;
        let transport = backchannel::Transport::load(config.backchannel_ca_file.as_deref())
            .map_err(|e| OidcError::Tls(e.to_string()))?;
        let passkeys = match config.passkeys.enabled {
            true => Some(crate::oidc::passkey::rp::RelyingParty::new(
                &config.issuer,
                &config.passkeys,
            )?),
            false => None,
        };
        Ok(Provider(Arc::new(Inner {
            passkeys,
            config,
            store,
            directory,
            keys,
            clock,
            secret_cache: Mutex::new(HashMap::new()),
            client_auth_gates: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            metrics: OidcMetrics::new(),
            pending_budget: Budget::default(),
            code_budget: Budget::default(),
            push_budget: Budget::default(),
            device_budget: Budget::default(),
            outbox: backchannel::Outbox::new(transport, backchannel::IN_FLIGHT),
            argon2: crate::oidc::login::Argon2Budgets::default(),
        })))
    }

    pub fn config(&self) -> &OidcConfig {
        &self.0.config
    }

    /// The provider's clock: seconds since the Unix epoch.
    /// The limit key of the client behind TCP peer `peer` (see
    /// [`crate::oidc::http::client_addr`]: `trusted_proxies`, IPv6 by /64).
    pub(crate) fn client_key(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> String {
        crate::oidc::http::client_addr::client_key(
            peer,
            headers,
            &self.config().trusted_proxy_blocks(),
        )
    }

    pub(crate) fn now(&self) -> u64 {
        self.0.clock.now()
    }

    /// The provider's state (sessions, codes, grants, keys).
    pub(crate) fn store(&self) -> &dyn OidcStore {
        &*self.0.store
    }

    /// The signing keys.
    pub(crate) fn keys(&self) -> &KeySet {
        &self.0.keys
    }

    /// Users and tickets, filled by ingest.
    pub(crate) fn directory(&self) -> &dyn IdentityDirectory {
        &*self.0.directory
    }

    /// The provider's counters.
    /// The WebAuthn relying party, when passkeys are enabled.
    pub(crate) fn passkeys(&self) -> Option<&crate::oidc::passkey::rp::RelyingParty> {
        self.0.passkeys.as_ref()
    }

    pub(crate) fn metrics(&self) -> &OidcMetrics {
        &self.0.metrics
    }

    /// The back-channel logout client and its worker's state.
    pub(crate) fn outbox(&self) -> &backchannel::Outbox {
        &self.0.outbox
    }

    /// The argon2 budgets: transfer-code checks and client-secret checks each wait only for
    /// their own slots (public so that a test can hold one budget and show the other moves).
    pub fn argon2_budgets(&self) -> &crate::oidc::login::Argon2Budgets {
        &self.0.argon2
    }

    /// The turn of configured client `client_id`'s secret verification (one at a time).
    pub(crate) fn client_auth_gate(&self, client_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.0.client_auth_gates.lock() {
            Ok(mut g) => g.entry(client_id.to_string()).or_default().clone(),
            // A poisoned map only loses the serialisation, not the limits.
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// client_id -> SHA-256 of the secret that last passed argon2.
    pub(crate) fn secret_cache(&self) -> &Mutex<HashMap<String, String>> {
        &self.0.secret_cache
    }

    /// Device authorizations waiting, by client address (`[oidc.device]` bounds).
    pub(crate) fn device_budget(&self) -> &Budget {
        &self.0.device_budget
    }

    /// Parks an authorization request for its login page, within the bounds per client
    /// address and in all; requests found expired on the way are deleted at once.
    pub(crate) fn park_pending(
        &self,
        address: &str,
        txn: &str,
        pending: &crate::oidc::store::PendingRequest,
    ) -> Result<Result<(), Refused>, OidcError> {
        let c = &self.0.config;
        let admission = self.0.pending_budget.admit(
            address,
            txn,
            pending.expires_at,
            self.now(),
            c.max_pending_per_address as usize,
            c.max_pending_total as usize,
        );
        for id in &admission.expired {
            self.0.store.delete_pending(id)?;
        }
        if admission.result.is_ok() {
            self.0.store.put_pending(txn, pending)?;
        }
        Ok(admission.result)
    }

    /// The authorization request parked under `txn`, as stored (diagnostics and tests).
    pub fn pending_request(
        &self,
        txn: &str,
    ) -> Result<Option<crate::oidc::store::PendingRequest>, OidcError> {
        self.0.store.pending(txn)
    }

    /// The parked request `txn` is used up (its login finished).
    pub(crate) fn unpark_pending(&self, txn: &str) -> Result<(), OidcError> {
        self.0.pending_budget.release(txn);
        self.0.store.delete_pending(txn)
    }

    /// Counts one pushed authorization request from `address` until `expires_at`, within
    /// the same bounds as parked requests (`max_pending_per_address`, `max_pending_total`).
    /// Expired pushes need no deleting here: they are refused when used and purged.
    pub(crate) fn admit_push(
        &self,
        address: &str,
        id: &str,
        expires_at: u64,
    ) -> Result<(), Refused> {
        let c = &self.0.config;
        self.0
            .push_budget
            .admit(
                address,
                id,
                expires_at,
                self.now(),
                c.max_pending_per_address as usize,
                c.max_pending_total as usize,
            )
            .result
    }

    /// The pushed request `id` was used: it no longer counts.
    pub(crate) fn release_push(&self, id: &str) {
        self.0.push_budget.release(id);
    }

    /// Counts one code issued in session `sid` without a fresh login; false when the
    /// session has `max_codes_per_session` within the code lifetime.
    pub(crate) fn admit_code(&self, sid: &str) -> bool {
        let c = &self.0.config;
        let now = self.now();
        self.0
            .code_budget
            .admit(
                sid,
                &crate::oidc::util::random_token(12),
                now.saturating_add(c.code_lifetime_secs),
                now,
                c.max_codes_per_session as usize,
                usize::MAX,
            )
            .result
            .is_ok()
    }

    /// Every minute: [`Provider::maintain`].
    pub(crate) fn spawn_maintenance(&self) {
        self.spawn_logout_outbox();
        let p = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let q = p.clone();
                // Key generation and the store's scans block: off the async workers.
                match tokio::task::spawn_blocking(move || q.maintain()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "OIDC maintenance failed"),
                    Err(e) => tracing::warn!(error = %e, "OIDC maintenance task failed"),
                }
            }
        });
    }

    /// The claims of one of our access tokens if its signature, type, issuer and expiry
    /// hold (revocation is the caller's check: it changes, the signature does not).
    pub(crate) fn verified_access_token(&self, token: &str, now: u64) -> Option<Claims> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Ok(c) = self.0.verified.lock()
            && let Some((claims, exp)) = c.get(&key)
        {
            return (*exp > now).then(|| claims.clone());
        }
        let claims = tokens::verify_own(
            &self.0.keys,
            &self.0.config.issuer,
            token,
            "at+jwt",
            true,
            now,
        )
        .ok()?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let claims = Arc::new(claims);
        if let Ok(mut c) = self.0.verified.lock() {
            if c.len() >= VERIFIED_CACHE {
                c.clear();
            }
            c.insert(key, (claims.clone(), exp));
        }
        Some(claims)
    }

    /// The provider's counters in the Prometheus text format, for `/metrics`.
    pub fn metrics_text(&self) -> String {
        let mut text = self.0.metrics.render();
        text.push_str(&self.outbox_metrics_text());
        text
    }

    /// Counter value (tests and the ops listener).
    pub fn metric(&self, name: &'static str, reason: &str) -> u64 {
        self.0.metrics.get(name, reason)
    }

    /// The ingest side's hook for an applied Revoke frame: ends the user's sessions,
    /// revokes every grant (refresh and access tokens) and notifies inside apps.
    /// Returns the number of sessions ended.
    pub fn revoke_user(&self, local_sub: &str) -> Result<usize, OidcError> {
        let (n, disabled) = self.withdraw(local_sub, crate::oidc::store::OFF_REVOKED)?;
        tracing::info!(sub = %local_sub, sessions = n, passkeys = disabled, "user revoked: sessions ended, tokens revoked, passkeys switched off");
        Ok(n)
    }

    /// Ends everything `sub` holds: sessions (with back-channel logout), grants, and
    /// passkeys (switched off saying `why`). Returns (sessions ended, passkeys switched off).
    fn withdraw(&self, sub: &str, why: &str) -> Result<(usize, usize), OidcError> {
        let sessions = self.0.store.sessions_of(sub)?;
        let n = sessions.len();
        for s in sessions {
            self.end_session(&s.sid)?;
        }
        for fam in self.0.store.families_of_sub(sub)? {
            self.0.store.revoke_family(&fam)?;
        }
        let disabled = self.disable_passkeys(sub, why)?;
        self.0.store.flush()?;
        Ok((n, disabled))
    }

    /// Ends what lapsed approvals no longer cover: for every person holding a session or
    /// a working passkey whose Provision's `valid_until` has passed, the sessions end (with
    /// back-channel logout), their grants are revoked and the passkeys are switched off
    /// (`expired`, one `passkeys_disabled` event). A revoked person found here (a Revoke
    /// whose hook did not run, e.g. a crash in between) is withdrawn as `revoked`. People
    /// known only from LoginTickets are left alone: their `valid_until` is a transfer
    /// code's expiry, not an approval. Returns how many people were withdrawn.
    pub fn withdraw_lapsed(&self) -> Result<usize, OidcError> {
        let now = self.now();
        let mut people = 0;
        for sub in self.0.store.live_subjects()? {
            let why = match self.0.directory.user(&sub)? {
                Some(u) if u.revoked => crate::oidc::store::OFF_REVOKED,
                Some(u) if u.provisioned && u.valid_until <= now => crate::oidc::store::OFF_EXPIRED,
                _ => continue,
            };
            let (sessions, passkeys) = self.withdraw(&sub, why)?;
            people += 1;
            tracing::info!(sub = %sub, why, sessions, passkeys, "approval no longer holds: sessions ended, tokens revoked, passkeys switched off");
        }
        Ok(people)
    }

    /// Switches off every passkey of `sub` (they stay listed, saying why) and writes one
    /// security event. Returns how many were switched off.
    fn disable_passkeys(&self, sub: &str, why: &str) -> Result<usize, OidcError> {
        let mut n = 0;
        for rec in self.store().passkeys_of(sub)? {
            let changed = self.store().update_passkey(&rec.cred_id, &mut |r| {
                if r.disabled.is_some() {
                    return false;
                }
                r.disabled = Some(why.to_string());
                true
            })?;
            if changed == Some(true) {
                n += 1;
            }
        }
        if n > 0 {
            self.store()
                .append_event(&crate::oidc::store::SecurityEvent {
                    id: 0,
                    at: self.now(),
                    kind: "passkeys_disabled".into(),
                    sub: Some(sub.to_string()),
                    credential: None,
                    detail: Some(format!("{why}: {n} passkey(s)")),
                    address: None,
                })?;
            self.metrics().inc(Counter::PasskeysDisabled, why);
        }
        Ok(n)
    }

    /// Rotates the signing keys of this running provider (see [`crate::oidc::keys::rotate_keys`]).
    pub fn rotate_keys(&self) -> Result<Vec<String>, OidcError> {
        let now = self.0.clock.now();
        let c = &self.0.config;
        let kids = crate::oidc::keys::rotate_keys(
            &*self.0.store,
            now,
            c.key_rotation_delay_secs,
            c.key_overlap_secs(),
        )?;
        self.0.keys.reload(&*self.0.store, now)?;
        Ok(kids)
    }

    /// Rotates the signing keys unless a rotation is already under way (its new keys do
    /// not sign yet): `Err(sign_from)` of that one then. What `POST /keys/rotate` on the
    /// ops listener (and so `keys rotate` against a running daemon) calls.
    pub fn rotate_keys_unless_pending(&self) -> Result<Result<Vec<String>, u64>, OidcError> {
        let now = self.0.clock.now();
        let c = &self.0.config;
        let store = &*self.0.store;
        let mut pending = None;
        let rotated = store.with_keys_lock(&mut || {
            if let Some(t) = crate::oidc::keys::rotation_pending(&store.keys()?, now) {
                pending = Some(t);
                return Ok(None);
            }
            crate::oidc::keys::rotate_keys(
                store,
                now,
                c.key_rotation_delay_secs,
                c.key_overlap_secs(),
            )
            .map(Some)
        })?;
        self.0.keys.reload(store, now)?;
        store.flush()?;
        Ok(match (rotated, pending) {
            (Some(kids), _) => Ok(kids),
            (None, t) => Err(t.unwrap_or(now)),
        })
    }

    /// The scheduled rotation (`key_rotation_interval_days`): rotates when the newest key
    /// is that old and no rotation is under way; the new keys are published now and sign
    /// after `key_rotation_delay_secs`, the old ones stay published until every token they
    /// signed has expired. Returns the new kids when it rotated.
    pub fn rotate_keys_if_due(&self) -> Result<Option<Vec<String>>, OidcError> {
        let c = &self.0.config;
        if c.key_rotation_interval_days == 0 {
            return Ok(None);
        }
        let interval = u64::from(c.key_rotation_interval_days).saturating_mul(86_400);
        let now = self.0.clock.now();
        let store = &*self.0.store;
        let rotated = store.with_keys_lock(&mut || {
            if !crate::oidc::keys::rotation_due(&store.keys()?, now, interval) {
                return Ok(None);
            }
            crate::oidc::keys::rotate_keys(
                store,
                now,
                c.key_rotation_delay_secs,
                c.key_overlap_secs(),
            )
            .map(Some)
        })?;
        if let Some(kids) = &rotated {
            store.flush()?;
            self.0.metrics.inc(Counter::KeyRotations, "scheduled");
            tracing::info!(?kids, "scheduled signing key rotation started");
        }
        Ok(rotated)
    }

    /// One round of maintenance (what the minute's tick runs): drops expired state, ends
    /// what lapsed approvals no longer cover ([`Provider::withdraw_lapsed`]), starts a
    /// scheduled key rotation when due, and picks up key changes (publishing new keys,
    /// retiring old ones).
    pub fn maintain(&self) -> Result<(), OidcError> {
        let now = self.0.clock.now();
        self.0.code_budget.sweep(now);
        self.0.device_budget.sweep(now);
        for id in self.0.pending_budget.sweep(now) {
            self.0.store.delete_pending(&id)?;
        }
        self.0.store.purge_expired(now)?;
        // Key maintenance must not wait on the directory: a failing sweep is retried at
        // the next tick, and until then the expiry checks at each use still refuse.
        if let Err(e) = self.withdraw_lapsed() {
            tracing::warn!(error = %e, "could not withdraw lapsed approvals; retried at the next maintenance");
        }
        self.rotate_keys_if_due()?;
        self.0.keys.reload(&*self.0.store, now)
    }

    /// Ends one session: removes it, revokes its grants, sends back-channel logouts.
    pub(crate) fn end_session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        let Some(session) = self.0.store.delete_session(sid)? else {
            return Ok(None);
        };
        for fam in self.0.store.families_of_session(sid)? {
            self.0.store.revoke_family(&fam)?;
        }
        // Queued before the flush: a crash after it still sends the logouts.
        self.enqueue_logouts(&session)?;
        self.0.store.flush()?;
        self.0.outbox.wake.notify_one();
        Ok(Some(session))
    }

    /// The identity to put in tokens now, or why not: the directory's view when it
    /// knows the user (revocation, approval expiry, fresh claims), else the login snapshot.
    pub(crate) fn current_identity(
        &self,
        sub: &str,
        snapshot: &IdentitySnapshot,
    ) -> Result<Result<IdentitySnapshot, Denied>, OidcError> {
        let now = self.0.clock.now();
        match self.0.directory.user(sub)? {
            Some(u) if u.revoked => Ok(Err(Denied::Revoked)),
            // A ticket-only person's `valid_until` is their transfer code's expiry: it
            // bounds the code, while the session and its grants keep their own lifetimes.
            Some(u) if u.provisioned && u.valid_until <= now => Ok(Err(Denied::Expired)),
            Some(u) => Ok(Ok(IdentitySnapshot {
                issuer: u.issuer,
                subject: u.subject,
                claims: u.claims,
                seq: u.provisioned_seq,
            })),
            None => Ok(Ok(snapshot.clone())),
        }
    }
}

/// Rotates the keys stored in `db` (the CLI's `keys rotate` with the daemon stopped: sled
/// allows one process; a running daemon is asked through its ops listener instead). A
/// running provider picks the keys up
/// within a minute.
pub fn rotate_keys_in_db(
    db: sled::Db,
    config: &OidcConfig,
    now: u64,
) -> Result<Vec<String>, OidcError> {
    let store = SledOidcStore::open(db)?;
    KeySet::init(&store, now)?;
    crate::oidc::keys::rotate_keys(
        &store,
        now,
        config.key_rotation_delay_secs,
        config.key_overlap_secs(),
    )
}
