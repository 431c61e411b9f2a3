//! What a receiver (or an auditor) trusts: link keys by kid and signer keys by kid.
//!
//! Several of each may be present at once, so that rotation has an overlap: the new key
//! is installed before the sender switches, the old one removed after the last frame
//! sealed with it has arrived.

use std::collections::BTreeMap;

use crate::keys::{LinkKey, SignerPublicKey};

/// A trusted signer and the time from which its signatures count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSigner {
    /// The public key.
    pub key: SignerPublicKey,
    /// Unix seconds; frames opened before this time are refused.
    pub not_before: u64,
}

/// Link keys and signer keys in force.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    link_keys: BTreeMap<u32, LinkKey>,
    signers: BTreeMap<String, TrustedSigner>,
}

impl TrustStore {
    /// Trusts nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs a link key (replacing one with the same kid).
    pub fn add_link_key(&mut self, key: LinkKey) {
        self.link_keys.insert(key.kid, key);
    }

    /// Removes a link key; returns it if it was installed.
    pub fn remove_link_key(&mut self, kid: u32) -> Option<LinkKey> {
        self.link_keys.remove(&kid)
    }

    /// The link key with id `kid`.
    pub fn link_key(&self, kid: u32) -> Option<&LinkKey> {
        self.link_keys.get(&kid)
    }

    /// The installed link key ids.
    pub fn link_kids(&self) -> impl Iterator<Item = u32> + '_ {
        self.link_keys.keys().copied()
    }

    /// Trusts a signer from `not_before` (Unix seconds).
    pub fn add_signer(&mut self, key: SignerPublicKey, not_before: u64) {
        self.signers
            .insert(key.kid.clone(), TrustedSigner { key, not_before });
    }

    /// Stops trusting a signer; returns it if it was trusted.
    pub fn remove_signer(&mut self, kid: &str) -> Option<TrustedSigner> {
        self.signers.remove(kid)
    }

    /// The trusted signer with id `kid`.
    pub fn signer(&self, kid: &str) -> Option<&TrustedSigner> {
        self.signers.get(kid)
    }

    /// The trusted signer ids.
    pub fn signer_kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.signers.keys().map(String::as_str)
    }

    /// Every trusted signer.
    pub fn signers(&self) -> impl Iterator<Item = &TrustedSigner> + '_ {
        self.signers.values()
    }
}
