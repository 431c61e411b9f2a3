#![forbid(unsafe_code)]
//! Airlock's cross-crate test support: the fault-injection harness (link impairment model,
//! UDP relay, pty serial path, process supervisor) used by the end-to-end tests.

pub mod impair;
