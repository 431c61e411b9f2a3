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

/// Waits until no test of another module runs; call first with `module_path!()`.
pub fn module_at_a_time(module: &'static str) -> ModuleGuard {
    let mut state = running();
    loop {
        match state.as_mut() {
            None => {
                *state = Some((module, 1));
                break;
            }
            Some((m, n)) if *m == module => {
                *n += 1;
                break;
            }
            Some(_) => state = FREED.wait(state).unwrap_or_else(|p| p.into_inner()),
        }
    }
    ModuleGuard(())
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
        let b = module_at_a_time("a");
        let (tx, rx) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let _c = module_at_a_time("c");
            tx.send(()).unwrap();
        });
        drop(a);
        assert!(
            rx.try_recv().is_err(),
            "module c ran while module a still had a test"
        );
        drop(b);
        rx.recv().unwrap();
        other.join().unwrap();
    }
}
