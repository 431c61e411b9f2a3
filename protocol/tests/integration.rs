//! The protocol crate's integration tests, in one test binary with one module per
//! theme, so the suite links once per crate. Run one module with a filter on its name:
//! `cargo test -p airlock-protocol --test integration -- fec::`.

mod fec;
mod open_batch;
mod seal;
