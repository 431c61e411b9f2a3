//! The OpenID provider and login page, mounted by the daemon.
//!
//! Entry points: [`Provider::new`] (opens the state, loads or creates signing keys),
//! [`Provider::serve`] / [`serve`] (the HTTP listener), [`Provider::revoke_user`]
//! (the ingest side's hook for applied Revoke frames) and [`rotate_keys_in_db`]
//! (`airlock-receiver keys rotate`).

pub mod backchannel;
pub mod budget;
pub mod clients;
pub mod config;
pub mod device;
pub mod directory;
pub mod endpoints;
pub mod error;
pub mod html;
pub mod http;
pub mod keys;
// The accept loop is shared with the other daemon; `listener::Limits` is named from here.
pub use airlock_daemon::listener;
pub mod login;
pub mod metrics;
pub mod outbox;
pub mod passkey;
pub mod pg_store;
pub mod provider;
pub mod server;
pub mod session;
pub mod sled_store;
pub mod store;
pub mod tokens;
pub mod transfer_code;
pub mod util;

pub use config::OidcConfig;
pub use directory::{DirectoryError, DirectoryTicket, DirectoryUser, IdentityDirectory};
pub use error::OidcError;
pub use provider::{OidcDeps, Provider, rotate_keys_in_db};
pub use server::serve;
