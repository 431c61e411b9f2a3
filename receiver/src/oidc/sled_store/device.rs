//! [`DeviceStore`] on sled: grants in `oidc_devices`, the user-code index in
//! `oidc_device_users`. Every change of a grant is a compare-and-swap of its record.

use super::{SledOidcStore, get, put};
use crate::oidc::error::OidcError;
use crate::oidc::store::{DEVICE_KEEP_EXPIRED_SECS, DeviceGrant, DeviceStore};

impl DeviceStore for SledOidcStore {
    fn insert_device(&self, device_hash: &str, g: &DeviceGrant) -> Result<bool, OidcError> {
        // The record first, then the index: a lookup by user code never finds an index
        // entry without its record.
        put(&self.devices, device_hash.as_bytes(), g)?;
        let claimed = self
            .device_users
            .compare_and_swap(
                g.user_code_hash.as_bytes(),
                None::<&[u8]>,
                Some(device_hash.as_bytes()),
            )?
            .is_ok();
        if !claimed {
            self.devices.remove(device_hash.as_bytes())?;
        }
        Ok(claimed)
    }

    fn device(&self, device_hash: &str) -> Result<Option<DeviceGrant>, OidcError> {
        get(&self.devices, device_hash.as_bytes())
    }

    fn device_by_user_code(
        &self,
        user_code_hash: &str,
    ) -> Result<Option<(String, DeviceGrant)>, OidcError> {
        let Some(h) = self.device_users.get(user_code_hash.as_bytes())? else {
            return Ok(None);
        };
        let h = String::from_utf8_lossy(&h).into_owned();
        Ok(self.device(&h)?.map(|g| (h, g)))
    }

    fn update_device(
        &self,
        device_hash: &str,
        f: &mut (dyn FnMut(&mut DeviceGrant) -> bool + Send),
    ) -> Result<Option<bool>, OidcError> {
        loop {
            let Some(old) = self.devices.get(device_hash.as_bytes())? else {
                return Ok(None);
            };
            let mut rec: DeviceGrant = serde_json::from_slice(&old)?;
            if !f(&mut rec) {
                return Ok(Some(false));
            }
            let new = serde_json::to_vec(&rec)?;
            if self
                .devices
                .compare_and_swap(device_hash.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                return Ok(Some(true));
            }
            // Lost a race with another poll or the approval: read again, decide again.
        }
    }

    fn purge_devices(&self, now: u64) -> Result<usize, OidcError> {
        let mut dead = Vec::new();
        for item in self.devices.iter() {
            let (k, v) = item?;
            match serde_json::from_slice::<DeviceGrant>(&v) {
                Ok(g) if g.expires_at.saturating_add(DEVICE_KEEP_EXPIRED_SECS) > now => {}
                Ok(g) => dead.push((k, Some(g.user_code_hash))),
                Err(_) => dead.push((k, None)),
            }
        }
        for (k, user) in &dead {
            self.devices.remove(k)?;
            if let Some(u) = user {
                // Only if it still points at this grant.
                self.device_users
                    .compare_and_swap(u.as_bytes(), Some(k.as_ref()), None::<&[u8]>)?
                    .ok();
            }
        }
        Ok(dead.len())
    }
}
