//! Bounds on what cheap requests may leave in the store: authorization requests parked
//! for the login page (per client address and in all) and codes issued in one session.
//!
//! Kept in memory, per receiver: each entry lives until its own expiry (or until it is
//! used), so a bound is "at most N waiting at once". The store holds the records; what
//! this drops as expired is deleted from the store at once, not at the next purge. In a
//! cluster every receiver enforces its own bound.

use std::collections::HashMap;
use std::sync::Mutex;

/// Why an entry was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The key (client address, session) has its maximum waiting.
    Key,
    /// The receiver has its maximum waiting in all.
    Total,
}

#[derive(Default)]
struct Inner {
    /// key -> ids waiting under it, with their expiry.
    by_key: HashMap<String, Vec<(String, u64)>>,
    /// id -> its key.
    owner: HashMap<String, String>,
}

/// Entries waiting, by key.
#[derive(Default)]
pub struct Budget {
    inner: Mutex<Inner>,
}

/// The outcome of [`Budget::admit`]: admitted or not, and the ids found expired on the
/// way (the caller deletes them from the store).
pub struct Admission {
    pub result: Result<(), Refused>,
    pub expired: Vec<String>,
}

impl Inner {
    fn drop_expired(&mut self, key: &str, now: u64, out: &mut Vec<String>) {
        if let Some(list) = self.by_key.get_mut(key) {
            list.retain(|(id, exp)| {
                let live = *exp > now;
                if !live {
                    out.push(id.clone());
                }
                live
            });
            if list.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    fn sweep(&mut self, now: u64, out: &mut Vec<String>) {
        let keys: Vec<String> = self.by_key.keys().cloned().collect();
        for k in keys {
            self.drop_expired(&k, now, out);
        }
        for id in out.iter() {
            self.owner.remove(id);
        }
    }
}

impl Budget {
    /// Admits `id` under `key` until `expires` if `key` has fewer than `per_key` and the
    /// receiver fewer than `total` waiting.
    pub fn admit(
        &self,
        key: &str,
        id: &str,
        expires: u64,
        now: u64,
        per_key: usize,
        total: usize,
    ) -> Admission {
        let mut expired = Vec::new();
        let Ok(mut g) = self.inner.lock() else {
            return Admission {
                result: Err(Refused::Total),
                expired,
            };
        };
        g.drop_expired(key, now, &mut expired);
        for id in &expired {
            g.owner.remove(id);
        }
        if g.owner.len() >= total {
            g.sweep(now, &mut expired);
        }
        let result = if g.by_key.get(key).map_or(0, Vec::len) >= per_key {
            Err(Refused::Key)
        } else if g.owner.len() >= total {
            Err(Refused::Total)
        } else {
            g.by_key
                .entry(key.to_string())
                .or_default()
                .push((id.to_string(), expires));
            g.owner.insert(id.to_string(), key.to_string());
            Ok(())
        };
        Admission { result, expired }
    }

    /// `id` is used up (the login finished): it no longer counts.
    pub fn release(&self, id: &str) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        if let Some(key) = g.owner.remove(id)
            && let Some(list) = g.by_key.get_mut(&key)
        {
            list.retain(|(i, _)| i != id);
            if list.is_empty() {
                g.by_key.remove(&key);
            }
        }
    }

    /// Drops every expired entry; returns their ids.
    pub fn sweep(&self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut g) = self.inner.lock() {
            g.sweep(now, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_key_and_in_all_until_expiry_or_release() {
        let b = Budget::default();
        assert!(b.admit("a", "1", 10, 0, 2, 3).result.is_ok());
        assert!(b.admit("a", "2", 10, 0, 2, 3).result.is_ok());
        assert_eq!(b.admit("a", "3", 10, 0, 2, 3).result, Err(Refused::Key));
        assert!(b.admit("b", "4", 20, 0, 2, 3).result.is_ok());
        assert_eq!(b.admit("c", "5", 10, 0, 2, 3).result, Err(Refused::Total));
        b.release("1");
        assert!(b.admit("a", "6", 10, 0, 2, 3).result.is_ok());
        let later = b.admit("c", "7", 30, 10, 2, 3);
        assert!(later.result.is_ok());
        let mut gone = later.expired;
        gone.sort();
        assert_eq!(gone, ["2", "6"]);
        assert_eq!(b.sweep(20), ["4"]);
    }
}
