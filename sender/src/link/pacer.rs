//! Token-bucket pacing on bytes: a diode has no back-pressure, so the sender must never
//! exceed the line rate of the receiving side.
//!
//! Implemented as a virtual clock (GCRA): each datagram of n bytes advances the earliest
//! time of the next send by n / rate; up to `burst` worth of idle credit may accumulate.
//! Over any long interval the rate is exact, independent of timer granularity.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second; 0 = off.
    rate: u64,
    /// Idle credit allowed to accumulate.
    burst: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            burst: Duration::from_millis(20),
            next: now,
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// Reserves `bytes` only if they may be sent at `now`; false leaves the pacer as it was.
    pub fn try_reserve(&mut self, bytes: usize, now: Instant) -> bool {
        let saved = self.next;
        if self.reserve(bytes, now).is_some() {
            self.next = saved;
            return false;
        }
        true
    }

    /// Reserves `bytes` and returns when they may be sent (None: now).
    pub fn reserve(&mut self, bytes: usize, now: Instant) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        if self.next < earliest {
            self.next = earliest;
        }
        let send_at = self.next;
        let nanos = (bytes as u128 * 1_000_000_000u128) / u128::from(self.rate);
        self.next += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        (send_at > now).then_some(send_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_waits() {
        let now = Instant::now();
        let mut p = Pacer::new(0, now);
        assert!((0..1000).all(|_| p.reserve(1500, now).is_none()));
    }

    #[test]
    fn try_reserve_takes_only_what_may_go_now() {
        let start = Instant::now();
        // 1,000 bytes/s; after 20 ms idle the credit is 20 bytes, plus what is due now.
        let mut p = Pacer::new(1_000, start);
        let now = start + Duration::from_millis(20);
        assert!(p.try_reserve(10, now));
        assert!(p.try_reserve(10, now));
        assert!(p.try_reserve(10, now));
        assert!(!p.try_reserve(10, now), "the credit is spent");
        assert!(!p.try_reserve(10, now), "a refusal reserves nothing");
        assert!(p.try_reserve(10, now + Duration::from_millis(10)));
        assert!(Pacer::new(0, now).try_reserve(1 << 20, now), "off: always");
    }

    #[test]
    fn long_run_rate_is_exact() {
        // 11,520 bytes/s (115,200 baud, 8N1): 1,152 datagrams of 100 bytes take 10 s.
        let start = Instant::now();
        let mut p = Pacer::new(11_520, start);
        let mut now = start;
        for _ in 0..1152 {
            if let Some(at) = p.reserve(100, now) {
                now = at;
            }
        }
        let elapsed = now - start;
        let expected = Duration::from_secs(10) - Duration::from_nanos(100 * 1_000_000_000 / 11_520);
        assert!(
            elapsed.abs_diff(expected) < Duration::from_millis(30),
            "{elapsed:?}"
        );
    }
}
