//! Which CPUs the daemon's threads run on.
//!
//! Signing is the sender's bottleneck and cannot be spread over cores: every frame's
//! envelope carries the hash of the previous signed frame, so frame n+1 can only be signed
//! once frame n is. Everything else (reading the queue, the outbox commit, encryption,
//! FEC, the sockets) runs on other threads. Left to the scheduler, those threads keep
//! landing on the signing thread's core: it then waits for the CPU and loses its caches,
//! which on a 2-core machine cost about a tenth of the throughput (docs/performance.md).
//!
//! So when the process may use two CPUs or more, the signing thread gets the last of them
//! to itself and every other daemon thread is kept to the rest. `send.dedicated_signing_core
//! = false` leaves all placement to the scheduler (e.g. on a host that pins processes
//! itself).

use rustix::thread::CpuSet;

/// The CPU sets for the signing thread and for every other thread; both `None` when the
/// daemon does not place threads (turned off, one CPU, or the affinity cannot be read).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    signing: Option<CpuSet>,
    helpers: Option<CpuSet>,
}

impl Placement {
    /// The placement for this process: read from the main thread's CPU affinity (which
    /// the daemon never changes), so every thread computes the same split.
    pub fn for_process(dedicated_signing_core: bool) -> Self {
        if !dedicated_signing_core {
            return Self::default();
        }
        let main_thread = rustix::process::getpid();
        match rustix::thread::sched_getaffinity(Some(main_thread)) {
            Ok(allowed) => Self::split(&allowed),
            Err(error) => {
                tracing::debug!(%error, "cannot read the CPU affinity; threads are not placed");
                Self::default()
            }
        }
    }

    /// The last allowed CPU for signing, the others for the rest (none with fewer than 2).
    fn split(allowed: &CpuSet) -> Self {
        let last = (0..CpuSet::MAX_CPU).rev().find(|&c| allowed.is_set(c));
        let Some(last) = last.filter(|_| allowed.count() >= 2) else {
            return Self::default();
        };
        let mut signing = CpuSet::new();
        signing.set(last);
        let mut helpers = *allowed;
        helpers.unset(last);
        Self {
            signing: Some(signing),
            helpers: Some(helpers),
        }
    }

    /// Whether threads are placed, and the signing CPU if so (for the start-up log).
    pub fn signing_cpu(&self) -> Option<usize> {
        let set = self.signing.as_ref()?;
        (0..CpuSet::MAX_CPU).find(|&c| set.is_set(c))
    }

    /// Moves the calling thread to the signing CPU.
    pub fn enter_signing(&self) {
        if let Err(error) = apply(self.signing.as_ref()) {
            tracing::warn!(%error, "cannot give the signing thread a CPU of its own (is sched_setaffinity blocked, e.g. by a systemd SystemCallFilter?); throughput may be lower; set send.dedicated_signing_core = false to silence this");
        }
    }

    /// Moves the calling thread off the signing CPU.
    pub fn enter_helper(&self) {
        if let Err(error) = apply(self.helpers.as_ref()) {
            tracing::debug!(%error, "cannot set a helper thread's CPU affinity");
        }
    }
}

/// Best effort: a refusal (a seccomp filter, say) only costs throughput.
fn apply(set: Option<&CpuSet>) -> rustix::io::Result<()> {
    match set {
        Some(set) => rustix::thread::sched_setaffinity(None, set),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(cpus: &[usize]) -> CpuSet {
        let mut s = CpuSet::new();
        cpus.iter().for_each(|&c| s.set(c));
        s
    }

    fn members(s: &Option<CpuSet>) -> Vec<usize> {
        let s = s
            .as_ref()
            .map(|s| (0..CpuSet::MAX_CPU).filter(|&c| s.is_set(c)).collect());
        s.unwrap_or_default()
    }

    #[test]
    fn the_last_allowed_cpu_signs_and_the_others_help() {
        let p = Placement::split(&set_of(&[0, 1]));
        assert_eq!(
            (members(&p.signing), members(&p.helpers)),
            (vec![1], vec![0])
        );
        // A cpuset with gaps (a container given CPUs 2, 5 and 7).
        let p = Placement::split(&set_of(&[2, 5, 7]));
        assert_eq!(
            (members(&p.signing), members(&p.helpers)),
            (vec![7], vec![2, 5])
        );
        assert_eq!(p.signing_cpu(), Some(7));
    }

    #[test]
    fn one_cpu_or_none_places_nothing() {
        for cpus in [&[3][..], &[]] {
            let p = Placement::split(&set_of(cpus));
            assert!(p.signing.is_none() && p.helpers.is_none(), "{cpus:?}");
            assert_eq!(p.signing_cpu(), None);
        }
        assert!(Placement::for_process(false).signing.is_none());
    }

    /// On this machine: a placed thread ends up on exactly the CPUs it was given.
    #[test]
    fn a_thread_lands_on_its_cpus() {
        let p = Placement::for_process(true);
        let Some(signing) = p.signing_cpu() else {
            return; // a one-CPU machine: nothing is placed, covered above
        };
        std::thread::spawn(move || {
            p.enter_signing();
            let now = rustix::thread::sched_getaffinity(None).unwrap();
            assert_eq!(members(&Some(now)), vec![signing]);
            p.enter_helper();
            let now = rustix::thread::sched_getaffinity(None).unwrap();
            assert_eq!(members(&Some(now)), members(&p.helpers));
        })
        .join()
        .unwrap();
    }
}
