//! Reading and forging link datagrams, for drop filters and injection tests.
//!
//! The layout is the one in `protocol/src/link/header.rs` (all big endian): magic `AL`,
//! version 1, flags 0, session id u64, block id u32, block length u32, symbol size u16,
//! RaptorQ payload id (4 bytes), the symbol, then a CRC32C of every byte before it. The harness
//! keeps its own small reader so that it can also build datagrams the protocol crate would
//! never produce (forgeries with a correct CRC but a garbage symbol).

use rand::Rng;

pub const MAGIC: [u8; 2] = *b"AL";
pub const LINK_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 26;
pub const TRAILER_LEN: usize = 4;

/// The header fields of a datagram whose CRC matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub session_id: u64,
    pub block_id: u32,
    pub block_len: u32,
    pub symbol_size: u16,
    /// Encoding symbol id: below K a source symbol, from K on a repair symbol.
    pub esi: u32,
}

/// The header of a well-formed datagram with a correct CRC, or None.
pub fn peek(datagram: &[u8]) -> Option<Peek> {
    if datagram.len() < HEADER_LEN + TRAILER_LEN + 1 {
        return None;
    }
    let (body, trailer) = datagram.split_at(datagram.len() - TRAILER_LEN);
    let crc = u32::from_be_bytes(trailer.try_into().ok()?);
    if crc32c::crc32c(body) != crc || body.get(..2)? != MAGIC {
        return None;
    }
    Some(Peek {
        session_id: u64::from_be_bytes(body.get(4..12)?.try_into().ok()?),
        block_id: u32::from_be_bytes(body.get(12..16)?.try_into().ok()?),
        block_len: u32::from_be_bytes(body.get(16..20)?.try_into().ok()?),
        symbol_size: u16::from_be_bytes(body.get(20..22)?.try_into().ok()?),
        esi: u32::from_be_bytes([0, *body.get(23)?, *body.get(24)?, *body.get(25)?]),
    })
}

/// Writes a datagram with the given header fields and symbol, with a correct CRC32C.
pub fn build(p: &Peek, symbol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + symbol.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(LINK_VERSION);
    out.push(0);
    out.extend_from_slice(&p.session_id.to_be_bytes());
    out.extend_from_slice(&p.block_id.to_be_bytes());
    out.extend_from_slice(&p.block_len.to_be_bytes());
    out.extend_from_slice(&p.symbol_size.to_be_bytes());
    let esi = p.esi.to_be_bytes();
    out.extend_from_slice(&[0, esi[1], esi[2], esi[3]]);
    out.extend_from_slice(symbol);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Random bytes of a given length: noise on the link.
pub fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.r#gen::<u8>()).collect()
}

/// A forgery that passes the CRC: the header of a real datagram (same session, same block)
/// with a random symbol. Only the AEAD/signature checks after decoding can catch it.
pub fn forge_like(rng: &mut impl Rng, template: &[u8]) -> Option<Vec<u8>> {
    let p = peek(template)?;
    Some(build(&p, &random_bytes(rng, usize::from(p.symbol_size))))
}

/// A complete forged block: `k` source symbols of random bytes with a valid header and CRC,
/// for a session and block id of the forger's choosing. It decodes (RaptorQ accepts any
/// bytes) into garbage that the frame checks must reject.
pub fn forge_block(
    rng: &mut impl Rng,
    session_id: u64,
    block_id: u32,
    symbol_size: u16,
    k: u32,
) -> Vec<Vec<u8>> {
    let block_len = u32::from(symbol_size) * k;
    (0..k)
        .map(|esi| {
            let p = Peek {
                session_id,
                block_id,
                block_len,
                symbol_size,
                esi,
            };
            build(&p, &random_bytes(rng, usize::from(symbol_size)))
        })
        .collect()
}

/// Datagrams carrying a well-formed block of the given (unauthentic) sealed frames, in a
/// session and block id of the forger's choosing: they pass CRC, decode and unpack, so only
/// the frame checks (AEAD, signature, replay) can reject them. Source symbols first.
pub fn forge_frames_block(
    session_id: u64,
    block_id: u32,
    datagram_size: usize,
    frames: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, airlock_protocol::link::LinkError> {
    use airlock_protocol::link::{BlockEncoder, LinkParams};
    let mut block = Vec::new();
    for f in frames {
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        block.extend_from_slice(&len.to_be_bytes());
        block.extend_from_slice(f);
    }
    let params = LinkParams {
        datagram_size,
        ..LinkParams::default()
    };
    let datagrams = BlockEncoder::new(session_id, &params)?.encode(&block)?;
    // The encoder numbers blocks from 0; move them to the chosen block id.
    Ok(datagrams
        .iter()
        .filter_map(|d| {
            let p = peek(d)?;
            let symbol = d.get(HEADER_LEN..d.len() - TRAILER_LEN)?;
            Some(build(&Peek { block_id, ..p }, symbol))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample() -> Peek {
        Peek {
            session_id: 0xdead_beef_0000_0001,
            block_id: 42,
            block_len: 1000,
            symbol_size: 64,
            esi: 70_000,
        }
    }

    #[test]
    fn build_then_peek() {
        let d = build(&sample(), &[9u8; 64]);
        assert_eq!(d.len(), HEADER_LEN + 64 + TRAILER_LEN);
        assert_eq!(peek(&d), Some(sample()));
    }

    #[test]
    fn corruption_and_short_input_are_not_peeked() {
        let mut d = build(&sample(), &[9u8; 64]);
        d[40] ^= 0x10;
        assert_eq!(peek(&d), None);
        assert_eq!(peek(&[0x41, 0x4c]), None);
        assert_eq!(peek(&[]), None);
    }

    #[test]
    fn forgeries_pass_the_crc_with_a_new_symbol() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let real = build(&sample(), &[9u8; 64]);
        let fake = forge_like(&mut rng, &real).unwrap();
        assert_eq!(peek(&fake), Some(sample()));
        assert_ne!(fake, real);
        let block = forge_block(&mut rng, 7, 3, 64, 5);
        assert_eq!(block.len(), 5);
        assert!(
            block
                .iter()
                .all(|d| peek(d).is_some_and(|p| p.block_id == 3))
        );
    }

    #[test]
    fn layout_matches_the_protocol_crate() {
        use airlock_protocol::link::DatagramHeader;
        let d = build(&sample(), &[5u8; 64]);
        let (h, sym) = DatagramHeader::parse(&d).unwrap();
        assert_eq!(
            (
                h.session_id,
                h.block_id,
                h.block_len,
                h.symbol_size,
                h.esi()
            ),
            (0xdead_beef_0000_0001, 42, 1000, 64, 70_000)
        );
        assert_eq!(sym, &[5u8; 64]);
        let theirs = DatagramHeader {
            session_id: 9,
            block_id: 8,
            block_len: 7,
            symbol_size: 64,
            payload_id: [0, 0, 1, 2],
        }
        .write(&[1u8; 64]);
        let p = peek(&theirs).unwrap();
        assert_eq!((p.session_id, p.block_id, p.esi), (9, 8, 258));
        assert_eq!(build(&p, &[1u8; 64]), theirs);
    }

    #[test]
    fn forged_frame_blocks_decode_to_the_forged_frames() {
        use airlock_protocol::link::{BlockDecoder, DecoderConfig};
        let frames = vec![vec![0xA5; 300], vec![0x5A; 10]];
        let dgs = forge_frames_block(5, 1000, 1472, &frames).unwrap();
        assert!(
            dgs.iter()
                .all(|d| peek(d).is_some_and(|p| p.block_id == 1000))
        );
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        for d in &dgs {
            out.extend(dec.push_datagram(d).unwrap());
        }
        assert_eq!(out, frames);
    }
}
