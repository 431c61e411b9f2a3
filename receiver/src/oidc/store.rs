//! The provider's own state and the contract any backend fulfils.
//!
//! Secrets (session ids, codes, refresh tokens) are stored only as SHA-256 hashes,
//! so a copy of the database cannot be replayed as cookies or tokens.

use serde::{Deserialize, Serialize};

use crate::oidc::config::SigningAlg;
use crate::oidc::error::OidcError;

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Public session id (`sid` claim); the cookie carries a separate secret.
    pub sid: String,
    pub sub: String,
    pub auth_time: u64,
    pub expires_at: u64,
    pub amr: Vec<String>,
    pub acr: String,
    /// Snapshot of the identity at login (used when the directory has no provisioned user).
    pub identity: IdentitySnapshot,
    /// Clients that received tokens in this session (back-channel logout targets).
    pub clients: Vec<String>,
}

/// What the provider knows about an identity at login time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdentitySnapshot {
    pub issuer: String,
    pub subject: String,
    pub claims: airlock_protocol::message::Claims,
    pub seq: u64,
}

/// An authorization request waiting for the user to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub request: AuthRequest,
    pub csrf: String,
    pub expires_at: u64,
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub max_age: Option<u64>,
    /// The `sub` of a verified `id_token_hint`: only this user may be signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint_sub: Option<String>,
    /// `acr_values` of the request, in order of preference.
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Set when the sign-in is for a device grant (the hash of its device code): it ends
    /// on the device's approval page, not in a redirect with a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A pushed authorization request (RFC 9126), waiting for its `request_uri` to be used.
/// Keyed by the SHA-256 of the request_uri's secret part; single use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedRequest {
    /// The client that pushed it: only this client may use it.
    pub client_id: String,
    /// The authorization parameters as pushed (client authentication removed).
    pub params: Vec<(String, String)>,
    pub expires_at: u64,
}

/// What taking a pushed request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushedTake {
    /// No such request (never pushed, already used, or purged).
    Unknown,
    /// Pushed by another client: left in place, so a guess cannot burn it.
    OtherClient,
    /// Removed and handed to this caller, and to no other.
    Taken(PushedRequest),
}

/// An issued authorization code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    pub request: AuthRequest,
    pub sid: String,
    pub sub: String,
    pub auth_time: u64,
    pub expires_at: u64,
    /// Set on first use: the refresh family (and access tokens) that use created.
    pub used_by_family: Option<String>,
}

/// What happened when a code was redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedeem {
    Unknown,
    /// First use: the code is now bound to `family`.
    First(AuthCode),
    /// Already used: `family` is what the first use issued.
    Reused(AuthCode),
}

/// A grant: everything tokens issued from one code have in common. Revoking it
/// kills its refresh tokens and its access tokens (as seen by introspection/userinfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    pub sub: String,
    pub sid: String,
    pub scope: Vec<String>,
    pub auth_time: u64,
    pub nonce: Option<String>,
    pub revoked: bool,
    pub expires_at: u64,
    /// The identity at login; refreshed from the directory on each grant.
    pub identity: IdentitySnapshot,
    pub amr: Vec<String>,
    pub acr: String,
}

/// One refresh token of a family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub family: String,
    pub expires_at: u64,
    pub used: bool,
}

/// A signing key and its life cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// PKCS#8 DER, base64.
    pub pkcs8: String,
    pub created_at: u64,
    /// Signing starts at this time (it is in the JWKS from `created_at`).
    pub sign_from: u64,
    /// Removed from the JWKS after this time (set when a successor is created).
    pub retire_after: Option<u64>,
}

/// A failure counter for one locator or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attempts {
    pub failures: u32,
    pub window_start: u64,
    pub locked_until: u64,
}

/// How long a tombstone stays after the first purge that sees it: far longer than a
/// redemption takes.
pub const TOMBSTONE_SECS: u64 = 3600;

/// Tombstone keys.
pub fn family_tombstone(id: &str) -> String {
    format!("family:{id}")
}
pub fn session_tombstone(sid: &str) -> String {
    format!("session:{sid}")
}

impl Attempts {
    /// Counts one attempt at `now`, before it is verified: `Err(locked_until)` if the key is
    /// locked; otherwise the attempt is counted (a new window opens when the last one is
    /// over) and the `max`-th attempt of a window locks the key for `window` seconds.
    pub fn charge(&mut self, now: u64, max: u32, window: u64) -> Result<(), u64> {
        if self.locked_until > now {
            return Err(self.locked_until);
        }
        if self.window_start.saturating_add(window) <= now {
            self.failures = 0;
            self.window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= max {
            self.locked_until = now.saturating_add(window);
        }
        Ok(())
    }

    /// Gives back an attempt that turned out right (it was no guess); a lock only that
    /// attempt caused is lifted.
    pub fn refund(&mut self, max: u32) {
        self.failures = self.failures.saturating_sub(1);
        if self.failures < max {
            self.locked_until = 0;
        }
    }
}

// ---- Passkeys: credentials, ceremonies in flight, the security event log.
/// [`PasskeyRecord::disabled`] of passkeys a Revoke frame switched off.
pub const OFF_REVOKED: &str = "revoked";
/// [`PasskeyRecord::disabled`] of passkeys switched off when their person's approval lapsed.
pub const OFF_EXPIRED: &str = "expired";

/// One enrolled passkey of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url without padding (the key of the record).
    pub cred_id: String,
    /// The local `sub` of the owner.
    pub sub: String,
    /// What the person types to sign in by name (the email claim, else the outside subject).
    pub username: String,
    /// The WebAuthn user handle given to the authenticator, base64url.
    pub user_handle: String,
    /// The name the person gave it ("office laptop").
    pub name: String,
    pub created_at: u64,
    pub last_used: Option<u64>,
    /// The passkey stops working after this time (the configured lifetime cap).
    pub expires_at: u64,
    /// Set when the passkey was switched off ([`OFF_REVOKED`], [`OFF_EXPIRED`]): it no
    /// longer signs in.
    pub disabled: Option<String>,
    /// Backup eligibility as registered (a change is refused: WebAuthn §6.1.3).
    pub backup_eligible: bool,
    /// The WebAuthn credential (public key, counter, flags) as the WebAuthn library stores it.
    pub credential: serde_json::Value,
    /// The identity at enrolment: what tokens carry for a person the directory does not
    /// know (a LoginTicket-only user); a provisioned user's current record wins.
    #[serde(default)]
    pub identity: IdentitySnapshot,
}

/// A WebAuthn ceremony between its options and its response. Single use: the store
/// hands it out once ([`crate::oidc::store::OidcStore::take_ceremony`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceremony {
    pub kind: CeremonyKind,
    /// The login transaction (sign-in) or the session id (enrolment) it belongs to.
    pub bound_to: String,
    /// Enrolment: the owner and the name the person chose.
    pub sub: Option<String>,
    pub name: Option<String>,
    /// The WebAuthn library's ceremony state (challenge, allowed credentials, policy).
    pub state: serde_json::Value,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyKind {
    Enrol,
    SignIn,
}

/// One security event: an enrolment, a removal, a passkey sign-in or a refused attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEvent {
    /// Position in the log, assigned by the store (0 before it is appended).
    #[serde(default)]
    pub id: u64,
    /// Unix seconds.
    pub at: u64,
    /// `passkey_enrolled`, `passkey_removed`, `passkey_sign_in`, `passkey_refused`,
    /// `passkeys_disabled`.
    pub kind: String,
    /// The local `sub` concerned, when known.
    #[serde(default)]
    pub sub: Option<String>,
    /// The credential id (base64url), when known.
    #[serde(default)]
    pub credential: Option<String>,
    /// Passkey name, refusal reason, or what disabled the passkeys.
    #[serde(default)]
    pub detail: Option<String>,
    /// The client address the request came from.
    #[serde(default)]
    pub address: Option<String>,
}

// ---- Device authorization grants (RFC 8628; see `crate::oidc::device`).
/// The person's approval, with what the tokens will say about the sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceApproval {
    pub sid: String,
    pub sub: String,
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub acr: String,
    pub identity: IdentitySnapshot,
    pub approved_at: u64,
}

/// Where a device grant stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeviceStatus {
    /// Waiting for the person.
    Pending,
    Approved {
        approval: Box<DeviceApproval>,
    },
    Denied {
        at: u64,
    },
    /// Tokens were issued (single use): `family` is what that redemption created.
    Redeemed {
        family: String,
    },
}

/// One device authorization (RFC 8628 § 3.2), keyed by the hash of its device code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub client_id: String,
    pub scope: Vec<String>,
    /// SHA-256 of the normalised user code (the store's second key).
    pub user_code_hash: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// Seconds the device must wait between polls; grows on `slow_down`.
    pub interval: u64,
    /// Time of the last poll (0: none yet).
    pub last_poll: u64,
    pub status: DeviceStatus,
}

/// Storage of device grants (a part of [`OidcStore`]); both backends implement it, atomically per call, so that
/// receivers sharing one database see one grant.
pub trait DeviceStore {
    /// Stores a new grant under `device_hash`; false (nothing written) if its user code
    /// is already taken by another grant (the caller draws another).
    fn insert_device(&self, device_hash: &str, g: &DeviceGrant) -> Result<bool, OidcError>;
    fn device(&self, device_hash: &str) -> Result<Option<DeviceGrant>, OidcError>;
    /// The grant whose user code hashes to `user_code_hash`, with its device hash.
    fn device_by_user_code(
        &self,
        user_code_hash: &str,
    ) -> Result<Option<(String, DeviceGrant)>, OidcError>;
    /// Atomically rewrites the grant with `f` if `f` returns true; None if absent. Two
    /// callers racing (two polls, a poll and an approval, two receivers) are serialised:
    /// each `f` sees the other's write.
    fn update_device(
        &self,
        device_hash: &str,
        f: &mut (dyn FnMut(&mut DeviceGrant) -> bool + Send),
    ) -> Result<Option<bool>, OidcError>;
    /// Drops grants that expired over [`DEVICE_KEEP_EXPIRED_SECS`] ago (until then an expired code is
    /// answered `expired_token`, not `invalid_grant`); returns how many.
    fn purge_devices(&self, now: u64) -> Result<usize, OidcError>;
}

/// Grants are kept this long after they expire, so a late poll learns "expired".
pub const DEVICE_KEEP_EXPIRED_SECS: u64 = 3600;

/// A back-channel logout waiting for delivery (the outbox): what a freshly signed logout
/// token needs, and where its retries stand. Kept in the store so a restart resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutDelivery {
    /// Random, unique.
    pub id: String,
    pub client_id: String,
    /// The app's `backchannel_logout_uri` when the logout happened.
    pub uri: String,
    pub sub: String,
    pub sid: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds; not tried before.
    pub next_attempt_ms: u64,
    /// Unix milliseconds of the logout.
    pub created_ms: u64,
}

/// Storage contract of the provider. Sled implements it ([`crate::oidc::sled_store`]);
/// a replicated backend can implement it later. All methods are atomic per call.
pub trait OidcStore: DeviceStore + Send + Sync + 'static {
    fn put_session(&self, secret_hash: &str, s: &Session) -> Result<(), OidcError>;
    fn session_by_secret(&self, secret_hash: &str) -> Result<Option<Session>, OidcError>;
    fn session(&self, sid: &str) -> Result<Option<Session>, OidcError>;
    /// Adds `client_id` to the session's client list.
    fn add_session_client(&self, sid: &str, client_id: &str) -> Result<(), OidcError>;
    /// Removes the session; returns it if it existed. Leaves a tombstone: a family of this
    /// session stored later (a redemption racing the logout) is stored revoked.
    fn delete_session(&self, sid: &str) -> Result<Option<Session>, OidcError>;
    fn sessions_of(&self, sub: &str) -> Result<Vec<Session>, OidcError>;
    /// Every local `sub` that holds a session or a passkey not switched off, each once,
    /// in byte order: whom the maintenance checks for a lapsed approval.
    fn live_subjects(&self) -> Result<Vec<String>, OidcError>;

    fn put_pending(&self, id: &str, p: &PendingRequest) -> Result<(), OidcError>;
    fn pending(&self, id: &str) -> Result<Option<PendingRequest>, OidcError>;
    fn delete_pending(&self, id: &str) -> Result<(), OidcError>;

    fn put_code(&self, code_hash: &str, c: &AuthCode) -> Result<(), OidcError>;
    /// Atomically marks the code used by `family` on its first redemption.
    fn redeem_code(&self, code_hash: &str, family: &str) -> Result<CodeRedeem, OidcError>;

    /// Stores the family; revoked if a tombstone of its id or its session exists.
    fn put_family(&self, f: &Family) -> Result<(), OidcError>;
    fn family(&self, id: &str) -> Result<Option<Family>, OidcError>;
    /// Extends a live family's expiry (after a refresh); never un-revokes.
    fn touch_family(&self, id: &str, expires_at: u64) -> Result<(), OidcError>;
    /// Marks the family revoked; returns true if it existed and was live. Leaves a
    /// tombstone first, so a family not stored yet is stored revoked.
    fn revoke_family(&self, id: &str) -> Result<bool, OidcError>;
    fn families_of_session(&self, sid: &str) -> Result<Vec<String>, OidcError>;
    fn families_of_sub(&self, sub: &str) -> Result<Vec<String>, OidcError>;

    fn put_refresh(&self, token_hash: &str, r: &RefreshToken) -> Result<(), OidcError>;
    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshToken>, OidcError>;
    /// A refresh token and its family (None when the family is gone), in one read where
    /// the backend has round trips.
    fn refresh_and_family(
        &self,
        token_hash: &str,
    ) -> Result<Option<(RefreshToken, Option<Family>)>, OidcError> {
        let Some(rt) = self.refresh(token_hash)? else {
            return Ok(None);
        };
        let family = self.family(&rt.family)?;
        Ok(Some((rt, family)))
    }
    /// Atomically flips `used`; true only for the call that flipped it.
    fn use_refresh(&self, token_hash: &str) -> Result<bool, OidcError>;
    /// A refresh token's rotation: flips `used` of `old_hash` (false, and nothing else
    /// happens, when another call already did: reuse), then extends the family to
    /// `next.expires_at` and stores `next` under `next_hash`. A backend with transactions
    /// does all three in one (PostgreSQL: one commit instead of three).
    fn rotate_refresh(
        &self,
        old_hash: &str,
        next_hash: &str,
        next: &RefreshToken,
    ) -> Result<bool, OidcError> {
        if !self.use_refresh(old_hash)? {
            return Ok(false);
        }
        self.touch_family(&next.family, next.expires_at)?;
        self.put_refresh(next_hash, next)?;
        Ok(true)
    }

    fn keys(&self) -> Result<Vec<StoredKey>, OidcError>;
    fn put_key(&self, k: &StoredKey) -> Result<(), OidcError>;
    fn delete_key(&self, kid: &str) -> Result<(), OidcError>;

    fn attempts(&self, key: &str) -> Result<Attempts, OidcError>;
    fn put_attempts(&self, key: &str, a: &Attempts) -> Result<(), OidcError>;
    /// Atomically rewrites the counter of `key` (absent: the default) with `f`, so that
    /// concurrent attempts, on one receiver or several, are each counted.
    fn update_attempts(
        &self,
        key: &str,
        f: &mut (dyn FnMut(&mut Attempts) + Send),
    ) -> Result<(), OidcError>;

    /// Stores a new passkey; false (nothing written) if its credential id is already
    /// registered, to this user or any other.
    fn insert_passkey(&self, p: &PasskeyRecord) -> Result<bool, OidcError>;
    fn passkey(&self, cred_id: &str) -> Result<Option<PasskeyRecord>, OidcError>;
    /// The user's passkeys, oldest first.
    fn passkeys_of(&self, sub: &str) -> Result<Vec<PasskeyRecord>, OidcError>;
    fn passkeys_by_username(&self, username: &str) -> Result<Vec<PasskeyRecord>, OidcError>;
    /// Atomically rewrites one passkey with `f` if `f` returns true; None if absent.
    fn update_passkey(
        &self,
        cred_id: &str,
        f: &mut (dyn FnMut(&mut PasskeyRecord) -> bool + Send),
    ) -> Result<Option<bool>, OidcError>;
    /// Removes the passkey if `sub` owns it; true if it did.
    fn delete_passkey(&self, sub: &str, cred_id: &str) -> Result<bool, OidcError>;

    fn put_ceremony(&self, id: &str, c: &Ceremony) -> Result<(), OidcError>;
    /// Removes and returns the ceremony: exactly one caller gets it.
    fn take_ceremony(&self, id: &str) -> Result<Option<Ceremony>, OidcError>;

    fn put_pushed(&self, id: &str, r: &PushedRequest) -> Result<(), OidcError>;
    /// Removes and returns the pushed request `id` if `client_id` pushed it: exactly one
    /// caller gets it, on any receiver sharing the store.
    fn take_pushed(&self, id: &str, client_id: &str) -> Result<PushedTake, OidcError>;

    /// Appends to the security event log; returns the event's id (increasing).
    fn append_event(&self, e: &SecurityEvent) -> Result<u64, OidcError>;
    /// Events with an id above `after`, oldest first, at most `limit`.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<SecurityEvent>, OidcError>;

    /// Adds a back-channel logout to the outbox unless it holds `max` already (false:
    /// nothing written). With several receivers the bound may be passed by a few.
    fn enqueue_logout(&self, d: &LogoutDelivery, max: usize) -> Result<bool, OidcError>;
    /// Claims up to `limit` deliveries due at `now_ms` that no receiver holds (or whose
    /// holder's claim ran out) for `owner` until `lease_until_ms`, and returns them: one
    /// receiver at a time tries a delivery, and a dead receiver's claim expires.
    fn claim_logouts(
        &self,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<LogoutDelivery>, OidcError>;
    /// After a failed attempt: the new attempt count and next time; the claim is released.
    /// False (nothing written) when `owner` no longer holds the delivery.
    fn reschedule_logout(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<bool, OidcError>;
    /// Removes a delivery (delivered, or given up).
    fn finish_logout(&self, id: &str) -> Result<(), OidcError>;
    /// Every delivery waiting, claimed or not, oldest first (diagnostics, tests).
    fn pending_logouts(&self) -> Result<Vec<LogoutDelivery>, OidcError>;
    /// How many deliveries wait, claimed or not (the outbox gauge).
    fn count_logouts(&self) -> Result<usize, OidcError> {
        Ok(self.pending_logouts()?.len())
    }

    /// Makes everything written so far durable (after logins and revocations).
    fn flush(&self) -> Result<(), OidcError>;

    /// Runs `f` (a key rotation and the check whether one is due) while no other
    /// receiver sharing this store does: PostgreSQL takes the cluster's key lock; sled is
    /// held by one process anyway.
    fn with_keys_lock(
        &self,
        f: &mut (dyn FnMut() -> Result<Option<Vec<String>>, OidcError> + Send),
    ) -> Result<Option<Vec<String>>, OidcError> {
        f()
    }

    /// Drops expired sessions, codes, pending requests and families (their number is
    /// returned), and tombstones an hour after the first purge that saw them.
    fn purge_expired(&self, now: u64) -> Result<usize, OidcError>;
}
