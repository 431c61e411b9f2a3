//! Measurements, not assertions of speed: run on purpose, on a quiet machine.
//!
//! ```text
//! cargo test -p airlock-sender --release --test integration -- measure:: --ignored --nocapture --test-threads 1
//! ```
//! - `pacing_at_115200_baud`: the byte rate on a serial pty pair, configured for 115,200
//!   baud 8N1 (11,520 bytes/s), measured over 10 s; asserts it is within 3%.
//! - `throughput_over_loopback_udp`: frames sealed (signed, logged, flushed) and sent per
//!   second with pacing off, for 600-byte Provision envelopes.
//! - `component_rates`: each stage alone (sign, encrypt, pack+FEC, outbox ingest/commit),
//!   to see which one bounds the pipeline.

use crate::common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use airlock_protocol::codec::encode_envelope;
use airlock_protocol::message::{Body, ENVELOPE_VERSION, Envelope};
use airlock_sender::daemon::Daemon;
use airlock_sender::engine::unix_now;
use airlock_sender::link::transport::Transport;
use airlock_sender::spool::{self, SpoolItem};
use airlock_sender::submit::submit;
use common::*;
use tokio::io::AsyncReadExt;

fn set(fx: &Fixture, from: &str, to: &str) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    assert!(text.contains(from));
    std::fs::write(&fx.config_path, text.replace(from, to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes 15 s; a measurement"]
async fn pacing_at_115200_baud() {
    const RATE: f64 = 11_520.0; // 115,200 baud, 8N1: 10 bits per byte
    let (ours, mut theirs) = tokio_serial::SerialStream::pair().unwrap();
    let fx = Fixture::udp(9);
    set(
        &fx,
        "pacing_bytes_per_sec = 0",
        "pacing_bytes_per_sec = 11520",
    );
    // Enough to keep the line busy well beyond the measurement window.
    let records: Vec<String> = (0..400)
        .map(|i| provision_record(&format!("p-{i}")))
        .collect();
    let report = submit(
        &fx.config(),
        &[("p.json".into(), records.join("\n").into_bytes())],
        unix_now(),
    )
    .unwrap();
    assert!(report.errors.is_empty());
    let daemon = Daemon::start(&fx.config(), Some(Transport::Stream(Box::new(ours))))
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    // Skip the first 2 s (start-up), then count bytes for 10 s.
    let warmup = Instant::now() + Duration::from_secs(2);
    while Instant::now() < warmup {
        let _ = tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut buf)).await;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(10);
    let mut bytes = 0u64;
    while Instant::now() < end {
        if let Ok(Ok(n)) = tokio::time::timeout_at(end.into(), theirs.read(&mut buf)).await {
            bytes += n as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = bytes as f64 / secs;
    let deviation = (rate - RATE) / RATE * 100.0;
    println!(
        "pacing: {bytes} bytes in {secs:.3} s = {rate:.1} B/s; configured {RATE} B/s; deviation {deviation:+.2}%"
    );
    // The measurement only means something if the sender still had frames to send.
    let (sent, last) = (
        daemon.metrics.sent_through_seq.load(Relaxed),
        daemon.metrics.last_seq.load(Relaxed),
    );
    assert!(
        sent < last,
        "the link must have stayed busy (sent through {sent}, last seq {last})"
    );
    assert!(deviation.abs() < 3.0, "{deviation:+.2}%");
    daemon.stop();
    daemon.wait().await.unwrap();
}

/// A Provision record whose envelope is about `target` bytes.
fn record_of_envelope_size(sub: &str, target: usize) -> (String, usize) {
    let mut pad = 0;
    loop {
        let mut rec: serde_json::Value = serde_json::from_str(&provision_record(sub)).unwrap();
        rec["claims"]["department"] = serde_json::json!("d".repeat(pad));
        let cfg_like = airlock_protocol::message::Provision {
            issuer: ISSUER.into(),
            subject: sub.into(),
            claims: airlock_protocol::message::Claims {
                email: Some(format!("{sub}@example.com")),
                name: Some("Jane Doe".into()),
                groups: vec!["airlock-users".into()],
                extra: [("department".to_string(), "d".repeat(pad))].into(),
                ..Default::default()
            },
            approval: airlock_protocol::message::Approval {
                approver: "alice@example.com".into(),
                approved_at: unix_now(),
                ticket_ref: "CHG-1".into(),
            },
            valid_until: unix_now() + 86_400,
        };
        let env = Envelope {
            v: ENVELOPE_VERSION,
            sender_kid: "0123456789abcdef".into(),
            seq: 100_000,
            prev: [7; 32],
            issued_at: unix_now(),
            body: Body::Provision(cfg_like),
        };
        let size = encode_envelope(&env).unwrap().len();
        if size >= target {
            return (rec.to_string(), size);
        }
        pad += target - size;
    }
}

/// `MEASURE_SHARED_CORES=1` turns `send.dedicated_signing_core` off, to compare.
fn share_cores_if_asked(fx: &Fixture) {
    if std::env::var_os("MEASURE_SHARED_CORES").is_some() {
        let on = "carousel_secs = 0\ndedicated_signing_core = false";
        set(fx, "carousel_secs = 0", on);
    }
}

/// Ed25519 signatures per second on one thread right now: the ceiling for the sender,
/// whose signing is sequential. Printed beside the result because on a shared VM it
/// moves by a quarter within a minute.
fn sign_rate_now() -> f64 {
    let sealer = airlock_protocol::testkit::sealer();
    let payload = vec![0x5a; 640];
    let t = Instant::now();
    for _ in 0..4000 {
        std::hint::black_box(sealer.sign_payload(&payload));
    }
    4000.0 / t.elapsed().as_secs_f64()
}

/// Runs on the daemon's own runtime (its worker threads yield to the signing thread).
#[test]
#[ignore = "a measurement"]
fn throughput_over_loopback_udp() {
    let fx = Fixture::udp(9);
    share_cores_if_asked(&fx);
    airlock_sender::daemon::runtime(&fx.config())
        .unwrap()
        .block_on(throughput());
}

async fn throughput() {
    const N: usize = 50_000;
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fx = Fixture::udp(sink.local_addr().unwrap().port());
    set(&fx, "mtu = 1200", "mtu = 1472");
    share_cores_if_asked(&fx);
    let (_, envelope_size) = record_of_envelope_size("u-00000", 600);
    // Build the batch through the policy once, then spool it (intake is not what is measured).
    let records: Vec<String> = (0..N)
        .map(|i| record_of_envelope_size(&format!("u-{i:05}"), 600).0)
        .collect();
    // MEASURE_BATCHES=50: 50 submissions of 1,000, so ingest overlaps sealing, as with a
    // steady stream of submissions (default: one submission of 50,000).
    let batches: usize = std::env::var("MEASURE_BATCHES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1);
    for chunk in records.chunks(N.div_ceil(batches)) {
        let report = submit(
            &fx.config(),
            &[("t.json".into(), chunk.join("\n").into_bytes())],
            unix_now(),
        )
        .unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors.first());
    }
    let spooled = spool::list(&fx.config().spool_dir()).unwrap().len();
    assert_eq!(spooled, batches);
    let _: Option<SpoolItem> = None;

    let sign_before = sign_rate_now();
    let start = Instant::now();
    let daemon = Daemon::start(&fx.config(), None).await.unwrap();
    // Ingest is part of the run; time sealing+sending separately from the first sealed frame.
    let mut first: Option<Instant> = None;
    let mut sealed_at_first = 0;
    let mut all_sealed: Option<f64> = None;
    let mut cpu_at_first = Vec::new();
    loop {
        let sent = daemon.metrics.sent_through_seq.load(Relaxed);
        let sealed = daemon.metrics.frames_sealed_total.load(Relaxed);
        if first.is_none() && sealed > 1 {
            first = Some(Instant::now());
            sealed_at_first = sealed;
            cpu_at_first = thread_cpu();
        }
        if all_sealed.is_none() && sealed as usize > N {
            all_sealed = first.map(|f| f.elapsed().as_secs_f64());
        }
        if sent as usize > N {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = start.elapsed().as_secs_f64();
    let from_first = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(total);
    let m = &daemon.metrics;
    let frames = (N as u64 + 1 - sealed_at_first) as f64;
    println!("all sealed {all_sealed:?} s after the first sealed frame");
    println!(
        "throughput: {N} Provisions ({envelope_size}-byte envelopes): {:.0} frames/s sealed+sent after ingest ({from_first:.2} s), {:.0} frames/s including ingest ({total:.2} s); {} datagrams, {} bytes, {} blocks, send errors {}",
        frames / from_first,
        N as f64 / total,
        m.datagrams_sent_total.load(Relaxed),
        m.bytes_sent_total.load(Relaxed),
        m.blocks_sent_total.load(Relaxed),
        m.send_errors_total.load(Relaxed),
    );
    print_cpu_per_frame(&cpu_at_first, &thread_cpu(), frames);
    daemon.stop();
    daemon.wait().await.unwrap();
    let sign_after = sign_rate_now();
    println!(
        "signing alone on one thread (Sealer::sign_payload, 640 bytes): {sign_before:.0}/s before, {sign_after:.0}/s after; sealed+sent = {:.0} % of the mean",
        frames / from_first / ((sign_before + sign_after) / 2.0) * 100.0
    );
}

/// Per thread of this process (by name and id): nanoseconds on a CPU and nanoseconds
/// runnable but waiting for one, from /proc/self/task/*/schedstat.
fn thread_cpu() -> Vec<(String, [u64; 2])> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let name = read("comm").trim().to_string();
        let stat = read("schedstat");
        let mut fields = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let (run, wait) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        out.push((
            format!("{name}#{}", task.file_name().to_string_lossy()),
            [run, wait],
        ));
    }
    out
}

/// Prints, per thread name, the CPU time per frame between two `thread_cpu` readings and
/// the time it waited for a CPU while runnable.
fn print_cpu_per_frame(before: &[(String, [u64; 2])], after: &[(String, [u64; 2])], frames: f64) {
    let mut by_name: std::collections::BTreeMap<String, [f64; 2]> = Default::default();
    for (id, now) in after {
        let start = before
            .iter()
            .find(|(b, _)| b == id)
            .map_or([0, 0], |(_, t)| *t);
        let name = id.split('#').next().unwrap_or(id).to_string();
        let entry = by_name.entry(name).or_default();
        for i in 0..2 {
            entry[i] += (now[i] - start[i]) as f64 / 1e3 / frames;
        }
    }
    let total: f64 = by_name.values().map(|v| v[0]).sum();
    let parts: Vec<String> = by_name
        .iter()
        .filter(|(_, us)| us[0] >= 0.1)
        .map(|(n, us)| format!("{n} {:.1} (waited {:.1})", us[0], us[1]))
        .collect();
    println!("CPU per frame (µs): {}; total {total:.1}", parts.join(", "));
}

#[tokio::test]
#[ignore = "a measurement"]
async fn component_rates() {
    let sealer = testkit::sealer();
    use airlock_protocol::link::*;
    use airlock_protocol::testkit;
    use airlock_sender::outbox::*;
    let env = testkit::provision_of_size(600);
    let n = 20_000;
    let t = Instant::now();
    let mut sign1s = Vec::new();
    for _ in 0..n {
        sign1s.push(sealer.sign(&env).unwrap());
    }
    println!("sign: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut sealed = Vec::new();
    for s in &sign1s {
        sealed.push(sealer.encrypt(&s.sign1).unwrap());
    }
    println!("encrypt: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    // link
    let params = LinkParams {
        datagram_size: 1472,
        max_block_bytes: 16384,
        ..LinkParams::default()
    };
    let mut packer = BlockPacker::new(16384, std::time::Duration::from_millis(5));
    let mut enc = BlockEncoder::new(
        1,
        &LinkParams {
            repair_ratio: 0.25,
            ..params
        },
    )
    .unwrap();
    let t = Instant::now();
    let now = std::time::Instant::now();
    let mut dg = 0;
    for s in &sealed {
        if let Some(b) = packer.push(s, now) {
            dg += enc.encode(&b).unwrap().len();
        }
    }
    println!(
        "pack+fec: {:.0} frames/s ({dg} datagrams)",
        n as f64 / t.elapsed().as_secs_f64()
    );
    // outbox
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let Body::Provision(p) = env.body.clone() else {
        panic!()
    };
    let items: Vec<SpoolItem> = (0..n)
        .map(|i| {
            let mut p = p.clone();
            p.subject = format!("s{i}");
            SpoolItem {
                source: "x".into(),
                body: Body::Provision(p),
            }
        })
        .collect();
    let t = Instant::now();
    ob.ingest("b", &items, 1).unwrap();
    println!("ingest: {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut tread = 0.0;
    let mut seq = 1;
    loop {
        let t0 = Instant::now();
        let batch = ob.pending_batch(0, 512).unwrap();
        tread += t0.elapsed().as_secs_f64();
        if batch.is_empty() {
            break;
        }
        let mut c = SealCommit::default();
        for (k, it) in batch {
            c.consumed.push(k);
            let Body::Provision(p) = it.body else {
                panic!()
            };
            c.entries.push(LogEntry {
                seq,
                hash: [1; 32],
                prev: [2; 32],
                issued_at: 5,
                kind: "provision".into(),
                origin: "x".into(),
                sign1: sign1s[0].sign1.clone(),
            });
            c.state.push(StateChange::Upsert(Box::new(p)));
            seq += 1;
        }
        ob.commit(&c).unwrap();
    }
    println!(
        "commit: {:.0}/s (reading pending {tread:.2}s of {:.2}s)",
        n as f64 / t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}
