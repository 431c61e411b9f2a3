#![no_main]
//! Any bytes as a sealed frame: open returns a named error, never panics. Seeding the corpus
//! with protocol/tests/vectors sealed frames lets the fuzzer reach past the CBOR checks.
use airlock_protocol::replay::ReplayState;
use airlock_protocol::seal::{open, verify_sign1};
use airlock_protocol::testkit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trust = testkit::trust();
    let _ = open(data, &trust, &testkit::freshness(), testkit::T0, &ReplayState::new());
    let _ = verify_sign1(data, &trust);
});
