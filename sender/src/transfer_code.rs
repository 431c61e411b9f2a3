//! Transfer codes: the one definition lives in `airlock_protocol::transfer_code`, shared
//! with the receiver, which parses what a person types and finds the ticket by its locator.

pub use airlock_protocol::transfer_code::*;
