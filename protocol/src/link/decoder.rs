//! Reassembly: datagrams in, sealed frames of decoded blocks out, memory bounded.
//!
//! Bounds: at most `max_sessions` sender sessions, `max_pending_blocks` incomplete blocks
//! per session (the least recently touched one goes first), `max_symbols_factor * K`
//! symbols per block, `max_block_bytes` per block, a fixed number of remembered completed
//! block ids. What falls out of a bound is counted as lost, never buffered without limit.
//!
//! The CRC does not authenticate, so a forged datagram may name any block id. The window
//! only drives the loss counter: a block far below the newest id is still reassembled (it
//! may be a real block after a forged jump), so no single datagram can stall a session.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use raptorq::{Decoder, EncodingPacket, ObjectTransmissionInformation, PayloadId};

use super::block::unpack_block;
use super::header::DatagramHeader;
use super::{LinkError, MAX_SOURCE_SYMBOLS, SYMBOL_ALIGN};

/// The receiver's reassembly bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest block accepted (must be at least the sender's block size plus one frame).
    pub max_block_bytes: usize,
    /// Incomplete blocks kept per session; the oldest is dropped (and counted lost) beyond it.
    pub max_pending_blocks: usize,
    /// Sender sessions tracked at once (a restart starts a new one).
    pub max_sessions: usize,
    /// Symbols accepted per block, as a multiple of its source symbol count.
    pub max_symbols_factor: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_block_bytes: 128 * 1024,
            max_pending_blocks: 64,
            max_sessions: 4,
            max_symbols_factor: 4,
        }
    }
}

/// Counters of everything the decoder saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub datagrams: u64,
    pub bytes: u64,
    pub crc_errors: u64,
    pub header_errors: u64,
    pub duplicate_symbols: u64,
    pub excess_symbols: u64,
    pub blocks_decoded: u64,
    pub blocks_lost: u64,
    pub block_errors: u64,
    pub session_resets: u64,
    pub frames: u64,
}

struct PendingBlock {
    block_len: u32,
    symbol_size: u16,
    max_symbols: usize,
    seen_esis: HashSet<u32>,
    decoder: Decoder,
    last_touch: u64,
}

#[derive(Default)]
struct Session {
    pending: BTreeMap<u32, PendingBlock>,
    /// Block ids recently decoded (or given up on); later symbols of these are duplicates.
    done: BTreeSet<u32>,
    /// `done` in insertion order, to forget the oldest beyond [`DONE_MEMORY`].
    done_order: VecDeque<u32>,
    highest: Option<u32>,
    last_active: u64,
}

/// Completed block ids remembered per session.
const DONE_MEMORY: usize = 4096;

/// Reassembles and decodes blocks.
pub struct BlockDecoder {
    config: DecoderConfig,
    sessions: HashMap<u64, Session>,
    current_session: Option<u64>,
    tick: u64,
    stats: LinkStats,
}

impl BlockDecoder {
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            current_session: None,
            tick: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Incomplete blocks held right now.
    pub fn pending_blocks(&self) -> usize {
        self.sessions.values().map(|s| s.pending.len()).sum()
    }

    /// Takes one datagram. Returns the sealed frames of the block it completed, if any.
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Result<Vec<Vec<u8>>, LinkError> {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        self.tick += 1;
        let (header, symbol) = DatagramHeader::parse(datagram).inspect_err(|e| match e {
            LinkError::Crc => self.stats.crc_errors += 1,
            _ => self.stats.header_errors += 1,
        })?;
        self.check_header(&header)
            .inspect_err(|_| self.stats.header_errors += 1)?;
        self.enter_session(header.session_id);
        let Some(block) = self.accept_symbol(&header, symbol)? else {
            return Ok(Vec::new());
        };
        self.stats.blocks_decoded += 1;
        let frames = unpack_block(&block)
            .inspect_err(|_| self.stats.block_errors += 1)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        self.stats.frames += frames.len() as u64;
        Ok(frames)
    }

    fn check_header(&self, h: &DatagramHeader) -> Result<(), LinkError> {
        let ss = usize::from(h.symbol_size);
        let len = h.block_len as usize;
        if ss < SYMBOL_ALIGN || ss % SYMBOL_ALIGN != 0 {
            return Err(LinkError::Header("symbol size is not a multiple of 8"));
        }
        if len == 0 || len > self.config.max_block_bytes {
            return Err(LinkError::BlockTooLarge {
                len,
                max: self.config.max_block_bytes,
            });
        }
        if len.div_ceil(ss) > MAX_SOURCE_SYMBOLS {
            return Err(LinkError::Header("too many source symbols"));
        }
        if h.sbn() != 0 {
            return Err(LinkError::Header("source block number must be 0"));
        }
        Ok(())
    }

    /// A datagram of an unknown session starts tracking it, evicting the least recently
    /// active session beyond the bound (its incomplete blocks count as lost).
    fn enter_session(&mut self, session_id: u64) {
        if !self.sessions.contains_key(&session_id) {
            if self.current_session.is_some() {
                self.stats.session_resets += 1;
            }
            if self.sessions.len() >= self.config.max_sessions.max(1) {
                let oldest = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_active)
                    .map(|(id, _)| *id);
                if let Some(s) = oldest.and_then(|id| self.sessions.remove(&id)) {
                    self.stats.blocks_lost += s.pending.len() as u64;
                }
            }
            self.sessions.insert(session_id, Session::default());
        }
        self.current_session = Some(session_id);
        if let Some(s) = self.sessions.get_mut(&session_id) {
            s.last_active = self.tick;
        }
    }

    fn accept_symbol(
        &mut self,
        h: &DatagramHeader,
        symbol: &[u8],
    ) -> Result<Option<Vec<u8>>, LinkError> {
        let config = self.config.clone();
        let tick = self.tick;
        let Some(session) = self.sessions.get_mut(&h.session_id) else {
            return Ok(None);
        };
        if session.done.contains(&h.block_id) {
            self.stats.duplicate_symbols += 1;
            return Ok(None);
        }
        let lost = session.advance(h.block_id, &config);
        self.stats.blocks_lost += lost;
        let pending = session
            .pending
            .entry(h.block_id)
            .or_insert_with(|| PendingBlock::new(h, &config));
        pending.last_touch = tick;
        if pending.block_len != h.block_len || pending.symbol_size != h.symbol_size {
            return Err(LinkError::Header(
                "block length or symbol size differs from the block's first datagram",
            ));
        }
        if !pending.seen_esis.insert(h.esi()) {
            self.stats.duplicate_symbols += 1;
            return Ok(None);
        }
        if pending.seen_esis.len() > pending.max_symbols {
            self.stats.excess_symbols += 1;
            return Ok(None);
        }
        let packet = EncodingPacket::new(PayloadId::deserialize(&h.payload_id), symbol.to_vec());
        let decoded = pending.decoder.decode(packet);
        if decoded.is_some() {
            session.pending.remove(&h.block_id);
            session.mark_done(h.block_id);
        }
        self.stats.blocks_lost += session.evict_excess_pending(&config);
        Ok(decoded)
    }
}

impl PendingBlock {
    fn new(h: &DatagramHeader, config: &DecoderConfig) -> Self {
        let oti = ObjectTransmissionInformation::new(
            u64::from(h.block_len),
            h.symbol_size,
            1,
            1,
            SYMBOL_ALIGN as u8,
        );
        let k = (h.block_len as usize).div_ceil(usize::from(h.symbol_size));
        Self {
            block_len: h.block_len,
            symbol_size: h.symbol_size,
            max_symbols: k.saturating_mul(config.max_symbols_factor).max(k + 16),
            seen_esis: HashSet::new(),
            decoder: Decoder::new(oti),
            last_touch: 0,
        }
    }
}

impl Session {
    fn mark_done(&mut self, block_id: u32) {
        if self.done.insert(block_id) {
            self.done_order.push_back(block_id);
        }
        while self.done_order.len() > DONE_MEMORY {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// Moves the newest id forward to `block_id`; returns how many block ids slid out of the
    /// window without completing (pending ones and ids never seen).
    fn advance(&mut self, block_id: u32, config: &DecoderConfig) -> u64 {
        let old = self.highest;
        if old.is_some_and(|h| block_id <= h) {
            return 0;
        }
        self.highest = Some(block_id);
        let w = u32::try_from(window(config)).unwrap_or(u32::MAX);
        let floor = block_id.saturating_sub(w);
        let old_floor = old.map_or(floor, |h| h.saturating_sub(w));
        if floor <= old_floor {
            return 0;
        }
        // Arithmetic, not a loop: a forged id can jump by 2^32.
        let slid = u64::from(floor - old_floor);
        let completed = self.done.range(old_floor..floor).count() as u64;
        let stale: Vec<u32> = self.pending.range(..floor).map(|(id, _)| *id).collect();
        for id in stale {
            self.pending.remove(&id);
        }
        slid.saturating_sub(completed)
    }

    /// Drops the least recently touched incomplete blocks beyond the bound.
    fn evict_excess_pending(&mut self, config: &DecoderConfig) -> u64 {
        let mut lost = 0;
        while self.pending.len() > config.max_pending_blocks.max(1) {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.last_touch)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.pending.remove(&id);
                self.mark_done(id);
                lost += 1;
            }
        }
        lost
    }
}

fn window(config: &DecoderConfig) -> usize {
    config.max_pending_blocks.max(1) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{BlockEncoder, LinkParams};

    fn params() -> LinkParams {
        LinkParams {
            datagram_size: 200,
            ..LinkParams::default()
        }
    }

    fn block_of(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut block = Vec::new();
        for f in frames {
            block.extend_from_slice(&(f.len() as u32).to_be_bytes());
            block.extend_from_slice(f);
        }
        block
    }

    #[test]
    fn decodes_with_losses_within_budget() {
        let frames = vec![vec![1u8; 300], vec![2u8; 500]];
        let mut enc = BlockEncoder::new(42, &params()).unwrap();
        let datagrams = enc.encode(&block_of(&frames)).unwrap();
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        // drop the first two source symbols
        for d in datagrams.iter().skip(2) {
            out.extend(dec.push_datagram(d).unwrap());
        }
        assert_eq!(out, frames);
        assert_eq!(dec.stats().blocks_decoded, 1);
        assert!(dec.stats().duplicate_symbols > 0);
    }

    #[test]
    fn lost_blocks_are_counted() {
        let mut enc = BlockEncoder::new(1, &params()).unwrap();
        let cfg = DecoderConfig {
            max_pending_blocks: 2,
            ..DecoderConfig::default()
        };
        let mut dec = BlockDecoder::new(cfg);
        for i in 0..20u8 {
            let datagrams = enc.encode(&block_of(&[vec![i; 100]])).unwrap();
            if i != 3 {
                for d in &datagrams {
                    dec.push_datagram(d).unwrap();
                }
            }
        }
        assert_eq!(dec.stats().blocks_decoded, 19);
        assert_eq!(dec.stats().blocks_lost, 1);
    }

    /// A forged datagram (valid CRC, the real session id) naming block id u32::MAX neither
    /// hangs the decoder (no loop over the jump) nor stalls the real stream behind it.
    #[test]
    fn forged_block_id_jump_does_not_stall_the_session() {
        let mut enc = BlockEncoder::new(5, &params()).unwrap();
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        for d in enc.encode(&block_of(&[vec![1; 50]])).unwrap() {
            dec.push_datagram(&d).unwrap();
        }
        let forged = DatagramHeader {
            session_id: 5,
            block_id: u32::MAX,
            block_len: 100,
            symbol_size: 168,
            payload_id: [0, 0, 0, 0],
        }
        .write(&[0u8; 168]);
        let started = std::time::Instant::now();
        // One symbol of a one-symbol block: it "decodes" to garbage, refused as a bad block.
        assert!(dec.push_datagram(&forged).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let mut out = Vec::new();
        for i in 2..10u8 {
            for d in enc.encode(&block_of(&[vec![i; 50]])).unwrap() {
                out.extend(dec.push_datagram(&d).unwrap());
            }
        }
        assert_eq!(
            out.len(),
            8,
            "real blocks after the forged jump still decode"
        );
    }

    #[test]
    fn new_session_is_counted_as_reset() {
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        for session in [1, 2] {
            let mut enc = BlockEncoder::new(session, &params()).unwrap();
            for d in enc.encode(&block_of(&[vec![9; 10]])).unwrap() {
                dec.push_datagram(&d).unwrap();
            }
        }
        assert_eq!(dec.stats().session_resets, 1);
        assert_eq!(dec.stats().blocks_decoded, 2);
    }
}
