//! FEC recovery: within the repair budget a block decodes exactly; beyond it the decoder
//! reports a loss and never hands out wrong bytes.

use airlock_protocol::link::{BlockDecoder, BlockEncoder, BlockPacker, DecoderConfig, LinkParams};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn params() -> LinkParams {
    LinkParams {
        datagram_size: 256,
        repair_ratio: 0.5,
        min_repair: 2,
        ..LinkParams::default()
    }
}

fn block_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut packer = BlockPacker::new(usize::MAX, std::time::Duration::from_secs(1));
    let now = std::time::Instant::now();
    for f in frames {
        assert!(packer.push(f, now).is_none());
    }
    packer.flush().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn recovers_any_loss_pattern_within_budget(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..900), 1..6),
        seed in any::<u64>(),
    ) {
        let block = block_of(&frames);
        let mut enc = BlockEncoder::new(7, &params()).unwrap();
        let mut datagrams = enc.encode(&block).unwrap();
        let k = block.len().div_ceil(usize::from(params().symbol_size().unwrap()));
        let repair = datagrams.len() - k;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        datagrams.shuffle(&mut rng);
        let lose = rng.gen_range(0..=repair);
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        for d in &datagrams[lose..] {
            out.extend(dec.push_datagram(d).unwrap());
        }
        // RaptorQ decodes from K symbols with probability ~99%; K+2 is near certain.
        // With `lose <= repair - 2` we require success.
        if lose + 2 <= repair {
            prop_assert_eq!(out, frames);
        } else {
            prop_assert!(out.is_empty() || out == frames);
        }
    }

    #[test]
    fn beyond_budget_reports_loss_never_wrong_bytes(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..900), 2..6),
        seed in any::<u64>(),
    ) {
        let cfg = DecoderConfig { max_pending_blocks: 1, ..DecoderConfig::default() };
        let mut dec = BlockDecoder::new(cfg);
        let mut enc = BlockEncoder::new(7, &params()).unwrap();
        let block = block_of(&frames);
        let mut datagrams = enc.encode(&block).unwrap();
        let k = block.len().div_ceil(usize::from(params().symbol_size().unwrap()));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        datagrams.shuffle(&mut rng);
        // Keep fewer than K symbols: the block cannot be decoded.
        for d in datagrams.iter().take(k - 1) {
            prop_assert!(dec.push_datagram(d).unwrap().is_empty());
        }
        // Push enough later blocks to move the window past it.
        for _ in 0..8 {
            for d in enc.encode(&block_of(&[vec![1u8; 10]])).unwrap() {
                let frames_out = dec.push_datagram(&d).unwrap();
                prop_assert!(frames_out.is_empty() || frames_out == vec![vec![1u8; 10]]);
            }
        }
        prop_assert!(dec.stats().blocks_lost >= 1);
    }

    #[test]
    fn corrupted_datagrams_become_erasures(seed in any::<u64>()) {
        let frames = vec![vec![5u8; 700], vec![6u8; 300]];
        let mut enc = BlockEncoder::new(1, &params()).unwrap();
        let mut datagrams = enc.encode(&block_of(&frames)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let victim = rng.gen_range(0..datagrams.len());
        let byte = rng.gen_range(0..datagrams[victim].len());
        datagrams[victim][byte] ^= 1 << rng.gen_range(0..8);
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        for d in &datagrams {
            if let Ok(f) = dec.push_datagram(d) {
                out.extend(f);
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert_eq!(dec.stats().crc_errors, 1);
    }

    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut dec = BlockDecoder::new(DecoderConfig::default());
        let _ = dec.push_datagram(&bytes);
    }
}
