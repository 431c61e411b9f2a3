#![forbid(unsafe_code)]
//! Airlock's cross-crate test support: the fault-injection harness used by the end-to-end
//! tests and by operators rehearsing link faults.
//!
//! - [`impair`]: the seeded impairment model (loss, Gilbert-Elliott bursts, duplication,
//!   reordering, corruption) with counters.
//! - [`udp_relay`]: a UDP relay on 127.0.0.1 through that model, with recording, replay,
//!   forged-datagram injection and drop filters.
//! - [`serial_pty`]: the same for a serial line, over two pseudo-terminals.
//! - [`supervisor`]: starts, waits for, SIGKILLs and restarts the real binaries.
//! - [`datagram`]: reads and forges link datagrams.
//! - [`http`]: the tests' one HTTP/1.1 client.
//! - [`cli_help`]: the check that every flag and subcommand of a daemon has help text.
//! - [`mountns`]: makes a directory full or read-only for one command, in a private mount
//!   namespace.
//! - [`gate`]: keeps the end-to-end tests of different modules from running side by side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a broken fixture (namespace, pty, child process) should stop the test loudly"
)]

pub mod cli_help;
pub mod datagram;
pub mod deployment;
pub mod gate;
pub mod http;
pub mod impair;
pub mod mountns;
pub mod netns;
pub mod ops;
pub mod peer;
pub mod serial_pty;
pub mod supervisor;
pub mod udp_relay;
