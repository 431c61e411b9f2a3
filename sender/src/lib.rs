#![forbid(unsafe_code)]
//! airlock-sender: the outside half of Airlock.
//!
//! intake ([`intake`]) -> one policy filter ([`policy`]) -> spool ([`spool`]) -> durable
//! outbox ([`outbox`]) -> seal -> link (blocks, FEC, repetition, pacing) over UDP or serial.

pub mod config;
pub mod intake;
pub mod outbox;
pub mod policy;
pub mod spool;
pub mod ticket;
pub mod transfer_code;
