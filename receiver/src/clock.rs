//! Wall-clock time for the daemon's modules (link timestamps, ingest ticks, the ops
//! listener, the CLI), in one module that imports nothing, so that reading the clock adds
//! no edge between them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
