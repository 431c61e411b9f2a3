#![forbid(unsafe_code)]
//! airlock-sender: the outside half of Airlock.
//!
//! intake ([`intake`]) -> one policy filter ([`policy`]) -> spool ([`spool`]) -> durable
//! outbox ([`outbox`]) -> sealing [`engine`] -> [`sendloop`] (blocks, FEC, repetition,
//! [`pacer`]) -> [`transport`] (UDP or serial).

pub mod committer;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod export;
pub mod intake;
pub mod keygen;
pub mod metrics;
pub mod outbox;
pub mod pacer;
pub mod policy;
pub mod portal;
pub mod prefetch;
pub mod sendloop;
pub mod spool;
pub mod status;
pub mod submit;
pub mod ticket;
pub mod transfer_code;
pub mod transport;
