//! One test binary holds the end-to-end tests of every theme, one module each. The tests of
//! one module may run side by side, as they did when each module was a binary of its own; the
//! tests of different modules never do, since each starts a whole deployment (daemons, relays,
//! network namespaces) sized for the machine to itself.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The module whose tests run now, and how many of them.
static RUNNING: Mutex<Option<(&'static str, usize)>> = Mutex::new(None);
static FREED: Condvar = Condvar::new();

/// Held by a running test; the next module's tests start once the last one is dropped.
#[must_use = "the gate is open only while the guard lives"]
pub struct ModuleGuard(());

fn running() -> MutexGuard<'static, Option<(&'static str, usize)>> {
    // A test that failed while holding the lock leaves the count it had: still consistent.
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts one more running test of `module` when no test of another module runs.
fn enter(state: &mut Option<(&'static str, usize)>, module: &'static str) -> bool {
    match state {
        None => {
            *state = Some((module, 1));
            true
        }
        Some((m, n)) if *m == module => {
            *n += 1;
            true
        }
        Some(_) => false,
    }
}

/// Waits until no test of another module runs; call first with `module_path!()`.
pub fn module_at_a_time(module: &'static str) -> ModuleGuard {
    let mut state = running();
    while !enter(&mut state, module) {
        state = FREED.wait(state).unwrap_or_else(|p| p.into_inner());
    }
    ModuleGuard(())
}

/// [`module_at_a_time`] without waiting: None while a test of another module runs.
pub fn try_module_at_a_time(module: &'static str) -> Option<ModuleGuard> {
    let entered = enter(&mut running(), module);
    // Built only on entry: dropping a guard counts a test out.
    entered.then(|| ModuleGuard(()))
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        let mut state = running();
        if let Some((_, n)) = state.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *state = None;
                FREED.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_module_shares_and_another_waits() {
        let a = module_at_a_time("a");
        let b = try_module_at_a_time("a").expect("a second test of the same module runs");
        assert!(try_module_at_a_time("c").is_none(), "c ran beside a");
        drop(a);
        assert!(
            try_module_at_a_time("c").is_none(),
            "c ran beside a's other test"
        );
        drop(b);
        let c = try_module_at_a_time("c").expect("c runs once a is done");
        assert!(try_module_at_a_time("a").is_none(), "a ran beside c");
        // A waiting test goes on once the module before it is done.
        let waiter = std::thread::spawn(|| drop(module_at_a_time("d")));
        drop(c);
        waiter.join().unwrap();
    }
}
