#![forbid(unsafe_code)]
//! Airlock's inside half: link ingest, verification, the hash-chained frame log, the
//! identity store, liveness, and the OpenID provider ([`oidc`]).

pub mod apply;
pub mod config;
pub mod frame_log;
pub mod oidc;
pub mod store;
pub mod trust_set;
