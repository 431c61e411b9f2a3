//! The receiver's memory stays within what its configuration allows: started with the
//! documented memory settings (receiver/README.md, "Memory"), loaded with more frames than
//! its page cache holds, its peak resident memory (VmHWM) must stay under the documented
//! bound plus a stated margin. A bound check, not a timing.
//!
//! Before `[store] cache_mib` and the system allocator, the same load peaked at 289 MiB
//! (sled's 1 GiB default cache held every page the ingest wrote, and mimalloc kept more).

use crate::common;

use common::*;

/// The page cache this test configures: the default (MiB).
const CACHE_MIB: u64 = 16;
/// Reassembly bound this test configures (`[link] max_pending_bytes`), MiB.
const PENDING_MIB: u64 = 8;
/// Frames sent: about 38 MB of sealed Provisions, more than twice the cache.
const FRAMES: u64 = 60_000;
/// What the README's bound says besides the cache and the reassembly bound: code, runtime,
/// the seen-frames digests, the ingest queue and batch, and sled's pages that are dirty
/// and so cannot be evicted until the flush.
const BASE_MIB: u64 = 100;
/// Allowance over the documented bound for the allocator's fragmentation.
const MARGIN_MIB: u64 = 16;

/// The README's bound: base + 1.6 × cache (a cached page takes about 1.6 times the size
/// sled counts for it) + the reassembly bound.
fn documented_bound_mib(cache_mib: u64, pending_mib: u64) -> u64 {
    BASE_MIB + cache_mib * 8 / 5 + pending_mib
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[test]
fn peak_memory_stays_within_the_documented_bound_under_ingest() {
    let setup = Setup::with_extra(
        LinkKind::Udp,
        &format!("[store]\ncache_mib = {CACHE_MIB}\n"),
    );
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "[link]\n",
        &format!(
            "[link]\nmax_pending_bytes = {}\n",
            PENDING_MIB * 1024 * 1024
        ),
    );
    std::fs::write(&setup.config, config).unwrap();
    let rx = setup.start();
    let pid = rx.child.id();
    let at_start = peak_rss_mib(pid);
    let mut tx = TestSender::new(&setup.signer, &setup.link);
    let frames: Vec<Vec<u8>> = (1..=FRAMES)
        .map(|i| tx.next(sized_provision(&tx, i)).sealed)
        .collect();
    let (_, m) = send_windowed(&rx, setup.udp_port, &mut tx, &frames, 4_000);
    assert_eq!(m.accepted(), FRAMES, "every frame accepted:\n{}", m.raw);
    let peak = peak_rss_mib(pid);
    let bound = documented_bound_mib(CACHE_MIB, PENDING_MIB);
    eprintln!(
        "memory: peak {at_start} MiB at start, {peak} MiB after {FRAMES} frames; documented bound {bound} MiB + margin {MARGIN_MIB} MiB"
    );
    assert!(
        peak <= bound + MARGIN_MIB,
        "peak resident memory {peak} MiB exceeds the documented bound of {bound} MiB (base \
         {BASE_MIB} + 1.6 × cache {CACHE_MIB} + reassembly {PENDING_MIB}) by more than {MARGIN_MIB} MiB"
    );
    let exported = m.get("process_resident_memory_bytes") / (1024 * 1024);
    assert!(
        exported > 0 && exported <= peak,
        "the receiver exports its resident memory ({exported} MiB, peak {peak} MiB)"
    );
}
