//! COBS (Consistent Overhead Byte Stuffing) for byte streams: each datagram is encoded so
//! it holds no 0x00 and is followed by one 0x00 delimiter. A corrupted or oversized frame
//! costs only itself: the deframer resynchronises at the next delimiter.

use thiserror::Error;

/// Why a COBS frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CobsError {
    #[error("COBS frame contains a zero byte")]
    /// A zero byte inside a frame (zero only delimits frames).
    ZeroByte,
    #[error("COBS code byte points past the end of the frame")]
    /// A code byte points past the end of the frame.
    Truncated,
    #[error("COBS frame exceeds {max} bytes; discarded up to the next delimiter")]
    /// A frame grew past the limit; it is dropped up to the next delimiter.
    Oversize {
        /// The limit.
        max: usize,
    },
}

/// Encodes `data` (without the delimiter).
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 254 + 2);
    let mut code_at = 0;
    out.push(0);
    let mut code: u8 = 1;
    for &byte in data {
        if byte == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(byte);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

/// Encodes `data` and appends the 0x00 delimiter: what goes on the wire.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = encode(data);
    out.push(0);
    out
}

/// Decodes one frame (without the delimiter).
pub fn decode(encoded: &[u8]) -> Result<Vec<u8>, CobsError> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let code = usize::from(encoded[i]);
        if code == 0 {
            return Err(CobsError::ZeroByte);
        }
        let end = i + code;
        let run = encoded.get(i + 1..end).ok_or(CobsError::Truncated)?;
        if run.contains(&0) {
            return Err(CobsError::ZeroByte);
        }
        out.extend_from_slice(run);
        i = end;
        if code < 0xFF && i < encoded.len() {
            out.push(0);
        }
    }
    Ok(out)
}

/// Splits a byte stream on 0x00 and decodes each frame, holding at most `max_len` bytes.
#[derive(Debug)]
pub struct Deframer {
    max_len: usize,
    buf: Vec<u8>,
    overflowed: bool,
}

impl Deframer {
    /// A deframer that drops frames longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            buf: Vec::new(),
            overflowed: false,
        }
    }

    /// Feeds bytes; returns each frame completed by a delimiter in them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, CobsError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == 0 {
                if self.overflowed {
                    out.push(Err(CobsError::Oversize { max: self.max_len }));
                } else if !self.buf.is_empty() {
                    out.push(decode(&self.buf));
                }
                self.buf.clear();
                self.overflowed = false;
            } else if self.buf.len() < self.max_len {
                self.buf.push(b);
            } else {
                self.overflowed = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let enc = encode(&data);
            prop_assert!(!enc.contains(&0));
            prop_assert!(enc.len() <= data.len() + data.len() / 254 + 1);
            prop_assert_eq!(decode(&enc).unwrap(), data);
        }

        #[test]
        fn stream_of_frames(frames in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..600), 1..10), split in 1usize..50) {
            let wire: Vec<u8> = frames.iter().flat_map(|f| frame(f)).collect();
            let mut d = Deframer::new(4096);
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                got.extend(d.push(chunk).into_iter().map(Result::unwrap));
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&data);
        }
    }

    #[test]
    fn known_vectors() {
        assert_eq!(encode(&[0]), vec![1, 1]);
        assert_eq!(
            encode(&[0x11, 0x22, 0x00, 0x33]),
            vec![3, 0x11, 0x22, 2, 0x33]
        );
        assert_eq!(encode(&[]), vec![1]);
        let long: Vec<u8> = (1..=254).collect();
        let enc = encode(&long);
        assert_eq!(enc[0], 0xFF);
        assert_eq!(decode(&enc).unwrap(), long);
    }

    #[test]
    fn oversize_frames_are_dropped_and_stream_resyncs() {
        let mut d = Deframer::new(8);
        let mut wire = vec![5u8; 20];
        wire.push(0);
        wire.extend(frame(b"ok"));
        let got = d.push(&wire);
        assert_eq!(got[0], Err(CobsError::Oversize { max: 8 }));
        assert_eq!(got[1].as_ref().unwrap(), b"ok");
    }
}
