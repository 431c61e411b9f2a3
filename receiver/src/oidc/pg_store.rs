//! [`OidcStore`] on PostgreSQL: the provider state every receiver of a cluster shares,
//! so a user who logged in through one receiver refreshes through any other.
//!
//! Single-row flips (code redemption, refresh-token use) are atomic in the database
//! (`UPDATE ... WHERE NOT used`, `SELECT ... FOR UPDATE`), so two receivers racing on
//! the same code or token still let exactly one of them win.

use std::sync::Arc;

use postgres::types::{ToSql, Type};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::oidc::error::OidcError;
use crate::oidc::keys::KeySet;
use crate::oidc::store::*;
use crate::store::postgres::PgStore;
use crate::store::postgres::pool::{Pool, PreparedError, off_runtime};

mod device;

/// The PostgreSQL backend of the provider; shares the pool of the [`PgStore`].
#[derive(Clone)]
pub struct PgOidcStore {
    pool: Arc<Pool>,
}

type P<'a> = (&'a (dyn ToSql + Sync), Type);

fn db(e: postgres::Error) -> OidcError {
    let detail = match e.as_db_error() {
        Some(d) => format!("{e}: {}", d.message()),
        None => e.to_string(),
    };
    OidcError::Store(format!("PostgreSQL: {detail}"))
}

fn st(e: crate::store::StoreError) -> OidcError {
    OidcError::Store(e.to_string())
}

/// Seconds since the epoch as a bigint (saturating: far-future times stay far-future).
fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn unsecs(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

fn json<T: Serialize>(v: &T) -> Result<String, OidcError> {
    Ok(serde_json::to_string(v)?)
}

fn parse<T: DeserializeOwned>(row: &postgres::Row, col: usize) -> Result<T, OidcError> {
    let text: String = row.try_get(col).map_err(db)?;
    Ok(serde_json::from_str(&text)?)
}

/// A family from its record in column `col` and its expiry in column `col + 1`: the column
/// is where a grant extends the expiry (see [`TOUCH_FAMILY`]).
fn family_row(row: &postgres::Row, col: usize) -> Result<Family, OidcError> {
    let mut family: Family = parse(row, col)?;
    family.expires_at = unsecs(row.try_get(col + 1).map_err(db)?);
    Ok(family)
}

/// A row of `oidc_logout_outbox` (id, client_id, uri, sub, sid, attempts,
/// next_attempt_ms, created_ms).
fn outbox_row(r: &postgres::Row) -> Result<LogoutDelivery, OidcError> {
    let attempts: i64 = r.try_get(5).map_err(db)?;
    Ok(LogoutDelivery {
        id: r.try_get(0).map_err(db)?,
        client_id: r.try_get(1).map_err(db)?,
        uri: r.try_get(2).map_err(db)?,
        sub: r.try_get(3).map_err(db)?,
        sid: r.try_get(4).map_err(db)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_ms: unsecs(r.try_get(6).map_err(db)?),
        created_ms: unsecs(r.try_get(7).map_err(db)?),
    })
}

/// Advisory lock id serialising first-start key generation across the cluster.
const KEYS_LOCK: i64 = 0x4149_524c_4b45_5953;

/// Flips a refresh token to used; one row changed only for the first caller.
const USE_REFRESH: &str = "UPDATE oidc_refresh SET used = true WHERE token_hash = $1 AND NOT used";

/// Extends a family's expiry, never backwards. This runs on every refresh, so it moves the
/// column only: the column is the family's expiry, and a family read from the table takes
/// it from there (see [`family_row`]); the `expires_at` inside the stored record is the one
/// it was created with. Rewriting the record's JSON on every grant cost a parse and a
/// re-serialisation of the whole record.
const TOUCH_FAMILY: &str =
    "UPDATE oidc_families SET expires_at = GREATEST(expires_at, $2) WHERE id = $1";

/// A refresh token ($1 hash) and its family's record and expiry (NULL when the family is
/// gone).
const REFRESH_AND_FAMILY: &str = "SELECT r.family, r.expires_at, r.used, f.data, f.expires_at \
     FROM oidc_refresh r LEFT JOIN oidc_families f ON f.id = r.family WHERE r.token_hash = $1";

/// A refresh token's rotation in one statement, so one round trip and one commit: flips
/// `used` of $1, and only if that happened extends family $3 to $4 and stores $2. The
/// update's row lock orders concurrent rotations of one token: the second waits, then
/// finds it used, and its family update and insert, which depend on `used`, change nothing.
const ROTATE_REFRESH: &str = "WITH used AS (UPDATE oidc_refresh SET used = true \
       WHERE token_hash = $1 AND NOT used RETURNING family), \
     touched AS (UPDATE oidc_families SET expires_at = GREATEST(expires_at, $4) \
       WHERE id = $3 AND EXISTS (SELECT 1 FROM used)), \
     added AS (INSERT INTO oidc_refresh (token_hash, family, expires_at, used) \
       SELECT $2, $3, $4, false FROM used) \
     SELECT count(*) FROM used";

/// Stores a refresh token ($1 hash, $2 family, $3 expiry, $4 used).
const PUT_REFRESH: &str = "INSERT INTO oidc_refresh (token_hash, family, expires_at, used) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET family = EXCLUDED.family, \
     expires_at = EXCLUDED.expires_at, used = EXCLUDED.used";

impl PgOidcStore {
    pub fn new(store: &PgStore) -> Self {
        PgOidcStore { pool: store.pool() }
    }

    /// Runs `f` on a pooled connection, off the async runtime.
    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, OidcError> + Send,
    ) -> Result<R, OidcError> {
        off_runtime(|| {
            let mut conn = self.pool.get().map_err(st)?;
            f(conn.client().map_err(st)?)
        })
    }

    /// Runs `f` with `sql` prepared on a pooled connection (parsed and planned once per
    /// connection): for the statements every token request runs.
    fn with_prepared<R: Send>(
        &self,
        sql: &'static str,
        types: &[Type],
        f: impl FnOnce(&mut postgres::Client, &postgres::Statement) -> Result<R, OidcError> + Send,
    ) -> Result<R, OidcError> {
        off_runtime(|| {
            let mut conn = self.pool.get().map_err(st)?;
            let (client, statement) = conn.prepared(sql, types).map_err(|e| match e {
                PreparedError::Store(e) => st(e),
                PreparedError::Db(e) => db(e),
            })?;
            let result = f(client, &statement);
            if result.is_err() {
                // A statement can go stale (a migration changed a table it reads): after
                // any failure the connection prepares afresh.
                conn.forget_prepared();
            }
            result
        })
    }

    fn exec(&self, sql: &str, params: &[P<'_>]) -> Result<u64, OidcError> {
        self.with(|c| c.execute_typed(sql, params).map_err(db))
    }

    fn one<T: DeserializeOwned + Send>(
        &self,
        sql: &str,
        key: &str,
    ) -> Result<Option<T>, OidcError> {
        self.with(|c| {
            c.query_typed_opt(sql, &[(&key, Type::TEXT)])
                .map_err(db)?
                .map(|r| parse(&r, 0))
                .transpose()
        })
    }

    fn texts(&self, sql: &str, key: &str) -> Result<Vec<String>, OidcError> {
        self.with(|c| {
            c.query_typed(sql, &[(&key, Type::TEXT)])
                .map_err(db)?
                .iter()
                .map(|r| r.try_get(0).map_err(db))
                .collect()
        })
    }

    /// Read-modify-write of one JSON record under a row lock; `None` if absent.
    fn update<T, R>(
        &self,
        table: &str,
        key_col: &str,
        key: &str,
        f: impl FnOnce(&mut T) -> R + Send,
    ) -> Result<Option<(R, T)>, OidcError>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Send,
    {
        let select = format!("SELECT data FROM {table} WHERE {key_col} = $1 FOR UPDATE");
        let write = format!("UPDATE {table} SET data = $2 WHERE {key_col} = $1");
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let Some(row) = tx
                .query_typed_opt(&select, &[(&key, Type::TEXT)])
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut rec: T = parse(&row, 0)?;
            let verdict = f(&mut rec);
            let text = json(&rec)?;
            tx.execute_typed(&write, &[(&key, Type::TEXT), (&text, Type::TEXT)])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some((verdict, rec)))
        })
    }

    fn tombstone(&self, key: &str) -> Result<(), OidcError> {
        self.exec(
            "INSERT INTO oidc_tombstones (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
            &[(&key, Type::TEXT)],
        )?;
        Ok(())
    }

    fn passkeys_where(&self, col: &str, v: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        let sql = format!(
            "SELECT data FROM oidc_passkeys WHERE {col} = $1 ORDER BY cred_id COLLATE \"C\""
        );
        let mut out: Vec<PasskeyRecord> = self.with(|c| {
            c.query_typed(&sql, &[(&v, Type::TEXT)])
                .map_err(db)?
                .iter()
                .map(|r| parse(r, 0))
                .collect::<Result<_, OidcError>>()
        })?;
        out.sort_by(|a, b| (a.created_at, &a.cred_id).cmp(&(b.created_at, &b.cred_id)));
        Ok(out)
    }

    /// The first start of a cluster: generates the signing keys once, under a cluster-wide
    /// lock, so receivers starting together do not each create their own. Later starts
    /// find the keys and do nothing.
    pub fn init_keys_once(&self, now: u64) -> Result<(), OidcError> {
        self.with(|c| {
            c.execute("SELECT pg_advisory_lock($1)", &[&KEYS_LOCK])
                .map_err(db)?;
            // The generation runs on other pooled connections; this one holds the lock.
            let r = KeySet::init(self, now).map(|_| ());
            let unlock = c
                .execute("SELECT pg_advisory_unlock($1)", &[&KEYS_LOCK])
                .map_err(db);
            r.and(unlock.map(|_| ()))
        })
    }
}

impl OidcStore for PgOidcStore {
    fn put_session(&self, secret_hash: &str, s: &Session) -> Result<(), OidcError> {
        let data = json(s)?;
        let exp = secs(s.expires_at);
        self.exec(
            "INSERT INTO oidc_sessions (sid, secret_hash, sub, expires_at, data) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sid) DO UPDATE SET \
             secret_hash = EXCLUDED.secret_hash, sub = EXCLUDED.sub, \
             expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            &[
                (&s.sid, Type::TEXT),
                (&secret_hash, Type::TEXT),
                (&s.sub, Type::TEXT),
                (&exp, Type::INT8),
                (&data, Type::TEXT),
            ],
        )?;
        Ok(())
    }

    fn session_by_secret(&self, secret_hash: &str) -> Result<Option<Session>, OidcError> {
        self.one(
            "SELECT data FROM oidc_sessions WHERE secret_hash = $1",
            secret_hash,
        )
    }

    fn session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        self.one("SELECT data FROM oidc_sessions WHERE sid = $1", sid)
    }

    fn add_session_client(&self, sid: &str, client_id: &str) -> Result<(), OidcError> {
        self.update("oidc_sessions", "sid", sid, |s: &mut Session| {
            if !s.clients.iter().any(|c| c == client_id) {
                s.clients.push(client_id.to_string());
            }
        })?;
        Ok(())
    }

    fn delete_session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        self.tombstone(&session_tombstone(sid))?;
        self.one(
            "DELETE FROM oidc_sessions WHERE sid = $1 RETURNING data",
            sid,
        )
    }

    fn sessions_of(&self, sub: &str) -> Result<Vec<Session>, OidcError> {
        self.with(|c| {
            c.query_typed(
                "SELECT data FROM oidc_sessions WHERE sub = $1 ORDER BY sid COLLATE \"C\"",
                &[(&sub, Type::TEXT)],
            )
            .map_err(db)?
            .iter()
            .map(|r| parse(r, 0))
            .collect()
        })
    }

    fn live_subjects(&self) -> Result<Vec<String>, OidcError> {
        self.with(|c| {
            c.query(
                "SELECT sub FROM (SELECT sub FROM oidc_sessions \
                 UNION SELECT sub FROM oidc_passkeys WHERE (data::jsonb ->> 'disabled') IS NULL) s \
                 ORDER BY sub COLLATE \"C\"",
                &[],
            )
            .map_err(db)?
            .iter()
            .map(|r| r.try_get(0).map_err(db))
            .collect()
        })
    }

    fn put_pending(&self, id: &str, p: &PendingRequest) -> Result<(), OidcError> {
        let data = json(p)?;
        let exp = secs(p.expires_at);
        self.exec(
            "INSERT INTO oidc_pending (id, expires_at, data) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            &[(&id, Type::TEXT), (&exp, Type::INT8), (&data, Type::TEXT)],
        )?;
        Ok(())
    }

    fn pending(&self, id: &str) -> Result<Option<PendingRequest>, OidcError> {
        self.one("SELECT data FROM oidc_pending WHERE id = $1", id)
    }

    fn delete_pending(&self, id: &str) -> Result<(), OidcError> {
        self.exec(
            "DELETE FROM oidc_pending WHERE id = $1",
            &[(&id, Type::TEXT)],
        )?;
        Ok(())
    }

    fn put_code(&self, code_hash: &str, c: &AuthCode) -> Result<(), OidcError> {
        let data = json(c)?;
        let exp = secs(c.expires_at);
        self.exec(
            "INSERT INTO oidc_codes (code_hash, expires_at, data) VALUES ($1, $2, $3) \
             ON CONFLICT (code_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            &[(&code_hash, Type::TEXT), (&exp, Type::INT8), (&data, Type::TEXT)],
        )?;
        Ok(())
    }

    fn redeem_code(&self, code_hash: &str, family: &str) -> Result<CodeRedeem, OidcError> {
        let r = self.update("oidc_codes", "code_hash", code_hash, |c: &mut AuthCode| {
            let before = c.clone();
            if c.used_by_family.is_none() {
                c.used_by_family = Some(family.to_string());
                (true, before)
            } else {
                (false, before)
            }
        })?;
        Ok(match r {
            None => CodeRedeem::Unknown,
            Some(((true, c), _)) => CodeRedeem::First(c),
            Some(((false, c), _)) => CodeRedeem::Reused(c),
        })
    }

    fn put_family(&self, f: &Family) -> Result<(), OidcError> {
        let data = json(f)?;
        let exp = secs(f.expires_at);
        self.exec(
            "INSERT INTO oidc_families (id, sid, sub, expires_at, data) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET sid = EXCLUDED.sid, sub = EXCLUDED.sub, \
             expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            &[
                (&f.id, Type::TEXT),
                (&f.sid, Type::TEXT),
                (&f.sub, Type::TEXT),
                (&exp, Type::INT8),
                (&data, Type::TEXT),
            ],
        )?;
        // A statement of its own, after the insert committed: a revocation whose update
        // ran before that commit had committed its tombstone before, so this sees it.
        let (fam, ses) = (family_tombstone(&f.id), session_tombstone(&f.sid));
        self.exec(
            "UPDATE oidc_families SET data = jsonb_set(data::jsonb, '{revoked}', 'true'::jsonb)::text \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM oidc_tombstones WHERE key IN ($2, $3))",
            &[(&f.id, Type::TEXT), (&fam, Type::TEXT), (&ses, Type::TEXT)],
        )?;
        Ok(())
    }

    fn family(&self, id: &str) -> Result<Option<Family>, OidcError> {
        self.with(|c| {
            c.query_typed_opt(
                "SELECT data, expires_at FROM oidc_families WHERE id = $1",
                &[(&id, Type::TEXT)],
            )
            .map_err(db)?
            .map(|r| family_row(&r, 0))
            .transpose()
        })
    }

    fn touch_family(&self, id: &str, expires_at: u64) -> Result<(), OidcError> {
        let exp = secs(expires_at);
        self.exec(TOUCH_FAMILY, &[(&id, Type::TEXT), (&exp, Type::INT8)])?;
        Ok(())
    }

    fn revoke_family(&self, id: &str) -> Result<bool, OidcError> {
        self.tombstone(&family_tombstone(id))?;
        // Only the call that flips a live family reports true.
        let n = self.exec(
            "UPDATE oidc_families SET data = jsonb_set(data::jsonb, '{revoked}', 'true'::jsonb)::text \
             WHERE id = $1 AND (data::jsonb ->> 'revoked') IS DISTINCT FROM 'true'",
            &[(&id, Type::TEXT)],
        )?;
        Ok(n == 1)
    }

    fn families_of_session(&self, sid: &str) -> Result<Vec<String>, OidcError> {
        self.texts(
            "SELECT id FROM oidc_families WHERE sid = $1 ORDER BY id COLLATE \"C\"",
            sid,
        )
    }

    fn families_of_sub(&self, sub: &str) -> Result<Vec<String>, OidcError> {
        self.texts(
            "SELECT id FROM oidc_families WHERE sub = $1 ORDER BY id COLLATE \"C\"",
            sub,
        )
    }

    fn put_refresh(&self, token_hash: &str, r: &RefreshToken) -> Result<(), OidcError> {
        let exp = secs(r.expires_at);
        self.exec(
            PUT_REFRESH,
            &[
                (&token_hash, Type::TEXT),
                (&r.family, Type::TEXT),
                (&exp, Type::INT8),
                (&r.used, Type::BOOL),
            ],
        )?;
        Ok(())
    }

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshToken>, OidcError> {
        self.with(|c| {
            let row = c
                .query_typed_opt(
                    "SELECT family, expires_at, used FROM oidc_refresh WHERE token_hash = $1",
                    &[(&token_hash, Type::TEXT)],
                )
                .map_err(db)?;
            row.map(|r| {
                Ok(RefreshToken {
                    family: r.try_get(0).map_err(db)?,
                    expires_at: unsecs(r.try_get(1).map_err(db)?),
                    used: r.try_get(2).map_err(db)?,
                })
            })
            .transpose()
        })
    }

    fn refresh_and_family(
        &self,
        token_hash: &str,
    ) -> Result<Option<(RefreshToken, Option<Family>)>, OidcError> {
        self.with_prepared(REFRESH_AND_FAMILY, &[Type::TEXT], |c, statement| {
            let row = c.query_opt(statement, &[&token_hash]).map_err(db)?;
            let Some(r) = row else {
                return Ok(None);
            };
            let rt = RefreshToken {
                family: r.try_get(0).map_err(db)?,
                expires_at: unsecs(r.try_get(1).map_err(db)?),
                used: r.try_get(2).map_err(db)?,
            };
            let family = match r.try_get::<_, Option<String>>(3).map_err(db)? {
                None => None,
                Some(_) => Some(family_row(&r, 3)?),
            };
            Ok(Some((rt, family)))
        })
    }

    fn use_refresh(&self, token_hash: &str) -> Result<bool, OidcError> {
        let n = self.exec(USE_REFRESH, &[(&token_hash, Type::TEXT)])?;
        Ok(n == 1)
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        next_hash: &str,
        next: &RefreshToken,
    ) -> Result<bool, OidcError> {
        let exp = secs(next.expires_at);
        let rotated = self.with_prepared(
            ROTATE_REFRESH,
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
            |c, statement| {
                c.query_one(statement, &[&old_hash, &next_hash, &next.family, &exp])
                    .and_then(|r| r.try_get::<_, i64>(0))
                    .map_err(db)
            },
        )?;
        Ok(rotated == 1)
    }

    fn keys(&self) -> Result<Vec<StoredKey>, OidcError> {
        self.with(|c| {
            c.query_typed("SELECT data FROM oidc_keys ORDER BY kid COLLATE \"C\"", &[])
                .map_err(db)?
                .iter()
                .map(|r| parse(r, 0))
                .collect()
        })
    }

    fn put_key(&self, k: &StoredKey) -> Result<(), OidcError> {
        let data = json(k)?;
        self.exec(
            "INSERT INTO oidc_keys (kid, data) VALUES ($1, $2) \
             ON CONFLICT (kid) DO UPDATE SET data = EXCLUDED.data",
            &[(&k.kid, Type::TEXT), (&data, Type::TEXT)],
        )?;
        Ok(())
    }

    fn delete_key(&self, kid: &str) -> Result<(), OidcError> {
        self.exec(
            "DELETE FROM oidc_keys WHERE kid = $1",
            &[(&kid, Type::TEXT)],
        )?;
        Ok(())
    }

    fn attempts(&self, key: &str) -> Result<Attempts, OidcError> {
        self.with(|c| {
            let row = c
                .query_typed_opt(
                    "SELECT failures, window_start, locked_until FROM oidc_attempts WHERE key = $1",
                    &[(&key, Type::TEXT)],
                )
                .map_err(db)?;
            let Some(r) = row else {
                return Ok(Attempts::default());
            };
            let failures: i32 = r.try_get(0).map_err(db)?;
            Ok(Attempts {
                failures: u32::try_from(failures).unwrap_or(0),
                window_start: unsecs(r.try_get(1).map_err(db)?),
                locked_until: unsecs(r.try_get(2).map_err(db)?),
            })
        })
    }

    fn put_attempts(&self, key: &str, a: &Attempts) -> Result<(), OidcError> {
        let failures = i32::try_from(a.failures).unwrap_or(i32::MAX);
        let (ws, lu) = (secs(a.window_start), secs(a.locked_until));
        self.exec(
            "INSERT INTO oidc_attempts (key, failures, window_start, locked_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET failures = EXCLUDED.failures, \
             window_start = EXCLUDED.window_start, locked_until = EXCLUDED.locked_until",
            &[
                (&key, Type::TEXT),
                (&failures, Type::INT4),
                (&ws, Type::INT8),
                (&lu, Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn update_attempts(
        &self,
        key: &str,
        f: &mut (dyn FnMut(&mut Attempts) + Send),
    ) -> Result<(), OidcError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // The row exists (or is created) first, so FOR UPDATE always has a row to lock.
            tx.execute_typed(
                "INSERT INTO oidc_attempts (key, failures, window_start, locked_until) \
                 VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
                &[(&key, Type::TEXT)],
            )
            .map_err(db)?;
            let r = tx
                .query_typed_one(
                    "SELECT failures, window_start, locked_until FROM oidc_attempts \
                     WHERE key = $1 FOR UPDATE",
                    &[(&key, Type::TEXT)],
                )
                .map_err(db)?;
            let failures: i32 = r.try_get(0).map_err(db)?;
            let mut a = Attempts {
                failures: u32::try_from(failures).unwrap_or(0),
                window_start: unsecs(r.try_get(1).map_err(db)?),
                locked_until: unsecs(r.try_get(2).map_err(db)?),
            };
            f(&mut a);
            let failures = i32::try_from(a.failures).unwrap_or(i32::MAX);
            let (ws, lu) = (secs(a.window_start), secs(a.locked_until));
            tx.execute_typed(
                "UPDATE oidc_attempts SET failures = $2, window_start = $3, locked_until = $4 \
                 WHERE key = $1",
                &[
                    (&key, Type::TEXT),
                    (&failures, Type::INT4),
                    (&ws, Type::INT8),
                    (&lu, Type::INT8),
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    fn insert_passkey(&self, p: &PasskeyRecord) -> Result<bool, OidcError> {
        let data = json(p)?;
        let n = self.exec(
            "INSERT INTO oidc_passkeys (cred_id, sub, username, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (cred_id) DO NOTHING",
            &[
                (&p.cred_id, Type::TEXT),
                (&p.sub, Type::TEXT),
                (&p.username, Type::TEXT),
                (&data, Type::TEXT),
            ],
        )?;
        Ok(n == 1)
    }

    fn passkey(&self, cred_id: &str) -> Result<Option<PasskeyRecord>, OidcError> {
        self.one("SELECT data FROM oidc_passkeys WHERE cred_id = $1", cred_id)
    }

    fn passkeys_of(&self, sub: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        self.passkeys_where("sub", sub)
    }

    fn passkeys_by_username(&self, username: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        self.passkeys_where("username", username)
    }

    fn update_passkey(
        &self,
        cred_id: &str,
        f: &mut (dyn FnMut(&mut PasskeyRecord) -> bool + Send),
    ) -> Result<Option<bool>, OidcError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let Some(row) = tx
                .query_typed_opt(
                    "SELECT data FROM oidc_passkeys WHERE cred_id = $1 FOR UPDATE",
                    &[(&cred_id, Type::TEXT)],
                )
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut rec: PasskeyRecord = parse(&row, 0)?;
            if !f(&mut rec) {
                return Ok(Some(false));
            }
            let text = json(&rec)?;
            tx.execute_typed(
                "UPDATE oidc_passkeys SET data = $2 WHERE cred_id = $1",
                &[(&cred_id, Type::TEXT), (&text, Type::TEXT)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(true))
        })
    }

    fn delete_passkey(&self, sub: &str, cred_id: &str) -> Result<bool, OidcError> {
        let n = self.exec(
            "DELETE FROM oidc_passkeys WHERE cred_id = $1 AND sub = $2",
            &[(&cred_id, Type::TEXT), (&sub, Type::TEXT)],
        )?;
        Ok(n == 1)
    }

    fn put_ceremony(&self, id: &str, c: &Ceremony) -> Result<(), OidcError> {
        let data = json(c)?;
        let exp = secs(c.expires_at);
        self.exec(
            "INSERT INTO oidc_ceremonies (id, expires_at, data) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, data = EXCLUDED.data",
            &[(&id, Type::TEXT), (&exp, Type::INT8), (&data, Type::TEXT)],
        )?;
        Ok(())
    }

    fn take_ceremony(&self, id: &str) -> Result<Option<Ceremony>, OidcError> {
        self.one(
            "DELETE FROM oidc_ceremonies WHERE id = $1 RETURNING data",
            id,
        )
    }

    fn put_pushed(&self, id: &str, r: &PushedRequest) -> Result<(), OidcError> {
        let data = json(r)?;
        let exp = secs(r.expires_at);
        let client = r.client_id.as_str();
        self.exec(
            "INSERT INTO oidc_pushed_requests (id, client_id, expires_at, data) VALUES ($1, $2, $3, $4)",
            &[
                (&id, Type::TEXT),
                (&client, Type::TEXT),
                (&exp, Type::INT8),
                (&data, Type::TEXT),
            ],
        )?;
        Ok(())
    }

    fn take_pushed(&self, id: &str, client_id: &str) -> Result<PushedTake, OidcError> {
        // One statement: the row is deleted only for its own client, and DELETE ..
        // RETURNING hands it to exactly one of any racing receivers.
        self.with(|c| {
            let rows = c
                .query_typed(
                    "WITH gone AS (DELETE FROM oidc_pushed_requests WHERE id = $1 AND client_id = $2 RETURNING data) \
                     SELECT (SELECT data FROM gone), EXISTS (SELECT 1 FROM oidc_pushed_requests WHERE id = $1 AND client_id <> $2)",
                    &[(&id, Type::TEXT), (&client_id, Type::TEXT)],
                )
                .map_err(db)?;
            let Some(row) = rows.first() else {
                return Ok(PushedTake::Unknown);
            };
            let data: Option<String> = row.try_get(0).map_err(db)?;
            let exists: bool = row.try_get(1).map_err(db)?;
            match data {
                Some(d) => Ok(PushedTake::Taken(serde_json::from_str(&d)?)),
                None if exists => Ok(PushedTake::OtherClient),
                None => Ok(PushedTake::Unknown),
            }
        })
    }

    fn append_event(&self, e: &SecurityEvent) -> Result<u64, OidcError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let row = tx
                .query_one("SELECT nextval('oidc_security_events_id_seq')", &[])
                .map_err(db)?;
            let id: i64 = row.try_get(0).map_err(db)?;
            let mut e = e.clone();
            e.id = unsecs(id);
            let text = json(&e)?;
            tx.execute_typed(
                "INSERT INTO oidc_security_events (id, data) VALUES ($1, $2)",
                &[(&id, Type::INT8), (&text, Type::TEXT)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(e.id)
        })
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<SecurityEvent>, OidcError> {
        let after = secs(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            c.query_typed(
                "SELECT data FROM oidc_security_events WHERE id > $1 ORDER BY id LIMIT $2",
                &[(&after, Type::INT8), (&limit, Type::INT8)],
            )
            .map_err(db)?
            .iter()
            .map(|r| parse(r, 0))
            .collect()
        })
    }

    fn enqueue_logout(&self, d: &LogoutDelivery, max: usize) -> Result<bool, OidcError> {
        let (attempts, next, created) = (
            i64::from(d.attempts),
            secs(d.next_attempt_ms),
            secs(d.created_ms),
        );
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.exec(
            "INSERT INTO oidc_logout_outbox \
             (id, client_id, uri, sub, sid, attempts, next_attempt_ms, created_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE (SELECT count(*) FROM oidc_logout_outbox) < $9",
            &[
                (&d.id, Type::TEXT),
                (&d.client_id, Type::TEXT),
                (&d.uri, Type::TEXT),
                (&d.sub, Type::TEXT),
                (&d.sid, Type::TEXT),
                (&attempts, Type::INT8),
                (&next, Type::INT8),
                (&created, Type::INT8),
                (&max, Type::INT8),
            ],
        )?;
        Ok(n == 1)
    }

    fn claim_logouts(
        &self,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<LogoutDelivery>, OidcError> {
        let (now, until) = (secs(now_ms), secs(lease_until_ms));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            c.query_typed(
                "UPDATE oidc_logout_outbox o SET lease_owner = $1, lease_until_ms = $2 \
                 FROM (SELECT id FROM oidc_logout_outbox \
                       WHERE next_attempt_ms <= $3 AND (lease_owner IS NULL OR lease_until_ms <= $3) \
                       ORDER BY next_attempt_ms LIMIT $4 FOR UPDATE SKIP LOCKED) due \
                 WHERE o.id = due.id \
                 RETURNING o.id, o.client_id, o.uri, o.sub, o.sid, o.attempts, o.next_attempt_ms, o.created_ms",
                &[
                    (&owner, Type::TEXT),
                    (&until, Type::INT8),
                    (&now, Type::INT8),
                    (&limit, Type::INT8),
                ],
            )
            .map_err(db)?
            .iter()
            .map(outbox_row)
            .collect()
        })
    }

    fn reschedule_logout(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<bool, OidcError> {
        let (attempts, next) = (i64::from(attempts), secs(next_attempt_ms));
        let n = self.exec(
            "UPDATE oidc_logout_outbox SET attempts = $3, next_attempt_ms = $4, \
             lease_owner = NULL, lease_until_ms = 0 WHERE id = $1 AND lease_owner = $2",
            &[
                (&id, Type::TEXT),
                (&owner, Type::TEXT),
                (&attempts, Type::INT8),
                (&next, Type::INT8),
            ],
        )?;
        Ok(n == 1)
    }

    fn finish_logout(&self, id: &str) -> Result<(), OidcError> {
        self.exec(
            "DELETE FROM oidc_logout_outbox WHERE id = $1",
            &[(&id, Type::TEXT)],
        )?;
        Ok(())
    }

    fn count_logouts(&self) -> Result<usize, OidcError> {
        self.with(|c| {
            let n: i64 = c
                .query_one("SELECT count(*) FROM oidc_logout_outbox", &[])
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn pending_logouts(&self) -> Result<Vec<LogoutDelivery>, OidcError> {
        self.with(|c| {
            c.query_typed(
                "SELECT id, client_id, uri, sub, sid, attempts, next_attempt_ms, created_ms \
                 FROM oidc_logout_outbox ORDER BY created_ms, id COLLATE \"C\"",
                &[],
            )
            .map_err(db)?
            .iter()
            .map(outbox_row)
            .collect()
        })
    }

    fn flush(&self) -> Result<(), OidcError> {
        // Every statement above committed synchronously.
        Ok(())
    }

    fn with_keys_lock(
        &self,
        f: &mut (dyn FnMut() -> Result<Option<Vec<String>>, OidcError> + Send),
    ) -> Result<Option<Vec<String>>, OidcError> {
        self.with(|c| {
            c.execute("SELECT pg_advisory_lock($1)", &[&KEYS_LOCK])
                .map_err(db)?;
            // The rotation runs on other pooled connections; this one holds the lock.
            let r = f();
            let unlock = c
                .execute("SELECT pg_advisory_unlock($1)", &[&KEYS_LOCK])
                .map_err(db);
            let r = r?;
            unlock?;
            Ok(r)
        })
    }

    fn purge_expired(&self, now: u64) -> Result<usize, OidcError> {
        let now = secs(now);
        let code_cutoff = now.saturating_sub(3600);
        let day_ago = now.saturating_sub(86_400);
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let mut n = 0u64;
            for (sql, p) in [
                ("DELETE FROM oidc_sessions WHERE expires_at <= $1", now),
                ("DELETE FROM oidc_pending WHERE expires_at <= $1", now),
                ("DELETE FROM oidc_codes WHERE expires_at <= $1", code_cutoff),
                ("DELETE FROM oidc_families WHERE expires_at <= $1", now),
                ("DELETE FROM oidc_refresh WHERE expires_at <= $1", now),
                ("DELETE FROM oidc_ceremonies WHERE expires_at <= $1", now),
                (
                    "DELETE FROM oidc_pushed_requests WHERE expires_at <= $1",
                    now,
                ),
                (
                    "DELETE FROM oidc_device_grants WHERE expires_at <= $1",
                    now.saturating_sub(secs(DEVICE_KEEP_EXPIRED_SECS)),
                ),
            ] {
                n += tx.execute_typed(sql, &[(&p, Type::INT8)]).map_err(db)?;
            }
            n += tx
                .execute_typed(
                    "DELETE FROM oidc_attempts WHERE locked_until <= $1 AND window_start <= $2",
                    &[(&now, Type::INT8), (&day_ago, Type::INT8)],
                )
                .map_err(db)?;
            let buried_before = now.saturating_sub(secs(TOMBSTONE_SECS));
            tx.execute_typed(
                "DELETE FROM oidc_tombstones WHERE seen_at <= $1",
                &[(&buried_before, Type::INT8)],
            )
            .map_err(db)?;
            tx.execute_typed(
                "UPDATE oidc_tombstones SET seen_at = $1 WHERE seen_at IS NULL",
                &[(&now, Type::INT8)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

/// `airlock-receiver keys rotate` on a cluster: one rotation in the shared table, under
/// the same lock as first-start generation. Every receiver publishes the new keys at its
/// next key reload (within a minute) and signs with them from `key_rotation_delay_secs`.
pub fn rotate_cluster_keys(
    store: &PgStore,
    config: &crate::oidc::config::OidcConfig,
    now: u64,
) -> Result<Vec<String>, OidcError> {
    let oidc = PgOidcStore::new(store);
    oidc.init_keys_once(now)?;
    oidc.with(|c| {
        c.execute("SELECT pg_advisory_lock($1)", &[&KEYS_LOCK])
            .map_err(db)?;
        let r = crate::oidc::keys::rotate_keys(
            &oidc,
            now,
            config.key_rotation_delay_secs,
            config.key_overlap_secs(),
        );
        let unlock = c
            .execute("SELECT pg_advisory_unlock($1)", &[&KEYS_LOCK])
            .map_err(db);
        let kids = r?;
        unlock?;
        Ok(kids)
    })
}
