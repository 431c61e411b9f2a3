//! Reassembly: datagrams in, sealed frames of decoded blocks out, memory bounded.
//!
//! Bounds: at most `max_sessions` sender sessions, `max_pending_blocks` incomplete blocks
//! per session (the least recently touched one goes first), `max_pending_bytes` of
//! reassembly memory over all sessions (estimated per block from its source symbol count
//! and the symbols held; the least recently touched block goes first),
//! `max_symbols_factor · K` symbols per block, `max_block_bytes` per block, symbol sizes
//! from `min_symbol_size` (the sender never uses smaller ones), a fixed number of remembered settled block ids.
//! What falls out of a bound is dropped and counted, never buffered without limit.
//!
//! The CRC does not authenticate, so a forged datagram may name any block id. The window
//! only drives the loss counter: a block far below the newest id is still reassembled (it
//! may be a real block after a forged jump), so no single datagram can stall a session.
//!
//! A block id is *settled* (later symbols for it are duplicates) only by a decoded block
//! that the caller's check authenticates ([`BlockDecoder::push_datagram_checked`]: the
//! receiver passes an AEAD check of the frames). Datagrams that disagree on a block's
//! length or symbol size are competing candidates for its id, each reassembled on its own,
//! at most `max_candidates` per id. A forged candidate that decodes to frames that do not
//! authenticate, or that is evicted, leaves the id open for the real block: forged
//! datagrams can delay a real block (by spoiling symbols), never make it be thrown away.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use raptorq::{Decoder, EncodingPacket, ObjectTransmissionInformation, PayloadId};
use sha2::{Digest, Sha256};

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
    /// Reassembly memory over all sessions, in bytes (estimated, see [`PENDING_OVERHEAD`]).
    pub max_pending_bytes: usize,
    /// Smallest symbol size accepted. The sender's smallest is 64 (a datagram of
    /// [`super::MIN_DATAGRAM`]); tiny symbols would make a small datagram claim a huge K.
    pub min_symbol_size: u16,
    /// Competing candidates (different block length or symbol size) kept per block id.
    pub max_candidates: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_block_bytes: 128 * 1024,
            max_pending_blocks: 64,
            max_sessions: 4,
            max_symbols_factor: 4,
            max_pending_bytes: 32 * 1024 * 1024,
            min_symbol_size: super::MIN_SYMBOL_SIZE as u16,
            max_candidates: 4,
        }
    }
}

/// Estimated decoder bytes per source symbol of a pending block, beyond the symbol data
/// (raptorq's per-symbol bookkeeping; measured RSS of forged floods stays below it).
pub const PENDING_OVERHEAD: usize = 64;

/// Counters of everything the decoder saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered.
    pub datagrams: u64,
    /// Bytes offered.
    pub bytes: u64,
    /// Datagrams whose CRC32C did not match (corruption, counted as erasure).
    pub crc_errors: u64,
    /// Datagrams with a bad magic, version or header field.
    pub header_errors: u64,
    /// Symbols already seen, or of a block already decoded.
    pub duplicate_symbols: u64,
    /// Symbols beyond what a block can use (dropped to bound memory).
    pub excess_symbols: u64,
    /// Blocks decoded.
    pub blocks_decoded: u64,
    /// Blocks given up on: too old, evicted, or of a session that was dropped.
    pub blocks_lost: u64,
    /// Decoded blocks that did not unpack into frames.
    pub block_errors: u64,
    /// Times a new sender session replaced the current one (a sender restart).
    pub session_resets: u64,
    /// Frames unpacked from decoded blocks.
    pub frames: u64,
    /// Datagrams refused for a symbol size below `min_symbol_size`.
    pub symbol_size_refused: u64,
    /// Decoded blocks none of whose frames authenticate: their id stays open.
    pub blocks_unauthenticated: u64,
    /// Incomplete blocks dropped for a bound (pending blocks, bytes, candidates).
    pub blocks_evicted: u64,
    /// Reassembly memory held now (estimated bytes).
    pub pending_bytes: u64,
    /// The most reassembly memory held so far (estimated bytes).
    pub pending_bytes_peak: u64,
}

struct PendingBlock {
    max_symbols: usize,
    seen_esis: HashSet<u32>,
    decoder: Decoder,
    last_touch: u64,
    /// Estimated memory held, counted in [`BlockDecoder`]'s `pending_bytes`.
    bytes: usize,
}

/// A pending block: its id and, to tell competing candidates apart, length and symbol size.
type CandidateKey = (u32, u32, u16);

#[derive(Default)]
struct Session {
    pending: BTreeMap<CandidateKey, PendingBlock>,
    /// Block ids recently settled (decoded, a frame authenticated); later symbols of these
    /// are duplicates.
    done: BTreeSet<u32>,
    /// `done` in insertion order, to forget the oldest beyond [`DONE_MEMORY`].
    done_order: VecDeque<u32>,
    highest: Option<u32>,
    last_active: u64,
    /// SHA-256 of decoded blocks refused lately, oldest first (at most [`REFUSED_MEMORY`]).
    refused: VecDeque<[u8; 32]>,
}

/// Digests of refused (unauthenticated or malformed) decoded blocks remembered per session.
const REFUSED_MEMORY: usize = 256;

/// Completed block ids remembered per session.
const DONE_MEMORY: usize = 4096;

/// Reassembles and decodes blocks.
pub struct BlockDecoder {
    config: DecoderConfig,
    sessions: HashMap<u64, Session>,
    current_session: Option<u64>,
    tick: u64,
    stats: LinkStats,
    pending_bytes: usize,
}

impl BlockDecoder {
    /// A decoder with the given bounds.
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            current_session: None,
            tick: 0,
            stats: LinkStats::default(),
            pending_bytes: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Incomplete blocks held right now.
    pub fn pending_blocks(&self) -> usize {
        self.sessions.values().map(|s| s.pending.len()).sum()
    }

    /// Estimated reassembly memory held now.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Takes one datagram. Returns the sealed frames of the block it completed, if any;
    /// every decoded block settles its id (tools and tests; a receiver uses
    /// [`Self::push_datagram_checked`]).
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Result<Vec<Vec<u8>>, LinkError> {
        self.push_datagram_checked(datagram, |_| true)
    }

    /// Like [`Self::push_datagram`], but a decoded block settles its id only if
    /// `authenticates` holds for at least one of its frames. The frames are returned
    /// either way (the caller's opening refuses and counts forged ones).
    pub fn push_datagram_checked(
        &mut self,
        datagram: &[u8],
        authenticates: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>, LinkError> {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        self.tick += 1;
        let (header, symbol) = DatagramHeader::parse(datagram).inspect_err(|e| match e {
            LinkError::Crc => self.stats.crc_errors += 1,
            _ => self.stats.header_errors += 1,
        })?;
        self.check_header(&header).inspect_err(|_| {
            self.stats.header_errors += 1;
            if header.symbol_size < self.config.min_symbol_size {
                self.stats.symbol_size_refused += 1;
            }
        })?;
        self.enter_session(header.session_id);
        let accepted = self.accept_symbol(&header, symbol);
        self.evict_over_budget();
        self.stats.pending_bytes = self.pending_bytes as u64;
        self.stats.pending_bytes_peak = self.stats.pending_bytes_peak.max(self.stats.pending_bytes);
        let Some(block) = accepted? else {
            return Ok(Vec::new());
        };
        // An unsettled id takes further symbols as a new candidate, which may decode the
        // same refused content again (a one-symbol block does, from each repair symbol):
        // content refused once is dropped as a duplicate, by digest, so a real block (other
        // content) is never mistaken for it.
        let digest: [u8; 32] = Sha256::digest(&block).into();
        if self
            .sessions
            .get(&header.session_id)
            .is_some_and(|s| s.refused.contains(&digest))
        {
            self.stats.duplicate_symbols += 1;
            return Ok(Vec::new());
        }
        self.stats.blocks_decoded += 1;
        let frames = match unpack_block(&block) {
            Ok(frames) => frames.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            Err(e) => {
                self.stats.block_errors += 1;
                self.remember_refused(header.session_id, digest);
                return Err(e);
            }
        };
        if frames.iter().any(|f| authenticates(f)) {
            self.settle(header.session_id, header.block_id);
        } else {
            self.stats.blocks_unauthenticated += 1;
            self.remember_refused(header.session_id, digest);
        }
        self.stats.frames += frames.len() as u64;
        Ok(frames)
    }

    fn remember_refused(&mut self, session_id: u64, digest: [u8; 32]) {
        if let Some(s) = self.sessions.get_mut(&session_id) {
            s.refused.push_back(digest);
            while s.refused.len() > REFUSED_MEMORY {
                s.refused.pop_front();
            }
        }
    }

    /// Marks a block id done and drops its other candidates.
    fn settle(&mut self, session_id: u64, block_id: u32) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let others: Vec<CandidateKey> = session
            .pending
            .range((block_id, 0, 0)..=(block_id, u32::MAX, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in others {
            if let Some(p) = session.pending.remove(&k) {
                self.pending_bytes = self.pending_bytes.saturating_sub(p.bytes);
            }
        }
        session.mark_done(block_id);
    }

    /// Drops the least recently touched incomplete blocks, over all sessions, until the
    /// estimated memory is within `max_pending_bytes`.
    fn evict_over_budget(&mut self) {
        while self.pending_bytes > self.config.max_pending_bytes {
            let oldest = self
                .sessions
                .iter()
                .flat_map(|(sid, s)| s.pending.iter().map(move |(k, p)| (*sid, *k, p.last_touch)))
                .min_by_key(|(_, _, touch)| *touch);
            let Some((sid, key, _)) = oldest else {
                self.pending_bytes = 0;
                break;
            };
            if let Some(p) = self
                .sessions
                .get_mut(&sid)
                .and_then(|s| s.pending.remove(&key))
            {
                self.pending_bytes = self.pending_bytes.saturating_sub(p.bytes);
                self.stats.blocks_evicted += 1;
            }
        }
    }

    fn check_header(&self, h: &DatagramHeader) -> Result<(), LinkError> {
        let ss = usize::from(h.symbol_size);
        let len = h.block_len as usize;
        if ss < SYMBOL_ALIGN || ss % SYMBOL_ALIGN != 0 {
            return Err(LinkError::Header("symbol size is not a multiple of 8"));
        }
        if h.symbol_size < self.config.min_symbol_size {
            return Err(LinkError::Header(
                "symbol size is below the smallest the sender uses (link.min_symbol_size)",
            ));
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
                    let held: usize = s.pending.values().map(|p| p.bytes).sum();
                    self.pending_bytes = self.pending_bytes.saturating_sub(held);
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
        let (lost, freed) = session.advance(h.block_id, &config);
        self.stats.blocks_lost += lost;
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        let key: CandidateKey = (h.block_id, h.block_len, h.symbol_size);
        if !session.pending.contains_key(&key) {
            let rivals = session
                .pending
                .range((h.block_id, 0, 0)..=(h.block_id, u32::MAX, u16::MAX))
                .count();
            if rivals >= config.max_candidates.max(1) {
                self.stats.excess_symbols += 1;
                return Err(LinkError::Header(
                    "too many competing candidates (block length, symbol size) for one block id",
                ));
            }
            let fresh = PendingBlock::new(h, &config);
            self.pending_bytes = self.pending_bytes.saturating_add(fresh.bytes);
            session.pending.insert(key, fresh);
        }
        let Some(pending) = session.pending.get_mut(&key) else {
            return Ok(None);
        };
        pending.last_touch = tick;
        if !pending.seen_esis.insert(h.esi()) {
            self.stats.duplicate_symbols += 1;
            return Ok(None);
        }
        if pending.seen_esis.len() > pending.max_symbols {
            self.stats.excess_symbols += 1;
            return Ok(None);
        }
        let held = symbol.len().saturating_add(PENDING_OVERHEAD);
        pending.bytes = pending.bytes.saturating_add(held);
        self.pending_bytes = self.pending_bytes.saturating_add(held);
        let packet = EncodingPacket::new(PayloadId::deserialize(&h.payload_id), symbol.to_vec());
        let decoded = pending.decoder.decode(packet);
        if decoded.is_some()
            && let Some(p) = session.pending.remove(&key)
        {
            self.pending_bytes = self.pending_bytes.saturating_sub(p.bytes);
        }
        let (evicted, freed) = session.evict_excess_pending(&config);
        self.stats.blocks_evicted += evicted;
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
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
        let k = (h.block_len as usize).div_ceil(usize::from(h.symbol_size).max(1));
        Self {
            max_symbols: k.saturating_mul(config.max_symbols_factor).max(k + 16),
            seen_esis: HashSet::new(),
            decoder: Decoder::new(oti),
            last_touch: 0,
            bytes: k.saturating_mul(PENDING_OVERHEAD),
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
    /// window without completing (pending ones and ids never seen), and the bytes freed.
    fn advance(&mut self, block_id: u32, config: &DecoderConfig) -> (u64, usize) {
        let old = self.highest;
        if old.is_some_and(|h| block_id <= h) {
            return (0, 0);
        }
        self.highest = Some(block_id);
        let w = u32::try_from(window(config)).unwrap_or(u32::MAX);
        let floor = block_id.saturating_sub(w);
        let old_floor = old.map_or(floor, |h| h.saturating_sub(w));
        if floor <= old_floor {
            return (0, 0);
        }
        // Arithmetic, not a loop: a forged id can jump by 2^32.
        let slid = u64::from(floor - old_floor);
        let completed = self.done.range(old_floor..floor).count() as u64;
        let stale: Vec<CandidateKey> = self
            .pending
            .range(..(floor, 0, 0))
            .map(|(k, _)| *k)
            .collect();
        let mut freed = 0usize;
        for k in stale {
            if let Some(p) = self.pending.remove(&k) {
                freed = freed.saturating_add(p.bytes);
            }
        }
        (slid.saturating_sub(completed), freed)
    }

    /// Drops the least recently touched incomplete blocks beyond the bound. They are not
    /// settled: the real block for that id may still arrive. Returns (dropped, bytes freed).
    fn evict_excess_pending(&mut self, config: &DecoderConfig) -> (u64, usize) {
        let (mut dropped, mut freed) = (0u64, 0usize);
        while self.pending.len() > config.max_pending_blocks.max(1) {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.last_touch)
                .map(|(k, _)| *k);
            let Some(p) = oldest.and_then(|k| self.pending.remove(&k)) else {
                break;
            };
            freed = freed.saturating_add(p.bytes);
            dropped += 1;
        }
        (dropped, freed)
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

    /// A one-datagram forged block for `block_id` (valid header and CRC, garbage symbol,
    /// a block length the real blocks do not have).
    fn forged(session_id: u64, block_id: u32, block_len: u32, esi: u8) -> Vec<u8> {
        DatagramHeader {
            session_id,
            block_id,
            block_len,
            symbol_size: 168,
            payload_id: [0, 0, 0, esi],
        }
        .write(&[0u8; 168])
    }

    /// One forged datagram per block id, ahead of the real blocks: before, the garbage
    /// "decoded" and settled the id, and the real block was thrown away as a duplicate.
    #[test]
    fn a_forged_datagram_per_block_id_does_not_silence_the_real_blocks() {
        let mut enc = BlockEncoder::new(8, &params()).unwrap();
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        for id in 0..50 {
            let _ = dec.push_datagram(&forged(8, id, 100, 0));
        }
        let mut out = Vec::new();
        for i in 0..50u8 {
            for d in enc.encode(&block_of(&[vec![i; 40]])).unwrap() {
                out.extend(dec.push_datagram(&d).unwrap_or_default());
            }
        }
        assert_eq!(out.len(), 50, "every real block is decoded");
    }

    /// Forged incomplete blocks pushed out by the pending-blocks bound: before, an evicted
    /// id was settled and its real block thrown away.
    #[test]
    fn evicted_forged_blocks_leave_their_ids_open() {
        let mut enc = BlockEncoder::new(3, &params()).unwrap();
        let mut dec = BlockDecoder::new(DecoderConfig {
            max_pending_blocks: 2,
            ..DecoderConfig::default()
        });
        // Two-symbol blocks of which only one symbol arrives: they stay incomplete.
        for id in 0..20 {
            let _ = dec.push_datagram(&forged(3, id, 300, 0));
        }
        let mut out = Vec::new();
        for i in 0..20u8 {
            for d in enc.encode(&block_of(&[vec![i; 40]])).unwrap() {
                out.extend(dec.push_datagram(&d).unwrap_or_default());
            }
        }
        assert_eq!(out.len(), 20);
    }

    /// A forged block that decodes to well-formed frames (the attacker chose the symbol)
    /// does not settle its id when no frame authenticates; the real block still decodes.
    #[test]
    fn a_decodable_forged_block_settles_nothing_unless_a_frame_authenticates() {
        let genuine = |f: &[u8]| f.first() == Some(&0xaa);
        let mut enc = BlockEncoder::new(4, &params()).unwrap();
        let mut forger = BlockEncoder::new(
            4,
            &LinkParams {
                datagram_size: 400,
                ..params()
            },
        )
        .unwrap();
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let fake = forger.encode(&block_of(&[vec![0x55; 30]])).unwrap();
        let got = dec.push_datagram_checked(&fake[0], genuine).unwrap();
        assert_eq!(got, vec![vec![0x55; 30]]);
        assert_eq!(dec.stats().blocks_unauthenticated, 1);
        let mut out = Vec::new();
        for d in enc.encode(&block_of(&[vec![0xaa; 30]])).unwrap() {
            out.extend(dec.push_datagram_checked(&d, genuine).unwrap());
        }
        assert_eq!(out, vec![vec![0xaa; 30]]);
        assert_eq!(dec.stats().blocks_unauthenticated, 1);
    }

    /// Competing candidates for one id are bounded.
    #[test]
    fn competing_candidates_per_block_id_are_bounded() {
        let mut dec = BlockDecoder::new(DecoderConfig {
            max_candidates: 3,
            ..DecoderConfig::default()
        });
        for len in 0..10u32 {
            let _ = dec.push_datagram(&forged(6, 7, 300 + len, 0));
        }
        assert!(dec.pending_blocks() <= 3);
    }

    /// Symbol sizes below the sender's smallest are refused before anything is allocated.
    #[test]
    fn symbol_sizes_the_sender_never_uses_are_refused() {
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let tiny = DatagramHeader {
            session_id: 1,
            block_id: 0,
            block_len: 128 * 1024,
            symbol_size: 8,
            payload_id: [0, 0, 0, 0],
        }
        .write(&[0u8; 8]);
        assert!(dec.push_datagram(&tiny).is_err());
        assert_eq!(dec.pending_blocks(), 0);
        assert_eq!(dec.stats().symbol_size_refused, 1);
    }

    /// The flood: many sessions and block ids, each datagram announcing the largest
    /// block in the smallest symbols. The estimated memory never passes the bound.
    #[test]
    fn a_forged_flood_stays_within_the_byte_bound() {
        let cfg = DecoderConfig {
            max_pending_bytes: 4 * 1024 * 1024,
            ..DecoderConfig::default()
        };
        let bound = cfg.max_pending_bytes;
        let mut dec = BlockDecoder::new(cfg);
        for i in 0..2_000u32 {
            let d = DatagramHeader {
                session_id: u64::from(i % 4),
                block_id: i,
                block_len: 128 * 1024,
                symbol_size: 64,
                payload_id: [0, 0, 0, 1],
            }
            .write(&[0u8; 64]);
            let _ = dec.push_datagram(&d);
            assert!(
                dec.pending_bytes() <= bound,
                "at datagram {i}: {}",
                dec.pending_bytes()
            );
        }
        assert!(dec.stats().blocks_evicted > 0);
        assert!(dec.stats().pending_bytes_peak as usize <= bound);
    }
}
