//! The end-to-end tests and the fault harness's own tests, in one test binary with one module per
//! theme, so the suite links once per crate. Run one module with a filter on its name:
//! `cargo test -p airlock-tests --test integration -- e2e_attacks::`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

mod e2e_attacks;
mod e2e_carousel;
mod e2e_crash;
mod e2e_gaps;
mod e2e_idp_mirror;
mod e2e_keys;
mod e2e_link_flood;
mod e2e_login;
mod e2e_loss;
mod e2e_mixed;
mod e2e_multicast;
mod e2e_outbox_loss;
mod e2e_segmentation_fallback;
mod e2e_serial;
mod e2e_smoke;
mod e2e_witness;
mod harness_fec;
mod harness_impair_cli;
mod harness_serial;
mod harness_supervisor;
mod harness_udp;
mod layout;
mod ops_monitoring;
