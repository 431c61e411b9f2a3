//! Throughput of `audit verify` (the real binary) on a large log. Not part of the normal
//! test run; in release mode:
//!
//! ```text
//! AUDIT_BENCH_ENTRIES=1000000 cargo test --release -p airlock-receiver --test integration -- audit_bench:: --ignored --nocapture
//! ```

use crate::audit_support;

use std::collections::BTreeSet;
use std::time::Instant;

use audit_support::*;

#[test]
#[ignore = "benchmark: run explicitly in release mode"]
fn verify_throughput() {
    let n: u64 = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let f = build_with(n, &BTreeSet::new(), false);
    let built = started.elapsed();
    eprintln!(
        "built a log of {} entries in {:.1} s",
        f.entries,
        built.as_secs_f64()
    );
    let started = Instant::now();
    // AUDIT_BENCH_KEEP=DIR keeps a copy of the log and keys for runs by hand.
    if let Ok(keep) = std::env::var("AUDIT_BENCH_KEEP") {
        let keep = std::path::Path::new(&keep);
        copy_dir(&f.data_dir, &keep.join("data"));
        copy_dir(&f.trust_dir, &keep.join("trust"));
    }
    let data = f.copy("audit");
    let (ok, r) = verify(&data, &f.trust_dir);
    let wall = started.elapsed().as_secs_f64();
    assert!(ok, "{}", r["first_problem"]);
    assert_eq!(r["entries"].as_u64(), Some(f.entries));
    eprintln!(
        "audit verify: {} entries, walk {:.2} s = {:.0} entries/s (process wall time {:.2} s = {:.0} entries/s)",
        f.entries,
        r["seconds"].as_f64().unwrap_or(0.0),
        r["entries_per_second"].as_f64().unwrap_or(0.0),
        wall,
        f.entries as f64 / wall
    );
}

/// `audit consistency` (the real binary) over a large log: the whole tree recomputed from
/// the entries, and the proof from half the log to all of it.
///
/// ```text
/// AUDIT_BENCH_ENTRIES=1000000 cargo test --release -p airlock-receiver --test integration -- audit_bench::consistency --ignored --nocapture
/// ```
#[test]
#[ignore = "benchmark: run explicitly in release mode"]
fn consistency_throughput() {
    let n: u64 = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let f = build_with(n, &BTreeSet::new(), false);
    eprintln!(
        "built a log of {} entries in {:.1} s",
        f.entries,
        started.elapsed().as_secs_f64()
    );
    let data = f.copy("audit");
    let half = (f.entries / 2).to_string();
    let started = Instant::now();
    let out = audit(&[
        "consistency",
        &half,
        "latest",
        "--data-dir",
        path(&data),
        "--json",
    ]);
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["new_size"].as_u64(), Some(f.entries));
    eprintln!(
        "audit consistency {half} latest: {} entries, {} proof hashes, {:.2} s in the command, process wall time {:.2} s = {:.0} entries/s",
        f.entries,
        r["proof"].as_array().map_or(0, Vec::len),
        r["seconds"].as_f64().unwrap_or(0.0),
        wall,
        f.entries as f64 / wall
    );
}
