//! The OpenID provider and login page (issue 5), mounted by the daemon.
//!
//! Entry points: [`Provider::new`] (opens the state, loads or creates signing keys),
//! [`Provider::serve`] / [`serve`] (the HTTP listener), [`Provider::revoke_user`]
//! (the ingest side's hook for applied Revoke frames) and [`rotate_keys_in_db`]
//! (`airlock-receiver keys rotate`).

pub mod config;
pub mod directory;
pub mod error;
pub mod keys;
pub mod sled_store;
pub mod store;
