//! Login methods and the attempt limits that protect them.
//!
//! [`LoginMethod`] names how a person proved who they are: the transfer code of a
//! LoginTicket (checked here) or a passkey (checked in [`crate::oidc::passkey`]).

use crate::oidc::directory::IdentityDirectory;
use crate::oidc::error::OidcError;
use crate::oidc::store::{IdentitySnapshot, OidcStore};
use crate::oidc::transfer_code::{CodeError, TransferCode};

/// The ways a person can prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// The one-time code shown outside after the outside login (LoginTicket).
    TransferCode,
    /// A passkey enrolled after a transfer-code sign-in; `verified`: the authenticator
    /// checked a PIN or biometric (WebAuthn UV flag).
    Passkey { verified: bool },
}

impl LoginMethod {
    /// RFC 8176 authentication method reference.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            LoginMethod::TransferCode => &["otp"],
            LoginMethod::Passkey { verified: true } => &["hwk", "user", "mfa"],
            LoginMethod::Passkey { verified: false } => &["hwk", "user"],
        }
    }

    /// The `acr` of a passkey sign-in.
    pub const PASSKEY_ACR: &'static str = "urn:airlock:acr:passkey";

    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            LoginMethod::TransferCode => "transfer_code",
            LoginMethod::Passkey { .. } => "passkey",
        }
    }

    /// The `acr` value the ID token carries.
    pub fn acr(self) -> &'static str {
        match self {
            LoginMethod::TransferCode => "urn:airlock:acr:transfer-code",
            LoginMethod::Passkey { .. } => Self::PASSKEY_ACR,
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub sub: String,
    pub identity: IdentitySnapshot,
    pub method: LoginMethod,
}

/// Why a login failed, in words for the person at the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    Malformed(CodeError),
    Wrong,
    Expired,
    Used,
    LockedCode {
        minutes: u64,
    },
    LockedAddress {
        minutes: u64,
    },
    UserRevoked,
    /// The code is right, but for another user than the application asked for
    /// (`id_token_hint`); the code is not spent.
    OtherUser,
}

impl LoginFailure {
    pub fn message(&self) -> String {
        match self {
            LoginFailure::Malformed(e) => format!("That is not a valid transfer code: {e}."),
            LoginFailure::Wrong => "That code is not right. Check it against the one shown to you outside and try again.".into(),
            LoginFailure::Expired => "This code has expired. Sign in again outside to get a new code.".into(),
            LoginFailure::Used => "This code has already been used. Each code works once: sign in again outside to get a new one.".into(),
            LoginFailure::LockedCode { minutes } => format!(
                "Too many wrong attempts for this code. It is locked for {minutes} minutes; sign in again outside to get a new code."
            ),
            LoginFailure::LockedAddress { minutes } => format!(
                "Too many failed sign-in attempts from your computer. Try again in {minutes} minutes."
            ),
            LoginFailure::UserRevoked => "Your access has been withdrawn. Contact your administrator.".into(),
            LoginFailure::OtherUser => "This code belongs to another account than the one the application asked to sign in. Use that account's code, or go back to the application and start again.".into(),
        }
    }

    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoginFailure::Malformed(_) => "malformed",
            LoginFailure::Wrong => "wrong",
            LoginFailure::Expired => "expired",
            LoginFailure::Used => "used",
            LoginFailure::LockedCode { .. } => "locked_code",
            LoginFailure::LockedAddress { .. } => "locked_address",
            LoginFailure::UserRevoked => "revoked",
            LoginFailure::OtherUser => "other_user",
        }
    }
}

/// Attempt limits: `max` attempts within `window` seconds lock the key for `window` seconds.
/// An attempt is counted before it is verified ([`Limiter::charge`]), atomically in the
/// store, so concurrent attempts cannot all pass a check made before any of them failed;
/// one that proves right is given back ([`Limiter::refund`]).
pub struct Limiter<'a> {
    pub store: &'a dyn OidcStore,
    pub max: u32,
    pub window: u64,
}

impl Limiter<'_> {
    /// Remaining lock time in whole minutes (rounded up), if locked.
    pub fn locked(&self, key: &str, now: u64) -> Result<Option<u64>, OidcError> {
        let a = self.store.attempts(key)?;
        Ok((a.locked_until > now).then(|| minutes_left(a.locked_until, now)))
    }

    /// Counts one attempt; `Some(minutes)` (and nothing counted) if the key is locked.
    pub fn charge(&self, key: &str, now: u64) -> Result<Option<u64>, OidcError> {
        let (max, window) = (self.max, self.window);
        let mut verdict = Ok(());
        self.store
            .update_attempts(key, &mut |a| verdict = a.charge(now, max, window))?;
        match verdict {
            Ok(()) => Ok(None),
            Err(until) => Ok(Some(minutes_left(until, now))),
        }
    }

    /// Gives back an attempt that proved right.
    pub fn refund(&self, key: &str) -> Result<(), OidcError> {
        let max = self.max;
        self.store.update_attempts(key, &mut |a| a.refund(max))
    }
}

fn minutes_left(until: u64, now: u64) -> u64 {
    until.saturating_sub(now).div_ceil(60)
}

/// Tickets tried per locator (each costs one argon2 verification).
const MAX_TICKETS_PER_LOCATOR: usize = 4;

/// Checks a typed transfer code; consumes the ticket on success. `address` is the client IP;
/// argon2 runs under a permit of `slots` (the provider's transfer-code budget).
pub async fn transfer_code(
    directory: &dyn IdentityDirectory,
    slots: &tokio::sync::Semaphore,
    limits: (&Limiter<'_>, &Limiter<'_>),
    address: &str,
    typed: &str,
    expected_sub: Option<&str>,
    now: u64,
) -> Result<Result<Authenticated, LoginFailure>, OidcError> {
    let (per_locator, per_address) = limits;
    let addr_key = format!("addr:{address}");
    if let Some(minutes) = per_address.locked(&addr_key, now)? {
        return Ok(Err(LoginFailure::LockedAddress { minutes }));
    }
    let code = match TransferCode::parse(typed) {
        Ok(c) => c,
        // A typo caught by the check character costs no attempt: it cannot be a guess.
        Err(e) => return Ok(Err(LoginFailure::Malformed(e))),
    };
    let locator = code.locator();
    let loc_key = format!("loc:{}", hex::encode(locator));
    // Counted before verifying; a locked locator costs the address nothing.
    if let Some(minutes) = per_address.charge(&addr_key, now)? {
        return Ok(Err(LoginFailure::LockedAddress { minutes }));
    }
    if let Some(minutes) = per_locator.charge(&loc_key, now)? {
        per_address.refund(&addr_key)?;
        return Ok(Err(LoginFailure::LockedCode { minutes }));
    }
    // Verify before saying "expired" or "used", so only the code's holder learns that.
    // Several tickets may share a locator: try each (a bounded few) against the secret.
    let mut matched = None;
    for ticket in directory
        .tickets(&locator)?
        .into_iter()
        .take(MAX_TICKETS_PER_LOCATOR)
    {
        let ok = verify_argon2_in(slots, ticket.code_hash.clone(), code.secret())
            .await
            .map_err(|e| OidcError::Store(format!("argon2 task failed: {e}")))?;
        if ok {
            matched = Some(ticket);
            break;
        }
    }
    let Some(ticket) = matched else {
        return Ok(Err(LoginFailure::Wrong));
    };
    // The right secret is no guess: its attempt is given back.
    per_address.refund(&addr_key)?;
    per_locator.refund(&loc_key)?;
    if ticket.used {
        return Ok(Err(LoginFailure::Used));
    }
    if ticket.expires_at <= now {
        return Ok(Err(LoginFailure::Expired));
    }
    let sub = airlock_protocol::message::local_subject(&ticket.issuer, &ticket.subject);
    if directory.user(&sub)?.is_some_and(|u| u.revoked) {
        return Ok(Err(LoginFailure::UserRevoked));
    }
    if expected_sub.is_some_and(|e| e != sub) {
        return Ok(Err(LoginFailure::OtherUser));
    }
    if !directory.consume_ticket_seq(&locator, ticket.seq)? {
        return Ok(Err(LoginFailure::Used));
    }
    Ok(Ok(Authenticated {
        sub,
        identity: IdentitySnapshot {
            issuer: ticket.issuer,
            subject: ticket.subject,
            claims: ticket.claims,
            seq: ticket.seq,
        },
        method: LoginMethod::TransferCode,
    }))
}

/// Transfer-code checks (argon2id, each may take tens of MiB) running at once; further
/// logins wait their turn instead of exhausting memory.
pub const TRANSFER_CODE_ARGON2_SLOTS: usize = 4;

/// Client-secret checks (argon2id) running at once: a budget of their own, so that a flood
/// of bad client secrets waits here, never in front of people typing transfer codes.
pub const CLIENT_AUTH_ARGON2_SLOTS: usize = 2;

/// The two argon2 budgets of a provider: transfer codes and client secrets never wait for
/// each other's slots.
#[derive(Debug)]
pub struct Argon2Budgets {
    /// [`TRANSFER_CODE_ARGON2_SLOTS`] permits.
    pub transfer_codes: tokio::sync::Semaphore,
    /// [`CLIENT_AUTH_ARGON2_SLOTS`] permits.
    pub client_auth: tokio::sync::Semaphore,
}

impl Default for Argon2Budgets {
    fn default() -> Self {
        Self {
            transfer_codes: tokio::sync::Semaphore::new(TRANSFER_CODE_ARGON2_SLOTS),
            client_auth: tokio::sync::Semaphore::new(CLIENT_AUTH_ARGON2_SLOTS),
        }
    }
}

/// [`verify_argon2`] on the blocking pool, once a permit of `slots` is free.
pub async fn verify_argon2_in(
    slots: &tokio::sync::Semaphore,
    phc: String,
    secret: String,
) -> Result<bool, String> {
    let _slot = slots.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || verify_argon2(&phc, &secret))
        .await
        .map_err(|e| e.to_string())
}

/// Argon2id verification of a PHC string; false on any malformed hash and on cost
/// parameters beyond the protocol's bounds (checked again here, at use, whatever the hash
/// came from).
pub fn verify_argon2(phc: &str, secret: &str) -> bool {
    use argon2::PasswordVerifier;
    if airlock_protocol::limits::check_argon2_phc("argon2 hash", phc).is_err() {
        return false;
    }
    match argon2::PasswordHash::new(phc) {
        Ok(h) if h.algorithm.as_str() == "argon2id" => argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod argon2_bounds_tests {
    use super::verify_argon2;

    /// A hash asking for 4 GiB is refused before argon2 runs (it would abort the process).
    #[test]
    fn a_hash_beyond_the_cost_bounds_is_refused_at_use() {
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(!verify_argon2(huge, "ANYTHING"));
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn every_failure_reason_is_exported_from_start_up() {
        let failures = [
            LoginFailure::Malformed(CodeError::BadCharacter {
                ch: 'U',
                position: 0,
            }),
            LoginFailure::Wrong,
            LoginFailure::Expired,
            LoginFailure::Used,
            LoginFailure::LockedCode { minutes: 1 },
            LoginFailure::LockedAddress { minutes: 1 },
            LoginFailure::UserRevoked,
            LoginFailure::OtherUser,
        ];
        let (_, exported) = crate::oidc::metrics::always_exported()
            .into_iter()
            .find(|(name, _)| *name == "login_failures")
            .unwrap();
        for f in failures {
            assert!(exported.contains(&f.reason()), "{}", f.reason());
            // The metric's enum says the same word as the log line.
            let counted = crate::oidc::metrics::LoginRefusal::from(&f);
            assert_eq!(counted.label(), f.reason());
        }
    }
}
