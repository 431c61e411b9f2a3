//! The link side: blocks, FEC and repetition ([`sendloop`]), the rate limit ([`pacer`]),
//! and the wire ([`transport`]: UDP or serial).

pub mod pacer;
pub mod sendloop;
pub mod transport;
