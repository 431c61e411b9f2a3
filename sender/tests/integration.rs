//! The sender's integration tests, in one test binary with one module per
//! theme, so the suite links once per crate. Run one module with a filter on its name:
//! `cargo test -p airlock-sender --test integration -- cli::`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

mod common;

mod backup_restore;
mod cli;
mod config_errors;
mod crash;
mod intake_policy;
mod measure;
mod portal_mirror;
mod serial;
mod serial_capacity;
mod udp_loopback;
