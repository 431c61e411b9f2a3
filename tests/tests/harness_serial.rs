//! The pty serial path: COBS frames (0x00-delimited) go from the sender's device to the
//! receiver's device through the impairment model.

use std::time::Duration;

use airlock_tests::impair::{ImpairConfig, Impairer};
use airlock_tests::serial_pty::{SerialPath, SerialPathConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;

/// A frame without zero bytes (as a COBS-encoded datagram is), unique per index.
fn frame(i: u32) -> Vec<u8> {
    let mut v: Vec<u8> = [i.to_be_bytes(), (!i).to_be_bytes()]
        .concat()
        .into_iter()
        .map(|b| b | 0x01)
        .collect();
    v.extend((0..40u32).map(|j| ((i + j) % 255 + 1) as u8));
    v
}

fn open(path: &std::path::Path) -> tokio_serial::SerialStream {
    tokio_serial::new(path.to_string_lossy(), 115_200)
        .open_native_async()
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Writes frames on the sender device, reads frames from the receiver device until the
/// path has forwarded everything (or a timeout).
/// Writes `frames` into the path and reads until `expect` frames came out (the path may
/// hold a delayed frame back for a while, so its counters alone cannot say "done").
async fn carry(path: &SerialPath, frames: &[Vec<u8>], expect: usize) -> Vec<Vec<u8>> {
    let mut tx = open(path.sender_device());
    let mut rx = open(path.receiver_device());
    let writer = {
        let frames = frames.to_vec();
        tokio::spawn(async move {
            for f in frames {
                tx.write_all(&f).await.unwrap();
                tx.write_all(&[0]).await.unwrap();
            }
            tx.flush().await.unwrap();
            tx
        })
    };
    let mut got = Vec::new();
    let mut cur = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = path.stats();
        if writer.is_finished() && s.received == frames.len() as u64 && got.len() >= expect {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled: {s}, got {}",
            got.len()
        );
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), rx.read(&mut buf)).await
        {
            for &b in &buf[..n] {
                if b == 0 {
                    got.push(std::mem::take(&mut cur));
                } else {
                    cur.push(b);
                }
            }
        }
    }
    got
}

#[tokio::test]
async fn pty_path_carries_frames_unchanged() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let path = SerialPath::start(SerialPathConfig::default()).unwrap();
    assert!(
        path.sender_device().starts_with("/dev/pts"),
        "{:?}",
        path.sender_device()
    );
    assert_ne!(path.sender_device(), path.receiver_device());
    let frames: Vec<Vec<u8>> = (0..500).map(frame).collect();
    let got = carry(&path, &frames, frames.len()).await;
    assert_eq!(got, frames);
    let s = path.stop().await;
    assert_eq!((s.received, s.forwarded, s.send_errors), (500, 500, 0));
}

#[tokio::test]
async fn pty_path_applies_the_seeded_impairments() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let impair = ImpairConfig {
        loss: 0.2,
        duplicate: 0.1,
        ..ImpairConfig::seeded(99)
    };
    let path = SerialPath::start(SerialPathConfig {
        impair,
        record_limit: 10,
        ..SerialPathConfig::default()
    })
    .unwrap();
    let frames: Vec<Vec<u8>> = (0..500).map(frame).collect();
    let mut model = Impairer::new(impair).unwrap();
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .flat_map(|f| model.process(f.clone()))
        .collect();
    let got = carry(&path, &frames, expected.len()).await;
    assert_eq!(got, expected);
    assert_eq!(path.stats().impair, model.stats());
    assert!(model.stats().lost_random > 50);
    assert_eq!(path.recorded(), frames[..10].to_vec());
}

#[tokio::test]
async fn pty_path_injects_frames_and_survives_reopen() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    let path = SerialPath::start(SerialPathConfig::default()).unwrap();
    // A first reader comes and goes (a receiver that is restarted): the pty stays usable.
    drop(open(path.receiver_device()));
    let mut rx = open(path.receiver_device());
    path.inject_frame(vec![1, 2, 3]);
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    while got.len() < 4 {
        let n = tokio::time::timeout(Duration::from_secs(5), rx.read(&mut buf))
            .await
            .expect("injected frame arrives")
            .unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, vec![1, 2, 3, 0]);
    assert_eq!(path.stats().injected, 1);
}

/// The protocol's own codec over the pty path: COBS-framed FEC datagrams at 10% frame loss and
/// 1% corruption all decode, and corrupted frames become CRC erasures, never bad frames.
#[tokio::test]
async fn protocol_datagrams_cross_a_lossy_serial_line() {
    let _gate = airlock_tests::gate::module_at_a_time(module_path!());
    use airlock_protocol::link::{
        BlockDecoder, BlockEncoder, BlockPacker, DecoderConfig, LinkParams, cobs,
    };
    let impair = ImpairConfig {
        loss: 0.10,
        corrupt: 0.01,
        ..ImpairConfig::seeded(77)
    };
    let path = SerialPath::start(SerialPathConfig {
        impair,
        ..SerialPathConfig::default()
    })
    .unwrap();
    let params = LinkParams {
        datagram_size: 256,
        // Small blocks (about 9 source symbols) need more repair than the default at 10%.
        repair_ratio: 1.0,
        ..LinkParams::default()
    };
    let frames: Vec<Vec<u8>> = (0..200u32).map(|i| frame(i).repeat(3)).collect();
    let mut packer = BlockPacker::new(2048, Duration::from_secs(60));
    let mut encoder = BlockEncoder::new(1, &params).unwrap();
    let mut wire = Vec::new();
    let now = std::time::Instant::now();
    let mut blocks: Vec<Vec<u8>> = frames.iter().filter_map(|f| packer.push(f, now)).collect();
    blocks.extend(packer.flush());
    for b in &blocks {
        for d in encoder.encode(b).unwrap() {
            wire.push(cobs::frame(&d));
        }
    }

    let mut tx = open(path.sender_device());
    let mut rx = open(path.receiver_device());
    let n_wire = wire.len() as u64;
    let writer = tokio::spawn(async move {
        for w in wire {
            tx.write_all(&w).await.unwrap();
        }
        tx
    });
    let mut deframer = cobs::Deframer::new(4096);
    let mut decoder = BlockDecoder::new(DecoderConfig::default());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < frames.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} frames; {}",
            got.len(),
            path.stats()
        );
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), rx.read(&mut buf)).await
        {
            for d in deframer.push(&buf[..n]).into_iter().flatten() {
                if let Ok(fs) = decoder.push_datagram(&d) {
                    got.extend(fs);
                }
            }
        }
    }
    let _tx = writer.await.unwrap();
    assert_eq!(got, frames);
    // FEC may finish before the last repair symbols crossed the relay: wait for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while path.stats().received < n_wire && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = path.stats();
    assert_eq!(s.received, n_wire);
    assert!(s.impair.lost_random > 0 && s.impair.corrupted > 0, "{s}");
}
