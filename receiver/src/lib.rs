#![forbid(unsafe_code)]
//! Airlock's inside half: link ingest, verification, the hash-chained frame log, the
//! identity store, liveness, and the OpenID provider ([`oidc`]).
//!
//! Data path: [`link`] (UDP / serial, FEC decode) -> [`ingest`] (open, classify, batch)
//! -> [`apply`] (log append + state change in one store transaction, see [`frame_log`])
//! -> [`store`] (sled) -> [`identity_directory`] -> [`oidc`].

pub mod apply;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod frame_log;
pub mod identity_directory;
pub mod ingest;
pub mod link;
pub mod metrics;
pub mod oidc;
pub mod ops;
pub mod ops_client;
pub mod replay;
pub mod reports;
pub mod seen_frames;
pub mod status;
pub mod status_page;
pub mod store;
pub mod transparency;
pub mod trust_cmd;
pub mod trust_set;
