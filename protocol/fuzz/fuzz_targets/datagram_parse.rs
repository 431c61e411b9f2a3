#![no_main]
//! Any bytes as a datagram: the header parser returns an error or a consistent header.
use airlock_protocol::link::DatagramHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, symbol)) = DatagramHeader::parse(data) {
        assert_eq!(symbol.len(), usize::from(header.symbol_size));
    }
});
