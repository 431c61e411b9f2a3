//! Airlock's frame protocol, sans I/O: no sockets, no runtime, no clock of its own.
//!
//! - [`message`]: the Envelope and its bodies; [`codec`]: their CBOR encoding; [`limits`].
//! - [`keys`] and [`trust`]: key files and the keys a receiver trusts.
//! - [`seal`]: COSE_Sign1 inside COSE_Encrypt0, and the ordered checks of opening;
//!   [`open_batch`]: the same checks for a burst, with one Ed25519 batch verification.
//! - [`replay`]: the per-signer replay window; [`chain`]: the sender's hash chain.
//! - [`merkle`]: the RFC 9162 Merkle tree over the receiver's frame log, its proofs;
//!   [`checkpoint`]: signed tree heads in the C2SP signed-note / tlog-checkpoint format.
//! - [`link`]: blocks, RaptorQ FEC, datagram header and CRC, COBS.
//!
//! The sender and receiver crates drive these with their own sockets, clocks and stores.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod checkpoint;
pub mod codec;
pub mod keys;
pub mod limits;
pub mod link;
pub mod merkle;
pub mod message;
pub mod open_batch;
pub mod replay;
pub mod seal;
pub mod transfer_code;
pub mod trust;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod docs_test;
#[cfg(test)]
mod vectors_test;
