//! Hot paths of the protocol crate: seal, open (alone and in batches), FEC encode/decode, COBS.
//! Run: `cargo bench -p airlock-protocol --bench protocol`
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark with a broken fixture should stop at once"
)]

use std::hint::black_box;

use airlock_protocol::link::{BlockDecoder, BlockEncoder, DecoderConfig, LinkParams, cobs};
use airlock_protocol::open_batch::{ToOpen, open_batch};
use airlock_protocol::replay::ReplayState;
use airlock_protocol::seal::open;
use airlock_protocol::testkit::{self, T0};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn seal_open(c: &mut Criterion) {
    let sealer = testkit::sealer();
    let env = testkit::provision_of_size(600);
    let sealed = sealer.seal(&env).unwrap().sealed;
    let trust = testkit::trust();
    let fresh = testkit::freshness();
    let replay = ReplayState::new();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("seal {} B provision", sealed.len()), |b| {
        b.iter(|| sealer.seal(black_box(&env)).unwrap())
    });
    g.bench_function(format!("open {} B provision", sealed.len()), |b| {
        b.iter(|| open(black_box(&sealed), &trust, &fresh, T0, &replay).unwrap())
    });
    for n in [64usize, 256] {
        let frames: Vec<Vec<u8>> = (0..n).map(|_| sealer.seal(&env).unwrap().sealed).collect();
        let burst: Vec<ToOpen> = frames
            .iter()
            .map(|sealed| ToOpen { sealed, now: T0 })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("open_batch of {n}"), |b| {
            b.iter(|| open_batch(black_box(&burst), &trust, &fresh, &replay))
        });
    }
    g.throughput(Throughput::Elements(1));
    // The signature bound: what open and seal cannot beat.
    let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let msg = vec![7u8; 600];
    let sig = ed25519_dalek::Signer::sign(&key, &msg);
    let vk = key.verifying_key();
    g.bench_function("ed25519 sign alone (600 B)", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&key, black_box(&msg)))
    });
    g.bench_function("ed25519 verify alone (600 B)", |b| {
        b.iter(|| ed25519_dalek::Verifier::verify(&vk, black_box(&msg), &sig).unwrap())
    });
    for n in [16usize, 64, 256] {
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 600]).collect();
        let sigs: Vec<_> = msgs
            .iter()
            .map(|m| ed25519_dalek::Signer::sign(&key, m))
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let vks = vec![vk; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("ed25519 verify_batch of {n} (600 B)"), |b| {
            b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap())
        });
    }
    g.throughput(Throughput::Elements(1));
    g.finish();
}

fn fec(c: &mut Criterion) {
    let block: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut framed = Vec::with_capacity(block.len() + 4 * 32);
    for chunk in block.chunks(32 * 1024) {
        framed.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        framed.extend_from_slice(chunk);
    }
    let params = LinkParams {
        max_block_bytes: 2 * 1024 * 1024,
        ..LinkParams::default()
    };
    let mut g = c.benchmark_group("fec 1 MiB block");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(framed.len() as u64));
    g.bench_function("encode (ratio 0.5)", |b| {
        let mut enc = BlockEncoder::new(1, &params).unwrap();
        b.iter(|| enc.encode(black_box(&framed)).unwrap())
    });
    let mut enc = BlockEncoder::new(1, &params).unwrap();
    let datagrams = enc.encode(&framed).unwrap();
    let k = framed
        .len()
        .div_ceil(usize::from(params.symbol_size().unwrap()));
    // Lose every 10th source symbol so that repair symbols are really used.
    let received: Vec<&Vec<u8>> = datagrams
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= k || i % 10 != 0)
        .map(|(_, d)| d)
        .collect();
    let config = DecoderConfig {
        max_block_bytes: 2 * 1024 * 1024,
        ..DecoderConfig::default()
    };
    g.bench_function("decode (10% source loss)", |b| {
        b.iter(|| {
            let mut dec = BlockDecoder::new(config.clone());
            let mut frames = 0;
            for d in &received {
                frames += dec.push_datagram(d).unwrap().len();
                if frames > 0 {
                    break;
                }
            }
            assert_eq!(frames, 32);
        })
    });
    g.finish();
}

fn cobs_bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..1472u32).map(|i| (i % 7) as u8).collect();
    let encoded = cobs::encode(&data);
    let mut g = c.benchmark_group("cobs 1472 B datagram");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("encode", |b| b.iter(|| cobs::encode(black_box(&data))));
    g.bench_function("decode", |b| {
        b.iter(|| cobs::decode(black_box(&encoded)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, seal_open, fec, cobs_bench);
criterion_main!(benches);
