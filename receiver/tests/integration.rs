//! The receiver's integration tests, in one test binary with one module per
//! theme, so the suite links once per crate. Run one module with a filter on its name:
//! `cargo test -p airlock-receiver --test integration -- audit_bench::`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

mod audit_support;
mod common;
mod oidc_support;

mod audit_bench;
mod audit_daemon;
mod audit_postgres;
mod audit_replay;
mod audit_tools;
mod audit_verify;
mod backup_restore;
mod crash_recovery;
mod gaps;
mod ha_bench;
mod ha_failover;
mod ingest_store;
mod memory_bound;
mod oidc_backchannel;
mod oidc_bad_input;
mod oidc_bench;
mod oidc_client_credentials;
mod oidc_cookies;
mod oidc_device;
mod oidc_flow;
mod oidc_interop;
mod oidc_limits;
mod oidc_listener;
mod oidc_logout;
mod oidc_openidconnect;
mod oidc_par;
mod oidc_passkey;
mod oidc_pkce;
mod oidc_rotation;
mod oidc_tls;
mod serial_ingest;
mod status_cli;
mod store_contract;
mod throughput;
mod transparency;
mod trust_cli;
mod udp_ingest;
