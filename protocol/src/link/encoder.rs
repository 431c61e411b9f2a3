//! RaptorQ (RFC 6330) encoding of a block into datagrams.

use raptorq::{Encoder, ObjectTransmissionInformation};

use super::header::DatagramHeader;
use super::{LinkError, LinkParams, MAX_SOURCE_SYMBOLS, SYMBOL_ALIGN};

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
        let symbol_size = usize::from(self.symbol_size);
        let k = block.len().div_ceil(symbol_size);
        if block.is_empty() || k > MAX_SOURCE_SYMBOLS {
            return Err(LinkError::BlockTooLarge {
                len: block.len(),
                max: MAX_SOURCE_SYMBOLS * symbol_size,
            });
        }
        let oti = ObjectTransmissionInformation::new(
            u64::from(block_len),
            self.symbol_size,
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
                    symbol_size: self.symbol_size,
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
    fn repair_count_rule() {
        assert_eq!(repair_count(10, 0.5, 2), 5);
        assert_eq!(repair_count(1, 0.5, 2), 2);
        assert_eq!(repair_count(3, 0.0, 0), 0);
        assert_eq!(repair_count(7, 0.1, 0), 1);
    }
}
