//! The datagram: header, one RaptorQ symbol, CRC32C trailer. All integers big endian.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 2 | magic `AL` (0x41 0x4C) |
//! | 2  | 1 | link version (1) |
//! | 3  | 1 | flags (0; others reserved) |
//! | 4  | 8 | sender session id (random per sender start) |
//! | 12 | 4 | block id (per session, counts up from 0) |
//! | 16 | 4 | block length in bytes (RaptorQ transfer length) |
//! | 20 | 2 | symbol size in bytes |
//! | 22 | 4 | RaptorQ payload id (source block number u8, encoding symbol id u24) |
//! | 26 | symbol size | symbol |
//! | end-4 | 4 | CRC32C (Castagnoli) of every byte before it |

use super::LinkError;

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"AL";
/// The link format version this code speaks.
pub const LINK_VERSION: u8 = 1;
/// Bytes before the symbol.
pub const HEADER_LEN: usize = 26;
/// Bytes after the symbol (the CRC32C).
pub const TRAILER_LEN: usize = 4;
/// Header plus trailer.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;

/// The parsed header of a datagram whose CRC matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    /// The sender's random per-start session id.
    pub session_id: u64,
    /// The block this symbol belongs to, counting up per session.
    pub block_id: u32,
    /// The block's length before encoding.
    pub block_len: u32,
    /// The RaptorQ symbol size of the block.
    pub symbol_size: u16,
    /// RFC 6330 payload id: source block number (always 0 here) and encoding symbol id.
    pub payload_id: [u8; 4],
}

impl DatagramHeader {
    /// RFC 6330 source block number.
    pub fn sbn(&self) -> u8 {
        self.payload_id[0]
    }

    /// RFC 6330 encoding symbol id (below K: a source symbol; from K on: repair).
    pub fn esi(&self) -> u32 {
        u32::from_be_bytes([
            0,
            self.payload_id[1],
            self.payload_id[2],
            self.payload_id[3],
        ])
    }

    /// Writes header, symbol and CRC into one datagram.
    pub fn write(&self, symbol: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + symbol.len());
        out.extend_from_slice(&MAGIC);
        out.push(LINK_VERSION);
        out.push(0);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&self.block_id.to_be_bytes());
        out.extend_from_slice(&self.block_len.to_be_bytes());
        out.extend_from_slice(&self.symbol_size.to_be_bytes());
        out.extend_from_slice(&self.payload_id);
        out.extend_from_slice(symbol);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Checks the CRC first (so corruption becomes erasure), then the header fields.
    /// Returns the header and the symbol bytes.
    pub fn parse(datagram: &[u8]) -> Result<(DatagramHeader, &[u8]), LinkError> {
        let min = OVERHEAD + 1;
        if datagram.len() < min {
            return Err(LinkError::Short {
                len: datagram.len(),
                min,
            });
        }
        let (body, trailer) = datagram.split_at(datagram.len() - TRAILER_LEN);
        let crc = u32::from_be_bytes(array(trailer, 0)?);
        if crc32c::crc32c(body) != crc {
            return Err(LinkError::Crc);
        }
        if body[..2] != MAGIC {
            return Err(LinkError::Magic);
        }
        if body[2] != LINK_VERSION {
            return Err(LinkError::Version(body[2]));
        }
        if body[3] != 0 {
            return Err(LinkError::Header("reserved flags are set"));
        }
        let header = DatagramHeader {
            session_id: u64::from_be_bytes(array(body, 4)?),
            block_id: u32::from_be_bytes(array(body, 12)?),
            block_len: u32::from_be_bytes(array(body, 16)?),
            symbol_size: u16::from_be_bytes(array(body, 20)?),
            payload_id: array(body, 22)?,
        };
        let symbol = &body[HEADER_LEN..];
        if symbol.len() != usize::from(header.symbol_size) {
            return Err(LinkError::Header("symbol length differs from symbol size"));
        }
        Ok((header, symbol))
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], LinkError> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(LinkError::Header("truncated header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let h = DatagramHeader {
            session_id: 0x0102_0304_0506_0708,
            block_id: 9,
            block_len: 100,
            symbol_size: 16,
            payload_id: [0, 0, 0, 3],
        };
        let d = h.write(&[7u8; 16]);
        assert_eq!(d.len(), OVERHEAD + 16);
        let (back, sym) = DatagramHeader::parse(&d).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.esi(), 3);
        assert_eq!(sym, &[7u8; 16]);
        let mut bad = d.clone();
        bad[30] ^= 1;
        assert_eq!(DatagramHeader::parse(&bad), Err(LinkError::Crc));
    }
}
