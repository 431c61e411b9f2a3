//! [`DeviceStore`] on PostgreSQL (`oidc_device_grants`, migration 0007). A change of a
//! grant is a `SELECT ... FOR UPDATE` and its `UPDATE` in one transaction, so two
//! receivers polling or approving the same grant are serialised by the row lock.

use postgres::types::Type;

use super::{PgOidcStore, db, json, parse, secs};
use crate::oidc::error::OidcError;
use crate::oidc::store::{DEVICE_KEEP_EXPIRED_SECS, DeviceGrant, DeviceStore};

impl DeviceStore for PgOidcStore {
    fn insert_device(&self, device_hash: &str, g: &DeviceGrant) -> Result<bool, OidcError> {
        let data = json(g)?;
        let exp = secs(g.expires_at);
        let n = self.exec(
            "INSERT INTO oidc_device_grants (device_hash, user_code_hash, expires_at, data) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[
                (&device_hash, Type::TEXT),
                (&g.user_code_hash, Type::TEXT),
                (&exp, Type::INT8),
                (&data, Type::TEXT),
            ],
        )?;
        Ok(n == 1)
    }

    fn device(&self, device_hash: &str) -> Result<Option<DeviceGrant>, OidcError> {
        self.one(
            "SELECT data FROM oidc_device_grants WHERE device_hash = $1",
            device_hash,
        )
    }

    fn device_by_user_code(
        &self,
        user_code_hash: &str,
    ) -> Result<Option<(String, DeviceGrant)>, OidcError> {
        self.with(|c| {
            let Some(row) = c
                .query_typed_opt(
                    "SELECT device_hash, data FROM oidc_device_grants WHERE user_code_hash = $1",
                    &[(&user_code_hash, Type::TEXT)],
                )
                .map_err(db)?
            else {
                return Ok(None);
            };
            let h: String = row.try_get(0).map_err(db)?;
            Ok(Some((h, parse(&row, 1)?)))
        })
    }

    fn update_device(
        &self,
        device_hash: &str,
        f: &mut (dyn FnMut(&mut DeviceGrant) -> bool + Send),
    ) -> Result<Option<bool>, OidcError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let Some(row) = tx
                .query_typed_opt(
                    "SELECT data FROM oidc_device_grants WHERE device_hash = $1 FOR UPDATE",
                    &[(&device_hash, Type::TEXT)],
                )
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut rec: DeviceGrant = parse(&row, 0)?;
            if !f(&mut rec) {
                return Ok(Some(false));
            }
            let text = json(&rec)?;
            tx.execute_typed(
                "UPDATE oidc_device_grants SET data = $2 WHERE device_hash = $1",
                &[(&device_hash, Type::TEXT), (&text, Type::TEXT)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(true))
        })
    }

    fn purge_devices(&self, now: u64) -> Result<usize, OidcError> {
        let cutoff = secs(now).saturating_sub(secs(DEVICE_KEEP_EXPIRED_SECS));
        let n = self.exec(
            "DELETE FROM oidc_device_grants WHERE expires_at <= $1",
            &[(&cutoff, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
