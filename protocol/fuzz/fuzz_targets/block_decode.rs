#![no_main]
//! A sequence of datagrams (split on a 2-byte length prefix) into one decoder, with CRCs
//! fixed up so the fuzzer reaches reassembly and RaptorQ decoding, not just the CRC check.
use airlock_protocol::link::{BlockDecoder, DecoderConfig, TRAILER_LEN, unpack_block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = BlockDecoder::new(DecoderConfig {
        max_block_bytes: 16 * 1024,
        max_pending_blocks: 4,
        max_sessions: 2,
        max_symbols_factor: 2,
    });
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        rest = tail;
        let mut datagram = chunk.to_vec();
        if datagram.len() > TRAILER_LEN {
            let body_len = datagram.len() - TRAILER_LEN;
            let crc = crc32c::crc32c(&datagram[..body_len]);
            datagram[body_len..].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = decoder.push_datagram(&datagram);
    }
    let _ = unpack_block(data);
});
