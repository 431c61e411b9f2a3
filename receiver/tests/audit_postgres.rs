//! The audit commands (the real binary) on a PostgreSQL-backed deployment: a log built on
//! PostgreSQL through the ingest's own state machine verifies with `--pg-url`; a byte
//! flipped inside one `store_log` row is named at its index; export, replay, show and
//! reconcile read the same database; `--config` with `backend = "postgres"` selects it;
//! and the audit never creates, migrates or writes anything.
//!
//! Runs when `AIRLOCK_TEST_PG_URL` is set (`scripts/pg start DIR PORT` prints one);
//! otherwise it says on stderr that it was skipped. Each test uses a schema of its own.

use crate::audit_support;
use crate::common;

use std::collections::BTreeSet;

use airlock_receiver::store::postgres::PgStore;
use airlock_receiver::store::postgres::settings::PostgresConfig;
use airlock_receiver::store::{Store, Table};
use audit_support::*;

const FRAMES: u64 = 600;

fn pg_url() -> Option<String> {
    common::pg_url("audit_postgres")
}

/// A schema of its own on the test database: (schema, URL with it as the search_path).
fn fresh_schema(url: &str) -> (String, String) {
    let schema = format!("audit_{:x}", common::rand_u64() >> 16);
    let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    (
        schema.clone(),
        format!("{url}{sep}options=-c%20search_path%3D{schema}"),
    )
}

fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut c) = ::postgres::Client::connect(url, ::postgres::NoTls) {
        let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A log of FRAMES frames on PostgreSQL (the receiver's own migrations and state machine),
/// without the seqs in `lost`; returns (trust dir holder, entries, signer A's frames).
fn build_pg(db_url: &str, lost: &BTreeSet<u64>) -> (tempfile::TempDir, u64, Vec<Sent>) {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let store = PgStore::open_url(db_url).unwrap();
    let (sent_a, entries) = build_into(&store, &trust, FRAMES, lost, true);
    (dir, entries, sent_a)
}

#[test]
fn verify_export_and_tampering_over_postgres() {
    let Some(url) = pg_url() else { return };
    let _pg = common::pg_shared();
    let (schema, db) = fresh_schema(&url);
    let (dir, entries, _) = build_pg(&db, &BTreeSet::new());
    let trust = dir.path().join("trust");

    // verify: OK, as text and as JSON.
    let out = audit(&["verify", "--pg-url", &db, "--trust-dir", path(&trust)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} / {}", text(&out.stderr));
    assert!(stdout.contains("summary: OK"), "{stdout}");
    let out = audit(&[
        "verify",
        "--pg-url",
        &db,
        "--trust-dir",
        path(&trust),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["entries"].as_u64(), Some(entries), "{r:#}");
    assert_eq!(r["problem_count"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["signers"].as_array().map(Vec::len), Some(2), "{r:#}");

    // export: one JSON line per entry, in index order.
    let out = audit(&["export", "--pg-url", &db, "--trust-dir", path(&trust)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, entries);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"].as_u64(), Some(i as u64), "{l}");
        assert_eq!(l["signature"].as_str(), Some("ok"), "{l}");
    }

    // replay: the log rebuilt into a scratch store matches the live PostgreSQL state.
    let out = audit(&["replay", "--pg-url", &db, "--trust-dir", path(&trust)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} / {}", text(&out.stderr));
    assert!(stdout.contains("summary: OK"), "{stdout}");

    // show: a user's frames and record, from the database.
    let out = audit(&[
        "show",
        "--pg-url",
        &db,
        "--trust-dir",
        path(&trust),
        "--user",
        "user5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!r["frames"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(r["users"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert!(r["sessions_note"].is_null(), "{r:#}");

    // --config with backend = "postgres" selects the database (and its signer keys).
    let cfg = dir.path().join("receiver.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
[link.udp]
listen = "127.0.0.1:47000"
[trust]
signers = ["{signer}"]
link_keys = ["link.key"]
[store]
backend = "postgres"
[store.postgres]
url = "{db}"
"#,
            data = path(&dir.path().join("no-such-data-dir")),
            signer = path(&trust.join("sender-a.pub")),
        ),
    )
    .unwrap();
    let out = audit(&["verify", "--config", path(&cfg)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} / {}", text(&out.stderr));
    assert!(stdout.contains("summary: OK"), "{stdout}");

    // Flip one byte in the middle of entry 123's stored value.
    let mut c = ::postgres::Client::connect(&db, ::postgres::NoTls).unwrap();
    let n = c
        .execute(
            "UPDATE store_log SET v = set_byte(v, length(v) / 2, get_byte(v, length(v) / 2) # 1) \
             WHERE k = int8send(123::bigint)",
            &[],
        )
        .unwrap();
    assert_eq!(n, 1);
    let out = audit(&[
        "verify",
        "--pg-url",
        &db,
        "--trust-dir",
        path(&trust),
        "--json",
    ]);
    assert!(!out.status.success(), "a tampered log must fail");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {} / {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(r["first_problem"]["index"].as_u64(), Some(123), "{r:#}");
    let out = audit(&["verify", "--pg-url", &db, "--trust-dir", path(&trust)]);
    assert!(!out.status.success());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("123"), "{all}");
    drop(c);

    // The audit's own open path: read-only connections, so the database refuses writes.
    let ro = PgStore::open_read_only(&PostgresConfig::from_url(&db)).unwrap();
    // ... and one snapshot: a row written after the open is not seen.
    let beyond = (entries + 5).to_be_bytes();
    assert_eq!(ro.get(Table::Log, &beyond).unwrap(), None);
    let mut w = ::postgres::Client::connect(&db, ::postgres::NoTls).unwrap();
    w.execute(
        "INSERT INTO store_log (k, v) VALUES (int8send($1::bigint), '\\x00')",
        &[&((entries + 5) as i64)],
    )
    .unwrap();
    assert_eq!(
        ro.get(Table::Log, &beyond).unwrap(),
        None,
        "not one snapshot"
    );
    assert_eq!(ro.len(Table::Log) as u64, entries);
    drop(w);
    let pool = ro.pool();
    let mut conn = pool.get().unwrap();
    let client = conn.client().unwrap();
    let on: String = client
        .query_one("SHOW default_transaction_read_only", &[])
        .unwrap()
        .get(0);
    assert_eq!(on, "on");
    let refused = client.batch_execute("DELETE FROM store_log");
    assert!(
        refused.is_err(),
        "a write went through a read-only connection"
    );
    drop(conn);
    drop(ro);
    drop_schema(&url, &schema);
}

/// `audit reconcile` against the sender's export, with the log on PostgreSQL: the frames
/// the receiver never got are named, and so is a frame the export lacks.
#[test]
fn reconcile_over_postgres_names_what_never_arrived() {
    let Some(url) = pg_url() else { return };
    let _pg = common::pg_shared();
    let (schema, db) = fresh_schema(&url);
    let lost: BTreeSet<u64> = [100, 101, 250].into_iter().collect();
    let (dir, _, sent_a) = build_pg(&db, &lost);
    let trust = dir.path().join("trust");
    let export = dir.path().join("sender.jsonl");
    write_sender_export(&sent_a, &export, &BTreeSet::new());
    let signer = trust.join("sender-a.pub");
    let reconcile = |log: &std::path::Path| {
        audit(&[
            "reconcile",
            "--pg-url",
            &db,
            "--sender-log",
            path(log),
            "--signer",
            path(&signer),
            "--json",
        ])
    };
    let out = reconcile(&export);
    assert!(!out.status.success(), "lost frames must fail the reconcile");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(r["sent_not_received_ranges"], "100-101, 250", "{r:#}");
    assert_eq!(r["received_not_sent_count"], 0, "{r:#}");
    assert!(
        r["sender_log_problems"].as_array().unwrap().is_empty(),
        "{r:#}"
    );

    // An export that also lacks seq 200, which the receiver logged: received but never
    // sent, and nothing the other way.
    let partial = dir.path().join("partial.jsonl");
    let drop: BTreeSet<u64> = lost.iter().copied().chain([200]).collect();
    write_sender_export(&sent_a, &partial, &drop);
    let out = reconcile(&partial);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["received_not_sent_count"], 1, "{r:#}");
    assert_eq!(r["received_not_sent"][0]["seq"], 200, "{r:#}");
    assert_eq!(r["sent_not_received_count"], 0, "{r:#}");
    assert!(!out.status.success(), "{r:#}");
    drop_schema(&url, &schema);
}

#[test]
fn an_empty_database_is_refused_and_left_untouched() {
    let Some(url) = pg_url() else { return };
    let _pg = common::pg_shared();
    let (schema, db) = fresh_schema(&url);
    let dir = tempfile::tempdir().unwrap();
    let key = airlock_protocol::keys::SignerKey::generate();
    let signer = dir.path().join("a.pub");
    std::fs::write(&signer, key.public().to_spki_pem().unwrap()).unwrap();
    let out = audit(&["verify", "--pg-url", &db, "--signer", path(&signer)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no Airlock schema"), "{err}");
    assert!(err.contains("never creates or migrates"), "{err}");
    // Nothing was created: the schema is still empty.
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the audit created tables");

    // A password in the URL is refused (it would show in the process list).
    let out = audit(&[
        "verify",
        "--pg-url",
        "postgres://auditor:secret@127.0.0.1:1/airlock",
        "--signer",
        path(&signer),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--pg-password-file"),
        "{}",
        text(&out.stderr)
    );
    // --pg-url and --data-dir together are a usage error.
    let out = audit(&[
        "verify",
        "--pg-url",
        &db,
        "--data-dir",
        path(dir.path()),
        "--signer",
        path(&signer),
    ]);
    assert!(!out.status.success());
    drop_schema(&url, &schema);
}
