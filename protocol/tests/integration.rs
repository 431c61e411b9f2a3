//! The protocol crate's integration tests, in one test binary with one module per
//! theme, so the suite links once per crate. Run one module with a filter on its name:
//! `cargo test -p airlock-protocol --test integration -- fec::`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

mod fec;
mod open_batch;
mod seal;
