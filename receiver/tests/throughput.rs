//! End-to-end throughput: UDP in, FEC decode, open (AEAD + Ed25519), log, apply, flush.
//! Ignored by default; run it with an optimised build:
//!
//! ```text
//! cargo test --release -p airlock-receiver --test integration -- throughput:: --ignored --nocapture
//! ```

use crate::common;

use common::*;

/// Frames per run, unless `AIRLOCK_BENCH_FRAMES` says otherwise (a short run checks the
/// bench itself; figures are taken with the default).
const FRAMES: usize = 60_000;
/// Frames in flight (sent, not yet accepted) at most: a diode sender paces itself to what
/// the receiver sustains; this keeps the loopback socket buffer from overflowing.
const WINDOW: u64 = 6_000;

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn frames_accepted_per_second() {
    run(&Backend::Sled, "");
}

/// The store of a run: sled in the run's fresh data directory, or a fresh schema of the
/// PostgreSQL database at `AIRLOCK_TEST_PG_URL` (dropped after the run).
enum Backend {
    Sled,
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// The transparency log's cost: the same run with the Merkle tree and checkpoints (the
/// default) and without (`[transparency] enabled = false`), alternating, `THROUGHPUT_ROUNDS`
/// pairs (default 3), on sled.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn frames_accepted_per_second_with_and_without_the_tree() {
    with_and_without_the_tree(&Backend::Sled);
}

/// The same on PostgreSQL: the tree's frontier is one more row written in each batch's
/// SERIALIZABLE transaction.
#[test]
#[ignore = "benchmark: needs AIRLOCK_TEST_PG_URL; run with --release -- --ignored --nocapture"]
fn frames_accepted_per_second_on_postgres_with_and_without_the_tree() {
    let Some(url) = common::pg_url("throughput::frames_accepted_per_second_on_postgres") else {
        return;
    };
    let _pg = common::pg_shared();
    with_and_without_the_tree(&Backend::Postgres(url));
}

fn with_and_without_the_tree(backend: &Backend) {
    let rounds: usize = std::env::var("THROUGHPUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..rounds {
        with.push(run(backend, "[transparency]\nenabled = true\n"));
        without.push(run(backend, "[transparency]\nenabled = false\n"));
    }
    eprintln!(
        "throughput [{}] with the tree: {with:.0?} frames/s; without: {without:.0?} frames/s",
        backend.name()
    );
}

/// One run on `backend`; returns frames/s.
fn run(backend: &Backend, extra: &str) -> f64 {
    // AIRLOCK_BENCH_CACHE_MIB: sled's page cache to measure with (default: the receiver's).
    let cache = std::env::var("AIRLOCK_BENCH_CACHE_MIB")
        .map(|c| format!("cache_mib = {c}\n"))
        .unwrap_or_default();
    let schema = match backend {
        Backend::Sled => None,
        Backend::Postgres(url) => Some(common::fresh_pg_schema(url, "bench_tree")),
    };
    let store = match &schema {
        Some((_, db)) => {
            format!("[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{db}\"\n")
        }
        None if !cache.is_empty() => format!("[store]\n{cache}"),
        None => String::new(),
    };
    // AIRLOCK_BENCH_MAX_BATCH / AIRLOCK_BENCH_QUEUE_FRAMES: the ingest batch and queue
    // (default 2048 and 16384: large batches, the fastest setting on this machine).
    let env_or = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let max_batch = env_or("AIRLOCK_BENCH_MAX_BATCH", 2048);
    let queue_frames = env_or("AIRLOCK_BENCH_QUEUE_FRAMES", 16384);
    let n = env_or("AIRLOCK_BENCH_FRAMES", FRAMES);
    let setup = Setup::with_extra(
        LinkKind::Udp,
        &format!(
            "[ingest]\nmax_batch = {max_batch}\nqueue_frames = {queue_frames}\n{store}{extra}"
        ),
    );
    let rx = setup.start();
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let sample = tx
        .chain
        .sealer
        .seal(&tx.envelope(1, sized_provision(&tx, 1), now()))
        .unwrap()
        .sealed
        .len();
    let frames: Vec<Vec<u8>> = (1..=n as u64)
        .map(|i| tx.next(sized_provision(&tx, i)).sealed)
        .collect();
    // Encode up front so the measured time is the receiver's, not the test sender's sealing.
    let cpu_before = cpu_ms(rx.child.id());
    let (start, m) = send_windowed(&rx, setup.udp_port, &mut tx, &frames, WINDOW);
    let elapsed = start.elapsed();
    let cpu_us_per_frame = (cpu_ms(rx.child.id()) - cpu_before) as f64 * 1000.0 / n as f64;
    let accepted = m.accepted();
    let rate = accepted as f64 / elapsed.as_secs_f64();
    eprintln!(
        "throughput [{}]: {accepted} of {n} frames (~{sample} B sealed Provisions) accepted in {:.2} s = {rate:.0} frames/s; \
         {} store transactions (one flush each), blocks lost {}; receiver CPU {cpu_us_per_frame:.1} µs per frame, peak RSS {} MiB",
        backend.name(),
        elapsed.as_secs_f64(),
        m.get("airlock_ingest_batches_total"),
        m.get("airlock_blocks_lost_total"),
        peak_rss_mib(rx.child.id()),
    );
    assert_eq!(accepted, n as u64, "every frame accepted:\n{}", m.raw);
    drop(rx);
    if let (Some((schema, _)), Backend::Postgres(url)) = (&schema, backend) {
        let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    }
    rate
}

/// User + system CPU time of a process so far, in ms (/proc/PID/stat, 100 ticks a second).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0] + f[1]) * 10
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}
