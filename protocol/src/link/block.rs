//! Blocks: sealed frames packed back to back, each as `u32 length (big endian) | bytes`.

use std::time::{Duration, Instant};

use super::LinkError;
use crate::limits::MAX_SEALED_FRAME;

const LEN_PREFIX: usize = 4;

/// Gathers frames into blocks, flushing on size or after a linger.
#[derive(Debug)]
pub struct BlockPacker {
    max_block_bytes: usize,
    linger: Duration,
    current: Vec<u8>,
    deadline: Option<Instant>,
}

impl BlockPacker {
    /// A packer that flushes at `max_block_bytes` or `linger` after a block's first frame.
    pub fn new(max_block_bytes: usize, linger: Duration) -> Self {
        Self {
            max_block_bytes,
            linger,
            current: Vec::new(),
            deadline: None,
        }
    }

    /// Adds a frame. Returns the previous block if this frame did not fit beside it, or this
    /// frame's block if it filled it. A frame larger than a block travels in a block of its own.
    pub fn push(&mut self, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
        let needed = LEN_PREFIX + frame.len();
        let full = if !self.current.is_empty() && self.current.len() + needed > self.max_block_bytes
        {
            self.flush()
        } else {
            None
        };
        if self.current.is_empty() {
            self.deadline = Some(now + self.linger);
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.current.extend_from_slice(&len.to_be_bytes());
        self.current.extend_from_slice(frame);
        if full.is_none() && self.current.len() >= self.max_block_bytes {
            return self.flush();
        }
        full
    }

    /// The block whose linger has expired, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.deadline {
            Some(d) if now >= d => self.flush(),
            _ => None,
        }
    }

    /// When the current block must be flushed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes the current block, if it holds anything.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.deadline = None;
        if self.current.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.current))
        }
    }
}

/// Splits a decoded block back into its frames.
pub fn unpack_block(block: &[u8]) -> Result<Vec<&[u8]>, LinkError> {
    let mut frames = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<LEN_PREFIX>()
            .ok_or(LinkError::Block("truncated length prefix"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| LinkError::Block("frame length overflows"))?;
        if len == 0 || len > MAX_SEALED_FRAME {
            return Err(LinkError::Block("frame length out of range"));
        }
        if len > tail.len() {
            return Err(LinkError::Block("frame runs past the end of the block"));
        }
        let (frame, tail) = tail.split_at(len);
        frames.push(frame);
        rest = tail;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_size_and_linger() {
        let t0 = Instant::now();
        let mut p = BlockPacker::new(20, Duration::from_millis(5));
        assert!(p.push(&[1; 6], t0).is_none());
        let full = p.push(&[2; 6], t0).unwrap();
        assert_eq!(unpack_block(&full).unwrap(), vec![&[1u8; 6][..], &[2; 6]]);
        assert!(p.push(&[3; 3], t0).is_none());
        assert!(p.poll(t0).is_none());
        let late = p.poll(t0 + Duration::from_millis(5)).unwrap();
        assert_eq!(unpack_block(&late).unwrap(), vec![&[3u8; 3][..]]);
        assert!(p.flush().is_none());
    }

    #[test]
    fn oversized_frame_gets_its_own_block() {
        let t0 = Instant::now();
        let mut p = BlockPacker::new(20, Duration::from_millis(5));
        assert!(p.push(&[1; 2], t0).is_none());
        let first = p.push(&[9; 50], t0).unwrap();
        assert_eq!(unpack_block(&first).unwrap().len(), 1);
        let second = p.flush().unwrap();
        assert_eq!(unpack_block(&second).unwrap(), vec![&[9u8; 50][..]]);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(unpack_block(&[0, 0]).is_err());
        assert!(unpack_block(&[0, 0, 0, 0]).is_err());
        assert!(unpack_block(&[0, 0, 0, 9, 1]).is_err());
        assert!(unpack_block(&[]).unwrap().is_empty());
    }
}
