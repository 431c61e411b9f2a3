//! RaptorQ (RFC 6330) encoding of a block into datagrams.

use raptorq::{Encoder, ObjectTransmissionInformation};

use super::header::DatagramHeader;
use super::{LinkError, LinkParams, MAX_SOURCE_SYMBOLS, MIN_SYMBOL_SIZE, SYMBOL_ALIGN};

/// Repair symbols for a block of `k` source symbols: `max(min_repair, ceil(k * ratio))`.
pub fn repair_count(k: usize, ratio: f64, min_repair: u32) -> u32 {
    let scaled = (k as f64 * ratio).ceil();
    let scaled = if scaled.is_finite() && scaled > 0.0 {
        scaled.min(f64::from(u32::MAX)) as u32
    } else {
        0
    };
    scaled.max(min_repair)
}

/// The symbol size for a block of `len` bytes when symbols may be up to `largest`: as many
/// symbols as `largest` needs, each only as large as they must be to hold the block
/// (a multiple of [`SYMBOL_ALIGN`], at least [`MIN_SYMBOL_SIZE`]). A lone 600-byte frame
/// then travels in three 630-byte datagrams (one source, two repair) instead of three full
/// ones; every symbol of a block, repair ones included, has this size.
pub fn block_symbol_size(len: usize, largest: u16) -> u16 {
    let max = usize::from(largest);
    let k = len.div_ceil(max).max(1);
    let even = len.div_ceil(k).next_multiple_of(SYMBOL_ALIGN);
    let size = even.clamp(MIN_SYMBOL_SIZE.min(max), max);
    u16::try_from(size).unwrap_or(largest)
}

/// Turns blocks into datagrams for one sender session.
#[derive(Debug)]
pub struct BlockEncoder {
    session_id: u64,
    next_block_id: u32,
    symbol_size: u16,
    repair_ratio: f64,
    min_repair: u32,
}

impl BlockEncoder {
    /// An encoder for sender session `session_id`; the settings are validated first.
    pub fn new(session_id: u64, params: &LinkParams) -> Result<Self, LinkError> {
        params.validate()?;
        Ok(Self {
            session_id,
            next_block_id: 0,
            symbol_size: params.symbol_size()?,
            repair_ratio: params.repair_ratio,
            min_repair: params.min_repair,
        })
    }

    /// The sender session id written in every datagram header.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Encodes one block: its source symbols first, then the repair symbols.
    pub fn encode(&mut self, block: &[u8]) -> Result<Vec<Vec<u8>>, LinkError> {
        let block_len = u32::try_from(block.len()).map_err(|_| LinkError::BlockTooLarge {
            len: block.len(),
            max: u32::MAX as usize,
        })?;
        let largest = usize::from(self.symbol_size);
        let k = block.len().div_ceil(largest);
        if block.is_empty() || k > MAX_SOURCE_SYMBOLS {
            return Err(LinkError::BlockTooLarge {
                len: block.len(),
                max: MAX_SOURCE_SYMBOLS * largest,
            });
        }
        let symbol_size = block_symbol_size(block.len(), self.symbol_size);
        let oti = ObjectTransmissionInformation::new(
            u64::from(block_len),
            symbol_size,
            1,
            1,
            SYMBOL_ALIGN as u8,
        );
        let repair = repair_count(k, self.repair_ratio, self.min_repair);
        let packets = Encoder::new(block, oti).get_encoded_packets(repair);
        let block_id = self.next_block_id;
        self.next_block_id = self.next_block_id.wrapping_add(1);
        Ok(packets
            .iter()
            .map(|p| {
                DatagramHeader {
                    session_id: self.session_id,
                    block_id,
                    block_len,
                    symbol_size,
                    payload_id: p.payload_id().serialize(),
                }
                .write(p.data())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_symbols_are_as_small_as_the_block_allows() {
        // A lone frame: one source symbol of its own size, rounded to the alignment.
        assert_eq!(block_symbol_size(600, 1168), 600);
        assert_eq!(block_symbol_size(601, 1168), 608);
        // Tiny blocks still use the smallest symbol a receiver accepts by default.
        assert_eq!(block_symbol_size(10, 1168), 64);
        // Larger blocks: the same number of symbols as with the largest size, evened out.
        assert_eq!(block_symbol_size(1169, 1168), 592);
        assert_eq!(block_symbol_size(16 * 1024, 1168), 1096);
        assert_eq!(block_symbol_size(2 * 1168, 1168), 1168);
        // A configured size below the floor is kept as it is.
        assert_eq!(block_symbol_size(10, 16), 16);
    }

    proptest::proptest! {
        #[test]
        fn block_symbols_hold_the_block_in_as_few_symbols(len in 1usize..200_000, largest in 2u16..8192) {
            let largest = largest / 8 * 8;
            proptest::prop_assume!(largest >= 8);
            let t = usize::from(block_symbol_size(len, largest));
            proptest::prop_assert!(t <= usize::from(largest));
            proptest::prop_assert_eq!(t % SYMBOL_ALIGN, 0);
            proptest::prop_assert_eq!(len.div_ceil(t), len.div_ceil(usize::from(largest)));
        }
    }

    #[test]
    fn repair_count_rule() {
        assert_eq!(repair_count(10, 0.5, 2), 5);
        assert_eq!(repair_count(1, 0.5, 2), 2);
        assert_eq!(repair_count(3, 0.0, 0), 0);
        assert_eq!(repair_count(7, 0.1, 0), 1);
    }
}
