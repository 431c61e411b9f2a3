//! Reproduces the checked-in test vectors (protocol/tests/vectors/) byte for byte.
//! Regenerate after a deliberate wire change with `AIRLOCK_REGENERATE_VECTORS=1 cargo test -p airlock-protocol vectors`.

use std::path::PathBuf;

use crate::codec::encode_envelope;
use crate::link::{BlockEncoder, BlockPacker, LinkParams};
use crate::replay::ReplayState;
use crate::seal::{frame_hash, open};
use crate::testkit;

const IV: [u8; 12] = [3u8; 12];
const SESSION: u64 = 0x0102_0304_0506_0708;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn build() -> String {
    let sealer = testkit::sealer();
    let mut out = String::new();
    out.push_str(
        "# Airlock protocol test vectors. Keys: signer seed 01*32, link key kid 7 = 02*32,\n",
    );
    out.push_str("# IV 03*12 (fixed here only; real frames use a random IV). Values are hex.\n");
    out.push_str(&format!("signer_kid {}\n", sealer.signer_kid()));
    out.push_str(&format!(
        "signer_spki_pem {}\n",
        testkit::signer()
            .public()
            .to_spki_pem()
            .unwrap()
            .replace('\n', "\\n")
    ));
    let mut prev = [0u8; 32];
    let mut sealed_frames = Vec::new();
    for (i, body) in testkit::bodies().into_iter().enumerate() {
        let env = testkit::envelope(i as u64 + 1, prev, body);
        let signed = sealer.sign(&env).unwrap();
        let sealed = sealer.encrypt_with_iv(&signed.sign1, IV).unwrap();
        out.push_str(&format!("\nframe {} {}\n", env.seq, env.body.kind()));
        out.push_str(&format!(
            "envelope {}\n",
            hex::encode(encode_envelope(&env).unwrap())
        ));
        out.push_str(&format!("sign1 {}\n", hex::encode(&signed.sign1)));
        out.push_str(&format!("hash {}\n", hex::encode(signed.hash)));
        out.push_str(&format!("sealed {}\n", hex::encode(&sealed)));
        prev = signed.hash;
        sealed_frames.push(sealed);
    }
    let params = LinkParams {
        datagram_size: 256,
        ..LinkParams::default()
    };
    let mut packer = BlockPacker::new(params.max_block_bytes, params.linger);
    let now = std::time::Instant::now();
    for f in sealed_frames.iter().take(2) {
        assert!(packer.push(f, now).is_none());
    }
    let block = packer.flush().unwrap();
    let mut encoder = BlockEncoder::new(SESSION, &params).unwrap();
    out.push_str(&format!("\nblock {}\n", hex::encode(&block)));
    for d in encoder.encode(&block).unwrap() {
        out.push_str(&format!("datagram {}\n", hex::encode(d)));
    }
    out
}

#[test]
fn vectors_reproduce_and_open() {
    let path = vectors_dir().join("vectors.txt");
    let built = build();
    if std::env::var_os("AIRLOCK_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &built).unwrap();
    }
    let stored = std::fs::read_to_string(&path).expect("protocol/tests/vectors/vectors.txt");
    assert_eq!(
        built, stored,
        "sealed bytes differ from the checked-in vectors"
    );
    // And every stored sealed frame opens with the published keys.
    let trust = testkit::trust();
    for line in stored.lines().filter_map(|l| l.strip_prefix("sealed ")) {
        let sealed = hex::decode(line).unwrap();
        let opened = open(
            &sealed,
            &trust,
            &testkit::freshness(),
            testkit::T0,
            &ReplayState::new(),
        )
        .unwrap();
        assert_eq!(opened.hash, frame_hash(&opened.sign1));
    }
}
