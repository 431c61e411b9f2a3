//! The device authorization grant (RFC 8628): its `[oidc.device]` settings and user codes
//! (the record one grant keeps and its store contract are in [`crate::oidc::store`]).
//!
//! A device (a CLI, a terminal) asks for a grant and shows the person a short user code;
//! the person types it on the provider's `/device` page, signs in there and approves or
//! denies; the device polls the token endpoint with its device code meanwhile. The
//! device code is a 256-bit secret and stored only as its SHA-256 hash; the user code is
//! short by design (8 letters, about 34.6 bits) and protected by its lifetime and the
//! failure limit per client address, not by its length.

use airlock_daemon::config_check::{Key, KeyProblem};
use serde::Deserialize;

/// The grant type of the token request (RFC 8628 § 3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 8628 § 6.1: consonants only (no vowels: no words; no digits: nothing to confuse).
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Characters of a user code (shown as two groups of four).
pub const USER_CODE_LEN: usize = 8;

/// What RFC 8628 § 3.5 adds to the interval on each `slow_down`.
pub const SLOW_DOWN_STEP: u64 = 5;

/// The `[oidc.device]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Seconds a device code and its user code stay valid (`expires_in`).
    pub code_lifetime_secs: u64,
    /// Seconds a device waits between polls at first (`interval`).
    pub poll_interval_secs: u64,
    /// Device authorizations waiting for their person per client address (IPv6 by /64);
    /// more get `temporarily_unavailable` until one ends or expires.
    pub max_pending_per_address: u32,
    /// Device authorizations waiting on this receiver in all.
    pub max_pending_total: u32,
    /// Wrong user codes a client address may type within `oidc.lockout_secs`; the last
    /// one locks the address out of the device page for `oidc.lockout_secs`.
    pub max_user_code_failures_per_address: u32,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            code_lifetime_secs: 600,
            poll_interval_secs: 5,
            max_pending_per_address: 20,
            max_pending_total: 10_000,
            max_user_code_failures_per_address: 10,
        }
    }
}

impl DeviceConfig {
    /// Checks every key; the error names the one at fault (below `oidc.`).
    pub fn validate(&self) -> Result<(), KeyProblem> {
        let key = |k: &str| Key::new(format!("device.{k}"));
        key("code_lifetime_secs")
            .unit("seconds")
            .range(self.code_lifetime_secs, 60..=1800)?;
        key("poll_interval_secs")
            .unit("seconds")
            .range(self.poll_interval_secs, 1..=60)?;
        key("max_pending_per_address").at_least(self.max_pending_per_address, 1)?;
        key("max_pending_total").at_least(self.max_pending_total, 1)?;
        key("max_user_code_failures_per_address")
            .why("it bounds guessing of 8-letter codes")
            .range(self.max_user_code_failures_per_address, 1..=1000)?;
        Ok(())
    }
}

/// A fresh user code, uniform over the alphabet (normalised form, no dash).
pub fn generate_user_code() -> String {
    let mut out = String::with_capacity(USER_CODE_LEN);
    while out.len() < USER_CODE_LEN {
        let mut b = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            use rand::RngCore;
            rand::rngs::OsRng.fill_bytes(&mut b);
        }
        // 240 = 12 * 20: bytes at or above it are dropped, so every letter is equally likely.
        for x in b.iter().filter(|x| **x < 240) {
            if out.len() == USER_CODE_LEN {
                break;
            }
            if let Some(c) = ALPHABET.get(usize::from(*x % 20)) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

/// Why a typed user code cannot be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCodeError {
    Length(usize),
    Letter(char),
}

impl std::fmt::Display for UserCodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserCodeError::Length(n) => {
                write!(f, "a code has {USER_CODE_LEN} letters, this one has {n}")
            }
            UserCodeError::Letter(c) => write!(
                f,
                "{c:?} cannot be part of a code (codes use only the consonants BCDFGHJKLMNPQRSTVWXZ)"
            ),
        }
    }
}

/// The normalised form of what a person typed: case, dashes and spaces do not matter.
pub fn normalize_user_code(typed: &str) -> Result<String, UserCodeError> {
    let mut out = String::with_capacity(USER_CODE_LEN);
    let mut letters = 0usize;
    for c in typed.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        letters = letters.saturating_add(1);
        let up = c.to_ascii_uppercase();
        if !up.is_ascii() || !ALPHABET.contains(&(up as u8)) {
            return Err(UserCodeError::Letter(c));
        }
        if letters <= USER_CODE_LEN {
            out.push(up);
        }
    }
    if letters == USER_CODE_LEN {
        Ok(out)
    } else {
        Err(UserCodeError::Length(letters))
    }
}

/// `BCDFGHJK` as a person reads it: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_and_normalise() {
        for _ in 0..200 {
            let c = generate_user_code();
            assert_eq!(c.len(), USER_CODE_LEN);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            assert_eq!(normalize_user_code(&display_user_code(&c)).unwrap(), c);
        }
        assert_eq!(normalize_user_code(" bcdf-ghjk ").unwrap(), "BCDFGHJK");
        assert_eq!(normalize_user_code("bc df gh jk").unwrap(), "BCDFGHJK");
        assert_eq!(
            normalize_user_code("BCDF-GHJ"),
            Err(UserCodeError::Length(7))
        );
        assert_eq!(
            normalize_user_code("BCDF-GHJKL"),
            Err(UserCodeError::Length(9))
        );
        assert_eq!(
            normalize_user_code("BCDF-GHJA"),
            Err(UserCodeError::Letter('A'))
        );
        assert_eq!(
            normalize_user_code("BCDF-GHJ0"),
            Err(UserCodeError::Letter('0'))
        );
        assert_eq!(
            normalize_user_code("BCDF-GHJé"),
            Err(UserCodeError::Letter('é'))
        );
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn every_letter_is_drawn() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.extend(generate_user_code().bytes());
        }
        assert_eq!(seen.len(), ALPHABET.len());
    }

    #[test]
    fn config_defaults_are_valid_and_bounds_name_the_key() {
        assert!(DeviceConfig::default().validate().is_ok());
        let c = DeviceConfig {
            poll_interval_secs: 0,
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "device.poll_interval_secs");
        let c = DeviceConfig {
            code_lifetime_secs: 5,
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "device.code_lifetime_secs");
        let c = DeviceConfig {
            max_user_code_failures_per_address: 0,
            ..DeviceConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().key,
            "device.max_user_code_failures_per_address"
        );
    }
}
