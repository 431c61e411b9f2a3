//! [`OidcStore`] on sled trees (prefixed `oidc_`) of the daemon's database.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::oidc::error::OidcError;
use crate::oidc::store::*;

mod device;

/// The sled backend.
#[derive(Clone)]
pub struct SledOidcStore {
    db: sled::Db,
    sessions: sled::Tree,
    session_secrets: sled::Tree,
    sub_sessions: sled::Tree,
    pending: sled::Tree,
    codes: sled::Tree,
    families: sled::Tree,
    sid_families: sled::Tree,
    sub_families: sled::Tree,
    refresh: sled::Tree,
    keys: sled::Tree,
    attempts: sled::Tree,
    /// Tombstone key -> first purge time that saw it (JSON `null` until then).
    tombstones: sled::Tree,
    passkeys: sled::Tree,
    sub_passkeys: sled::Tree,
    ceremonies: sled::Tree,
    events: sled::Tree,
    pushed: sled::Tree,
    /// Device grants by device-code hash, and user-code hash -> device-code hash.
    devices: sled::Tree,
    device_users: sled::Tree,
    logout_outbox: sled::Tree,
}

/// An outbox entry as sled keeps it: the delivery and who holds it until when.
#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxEntry {
    delivery: LogoutDelivery,
    lease_owner: Option<String>,
    lease_until_ms: u64,
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, OidcError> {
    match tree.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(tree: &sled::Tree, key: &[u8], v: &T) -> Result<(), OidcError> {
    tree.insert(key, serde_json::to_vec(v)?)?;
    Ok(())
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// The second halves of every `a\0b` key under prefix `a`.
fn seconds(tree: &sled::Tree, a: &str) -> Result<Vec<String>, OidcError> {
    let mut prefix = a.as_bytes().to_vec();
    prefix.push(0);
    let mut out = Vec::new();
    for item in tree.scan_prefix(&prefix) {
        let (k, _) = item?;
        let rest = k.get(prefix.len()..).unwrap_or_default();
        out.push(String::from_utf8_lossy(rest).into_owned());
    }
    Ok(out)
}

/// Atomically rewrites one JSON record with `f`; returns f's verdict.
fn update<T, R>(
    tree: &sled::Tree,
    key: &[u8],
    mut f: impl FnMut(&mut T) -> R,
) -> Result<Option<R>, OidcError>
where
    T: Serialize + DeserializeOwned,
{
    loop {
        let Some(old) = tree.get(key)? else {
            return Ok(None);
        };
        let mut rec: T = serde_json::from_slice(&old)?;
        let verdict = f(&mut rec);
        let new = serde_json::to_vec(&rec)?;
        match tree.compare_and_swap(key, Some(old), Some(new))? {
            Ok(()) => return Ok(Some(verdict)),
            Err(_) => continue, // lost a race: re-read and retry
        }
    }
}

impl SledOidcStore {
    pub fn open(db: sled::Db) -> Result<Self, OidcError> {
        let t = |n: &str| db.open_tree(format!("oidc_{n}"));
        Ok(Self {
            sessions: t("sessions")?,
            session_secrets: t("session_secrets")?,
            sub_sessions: t("sub_sessions")?,
            pending: t("pending")?,
            codes: t("codes")?,
            families: t("families")?,
            sid_families: t("sid_families")?,
            sub_families: t("sub_families")?,
            refresh: t("refresh")?,
            keys: t("keys")?,
            attempts: t("attempts")?,
            tombstones: t("tombstones")?,
            passkeys: t("passkeys")?,
            sub_passkeys: t("sub_passkeys")?,
            ceremonies: t("ceremonies")?,
            events: t("security_events")?,
            pushed: t("pushed_requests")?,
            devices: t("devices")?,
            device_users: t("device_users")?,
            logout_outbox: t("logout_outbox")?,
            db,
        })
    }

    /// Removes a session and its indexes (no tombstone: expiry is no logout).
    fn remove_session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        let Some(old) = self.sessions.remove(sid.as_bytes())? else {
            return Ok(None);
        };
        let s: Session = serde_json::from_slice(&old)?;
        if let Some(secret) = self.sub_sessions.remove(pair(&s.sub, sid))? {
            self.session_secrets.remove(secret)?;
        }
        Ok(Some(s))
    }

    fn tombstone(&self, key: &str) -> Result<(), OidcError> {
        self.tombstones
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(b"null".as_slice()))?
            .ok();
        Ok(())
    }
}

impl OidcStore for SledOidcStore {
    fn put_session(&self, secret_hash: &str, s: &Session) -> Result<(), OidcError> {
        put(&self.sessions, s.sid.as_bytes(), s)?;
        self.session_secrets
            .insert(secret_hash.as_bytes(), s.sid.as_bytes())?;
        self.sub_sessions
            .insert(pair(&s.sub, &s.sid), secret_hash.as_bytes())?;
        Ok(())
    }

    fn session_by_secret(&self, secret_hash: &str) -> Result<Option<Session>, OidcError> {
        match self.session_secrets.get(secret_hash.as_bytes())? {
            Some(sid) => get(&self.sessions, &sid),
            None => Ok(None),
        }
    }

    fn session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        get(&self.sessions, sid.as_bytes())
    }

    fn add_session_client(&self, sid: &str, client_id: &str) -> Result<(), OidcError> {
        update(&self.sessions, sid.as_bytes(), |s: &mut Session| {
            if !s.clients.iter().any(|c| c == client_id) {
                s.clients.push(client_id.to_string());
            }
        })?;
        Ok(())
    }

    fn delete_session(&self, sid: &str) -> Result<Option<Session>, OidcError> {
        self.tombstone(&session_tombstone(sid))?;
        self.remove_session(sid)
    }

    fn sessions_of(&self, sub: &str) -> Result<Vec<Session>, OidcError> {
        let mut out = Vec::new();
        for sid in seconds(&self.sub_sessions, sub)? {
            if let Some(s) = self.session(&sid)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn live_subjects(&self) -> Result<Vec<String>, OidcError> {
        let mut subs = std::collections::BTreeSet::new();
        for item in self.sub_sessions.iter() {
            let (k, _) = item?;
            if let Some(sub) = k.split(|b| *b == 0).next() {
                subs.insert(String::from_utf8_lossy(sub).into_owned());
            }
        }
        // A scan of the passkeys themselves: the index does not know which are switched off.
        for item in self.passkeys.iter() {
            let (_, v) = item?;
            let p: PasskeyRecord = serde_json::from_slice(&v)?;
            if p.disabled.is_none() {
                subs.insert(p.sub);
            }
        }
        Ok(subs.into_iter().collect())
    }

    fn put_pending(&self, id: &str, p: &PendingRequest) -> Result<(), OidcError> {
        put(&self.pending, id.as_bytes(), p)
    }

    fn pending(&self, id: &str) -> Result<Option<PendingRequest>, OidcError> {
        get(&self.pending, id.as_bytes())
    }

    fn delete_pending(&self, id: &str) -> Result<(), OidcError> {
        self.pending.remove(id.as_bytes())?;
        Ok(())
    }

    fn put_code(&self, code_hash: &str, c: &AuthCode) -> Result<(), OidcError> {
        put(&self.codes, code_hash.as_bytes(), c)
    }

    fn redeem_code(&self, code_hash: &str, family: &str) -> Result<CodeRedeem, OidcError> {
        let r = update(&self.codes, code_hash.as_bytes(), |c: &mut AuthCode| {
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
            Some((true, c)) => CodeRedeem::First(c),
            Some((false, c)) => CodeRedeem::Reused(c),
        })
    }

    fn put_family(&self, f: &Family) -> Result<(), OidcError> {
        put(&self.families, f.id.as_bytes(), f)?;
        self.sid_families.insert(pair(&f.sid, &f.id), &[])?;
        self.sub_families.insert(pair(&f.sub, &f.id), &[])?;
        // After the write: a revocation that wrote its tombstone before this check is seen
        // here, one that wrote it after sees the family (it writes the tombstone first).
        let buried = self
            .tombstones
            .contains_key(family_tombstone(&f.id).as_bytes())?
            || self
                .tombstones
                .contains_key(session_tombstone(&f.sid).as_bytes())?;
        if buried {
            self.revoke_family(&f.id)?;
        }
        Ok(())
    }

    fn family(&self, id: &str) -> Result<Option<Family>, OidcError> {
        get(&self.families, id.as_bytes())
    }

    fn touch_family(&self, id: &str, expires_at: u64) -> Result<(), OidcError> {
        update(&self.families, id.as_bytes(), |f: &mut Family| {
            f.expires_at = f.expires_at.max(expires_at)
        })?;
        Ok(())
    }

    fn revoke_family(&self, id: &str) -> Result<bool, OidcError> {
        self.tombstone(&family_tombstone(id))?;
        let r = update(&self.families, id.as_bytes(), |f: &mut Family| {
            let was_live = !f.revoked;
            f.revoked = true;
            was_live
        })?;
        Ok(r.unwrap_or(false))
    }

    fn families_of_session(&self, sid: &str) -> Result<Vec<String>, OidcError> {
        seconds(&self.sid_families, sid)
    }

    fn families_of_sub(&self, sub: &str) -> Result<Vec<String>, OidcError> {
        seconds(&self.sub_families, sub)
    }

    fn put_refresh(&self, token_hash: &str, r: &RefreshToken) -> Result<(), OidcError> {
        put(&self.refresh, token_hash.as_bytes(), r)
    }

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshToken>, OidcError> {
        get(&self.refresh, token_hash.as_bytes())
    }

    fn use_refresh(&self, token_hash: &str) -> Result<bool, OidcError> {
        let r = update(
            &self.refresh,
            token_hash.as_bytes(),
            |t: &mut RefreshToken| {
                let first = !t.used;
                t.used = true;
                first
            },
        )?;
        Ok(r.unwrap_or(false))
    }

    fn keys(&self) -> Result<Vec<StoredKey>, OidcError> {
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }

    fn put_key(&self, k: &StoredKey) -> Result<(), OidcError> {
        put(&self.keys, k.kid.as_bytes(), k)?;
        self.keys.flush()?;
        Ok(())
    }

    fn delete_key(&self, kid: &str) -> Result<(), OidcError> {
        self.keys.remove(kid.as_bytes())?;
        Ok(())
    }

    fn attempts(&self, key: &str) -> Result<Attempts, OidcError> {
        Ok(get(&self.attempts, key.as_bytes())?.unwrap_or_default())
    }

    fn put_attempts(&self, key: &str, a: &Attempts) -> Result<(), OidcError> {
        put(&self.attempts, key.as_bytes(), a)
    }

    fn update_attempts(
        &self,
        key: &str,
        f: &mut (dyn FnMut(&mut Attempts) + Send),
    ) -> Result<(), OidcError> {
        loop {
            let old = self.attempts.get(key.as_bytes())?;
            let mut a: Attempts = match &old {
                Some(v) => serde_json::from_slice(v)?,
                None => Attempts::default(),
            };
            f(&mut a);
            let new = serde_json::to_vec(&a)?;
            match self
                .attempts
                .compare_and_swap(key.as_bytes(), old, Some(new))?
            {
                Ok(()) => return Ok(()),
                Err(_) => continue, // lost a race: re-read and count again
            }
        }
    }

    fn insert_passkey(&self, p: &PasskeyRecord) -> Result<bool, OidcError> {
        let new = serde_json::to_vec(p)?;
        if self
            .passkeys
            .compare_and_swap(p.cred_id.as_bytes(), None as Option<&[u8]>, Some(new))?
            .is_err()
        {
            return Ok(false);
        }
        self.sub_passkeys.insert(pair(&p.sub, &p.cred_id), &[])?;
        Ok(true)
    }

    fn passkey(&self, cred_id: &str) -> Result<Option<PasskeyRecord>, OidcError> {
        get(&self.passkeys, cred_id.as_bytes())
    }

    fn passkeys_of(&self, sub: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        let mut out = Vec::new();
        for id in seconds(&self.sub_passkeys, sub)? {
            if let Some(p) = self.passkey(&id)? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.cred_id).cmp(&(b.created_at, &b.cred_id)));
        Ok(out)
    }

    fn passkeys_by_username(&self, username: &str) -> Result<Vec<PasskeyRecord>, OidcError> {
        // A scan: passkeys are few (people times a handful), and sign-in by name is rare.
        let mut out = Vec::new();
        for item in self.passkeys.iter() {
            let (_, v) = item?;
            let p: PasskeyRecord = serde_json::from_slice(&v)?;
            if p.username == username {
                out.push(p);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.cred_id).cmp(&(b.created_at, &b.cred_id)));
        Ok(out)
    }

    fn update_passkey(
        &self,
        cred_id: &str,
        f: &mut (dyn FnMut(&mut PasskeyRecord) -> bool + Send),
    ) -> Result<Option<bool>, OidcError> {
        loop {
            let Some(old) = self.passkeys.get(cred_id.as_bytes())? else {
                return Ok(None);
            };
            let mut rec: PasskeyRecord = serde_json::from_slice(&old)?;
            if !f(&mut rec) {
                return Ok(Some(false));
            }
            let new = serde_json::to_vec(&rec)?;
            if self
                .passkeys
                .compare_and_swap(cred_id.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                return Ok(Some(true));
            }
        }
    }

    fn delete_passkey(&self, sub: &str, cred_id: &str) -> Result<bool, OidcError> {
        let Some(old) = self.passkeys.get(cred_id.as_bytes())? else {
            return Ok(false);
        };
        let rec: PasskeyRecord = serde_json::from_slice(&old)?;
        if rec.sub != sub {
            return Ok(false);
        }
        let removed = self
            .passkeys
            .compare_and_swap(cred_id.as_bytes(), Some(old), None as Option<&[u8]>)?
            .is_ok();
        if removed {
            self.sub_passkeys.remove(pair(sub, cred_id))?;
        }
        Ok(removed)
    }

    fn put_ceremony(&self, id: &str, c: &Ceremony) -> Result<(), OidcError> {
        put(&self.ceremonies, id.as_bytes(), c)
    }

    fn take_ceremony(&self, id: &str) -> Result<Option<Ceremony>, OidcError> {
        match self.ceremonies.remove(id.as_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    fn put_pushed(&self, id: &str, r: &PushedRequest) -> Result<(), OidcError> {
        put(&self.pushed, id.as_bytes(), r)
    }

    fn take_pushed(&self, id: &str, client_id: &str) -> Result<PushedTake, OidcError> {
        let Some(old) = self.pushed.get(id.as_bytes())? else {
            return Ok(PushedTake::Unknown);
        };
        let r: PushedRequest = serde_json::from_slice(&old)?;
        if r.client_id != client_id {
            return Ok(PushedTake::OtherClient);
        }
        // Removed only if still the record read: of two racing takes, one wins.
        match self
            .pushed
            .compare_and_swap(id.as_bytes(), Some(old), None as Option<&[u8]>)?
        {
            Ok(()) => Ok(PushedTake::Taken(r)),
            Err(_) => Ok(PushedTake::Unknown),
        }
    }

    fn append_event(&self, e: &SecurityEvent) -> Result<u64, OidcError> {
        // generate_id is unique and increasing for this database (ids start at 1).
        let id = self.db.generate_id()?.saturating_add(1);
        let mut e = e.clone();
        e.id = id;
        put(&self.events, &id.to_be_bytes(), &e)?;
        Ok(id)
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<SecurityEvent>, OidcError> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.events.range(start..).take(limit) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }

    fn enqueue_logout(&self, d: &LogoutDelivery, max: usize) -> Result<bool, OidcError> {
        if self.logout_outbox.len() >= max {
            return Ok(false);
        }
        let entry = OutboxEntry {
            delivery: d.clone(),
            lease_owner: None,
            lease_until_ms: 0,
        };
        put(&self.logout_outbox, d.id.as_bytes(), &entry)?;
        Ok(true)
    }

    fn claim_logouts(
        &self,
        owner: &str,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<LogoutDelivery>, OidcError> {
        let mut due = Vec::new();
        for item in self.logout_outbox.iter() {
            let (k, v) = item?;
            let e: OutboxEntry = serde_json::from_slice(&v)?;
            let free = e.lease_owner.is_none() || e.lease_until_ms <= now_ms;
            if free && e.delivery.next_attempt_ms <= now_ms {
                due.push((e.delivery.next_attempt_ms, k, v));
            }
        }
        due.sort_by_key(|d| d.0);
        let mut out = Vec::new();
        for (_, k, old) in due {
            if out.len() >= limit {
                break;
            }
            let mut e: OutboxEntry = serde_json::from_slice(&old)?;
            e.lease_owner = Some(owner.to_string());
            e.lease_until_ms = lease_until_ms;
            let new = serde_json::to_vec(&e)?;
            // Lost to another claim or a change since the scan: leave it.
            if self
                .logout_outbox
                .compare_and_swap(&k, Some(old), Some(new))?
                .is_ok()
            {
                out.push(e.delivery);
            }
        }
        Ok(out)
    }

    fn reschedule_logout(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<bool, OidcError> {
        let r = update(&self.logout_outbox, id.as_bytes(), |e: &mut OutboxEntry| {
            if e.lease_owner.as_deref() != Some(owner) {
                return false;
            }
            e.delivery.attempts = attempts;
            e.delivery.next_attempt_ms = next_attempt_ms;
            e.lease_owner = None;
            e.lease_until_ms = 0;
            true
        })?;
        Ok(r.unwrap_or(false))
    }

    fn finish_logout(&self, id: &str) -> Result<(), OidcError> {
        self.logout_outbox.remove(id.as_bytes())?;
        Ok(())
    }

    fn count_logouts(&self) -> Result<usize, OidcError> {
        Ok(self.logout_outbox.len())
    }

    fn pending_logouts(&self) -> Result<Vec<LogoutDelivery>, OidcError> {
        let mut out = Vec::new();
        for item in self.logout_outbox.iter() {
            let (_, v) = item?;
            out.push(serde_json::from_slice::<OutboxEntry>(&v)?.delivery);
        }
        out.sort_by(|a: &LogoutDelivery, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    fn flush(&self) -> Result<(), OidcError> {
        self.db.flush()?;
        Ok(())
    }

    fn purge_expired(&self, now: u64) -> Result<usize, OidcError> {
        let mut n = 0;
        let mut expired_sids = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let s: Session = serde_json::from_slice(&v)?;
            if s.expires_at <= now {
                expired_sids.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        for sid in expired_sids {
            self.remove_session(&sid)?;
            n += 1;
        }
        let mut old_tombstones = Vec::new();
        for item in self.tombstones.iter() {
            let (k, v) = item?;
            match serde_json::from_slice::<Option<u64>>(&v).ok().flatten() {
                Some(seen) if seen.saturating_add(TOMBSTONE_SECS) <= now => old_tombstones.push(k),
                Some(_) => {}
                None => put(&self.tombstones, &k, &Some(now))?,
            }
        }
        for k in old_tombstones {
            self.tombstones.remove(k)?;
        }
        n += purge_tree::<PendingRequest>(&self.pending, |p| p.expires_at <= now)?;
        n += purge_tree::<AuthCode>(&self.codes, |c| c.expires_at + 3600 <= now)?;
        let mut dead = Vec::new();
        for item in self.families.iter() {
            let (_, v) = item?;
            let f: Family = serde_json::from_slice(&v)?;
            if f.expires_at <= now {
                dead.push(f);
            }
        }
        for f in dead {
            self.families.remove(f.id.as_bytes())?;
            self.sid_families.remove(pair(&f.sid, &f.id))?;
            self.sub_families.remove(pair(&f.sub, &f.id))?;
            n += 1;
        }
        n += purge_tree::<Ceremony>(&self.ceremonies, |c| c.expires_at <= now)?;
        n += purge_tree::<PushedRequest>(&self.pushed, |r| r.expires_at <= now)?;
        n += DeviceStore::purge_devices(self, now)?;
        n += purge_tree::<RefreshToken>(&self.refresh, |r| r.expires_at <= now)?;
        n += purge_tree::<Attempts>(&self.attempts, |a| {
            a.locked_until <= now && a.window_start + 86_400 <= now
        })?;
        Ok(n)
    }
}

fn purge_tree<T: DeserializeOwned>(
    tree: &sled::Tree,
    dead: impl Fn(&T) -> bool,
) -> Result<usize, OidcError> {
    let mut keys = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        if serde_json::from_slice::<T>(&v)
            .map(|r| dead(&r))
            .unwrap_or(true)
        {
            keys.push(k);
        }
    }
    for k in &keys {
        tree.remove(k)?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SledOidcStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        SledOidcStore::open(db).unwrap()
    }

    fn code() -> AuthCode {
        AuthCode {
            request: AuthRequest {
                client_id: "c".into(),
                redirect_uri: "http://x/cb".into(),
                scope: vec!["openid".into()],
                state: None,
                nonce: None,
                code_challenge: None,
                max_age: None,
                hint_sub: None,
                acr_values: vec![],
                device: None,
            },
            sid: "s".into(),
            sub: "u".into(),
            auth_time: 1,
            expires_at: 100,
            used_by_family: None,
        }
    }

    #[test]
    fn code_redeems_once() {
        let s = store();
        s.put_code("h", &code()).unwrap();
        assert!(matches!(
            s.redeem_code("h", "f1").unwrap(),
            CodeRedeem::First(_)
        ));
        match s.redeem_code("h", "f2").unwrap() {
            CodeRedeem::Reused(c) => assert_eq!(c.used_by_family.as_deref(), Some("f1")),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.redeem_code("nope", "f").unwrap(), CodeRedeem::Unknown);
    }

    #[test]
    fn refresh_used_once_and_sessions_indexed() {
        let s = store();
        s.put_refresh(
            "r",
            &RefreshToken {
                family: "f".into(),
                expires_at: 9,
                used: false,
            },
        )
        .unwrap();
        assert!(s.use_refresh("r").unwrap());
        assert!(!s.use_refresh("r").unwrap());
        let sess = Session {
            sid: "sid1".into(),
            sub: "u".into(),
            auth_time: 1,
            expires_at: 10,
            amr: vec![],
            acr: "0".into(),
            identity: IdentitySnapshot::default(),
            clients: vec![],
        };
        s.put_session("sec", &sess).unwrap();
        s.add_session_client("sid1", "app").unwrap();
        assert_eq!(
            s.session_by_secret("sec").unwrap().unwrap().clients,
            vec!["app".to_string()]
        );
        assert_eq!(s.sessions_of("u").unwrap().len(), 1);
        assert_eq!(s.purge_expired(11).unwrap(), 2);
        assert!(s.session_by_secret("sec").unwrap().is_none());
    }
}
