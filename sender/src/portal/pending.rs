//! Logins in progress, between the redirect to the IdP and its callback.
//!
//! Each is keyed by its `state` and bound to the browser that started it: the browser holds
//! a random binding value in an HttpOnly cookie, and only its SHA-256 is stored here. A
//! callback whose cookie does not match is refused (login CSRF), and an entry is used once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::{Nonce, PkceCodeVerifier};
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// How long a login may take at the IdP.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// At most this many logins in progress (bounds memory against floods of start requests).
pub const MAX_PENDING: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PendingError {
    #[error("this login link is unknown, used or expired")]
    Unknown,
    #[error("this login was started in another browser (or its cookie is missing)")]
    WrongBrowser,
    #[error("too many logins are in progress; try again in a few minutes")]
    Full,
}

/// What the callback needs to finish one login.
pub struct PendingLogin {
    /// Index into the configured IdPs.
    pub idp: usize,
    pub pkce_verifier: PkceCodeVerifier,
    pub nonce: Nonce,
    binding_hash: [u8; 32],
    created: Instant,
}

#[derive(Default)]
pub struct PendingStore {
    map: Mutex<HashMap<String, PendingLogin>>,
}

/// A fresh random browser-binding value (goes into the cookie).
pub fn new_binding() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn hash(binding: &str) -> [u8; 32] {
    Sha256::digest(binding.as_bytes()).into()
}

impl PendingStore {
    pub fn insert(
        &self,
        state: String,
        idp: usize,
        pkce_verifier: PkceCodeVerifier,
        nonce: Nonce,
        binding: &str,
    ) -> Result<(), PendingError> {
        let mut map = self.map.lock().map_err(|_| PendingError::Full)?;
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        if map.len() >= MAX_PENDING {
            return Err(PendingError::Full);
        }
        map.insert(
            state,
            PendingLogin {
                idp,
                pkce_verifier,
                nonce,
                binding_hash: hash(binding),
                created: Instant::now(),
            },
        );
        Ok(())
    }

    /// Whether `binding` is one this portal handed out for a login still in progress.
    pub fn minted(&self, binding: &str) -> bool {
        let h = hash(binding);
        self.map.lock().is_ok_and(|map| {
            map.values()
                .any(|p| p.binding_hash == h && p.created.elapsed() < PENDING_TTL)
        })
    }

    /// Removes and returns the login of `state` if `binding` (the cookie) matches.
    pub fn take(&self, state: &str, binding: Option<&str>) -> Result<PendingLogin, PendingError> {
        let mut map = self.map.lock().map_err(|_| PendingError::Unknown)?;
        let login = map.remove(state).ok_or(PendingError::Unknown)?;
        if login.created.elapsed() >= PENDING_TTL {
            return Err(PendingError::Unknown);
        }
        // Comparing hashes: the stored value reveals nothing and timing leaks nothing useful.
        match binding {
            Some(b) if hash(b) == login.binding_hash => Ok(login),
            _ => Err(PendingError::WrongBrowser),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(store: &PendingStore, state: &str, binding: &str) {
        store
            .insert(
                state.into(),
                0,
                PkceCodeVerifier::new("v".repeat(43)),
                Nonce::new("n".into()),
                binding,
            )
            .unwrap();
    }

    #[test]
    fn a_login_is_taken_once_and_only_by_its_browser() {
        let store = PendingStore::default();
        add(&store, "s1", "cookie-a");
        add(&store, "s2", "cookie-a");
        assert!(store.take("s1", Some("cookie-a")).is_ok());
        assert_eq!(
            store.take("s1", Some("cookie-a")).err(),
            Some(PendingError::Unknown)
        );
        assert_eq!(
            store.take("s2", Some("cookie-b")).err(),
            Some(PendingError::WrongBrowser)
        );
        // A failed binding check still consumes the state: no second guess.
        assert_eq!(
            store.take("s2", Some("cookie-a")).err(),
            Some(PendingError::Unknown)
        );
        add(&store, "s3", "cookie-a");
        assert_eq!(
            store.take("s3", None).err(),
            Some(PendingError::WrongBrowser)
        );
    }

    #[test]
    fn only_bindings_of_logins_in_progress_count_as_minted() {
        let store = PendingStore::default();
        assert!(!store.minted("cookie-a"));
        add(&store, "s1", "cookie-a");
        assert!(store.minted("cookie-a"));
        assert!(!store.minted("cookie-b"));
    }
}
