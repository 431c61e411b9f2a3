#![forbid(unsafe_code)]
//! airlock-sender: the outside half of Airlock.
//!
//! intake ([`intake`]) -> one policy filter ([`policy`]) -> spool ([`spool`]) -> spool
//! reader ([`ingester`]) -> durable outbox ([`outbox`]) -> pending reader ([`prefetch`]:
//! decode, encode bodies) -> signing [`engine`] -> [`committer`] (commit + flush, then
//! encrypt) -> [`link`] ([`link::sendloop`]: blocks, FEC, repetition, [`link::pacer`];
//! [`link::transport`]: UDP or serial). Signing is sequential (the hash chain), so the engine thread only signs and
//! everything else runs beside it, off its CPU ([`cores`]).

/// The sealing pipeline hands every frame across threads (pending reader -> signing ->
/// commit -> link) and frees it on a thread other than the one that allocated it; glibc's
/// allocator serializes those frees on the allocating thread's arena lock, mimalloc does
/// not. Declared here, not in main.rs, so that the tests and the benchmark in tests/
/// measure what the daemon runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod backup;
pub mod cli;
pub mod clock;
pub mod committer;
pub mod config;
pub mod cores;
pub mod daemon;
pub mod engine;
pub mod engine_error;
pub mod export;
pub mod ingester;
pub mod intake;
pub mod key_change;
pub mod keygen;
pub mod link;
pub mod metrics;
pub mod outbox;
pub mod policy;
pub mod portal;
pub mod prefetch;
pub mod spool;
pub mod status;
pub mod submit;
pub mod ticket;
pub mod timefmt;
pub mod transfer_code;
pub mod witness;
