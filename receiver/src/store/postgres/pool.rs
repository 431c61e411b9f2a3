//! A small blocking connection pool, and the bridge that makes the synchronous client
//! safe to call from anywhere.
//!
//! The `postgres` crate drives each connection with its own single-threaded tokio
//! runtime, which panics when entered from inside another runtime. The store contract is
//! synchronous and the provider calls it from async handlers, so every call goes through
//! [`off_runtime`]: on a multi-threaded runtime the worker is handed over to blocking work
//! (`block_in_place`, which also leaves the runtime context); elsewhere the call runs as is.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::types::Type;
use postgres::{Client, Statement};

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

/// What the pool needs of a connection: the PostgreSQL client (or, in the unit tests, a
/// stand-in whose health the test decides).
pub trait Pooled: Send + 'static {
    /// Closed by the server or after an error: never handed out again.
    fn is_closed(&self) -> bool;
    /// Whether a round trip within `timeout` still works.
    fn is_valid(&mut self, timeout: Duration) -> bool;
}

impl Pooled for Client {
    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }

    fn is_valid(&mut self, timeout: Duration) -> bool {
        Client::is_valid(self, timeout).is_ok()
    }
}

type Connect<C> = dyn Fn() -> Result<C, postgres::Error> + Send + Sync;

/// Statements prepared on one connection, by their text: a hot statement is parsed and
/// planned once per connection instead of once per call.
type Prepared = HashMap<&'static str, Statement>;

struct State<C> {
    /// Idle connections, their prepared statements and when they were returned.
    idle: Vec<(C, Prepared, Instant)>,
    open: usize,
    /// Callers waiting for a connection to come back.
    waiting: usize,
}

/// At most `size` connections, opened on demand, reused, dropped when broken.
pub struct Pool<C: Pooled = Client> {
    connect: Box<Connect<C>>,
    state: Mutex<State<C>>,
    freed: Condvar,
    size: usize,
    shown: String,
    /// How long a caller waits for a free connection ([`WAIT`]).
    wait: Duration,
    /// Idle time after which a connection is checked before use ([`CHECK_AFTER`]).
    check_after: Duration,
}

/// How long a caller waits for a free connection before giving up.
const WAIT: Duration = Duration::from_secs(30);

/// A connection idle longer than this is checked (one round trip) before it is handed
/// out, so that after a database restart callers get fresh connections, not dead ones.
const CHECK_AFTER: Duration = Duration::from_secs(1);

impl<C: Pooled> Pool<C> {
    pub fn new(
        connect: impl Fn() -> Result<C, postgres::Error> + Send + Sync + 'static,
        size: usize,
        shown: String,
    ) -> Arc<Self> {
        Arc::new(Self::with_timing(connect, size, shown, WAIT, CHECK_AFTER))
    }

    fn with_timing(
        connect: impl Fn() -> Result<C, postgres::Error> + Send + Sync + 'static,
        size: usize,
        shown: String,
        wait: Duration,
        check_after: Duration,
    ) -> Self {
        Pool {
            connect: Box::new(connect),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
            size: size.max(1),
            shown,
            wait,
            check_after,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State<C>>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Io("PostgreSQL pool lock poisoned".into()))
    }

    /// A connection, exclusively, until the guard drops.
    pub fn get(&self) -> Result<Conn<'_, C>, StoreError> {
        let mut st = self.lock()?;
        loop {
            if let Some((mut c, prepared, since)) = st.idle.pop() {
                if !c.is_closed() && since.elapsed() < self.check_after {
                    return Ok(Conn {
                        pool: self,
                        client: Some(c),
                        prepared,
                    });
                }
                drop(st);
                if !c.is_closed() && c.is_valid(Duration::from_secs(2)) {
                    return Ok(Conn {
                        pool: self,
                        client: Some(c),
                        prepared,
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
                        prepared: Prepared::new(),
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
            st.waiting += 1;
            let (guard, timeout) = self
                .freed
                .wait_timeout(st, self.wait)
                .map_err(|_| StoreError::Io("PostgreSQL pool lock poisoned".into()))?;
            st = guard;
            st.waiting = st.waiting.saturating_sub(1);
            if timeout.timed_out() && st.idle.is_empty() && st.open >= self.size {
                return Err(StoreError::Io(format!(
                    "no free connection to {} for {}s (pool_size {}): raise [store.postgres] pool_size or check for stuck queries",
                    self.shown,
                    self.wait.as_secs(),
                    self.size
                )));
            }
        }
    }

    fn put_back(&self, c: C, prepared: Prepared) {
        match self.lock() {
            Ok(mut st) => {
                if c.is_closed() {
                    st.open = st.open.saturating_sub(1);
                    drop(st);
                    drop_client(c);
                } else {
                    st.idle.push((c, prepared, Instant::now()));
                }
            }
            Err(_) => drop_client(c),
        }
        self.freed.notify_one();
    }
}

impl<C: Pooled> Drop for Pool<C> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.lock() {
            for (c, _, _) in st.idle.drain(..) {
                drop_client(c);
            }
        }
    }
}

/// Each client owns a runtime, and dropping a runtime inside an async context panics:
/// drop it on a thread of its own.
fn drop_client<C: Send + 'static>(c: C) {
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
pub struct Conn<'a, C: Pooled = Client> {
    pool: &'a Pool<C>,
    client: Option<C>,
    prepared: Prepared,
}

impl<C: Pooled> Conn<'_, C> {
    pub fn client(&mut self) -> Result<&mut C, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Io("connection already returned".into()))
    }
}

impl Conn<'_, Client> {
    /// The client and `sql` prepared on it: prepared (one round trip) the first time this
    /// connection runs it, from the connection's cache after that. The cache lives and dies
    /// with the connection, so a reconnect prepares again.
    pub fn prepared(
        &mut self,
        sql: &'static str,
        types: &[Type],
    ) -> Result<(&mut Client, Statement), PreparedError> {
        let client = self.client.as_mut().ok_or_else(|| {
            PreparedError::Store(StoreError::Io("connection already returned".into()))
        })?;
        let statement = match self.prepared.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = client
                    .prepare_typed(sql, types)
                    .map_err(PreparedError::Db)?;
                self.prepared.insert(sql, s.clone());
                s
            }
        };
        Ok((client, statement))
    }

    /// Drops this connection's prepared statements (they are prepared again on next use).
    pub fn forget_prepared(&mut self) {
        self.prepared.clear();
    }
}

/// Why [`Conn::prepared`] failed.
#[derive(Debug)]
pub enum PreparedError {
    Store(StoreError),
    /// The database refused or failed the preparation.
    Db(postgres::Error),
}

impl<C: Pooled> Drop for Conn<'_, C> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.put_back(c, std::mem::take(&mut self.prepared));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A connect function that always fails at once (nothing listens on port 1), counting
    /// its calls.
    fn refused(calls: Arc<AtomicUsize>) -> impl Fn() -> Result<Client, postgres::Error> {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Client::connect(
                "host=127.0.0.1 port=1 user=nobody connect_timeout=5",
                postgres::NoTls,
            )
        }
    }

    /// The test PostgreSQL, when there is one (`AIRLOCK_TEST_PG_URL`, as for the
    /// integration tests); these tests pass trivially without it.
    fn test_db() -> Option<String> {
        std::env::var("AIRLOCK_TEST_PG_URL")
            .ok()
            .filter(|s| !s.is_empty())
    }

    fn counting(
        url: String,
        calls: Arc<AtomicUsize>,
    ) -> impl Fn() -> Result<Client, postgres::Error> {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Client::connect(&url, postgres::NoTls)
        }
    }

    #[test]
    fn a_failed_connect_is_named_and_frees_its_slot() {
        let calls = Arc::new(AtomicUsize::new(0));
        let pool = Pool::new(refused(calls.clone()), 1, "db.example:5432/airlock".into());
        for attempt in 1..=3 {
            let Err(e) = pool.get() else {
                panic!("connected to port 1");
            };
            let text = e.to_string();
            assert!(text.contains("db.example:5432/airlock"), "{text}");
            assert!(text.contains("check that PostgreSQL is running"), "{text}");
            // Each call tried again at once: the failed attempt gave its slot back (else the
            // second call would wait for a connection that never returns).
            assert_eq!(calls.load(Ordering::SeqCst), attempt);
        }
        assert_eq!(pool.lock().unwrap().open, 0);
    }

    /// A stand-in connection: its number (in connect order) and a health the test sets.
    struct Fake {
        id: usize,
        closed: Arc<AtomicBool>,
        valid: Arc<AtomicBool>,
    }

    impl Pooled for Fake {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
        fn is_valid(&mut self, _: Duration) -> bool {
            self.valid.load(Ordering::SeqCst)
        }
    }

    /// Each fake's `closed` and `valid` flags, by id.
    type Health = Arc<Mutex<Vec<(Arc<AtomicBool>, Arc<AtomicBool>)>>>;

    /// A pool of fakes and what the test needs to steer and count them.
    struct Fakes {
        pool: Pool<Fake>,
        connects: Arc<AtomicUsize>,
        health: Health,
    }

    fn fakes(size: usize, wait: Duration, check_after: Duration) -> Fakes {
        let connects = Arc::new(AtomicUsize::new(0));
        let health: Health = Arc::default();
        let (n, h) = (connects.clone(), health.clone());
        let connect = move || {
            let id = n.fetch_add(1, Ordering::SeqCst);
            let (closed, valid) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(true)),
            );
            h.lock().unwrap().push((closed.clone(), valid.clone()));
            Ok(Fake { id, closed, valid })
        };
        Fakes {
            pool: Pool::with_timing(connect, size, "fake db".into(), wait, check_after),
            connects,
            health,
        }
    }

    const LONG: Duration = Duration::from_secs(600);

    fn id(c: &mut Conn<'_, Fake>) -> usize {
        c.client().unwrap().id
    }

    #[test]
    fn a_returned_connection_is_handed_out_again() {
        let f = fakes(2, LONG, LONG);
        let first = id(&mut f.pool.get().unwrap());
        let again = id(&mut f.pool.get().unwrap());
        assert_eq!((first, again), (0, 0));
        assert_eq!(f.connects.load(Ordering::SeqCst), 1);
        // Two held at once are two connections; both come back idle.
        let (mut a, mut b) = (f.pool.get().unwrap(), f.pool.get().unwrap());
        assert_ne!(id(&mut a), id(&mut b));
        drop((a, b));
        let st = f.pool.lock().unwrap();
        assert_eq!((st.open, st.idle.len()), (2, 2));
    }

    #[test]
    fn a_connection_broken_in_use_is_discarded_not_returned() {
        let f = fakes(1, LONG, LONG);
        let mut c = f.pool.get().unwrap();
        assert_eq!(id(&mut c), 0);
        f.health.lock().unwrap()[0].0.store(true, Ordering::SeqCst);
        drop(c);
        {
            let st = f.pool.lock().unwrap();
            assert_eq!((st.open, st.idle.len()), (0, 0), "the broken one is gone");
        }
        // Its slot is free again: the next caller gets a new connection at once.
        assert_eq!(id(&mut f.pool.get().unwrap()), 1);
        assert_eq!(f.connects.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_idle_connection_that_died_is_replaced_before_it_is_handed_out() {
        // Closed while idle (the server restarted): found out without a round trip.
        let f = fakes(1, LONG, LONG);
        drop(f.pool.get().unwrap());
        f.health.lock().unwrap()[0].0.store(true, Ordering::SeqCst);
        assert_eq!(id(&mut f.pool.get().unwrap()), 1);
        assert_eq!(f.pool.lock().unwrap().open, 1);

        // Idle past the check and no longer answering: the check finds it out.
        let f = fakes(1, LONG, Duration::ZERO);
        drop(f.pool.get().unwrap());
        f.health.lock().unwrap()[0].1.store(false, Ordering::SeqCst);
        assert_eq!(id(&mut f.pool.get().unwrap()), 1);
        // A healthy one passes the same check and is reused.
        assert_eq!(id(&mut f.pool.get().unwrap()), 1);
        assert_eq!(f.connects.load(Ordering::SeqCst), 2);
        assert_eq!(f.pool.lock().unwrap().open, 1);
    }

    #[test]
    fn no_more_than_size_connections_and_a_caller_gives_up_naming_the_setting() {
        let f = fakes(2, Duration::from_millis(50), LONG);
        let held = (f.pool.get().unwrap(), f.pool.get().unwrap());
        let Err(e) = f.pool.get() else {
            panic!("a third connection was handed out from a pool of two");
        };
        let text = e.to_string();
        assert!(
            text.contains("pool_size 2") && text.contains("fake db"),
            "{text}"
        );
        assert_eq!(f.connects.load(Ordering::SeqCst), 2);
        drop(held);
        assert!(f.pool.get().is_ok());
    }

    #[test]
    fn a_caller_waits_for_the_connection_another_returns() {
        let f = fakes(1, LONG, LONG);
        let held = f.pool.get().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| id(&mut f.pool.get().unwrap()));
            // Return the connection only once the waiter is waiting for it.
            while f.pool.lock().unwrap().waiting == 0 {
                std::thread::yield_now();
            }
            drop(held);
            assert_eq!(waiter.join().unwrap(), 0, "the returned connection");
        });
        assert_eq!(
            f.connects.load(Ordering::SeqCst),
            1,
            "none opened past the size"
        );
        assert_eq!(f.pool.lock().unwrap().waiting, 0);
    }

    #[test]
    fn a_size_of_zero_still_allows_one_connection() {
        let pool = Pool::new(refused(Arc::new(AtomicUsize::new(0))), 0, "x".into());
        assert_eq!(pool.size, 1);
        assert!(pool.get().is_err());
    }

    #[test]
    fn off_runtime_runs_inline_without_a_runtime() {
        let here = std::thread::current().id();
        assert_eq!(off_runtime(|| std::thread::current().id()), here);
        assert_eq!(
            off_runtime_local(|| Ok(std::thread::current().id())).unwrap(),
            here
        );
    }

    /// What the synchronous client does inside: start and block on a runtime of its own.
    fn own_runtime() -> u32 {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { 7 })
    }

    #[test]
    fn off_runtime_lets_the_client_run_its_own_runtime_from_async_code() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        multi.block_on(async {
            assert_eq!(off_runtime(own_runtime), 7);
            assert_eq!(off_runtime_local(|| Ok(own_runtime())).unwrap(), 7);
            // Nested calls run directly on the thread already handed over.
            let (outer, inner) = off_runtime(|| {
                (
                    std::thread::current().id(),
                    off_runtime(|| std::thread::current().id()),
                )
            });
            assert_eq!(outer, inner);
        });
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        current.block_on(async {
            // A current-thread runtime keeps its thread: the work runs on another one.
            let here = std::thread::current().id();
            let (there, nested) = off_runtime(|| {
                (
                    std::thread::current().id(),
                    off_runtime(|| std::thread::current().id()),
                )
            });
            assert_ne!(there, here);
            assert_eq!(nested, there);
            assert_eq!(off_runtime(own_runtime), 7);
        });
    }

    #[test]
    fn a_transaction_on_a_current_thread_runtime_is_refused_with_the_fix() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran = std::cell::Cell::new(false);
        let r = current.block_on(async {
            off_runtime_local(|| {
                ran.set(true);
                Ok(())
            })
        });
        let Err(StoreError::Io(text)) = r else {
            panic!("a transaction ran on a current-thread runtime: {r:?}");
        };
        assert!(text.contains("spawn_blocking"), "{text}");
        assert!(!ran.get(), "the body must not run");
    }

    #[test]
    fn connections_are_reused_and_a_broken_one_is_replaced() {
        let Some(url) = test_db() else { return };
        let calls = Arc::new(AtomicUsize::new(0));
        let pool = Pool::new(counting(url.clone(), calls.clone()), 2, "test db".into());
        let pid = |c: &mut Conn<'_>| -> i32 {
            c.client()
                .unwrap()
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0)
        };
        let first = pid(&mut pool.get().unwrap());
        let again = pid(&mut pool.get().unwrap());
        assert_eq!(first, again, "the idle connection is handed out again");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // The server drops it (a restart would): the pool notices and opens a new one.
        let mut admin = Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&first])
            .unwrap();
        let mut next = None;
        for _ in 0..50 {
            // The dead connection is found out when it is used, or by the check before it
            // is handed out; either way it is never handed out twice.
            let mut c = pool.get().unwrap();
            if let Ok(row) = c
                .client()
                .unwrap()
                .query_one("SELECT pg_backend_pid()", &[])
            {
                next = Some(row.get::<_, i32>(0));
                break;
            }
        }
        let next = next.expect("a working connection after the old one was dropped");
        assert_ne!(next, first);
        assert!(pool.lock().unwrap().open <= 2);
    }

    #[test]
    fn a_full_pool_hands_out_the_connection_a_caller_returns() {
        let Some(url) = test_db() else { return };
        let calls = Arc::new(AtomicUsize::new(0));
        let pool = Pool::new(counting(url, calls.clone()), 1, "test db".into());
        let held = pool.get().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let c = pool.get();
                tx.send(c.is_ok()).unwrap();
            });
            // The waiter cannot get past a full pool while the connection is held ...
            assert!(rx.try_recv().is_err());
            drop(held);
            // ... and gets the same connection once it is returned.
            assert!(rx.recv().unwrap());
        });
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no second connection was opened"
        );
    }
}
