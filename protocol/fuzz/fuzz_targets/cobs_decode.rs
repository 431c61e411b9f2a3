#![no_main]
//! COBS: decode never panics, and the stream deframer stays within its bound.
use airlock_protocol::link::cobs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = cobs::decode(data) {
        assert_eq!(cobs::decode(&cobs::encode(&decoded)).ok(), Some(decoded));
    }
    let mut deframer = cobs::Deframer::new(512);
    for frame in deframer.push(data).into_iter().flatten() {
        assert!(frame.len() <= 512);
    }
});
