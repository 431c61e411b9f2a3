//! The PostgreSQL backend: several receivers share one (replicated) database.
//!
//! Each [`Table`] is a `store_<name>(k bytea primary key, v bytea)` table; `bytea` sorts
//! like sled's keys, so scans return the same order on both backends. A transaction is
//! one SERIALIZABLE PostgreSQL transaction: when two receivers apply the same frame at
//! once, one of them fails to serialize, is re-run, and then finds the frame already in
//! its seq in `store_seqs` — the frame is logged and applied exactly once,
//! whichever receiver got there first. Commits are synchronous, so `flush` has nothing
//! left to do.

pub mod migrate;
pub mod pool;
pub mod settings;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{IsolationLevel, NoTls, Transaction};

use self::pool::{Pool, off_runtime, off_runtime_local};
use self::settings::PostgresConfig;
use super::records::TicketRecord;
use super::{Row, StateTx, Store, StoreError, Table, TxError, decode_json, encode_json};

/// The PostgreSQL store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.shown)
    }
}

/// For a read-only store: opens the one transaction every read of the connection runs in
/// (never committed; it ends with the connection). A new connection after a lost one
/// starts a new snapshot.
fn snapshot(
    read_only: bool,
    c: Result<postgres::Client, postgres::Error>,
) -> Result<postgres::Client, postgres::Error> {
    let mut c = c?;
    if read_only {
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    }
    Ok(c)
}

/// How [`PgStore`] opens: a receiver migrates; an auditor only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Migrate,
    ReadOnly,
}

/// Serialization conflicts in a row before a transaction gives up. Two receivers on one
/// feed collide often but briefly; a hundred in a row means something else is wrong.
const MAX_CONFLICTS: u32 = 100;

/// The SQL table of a store table.
fn sql_table(t: Table) -> &'static str {
    match t {
        Table::Log => "store_log",
        Table::Seqs => "store_seqs",
        Table::Users => "store_users",
        Table::Tickets => "store_tickets",
        Table::Revocations => "store_revocations",
        Table::Mirrors => "store_mirrors",
        Table::Meta => "store_meta",
        Table::Checkpoints => "store_checkpoints",
    }
}

fn db_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{e}: {}", d.message()),
        None => e.to_string(),
    }
}

pub(crate) fn io(e: &postgres::Error) -> StoreError {
    StoreError::Io(format!("PostgreSQL: {}", db_detail(e)))
}

/// Why one attempt of a transaction did not commit.
enum Attempt {
    /// Lost a race with another transaction: run it again.
    Conflict,
    /// The database is unreachable or restarting: wait and run it again.
    Down(StoreError),
    /// Anything else: give up.
    Fail(StoreError),
}

fn classify(e: &postgres::Error) -> Attempt {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION =>
        {
            Attempt::Conflict
        }
        // Class 08 (connection exception), 57P (operator intervention: shutdown,
        // restart), and a read-only server (a standby not yet promoted after a failover).
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("57P")
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION =>
        {
            Attempt::Down(io(e))
        }
        Some(_) => Attempt::Fail(io(e)),
        // No SQLSTATE: the connection itself failed.
        None => Attempt::Down(io(e)),
    }
}

impl PgStore {
    /// Connects, applies pending migrations, and keeps a pool of `pool_size` connections.
    pub fn open(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        off_runtime(|| Self::open_blocking(cfg))
    }

    /// [`PgStore::open`] from a URL alone (tests, tools).
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open(&PostgresConfig::from_url(url))
    }

    /// Connects for reading only (the auditor's tools): never migrates, and the
    /// connection runs with `default_transaction_read_only = on`, so the database refuses
    /// any write. Every read goes through ONE connection inside one REPEATABLE READ
    /// transaction (`pool_size` is ignored), so a walk of a live database sees one
    /// snapshot: the log and its head record agree. Fails with what to do when the schema
    /// is missing or not the one this binary knows.
    pub fn open_read_only(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        let mut cfg = cfg.clone();
        cfg.pool_size = 1;
        off_runtime(|| Self::connect(&cfg, Mode::ReadOnly))
    }

    fn open_blocking(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        Self::connect(cfg, Mode::Migrate)
    }

    fn connect(cfg: &PostgresConfig, mode: Mode) -> Result<Self, StoreError> {
        let mut client_cfg = cfg.client_config()?;
        if mode == Mode::ReadOnly {
            const READ_ONLY: &str = "-c default_transaction_read_only=on";
            let options = match client_cfg.get_options() {
                Some(o) if !o.trim().is_empty() => format!("{o} {READ_ONLY}"),
                _ => READ_ONLY.to_owned(),
            };
            client_cfg.options(&options);
            client_cfg.application_name("airlock-receiver audit");
        }
        let shown = cfg.shown();
        let ro = mode == Mode::ReadOnly;
        let pool = match cfg.tls_config()? {
            None => Pool::new(
                move || snapshot(ro, client_cfg.connect(NoTls)),
                cfg.pool_size,
                shown.clone(),
            ),
            Some(tls) => {
                let make = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
                Pool::new(
                    move || snapshot(ro, client_cfg.connect(make.clone())),
                    cfg.pool_size,
                    shown.clone(),
                )
            }
        };
        {
            let mut conn = pool.get()?;
            match mode {
                Mode::Migrate => {
                    migrate::migrate(conn.client()?)?;
                }
                Mode::ReadOnly => migrate::check_current(conn.client()?, &shown)?,
            }
        }
        tracing::info!(database = %shown, pool = cfg.pool_size, read_only = (mode == Mode::ReadOnly), "PostgreSQL store open");
        Ok(PgStore { pool, shown })
    }

    /// The connection pool, shared with [`crate::oidc::pg_store::PgOidcStore`].
    pub fn pool(&self) -> Arc<Pool> {
        self.pool.clone()
    }

    /// The database, for messages (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn try_transact<R, F>(&self, f: &F) -> Result<R, Attempt>
    where
        F: Fn(&dyn StateTx) -> Result<R, TxError>,
    {
        let mut conn = self.pool.get().map_err(Attempt::Down)?;
        let client = conn.client().map_err(Attempt::Fail)?;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .map_err(|e| classify(&e))?;
        let ptx = PgTx {
            tx: RefCell::new(&mut tx),
            writes: RefCell::new(BTreeMap::new()),
            read: RefCell::new(HashMap::new()),
            failure: Cell::new(None),
        };
        let out = f(&ptx);
        let failure = ptx.failure.take();
        let writes = ptx.writes.into_inner();
        if let Some(a) = failure {
            return Err(a);
        }
        let r = match out {
            Ok(r) => r,
            Err(TxError::Conflict) => return Err(Attempt::Conflict),
            Err(TxError::Store(e)) => return Err(Attempt::Fail(e)),
        };
        write_all(&mut tx, writes).map_err(|e| classify(&e))?;
        tx.commit().map_err(|e| classify(&e))?;
        Ok(r)
    }

    fn consume_blocking(&self, locator: &[u8; 16]) -> Result<bool, StoreError> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client()?.transaction().map_err(|e| io(&e))?;
        let key: &[u8] = locator;
        // Row lock: a concurrent consumer waits here, then sees `used`.
        let row = tx
            .query_typed_opt(
                "SELECT v FROM store_tickets WHERE k = $1 FOR UPDATE",
                &[(&key, Type::BYTEA)],
            )
            .map_err(|e| io(&e))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let bytes: Vec<u8> = row.try_get(0).map_err(|e| io(&e))?;
        let mut t: TicketRecord = decode_json(Table::Tickets, locator, &bytes)?;
        if t.used {
            return Ok(false);
        }
        t.used = true;
        let bytes = encode_json(&t)?;
        tx.execute_typed(
            "UPDATE store_tickets SET v = $2 WHERE k = $1",
            &[(&key, Type::BYTEA), (&bytes, Type::BYTEA)],
        )
        .map_err(|e| io(&e))?;
        tx.commit().map_err(|e| io(&e))?;
        Ok(true)
    }

    fn scan_page(
        &self,
        table: Table,
        from: &[u8],
        inclusive: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let op = if inclusive { ">=" } else { ">" };
        let sql = format!(
            "SELECT k, v FROM {} WHERE k {op} $1 ORDER BY k LIMIT {SCAN_PAGE}",
            sql_table(table)
        );
        self.read(|c| {
            let rows = c.query_typed(&sql, &[(&from, Type::BYTEA)])?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    /// Runs a read on a pooled connection. A connection the database dropped (restart,
    /// failover) is discarded and the read retried on a fresh one. Outside any async
    /// runtime (the ingest thread, the CLI) it waits for the database to come back, like
    /// [`Store::transact`]; inside one (the provider) it gives up after a retry so that
    /// requests fail closed instead of hanging.
    fn read<R: Send>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<R, postgres::Error> + Sync,
    ) -> Result<R, StoreError> {
        let patient = tokio::runtime::Handle::try_current().is_err();
        off_runtime(|| {
            let mut outages = 0u32;
            loop {
                let attempt = match self.pool.get() {
                    Err(e) => Attempt::Down(e),
                    Ok(mut conn) => match conn.client() {
                        Err(e) => Attempt::Fail(e),
                        Ok(c) => match f(c) {
                            Ok(r) => return Ok(r),
                            Err(e) => classify(&e),
                        },
                    },
                };
                match attempt {
                    Attempt::Down(e) => {
                        outages += 1;
                        if !patient && outages > 1 {
                            return Err(e);
                        }
                        if outages > 1 {
                            tracing::warn!(error = %e, attempt = outages, "PostgreSQL unavailable; waiting");
                            std::thread::sleep(backoff(outages - 1, true));
                        }
                    }
                    Attempt::Conflict => {
                        return Err(StoreError::Io(
                            "PostgreSQL: a read conflicted with a concurrent writer (on a standby: with replication; see docs/audit.md section 1b); run it again".into(),
                        ));
                    }
                    Attempt::Fail(e) => return Err(e),
                }
            }
        })
    }
}

/// The buffered writes of a transaction: (table position, key) -> (table, value).
type Writes = BTreeMap<(usize, Vec<u8>), (Table, Vec<u8>)>;

/// Rows read ahead, by (table position, key): the value, or None when absent.
type ReadAhead = HashMap<(usize, Vec<u8>), Option<Vec<u8>>>;

/// Per table: the table, its keys and its values, in key order.
type TableWrites = BTreeMap<usize, (Table, Vec<Vec<u8>>, Vec<Vec<u8>>)>;

/// Rows fetched per round trip of a scan.
const SCAN_PAGE: usize = 512;

/// Upserts the buffered writes, one statement per table, in key order (a fixed order
/// keeps concurrent writers from deadlocking on each other).
fn write_all(tx: &mut Transaction<'_>, writes: Writes) -> Result<(), postgres::Error> {
    let mut per_table: TableWrites = BTreeMap::new();
    for ((pos, key), (table, value)) in writes {
        let e = per_table
            .entry(pos)
            .or_insert_with(|| (table, Vec::new(), Vec::new()));
        e.1.push(key);
        e.2.push(value);
    }
    for (_, (table, keys, values)) in per_table {
        let sql = format!(
            "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            sql_table(table)
        );
        tx.execute_typed(
            &sql,
            &[(&keys, Type::BYTEA_ARRAY), (&values, Type::BYTEA_ARRAY)],
        )?;
    }
    Ok(())
}

/// One transaction: reads go to the database (after the writes of this transaction),
/// writes are buffered and sent in bulk at commit.
struct PgTx<'a, 'c> {
    tx: RefCell<&'a mut Transaction<'c>>,
    writes: RefCell<Writes>,
    /// Rows read ahead by [`StateTx::prefetch`] (None: read and absent). This transaction's
    /// own writes take precedence; nobody else's can change what it reads (SERIALIZABLE).
    read: RefCell<ReadAhead>,
    /// Set when the database refused a statement: the transaction is dead, whatever the
    /// closure does with the error.
    failure: Cell<Option<Attempt>>,
}

impl PgTx<'_, '_> {
    fn fail(&self, e: &postgres::Error) -> TxError {
        let a = classify(e);
        let te = match &a {
            Attempt::Conflict => TxError::Conflict,
            Attempt::Down(s) | Attempt::Fail(s) => TxError::Store(StoreError::Io(s.to_string())),
        };
        self.failure.set(Some(a));
        te
    }
}

impl StateTx for PgTx<'_, '_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let slot = (table.position(), key.to_vec());
        if let Some((_, v)) = self.writes.borrow().get(&slot) {
            return Ok(Some(v.clone()));
        }
        if let Some(v) = self.read.borrow().get(&slot) {
            return Ok(v.clone());
        }
        let sql = format!("SELECT v FROM {} WHERE k = $1", sql_table(table));
        let row = self
            .tx
            .borrow_mut()
            .query_typed_opt(&sql, &[(&key as &(dyn ToSql + Sync), Type::BYTEA)])
            .map_err(|e| self.fail(&e))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(r.try_get(0).map_err(|e| self.fail(&e))?)),
        }
    }

    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.writes
            .borrow_mut()
            .insert((table.position(), key.to_vec()), (table, value.to_vec()));
        Ok(())
    }

    fn prefetch(&self, table: Table, keys: &[Vec<u8>]) -> Result<(), TxError> {
        let pos = table.position();
        let wanted: Vec<&Vec<u8>> = {
            let read = self.read.borrow();
            keys.iter()
                .filter(|k| !read.contains_key(&(pos, k.to_vec())))
                .collect()
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT k, v FROM {} WHERE k = ANY($1::bytea[])",
            sql_table(table)
        );
        let rows = self
            .tx
            .borrow_mut()
            .query_typed(&sql, &[(&wanted, Type::BYTEA_ARRAY)])
            .map_err(|e| self.fail(&e))?;
        let mut read = self.read.borrow_mut();
        for k in wanted {
            read.insert((pos, k.clone()), None);
        }
        for r in rows {
            let k: Vec<u8> = r.try_get(0).map_err(|e| self.fail(&e))?;
            let v: Vec<u8> = r.try_get(1).map_err(|e| self.fail(&e))?;
            read.insert((pos, k), Some(v));
        }
        Ok(())
    }
}

/// A pause between attempts: short and jittered after a conflict, growing while the
/// database is down.
fn backoff(attempt: u32, down: bool) -> Duration {
    if down {
        Duration::from_millis((250u64 << attempt.min(5)).min(5_000))
    } else {
        let jitter = u64::from(rand::random::<u8>() % 8);
        Duration::from_millis(u64::from(attempt.min(10)) + jitter)
    }
}

impl Store for PgStore {
    fn transact<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: Fn(&dyn StateTx) -> Result<R, TxError>,
    {
        off_runtime_local(|| {
            let (mut conflicts, mut outages) = (0u32, 0u32);
            loop {
                match self.try_transact(&f) {
                    Ok(r) => {
                        if outages > 0 {
                            tracing::info!(database = %self.shown, "PostgreSQL reachable again; ingest resumes");
                        }
                        return Ok(r);
                    }
                    Err(Attempt::Conflict) => {
                        conflicts += 1;
                        if conflicts >= MAX_CONFLICTS {
                            return Err(StoreError::Io(format!(
                                "a store transaction lost {MAX_CONFLICTS} serialization conflicts in a row on {}; check for a runaway writer",
                                self.shown
                            )));
                        }
                        std::thread::sleep(backoff(conflicts, false));
                    }
                    // The ingest pauses here (its queue is bounded) rather than dropping
                    // what it verified; the transaction is idempotent, so a commit whose
                    // acknowledgement was lost is found as a duplicate when re-run.
                    Err(Attempt::Down(e)) => {
                        outages += 1;
                        tracing::warn!(error = %e, attempt = outages, "PostgreSQL unavailable; ingest paused, retrying");
                        std::thread::sleep(backoff(outages, true));
                    }
                    Err(Attempt::Fail(e)) => return Err(e),
                }
            }
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Commits wait for the WAL flush (synchronous_commit = on, the default): nothing
        // is left to make durable here.
        Ok(())
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", sql_table(table));
        self.read(|c| {
            c.query_typed_opt(&sql, &[(&key, Type::BYTEA)])?
                .map(|r| r.try_get(0))
                .transpose()
        })
    }

    fn scan_from(
        &self,
        table: Table,
        from: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Row, StoreError>> + '_> {
        Box::new(Scan {
            store: self,
            table,
            next_from: from.to_vec(),
            inclusive: true,
            buf: VecDeque::new(),
            done: false,
        })
    }

    fn len(&self, table: Table) -> usize {
        let sql = format!("SELECT count(*) FROM {}", sql_table(table));
        match self.read(|c| c.query_one(&sql, &[])?.try_get::<_, i64>(0)) {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) => {
                tracing::warn!(table = table.name(), error = %e, "cannot count rows");
                0
            }
        }
    }

    fn consume_ticket(&self, locator: &[u8; 16]) -> Result<bool, StoreError> {
        off_runtime(|| self.consume_blocking(locator))
    }

    fn last_row(&self, table: Table) -> Result<Option<Row>, StoreError> {
        let sql = format!(
            "SELECT k, v FROM {} ORDER BY k DESC LIMIT 1",
            sql_table(table)
        );
        self.read(|c| {
            c.query_opt(&sql, &[])?
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .transpose()
        })
    }
}

/// A scan in pages of [`SCAN_PAGE`] rows, each page its own query.
struct Scan<'a> {
    store: &'a PgStore,
    table: Table,
    next_from: Vec<u8>,
    inclusive: bool,
    buf: VecDeque<Row>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Row, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            match self
                .store
                .scan_page(self.table, &self.next_from, self.inclusive)
            {
                Ok(rows) => {
                    self.done = rows.len() < SCAN_PAGE;
                    if let Some((k, _)) = rows.last() {
                        self.next_from = k.clone();
                        self.inclusive = false;
                    }
                    self.buf.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}
