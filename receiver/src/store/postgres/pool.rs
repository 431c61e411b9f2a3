//! A small blocking connection pool, and the bridge that makes the synchronous client
//! safe to call from anywhere.
//!
//! The `postgres` crate drives each connection with its own single-threaded tokio
//! runtime, which panics when entered from inside another runtime. The store contract is
//! synchronous and the provider calls it from async handlers, so every call goes through
//! [`off_runtime`]: on a multi-threaded runtime the worker is handed over to blocking work
//! (`block_in_place`, which also leaves the runtime context); elsewhere the call runs as is.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::Client;

use crate::store::StoreError;

thread_local! {
    /// Set while this thread runs blocking store work: nested calls run directly.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the thread as doing blocking store work while `f` runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(BLOCKING.with(|b| b.replace(true)));
    f()
}

fn nested() -> bool {
    BLOCKING.with(|b| b.get())
}

/// Runs blocking database work where the synchronous client may run.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if nested() {
        return f();
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| blocking(f))
        }
        // A current-thread runtime cannot give its thread away: run the work on a
        // scoped thread of its own, outside any runtime context.
        Ok(_) => std::thread::scope(|s| match s.spawn(|| blocking(f)).join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }),
        Err(_) => f(),
    }
}

/// [`off_runtime`] for work that cannot move to another thread (a transaction body):
/// refused on a current-thread runtime, where it could only block the whole runtime.
pub fn off_runtime_local<R>(f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
    if nested() {
        return f();
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| blocking(f))
        }
        Ok(_) => Err(StoreError::Io(
            "a PostgreSQL store transaction was started on a single-threaded tokio runtime: \
             run it from a blocking thread (spawn_blocking) instead"
                .into(),
        )),
        Err(_) => f(),
    }
}

type Connect = dyn Fn() -> Result<Client, postgres::Error> + Send + Sync;

struct State {
    /// Idle connections and when they were returned.
    idle: Vec<(Client, Instant)>,
    open: usize,
}

/// At most `size` connections, opened on demand, reused, dropped when broken.
pub struct Pool {
    connect: Box<Connect>,
    state: Mutex<State>,
    freed: Condvar,
    size: usize,
    shown: String,
}

/// How long a caller waits for a free connection before giving up.
const WAIT: Duration = Duration::from_secs(30);

/// A connection idle longer than this is checked (one round trip) before it is handed
/// out, so that after a database restart callers get fresh connections, not dead ones.
const CHECK_AFTER: Duration = Duration::from_secs(1);

impl Pool {
    pub fn new(
        connect: impl Fn() -> Result<Client, postgres::Error> + Send + Sync + 'static,
        size: usize,
        shown: String,
    ) -> Arc<Self> {
        Arc::new(Pool {
            connect: Box::new(connect),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            size: size.max(1),
            shown,
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Io("PostgreSQL pool lock poisoned".into()))
    }

    /// A connection, exclusively, until the guard drops.
    pub fn get(&self) -> Result<Conn<'_>, StoreError> {
        let mut st = self.lock()?;
        loop {
            if let Some((mut c, since)) = st.idle.pop() {
                if !c.is_closed() && since.elapsed() < CHECK_AFTER {
                    return Ok(Conn {
                        pool: self,
                        client: Some(c),
                    });
                }
                drop(st);
                if !c.is_closed() && c.is_valid(Duration::from_secs(2)).is_ok() {
                    return Ok(Conn {
                        pool: self,
                        client: Some(c),
                    });
                }
                drop_client(c);
                st = self.lock()?;
                st.open = st.open.saturating_sub(1);
                continue;
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match (self.connect)() {
                    Ok(c) => Ok(Conn {
                        pool: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        if let Ok(mut st) = self.lock() {
                            st.open = st.open.saturating_sub(1);
                        }
                        self.freed.notify_one();
                        Err(connect_error(&self.shown, &e))
                    }
                };
            }
            let (guard, timeout) = self
                .freed
                .wait_timeout(st, WAIT)
                .map_err(|_| StoreError::Io("PostgreSQL pool lock poisoned".into()))?;
            st = guard;
            if timeout.timed_out() && st.idle.is_empty() && st.open >= self.size {
                return Err(StoreError::Io(format!(
                    "no free connection to {} for {}s (pool_size {}): raise [store.postgres] pool_size or check for stuck queries",
                    self.shown,
                    WAIT.as_secs(),
                    self.size
                )));
            }
        }
    }

    fn put_back(&self, c: Client) {
        match self.lock() {
            Ok(mut st) => {
                if c.is_closed() {
                    st.open = st.open.saturating_sub(1);
                    drop(st);
                    drop_client(c);
                } else {
                    st.idle.push((c, Instant::now()));
                }
            }
            Err(_) => drop_client(c),
        }
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.lock() {
            for (c, _) in st.idle.drain(..) {
                drop_client(c);
            }
        }
    }
}

/// Each client owns a runtime, and dropping a runtime inside an async context panics:
/// drop it on a thread of its own.
fn drop_client(c: Client) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::spawn(move || drop(c)).join();
    } else {
        drop(c);
    }
}

pub fn connect_error(shown: &str, e: &postgres::Error) -> StoreError {
    StoreError::Open {
        path: shown.to_owned(),
        detail: format!(
            "{e}{}; check that PostgreSQL is running and reachable, and the [store.postgres] settings",
            e.as_db_error()
                .map(|d| format!(" ({})", d.message()))
                .unwrap_or_default()
        ),
    }
}

/// A borrowed connection; returns to the pool on drop (or is discarded if broken).
pub struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Conn<'_> {
    pub fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Io("connection already returned".into()))
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.put_back(c);
        }
    }
}
