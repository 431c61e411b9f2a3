//! The link codec: how sealed frames become datagrams and back.
//!
//! Sender: [`BlockPacker`] gathers sealed frames into blocks (length-prefixed, flushed on
//! size or a short linger); [`BlockEncoder`] RaptorQ-encodes each block into symbols sized
//! to the datagram, one symbol per datagram, each with a header and a CRC32C trailer.
//! Receiver: [`BlockDecoder`] checks each datagram, reassembles blocks within a bounded
//! window and hands back the sealed frames of every block it can decode.
//! On serial lines each datagram is COBS-encoded and 0x00-delimited ([`cobs`]).

pub mod block;
pub mod cobs;
pub mod decoder;
pub mod encoder;
pub mod header;

use std::time::Duration;

use thiserror::Error;

pub use block::{BlockPacker, unpack_block};
pub use decoder::{BlockDecoder, DecoderConfig, LinkStats};
pub use encoder::{BlockEncoder, block_symbol_size, repair_count};
pub use header::{DatagramHeader, HEADER_LEN, OVERHEAD, TRAILER_LEN};

/// RaptorQ symbol alignment; symbol sizes are multiples of it.
pub const SYMBOL_ALIGN: usize = 8;
/// The smallest symbol the sender uses for a small block (when its configured size is not
/// smaller still); a receiver's `min_symbol_size` defaults to it.
pub const MIN_SYMBOL_SIZE: usize = 64;
/// The smallest datagram the codec will work with.
pub const MIN_DATAGRAM: usize = OVERHEAD + 64;
/// RFC 6330 allows at most 56,403 source symbols in a block.
pub const MAX_SOURCE_SYMBOLS: usize = 56_403;

/// Why a datagram or a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    #[error("datagram is {len} bytes; a datagram has at least {min}")]
    /// The datagram is shorter than a header, a trailer and a minimal symbol.
    Short {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    #[error("datagram CRC32C does not match: corrupted in transit")]
    /// The CRC32C trailer does not match.
    Crc,
    #[error("datagram does not start with the Airlock magic")]
    /// The first two bytes are not the Airlock magic.
    Magic,
    #[error("datagram link version {0} is not supported")]
    /// An unknown link version (the byte found).
    Version(u8),
    #[error("datagram header is invalid: {0}")]
    /// A header field is out of range (which one).
    Header(&'static str),
    #[error("block of {len} bytes is larger than the configured maximum {max}")]
    /// A block is larger than the decoder accepts.
    BlockTooLarge {
        /// Its length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    #[error("block content is malformed: {0}")]
    /// A decoded block does not unpack into frames (what is wrong).
    Block(&'static str),
    #[error("link parameters are invalid: {0}")]
    /// The link settings cannot work (what is wrong).
    Params(String),
}

impl LinkError {
    /// A stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::Short { .. } => "short_datagram",
            LinkError::Crc => "crc",
            LinkError::Magic => "bad_magic",
            LinkError::Version(_) => "bad_link_version",
            LinkError::Header(_) => "bad_header",
            LinkError::BlockTooLarge { .. } => "block_too_large",
            LinkError::Block(_) => "bad_block",
            LinkError::Params(_) => "bad_params",
        }
    }

    /// Every label [`Self::reason`] returns: a receiver counts refused datagrams under
    /// these, the same words its log lines carry.
    pub const REASONS: [&'static str; 8] = [
        "short_datagram",
        "crc",
        "bad_magic",
        "bad_link_version",
        "bad_header",
        "block_too_large",
        "bad_block",
        "bad_params",
    ];
}

/// The sender's link settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Largest datagram: the UDP payload (MTU minus 28 for IPv4) or a serial datagram.
    pub datagram_size: usize,
    /// Flush a block once it would grow beyond this many bytes.
    pub max_block_bytes: usize,
    /// Flush a non-empty block this long after its first frame.
    pub linger: Duration,
    /// Repair symbols per block: `max(min_repair, ceil(K * repair_ratio))`.
    pub repair_ratio: f64,
    /// The least number of repair symbols per block.
    pub min_repair: u32,
}

impl Default for LinkParams {
    /// Generous FEC for tests and tools; the sender's configured default is
    /// `[fec] repair_ratio = 0.25` (its config module, decisions D18).
    fn default() -> Self {
        Self {
            datagram_size: 1472,
            max_block_bytes: 16 * 1024,
            linger: Duration::from_millis(5),
            repair_ratio: 0.5,
            min_repair: 2,
        }
    }
}

impl LinkParams {
    /// The RaptorQ symbol size that fits one datagram.
    pub fn symbol_size(&self) -> Result<u16, LinkError> {
        symbol_size_for(self.datagram_size)
    }

    /// Checks that the settings can work: a symbol fits a datagram, ratios and sizes are in range.
    pub fn validate(&self) -> Result<(), LinkError> {
        self.symbol_size()?;
        if !(0.0..=10.0).contains(&self.repair_ratio) {
            return Err(LinkError::Params(format!(
                "repair_ratio {} must be between 0 and 10",
                self.repair_ratio
            )));
        }
        if self.max_block_bytes == 0 || self.max_block_bytes > 16 * 1024 * 1024 {
            return Err(LinkError::Params(
                "max_block_bytes must be between 1 and 16 MiB".into(),
            ));
        }
        Ok(())
    }
}

/// The symbol size for a datagram size: what is left after header and CRC, rounded down
/// to [`SYMBOL_ALIGN`].
pub fn symbol_size_for(datagram_size: usize) -> Result<u16, LinkError> {
    if !(MIN_DATAGRAM..=65_507).contains(&datagram_size) {
        return Err(LinkError::Params(format!(
            "datagram size {datagram_size} must be between {MIN_DATAGRAM} and 65507 bytes"
        )));
    }
    let size = (datagram_size - OVERHEAD) / SYMBOL_ALIGN * SYMBOL_ALIGN;
    u16::try_from(size).map_err(|_| LinkError::Params("symbol size overflows".into()))
}

#[cfg(test)]
mod reason_tests {
    use super::LinkError;

    #[test]
    fn every_reason_is_listed_once() {
        let all = [
            LinkError::Short { len: 1, min: 2 },
            LinkError::Crc,
            LinkError::Magic,
            LinkError::Version(9),
            LinkError::Header("x"),
            LinkError::BlockTooLarge { len: 2, max: 1 },
            LinkError::Block("x"),
            LinkError::Params("x".into()),
        ];
        let labels: Vec<&str> = all.iter().map(LinkError::reason).collect();
        assert_eq!(labels, LinkError::REASONS);
    }
}
