//! Schema migrations, embedded in the binary and applied on start.
//!
//! Each migration runs in its own transaction together with its row in
//! `airlock_migrations`, under a transaction-scoped advisory lock, so receivers that
//! start at the same moment apply each one exactly once and a crash leaves no half
//! migration. Migrations are append-only: never edit one that has shipped.

use postgres::Client;

use crate::store::StoreError;

/// (version, name, SQL), in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../../../migrations/0001_store.sql"),
    ),
    (2, "oidc", include_str!("../../../migrations/0002_oidc.sql")),
    (
        3,
        "seqs_carry_frame_hash",
        include_str!("../../../migrations/0003_seqs_carry_frame_hash.sql"),
    ),
    (
        4,
        "oidc_tombstones",
        include_str!("../../../migrations/0004_oidc_tombstones.sql"),
    ),
    (
        5,
        "passkeys",
        include_str!("../../../migrations/0005_passkeys.sql"),
    ),
    (
        6,
        "transparency",
        include_str!("../../../migrations/0006_transparency.sql"),
    ),
    (
        7,
        "device_grants",
        include_str!("../../../migrations/0007_device_grants.sql"),
    ),
    (
        8,
        "pushed_requests",
        include_str!("../../../migrations/0008_pushed_requests.sql"),
    ),
    (
        9,
        "oidc_logout_outbox",
        include_str!("../../../migrations/0009_oidc_logout_outbox.sql"),
    ),
];

/// Arbitrary constant naming Airlock's migration lock ("AIRLOCK" in ASCII).
const LOCK_ID: i64 = 0x0041_4952_4c4f_434b;

fn err(step: &str, e: postgres::Error) -> StoreError {
    StoreError::Open {
        path: "PostgreSQL".into(),
        detail: format!(
            "schema migration, {step}: {e}{}",
            e.as_db_error()
                .map(|d| format!(" ({})", d.message()))
                .unwrap_or_default()
        ),
    }
}

/// Brings the schema up to date; returns the versions it applied.
pub fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS airlock_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .or_else(|e| {
            // Two receivers racing to create the table: the loser sees a unique violation.
            if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(err("creating airlock_migrations", e))
            }
        })?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let mut tx = client
            .transaction()
            .map_err(|e| err("starting a transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_ID])
            .map_err(|e| err("taking the migration lock", e))?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM airlock_migrations WHERE version = $1",
                &[version],
            )
            .map_err(|e| err("reading airlock_migrations", e))?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| err(&format!("applying {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO airlock_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .map_err(|e| err("recording the version", e))?;
        tx.commit()
            .map_err(|e| err(&format!("committing {version} ({name})"), e))?;
        tracing::info!(version, name, "database schema migrated");
        applied.push(*version);
    }
    let newest: Option<i32> = client
        .query_one("SELECT max(version) FROM airlock_migrations", &[])
        .map_err(|e| err("reading the schema version", e))?
        .get(0);
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if newest.unwrap_or(0) > known {
        return Err(StoreError::Open {
            path: "PostgreSQL".into(),
            detail: format!(
                "the database schema is at version {}, newer than this binary knows ({known}): upgrade airlock-receiver on this host",
                newest.unwrap_or(0)
            ),
        });
    }
    Ok(applied)
}

/// Checks, without changing anything, that the schema is exactly the one this binary
/// knows (the auditor's read-only open: a missing or older schema is not migrated).
pub fn check_current(client: &mut Client, shown: &str) -> Result<(), StoreError> {
    let fail = |detail: String| StoreError::Open {
        path: shown.to_owned(),
        detail,
    };
    let read = |e: postgres::Error| {
        fail(format!(
            "reading the schema version: {e}{}",
            e.as_db_error()
                .map(|d| format!(" ({})", d.message()))
                .unwrap_or_default()
        ))
    };
    let exists: bool = client
        .query_one("SELECT to_regclass('airlock_migrations') IS NOT NULL", &[])
        .and_then(|r| r.try_get(0))
        .map_err(read)?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if !exists {
        return Err(fail(
            "no Airlock schema here (no airlock_migrations table): check the database name in the URL, \
             and its search_path (`options=-c search_path=...`) if the receivers use a schema of their own; \
             the audit never creates or migrates a schema"
                .into(),
        ));
    }
    let newest: Option<i32> = client
        .query_one("SELECT max(version) FROM airlock_migrations", &[])
        .and_then(|r| r.try_get(0))
        .map_err(read)?;
    let newest = newest.unwrap_or(0);
    if newest < known {
        return Err(fail(format!(
            "the database schema is at version {newest}, older than this binary's ({known}); \
             the audit never migrates: audit with the airlock-receiver version the receivers run, \
             or upgrade the receivers first"
        )));
    }
    if newest > known {
        return Err(fail(format!(
            "the database schema is at version {newest}, newer than this binary knows ({known}): \
             audit with the airlock-receiver version the receivers run"
        )));
    }
    Ok(())
}
