//! Reproduces the checked-in test vectors (protocol/tests/vectors/) byte for byte: those of
//! the envelope version written today (`vectors.txt`) and of every older version still read
//! (`vectors-v1.txt`), whose frames must keep opening to the same envelopes.
//! Regenerate after a deliberate wire change with `AIRLOCK_REGENERATE_VECTORS=1 cargo test -p airlock-protocol vectors`.

use std::path::PathBuf;

use crate::codec::encode_envelope;
use crate::link::{BlockEncoder, BlockPacker, LinkParams};
use crate::message::{ENVELOPE_VERSION, Envelope, OLDEST_ENVELOPE_VERSION};
use crate::replay::ReplayState;
use crate::seal::{frame_hash, open};
use crate::testkit;

const IV: [u8; 12] = [3u8; 12];
const SESSION: u64 = 0x0102_0304_0506_0708;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The vector file of envelope version `v`.
fn file_name(v: u8) -> String {
    if v == ENVELOPE_VERSION {
        "vectors.txt".into()
    } else {
        format!("vectors-v{v}.txt")
    }
}

/// The sample envelopes of the vectors, in envelope version `v`.
fn envelopes(v: u8) -> Vec<Envelope> {
    let sealer = testkit::sealer();
    let mut prev = [0u8; 32];
    let mut out = Vec::new();
    for (i, body) in testkit::bodies().into_iter().enumerate() {
        let mut env = testkit::envelope(i as u64 + 1, prev, body);
        env.v = v;
        if let Ok(signed) = sealer.sign(&env) {
            prev = signed.hash;
        }
        out.push(env);
    }
    out
}

fn build(v: u8) -> String {
    let sealer = testkit::sealer();
    let mut out = String::new();
    out.push_str(
        "# Airlock protocol test vectors. Keys: signer seed 01*32, link key kid 7 = 02*32,\n",
    );
    out.push_str("# IV 03*12 (fixed here only; real frames use a random IV). Values are hex.\n");
    out.push_str(&format!("# Envelope version {v} (docs/protocol.md § 1).\n"));
    out.push_str(&format!("signer_kid {}\n", sealer.signer_kid()));
    out.push_str(&format!(
        "signer_spki_pem {}\n",
        testkit::signer()
            .public()
            .to_spki_pem()
            .unwrap()
            .replace('\n', "\\n")
    ));
    let mut sealed_frames = Vec::new();
    for env in envelopes(v) {
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
    for v in OLDEST_ENVELOPE_VERSION..=ENVELOPE_VERSION {
        let path = vectors_dir().join(file_name(v));
        let built = build(v);
        if std::env::var_os("AIRLOCK_REGENERATE_VECTORS").is_some() {
            std::fs::write(&path, &built).unwrap();
        }
        let stored =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            built,
            stored,
            "sealed bytes differ from the checked-in vectors {}",
            path.display()
        );
        // And every stored sealed frame opens with the published keys, to the same envelope.
        let trust = testkit::trust();
        let sealed = stored.lines().filter_map(|l| l.strip_prefix("sealed "));
        let expected = envelopes(v);
        assert_eq!(sealed.clone().count(), expected.len());
        for (line, want) in sealed.zip(expected) {
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
            assert_eq!(opened.envelope, want, "{}", path.display());
        }
    }
}

#[test]
fn index_keys_cut_every_envelope() {
    // Version 1 named every field in text; the index keys of today's version must make every
    // sample smaller, the Provision by at least a quarter (docs/performance.md, serial).
    for (old, new) in envelopes(OLDEST_ENVELOPE_VERSION)
        .iter()
        .zip(envelopes(ENVELOPE_VERSION))
    {
        let (a, b) = (
            encode_envelope(old).unwrap().len(),
            encode_envelope(&new).unwrap().len(),
        );
        assert!(b < a, "{}: {b} >= {a}", new.body.kind());
        if new.body.kind() == "provision" {
            assert!(b * 4 <= a * 3, "provision: {b} of {a}");
        }
        eprintln!(
            "{:<14} v1 {a:>4} B  v{ENVELOPE_VERSION} {b:>4} B",
            new.body.kind()
        );
    }
}
