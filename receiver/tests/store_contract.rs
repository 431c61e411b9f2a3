//! One store contract, two backends: every test below is written once, generic over a
//! [`Backend`], and instantiated for sled (always) and PostgreSQL (when
//! `AIRLOCK_TEST_PG_URL` is set, e.g. by `scripts/pg start`; otherwise each PostgreSQL
//! test says on stderr that it was skipped).
//!
//! Each PostgreSQL test runs in a schema of its own, so the tests run in parallel.

use crate::common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_protocol::message::{ENVELOPE_VERSION, Envelope};
use airlock_receiver::apply::{AcceptedFrame, Outcome, apply_batch, decode_head};
use airlock_receiver::frame_log::verify_entry_chain;
use airlock_receiver::oidc::config::SigningAlg;
use airlock_receiver::oidc::pg_store::PgOidcStore;
use airlock_receiver::oidc::sled_store::SledOidcStore;
use airlock_receiver::oidc::store::*;
use airlock_receiver::store::postgres::PgStore;
use airlock_receiver::store::records::TicketRecord;
use airlock_receiver::store::{
    SledStore, StateTxExt, Store, StoreError, Table, TxError, encode_json, meta,
};

// ---------------------------------------------------------------------------------------
// Backends

trait Backend: Sized + Sync {
    type S: Store;
    /// None when the backend is not available (the test is skipped).
    fn new(tag: &str) -> Option<Self>;
    fn store(&self) -> Arc<Self::S>;
    /// A second, independent handle on the same data (another receiver).
    fn other_handle(&self) -> Arc<Self::S>;
    fn oidc(&self) -> Arc<dyn OidcStore>;
    /// The OpenID state as a second receiver sharing the store sees it.
    fn other_oidc(&self) -> Arc<dyn OidcStore>;
}

struct SledBackend {
    store: Arc<SledStore>,
    oidc: Arc<SledOidcStore>,
}

impl Backend for SledBackend {
    type S = SledStore;
    fn new(_tag: &str) -> Option<Self> {
        let store = SledStore::temporary().unwrap();
        let oidc = SledOidcStore::open(store.db()).unwrap();
        Some(SledBackend {
            store: Arc::new(store),
            oidc: Arc::new(oidc),
        })
    }
    fn store(&self) -> Arc<SledStore> {
        self.store.clone()
    }
    fn other_handle(&self) -> Arc<SledStore> {
        // sled allows one process per database: the second "receiver" is a second handle.
        Arc::new((*self.store).clone())
    }
    fn oidc(&self) -> Arc<dyn OidcStore> {
        self.oidc.clone()
    }
    fn other_oidc(&self) -> Arc<dyn OidcStore> {
        Arc::new(SledOidcStore::open(self.store.db()).unwrap())
    }
}

struct PgBackend {
    _pg: tokio::sync::RwLockReadGuard<'static, ()>,
    url: String,
    store: Arc<PgStore>,
    oidc: Arc<PgOidcStore>,
}

fn pg_url() -> Option<String> {
    std::env::var("AIRLOCK_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh schema on the test database; the URL makes it the connection's search_path.
fn fresh_schema(tag: &str) -> Option<String> {
    let Some(url) = pg_url() else {
        // Written past the test harness's capture, so the skip is visible in every run.
        let _ = writeln!(
            std::io::stderr(),
            "store_contract: PostgreSQL test `{tag}` SKIPPED: AIRLOCK_TEST_PG_URL is not set \
             (start a cluster with `scripts/pg start DIR PORT` and export the URL it prints)"
        );
        return None;
    };
    let schema = format!("t_{tag}_{:x}", common::rand_u64() >> 16);
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

impl Backend for PgBackend {
    type S = PgStore;
    fn new(tag: &str) -> Option<Self> {
        let pg = common::pg_shared();
        let url = fresh_schema(tag)?;
        let store = PgStore::open_url(&url).unwrap();
        let oidc = PgOidcStore::new(&store);
        Some(PgBackend {
            _pg: pg,
            url,
            store: Arc::new(store),
            oidc: Arc::new(oidc),
        })
    }
    fn store(&self) -> Arc<PgStore> {
        self.store.clone()
    }
    fn other_handle(&self) -> Arc<PgStore> {
        Arc::new(PgStore::open_url(&self.url).unwrap())
    }
    fn oidc(&self) -> Arc<dyn OidcStore> {
        self.oidc.clone()
    }
    fn other_oidc(&self) -> Arc<dyn OidcStore> {
        Arc::new(PgOidcStore::new(&self.other_handle()))
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        // Leave the test database as we found it.
        if let (Some(url), Some(schema)) = (pg_url(), self.url.rsplit("%3D").next())
            && let Ok(mut c) = ::postgres::Client::connect(&url, ::postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

macro_rules! contract {
    ($backend:ty, $name:ident) => {
        mod $name {
            use super::*;
            contract!(@tests $backend;
                atomic_multi_table_commit,
                reads_see_own_writes,
                conflict_is_retried,
                concurrent_increments_serialize,
                scans_in_key_order,
                consume_ticket_once_under_concurrency,
                same_frames_from_two_handles_apply_once,
                migrations_are_idempotent,
                code_redeems_once,
                refresh_rotation_and_reuse,
                refresh_rotates_in_one_step,
                prefetched_reads_answer_like_gets,
                family_revoke_and_indexes,
                sessions,
                keys_list,
                attempts_and_purge,
                attempts_count_atomically,
                late_families_are_born_revoked,
                passkeys_insert_once_and_index,
                passkey_updates_are_atomic,
                live_subjects_hold_a_session_or_a_working_passkey,
                ceremonies_are_single_use,
                pushed_requests_are_single_use_and_bound,
                security_events_in_order,
                device_grants_index_and_redeem_once,
                logout_outbox_claims_and_bound,
                logout_outbox_concurrent_claims_are_disjoint,
            );
        }
    };
    (@tests $backend:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if let Some(b) = <$backend as Backend>::new(stringify!($test)) {
                    super::$test(&b);
                }
            }
        )*
    };
}

contract!(SledBackend, sled);
contract!(PgBackend, postgres);

// ---------------------------------------------------------------------------------------
// Store

fn boom() -> TxError {
    TxError::Store(StoreError::Apply("deliberate failure".into()))
}

fn atomic_multi_table_commit<B: Backend>(b: &B) {
    let s = b.store();
    let r: Result<(), StoreError> = s.transact(|tx| {
        tx.put(Table::Users, b"alice", b"{}")?;
        tx.put(Table::Mirrors, b"https://idp", b"{}")?;
        tx.put(Table::Meta, b"k", b"v")?;
        Err(boom())
    });
    assert!(r.is_err());
    for (t, k) in [
        (Table::Users, &b"alice"[..]),
        (Table::Mirrors, b"https://idp"),
        (Table::Meta, b"k"),
    ] {
        assert_eq!(s.get(t, k).unwrap(), None, "aborted write visible in {t:?}");
    }
    s.transact(|tx| {
        tx.put(Table::Users, b"alice", b"1")?;
        tx.put(Table::Mirrors, b"https://idp", b"2")?;
        tx.put(Table::Meta, b"k", b"3")?;
        Ok(())
    })
    .unwrap();
    s.flush().unwrap();
    assert_eq!(s.get(Table::Users, b"alice").unwrap().unwrap(), b"1");
    assert_eq!(
        s.get(Table::Mirrors, b"https://idp").unwrap().unwrap(),
        b"2"
    );
    assert_eq!(s.get(Table::Meta, b"k").unwrap().unwrap(), b"3");
    // Another handle (another receiver) sees the commit.
    assert_eq!(
        b.other_handle()
            .get(Table::Users, b"alice")
            .unwrap()
            .unwrap(),
        b"1"
    );
}

fn reads_see_own_writes<B: Backend>(b: &B) {
    let s = b.store();
    s.transact(|tx| tx.put(Table::Meta, b"x", b"old")).unwrap();
    let seen = s
        .transact(|tx| {
            tx.put(Table::Meta, b"x", b"new")?;
            tx.put(Table::Users, b"bob", b"b")?;
            Ok((
                tx.get(Table::Meta, b"x")?,
                tx.contains(Table::Users, b"bob")?,
            ))
        })
        .unwrap();
    assert_eq!(seen, (Some(b"new".to_vec()), true));
    // Same key in two tables: distinct rows.
    assert_eq!(s.get(Table::Users, b"x").unwrap(), None);
}

fn conflict_is_retried<B: Backend>(b: &B) {
    let s = b.store();
    let calls = AtomicUsize::new(0);
    let out = s
        .transact(|tx| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            tx.put(Table::Meta, b"attempt", &(n as u64).to_be_bytes())?;
            if n < 2 {
                return Err(TxError::Conflict);
            }
            Ok(n)
        })
        .unwrap();
    assert_eq!(out, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Only the attempt that committed left its write.
    assert_eq!(
        s.get(Table::Meta, b"attempt").unwrap().unwrap(),
        2u64.to_be_bytes()
    );
}

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        .unwrap_or(0)
}

fn concurrent_increments_serialize<B: Backend>(b: &B) {
    let handles = [b.store(), b.other_handle(), b.store(), b.other_handle()];
    const EACH: u64 = 20;
    std::thread::scope(|sc| {
        for h in &handles {
            sc.spawn(move || {
                for _ in 0..EACH {
                    h.transact(|tx| {
                        let n = read_u64(tx.get(Table::Meta, b"counter")?);
                        tx.put(Table::Meta, b"counter", &(n + 1).to_be_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    let total = read_u64(b.store().get(Table::Meta, b"counter").unwrap());
    assert_eq!(total, EACH * handles.len() as u64, "a lost update");
}

fn scans_in_key_order<B: Backend>(b: &B) {
    let s = b.store();
    // More rows than one page of the PostgreSQL scan, inserted out of order, with bytes
    // that sort differently as text (0x00, 0xff, upper/lower case).
    let mut keys: Vec<Vec<u8>> = (0u32..1100)
        .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes().to_vec())
        .collect();
    keys.extend([
        vec![],
        vec![0],
        vec![0, 0],
        vec![0xff],
        vec![0xff, 0],
        b"B".to_vec(),
        b"a".to_vec(),
    ]);
    for chunk in keys.chunks(200) {
        s.transact(|tx| {
            for k in chunk {
                tx.put(Table::Revocations, k, &[k.len() as u8])?;
            }
            Ok(())
        })
        .unwrap();
    }
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    let all: Vec<Vec<u8>> = s
        .scan_from(Table::Revocations, &[])
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(all, sorted);
    assert_eq!(s.len(Table::Revocations), sorted.len());
    let from = 0x8000_0000u32.to_be_bytes();
    let tail: Vec<Vec<u8>> = s
        .scan_from(Table::Revocations, &from)
        .map(|r| r.unwrap().0)
        .collect();
    let expect: Vec<Vec<u8>> = sorted
        .iter()
        .filter(|k| k.as_slice() >= &from[..])
        .cloned()
        .collect();
    assert_eq!(tail, expect);
    // Values come with their keys; other tables are untouched.
    let (k, v) = s
        .scan_from(Table::Revocations, b"a")
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((k, v), (b"a".to_vec(), vec![1]));
    assert!(s.is_empty(Table::Mirrors));
    assert_eq!(s.scan_from(Table::Mirrors, &[]).count(), 0);
}

fn ticket() -> TicketRecord {
    TicketRecord {
        code_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".into(),
        issuer: common::ISSUER.into(),
        subject: "ticket-holder".into(),
        claims: common::claims(1),
        approval: common::approval(),
        expires_at: common::now() + 300,
        seq: 9,
        log_index: 3,
        used: false,
    }
}

fn consume_ticket_once_under_concurrency<B: Backend>(b: &B) {
    let s = b.store();
    let locator = [7u8; 16];
    let bytes = encode_json(&ticket()).unwrap();
    s.transact(|tx| tx.put(Table::Tickets, &locator, &bytes))
        .unwrap();
    let handles = [b.store(), b.other_handle()];
    let wins = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for i in 0..8 {
            let h = &handles[i % 2];
            let wins = &wins;
            sc.spawn(move || {
                if h.consume_ticket(&locator).unwrap() {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1, "a ticket consumed twice");
    assert!(!s.consume_ticket(&locator).unwrap());
    assert!(!s.consume_ticket(&[8u8; 16]).unwrap(), "unknown ticket");
    let t: TicketRecord = s
        .transact(|tx| tx.get_json(Table::Tickets, &locator))
        .unwrap()
        .unwrap();
    assert!(t.used);
    assert_eq!(t.subject, "ticket-holder");
}

fn frame(seq: u64) -> AcceptedFrame {
    let env = Envelope {
        v: ENVELOPE_VERSION,
        sender_kid: "contract-signer".into(),
        seq,
        prev: [0; 32],
        issued_at: common::now(),
        body: common::provision(seq),
    };
    // The log keeps Sign1 bytes opaque; any distinct bytes do here.
    AcceptedFrame::new(
        env,
        format!("sign1 of frame {seq}").into_bytes(),
        seq * 1000,
    )
}

fn apply_in_batches<S: Store>(s: &S, frames: &[AcceptedFrame], batch: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    for chunk in frames.chunks(batch) {
        let (o, _) = s.transact(|tx| apply_batch(tx, chunk)).unwrap();
        s.flush().unwrap();
        out.extend(o);
    }
    out
}

fn same_frames_from_two_handles_apply_once<B: Backend>(b: &B) {
    const N: u64 = 60;
    let frames: Vec<AcceptedFrame> = (1..=N).map(frame).collect();
    let (a, c) = (b.store(), b.other_handle());
    let (oa, oc) = std::thread::scope(|sc| {
        let ha = sc.spawn(|| apply_in_batches(&*a, &frames, 7));
        let hc = sc.spawn(|| apply_in_batches(&*c, &frames, 5));
        (ha.join().unwrap(), hc.join().unwrap())
    });
    let logged = |o: &[Outcome]| o.iter().filter(|x| matches!(x, Outcome::Logged(_))).count();
    assert_eq!(
        logged(&oa) + logged(&oc),
        N as usize,
        "each frame logged exactly once"
    );
    assert!(
        oa.iter()
            .chain(&oc)
            .all(|x| matches!(x, Outcome::Logged(_) | Outcome::Duplicate)),
        "the loser sees duplicates"
    );
    for t in [Table::Log, Table::Seqs, Table::Users] {
        assert_eq!(a.len(t), N as usize, "{t:?}");
    }
    // The log's indexes are dense and its hash chain holds, up to the recorded head.
    let (next, head) = decode_head(&a.get(Table::Meta, meta::HEAD).unwrap().unwrap()).unwrap();
    assert_eq!(next, N);
    let values: Vec<Vec<u8>> = a.scan_from(Table::Log, &[]).map(|r| r.unwrap().1).collect();
    let summary = verify_entry_chain(values, Some(head)).unwrap();
    assert_eq!(summary.entries, N);
    // A third pass applies nothing.
    let again = apply_in_batches(&*c, &frames, 60);
    assert_eq!(logged(&again), 0);
    assert_eq!(a.len(Table::Log), N as usize);
}

fn migrations_are_idempotent<B: Backend>(b: &B) {
    // Opening again (a restart, or a second receiver) must not change anything.
    let s = b.store();
    s.transact(|tx| tx.put(Table::Users, b"kept", b"1"))
        .unwrap();
    let again = b.other_handle();
    assert_eq!(again.get(Table::Users, b"kept").unwrap().unwrap(), b"1");
}

// ---------------------------------------------------------------------------------------
// OidcStore

fn code(sid: &str) -> AuthCode {
    AuthCode {
        request: AuthRequest {
            client_id: "app".into(),
            redirect_uri: "http://127.0.0.1:2/cb".into(),
            scope: vec!["openid".into()],
            state: Some("st".into()),
            nonce: Some("n".into()),
            code_challenge: None,
            max_age: None,
            hint_sub: None,
            acr_values: vec![],
            device: None,
        },
        sid: sid.into(),
        sub: "u1".into(),
        auth_time: 1,
        expires_at: 100,
        used_by_family: None,
    }
}

fn code_redeems_once<B: Backend>(b: &B) {
    let o = b.oidc();
    o.put_code("h1", &code("s1")).unwrap();
    let results: Vec<CodeRedeem> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let o = o.clone();
                sc.spawn(move || o.redeem_code("h1", &format!("fam{i}")).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let firsts: Vec<&AuthCode> = results
        .iter()
        .filter_map(|r| match r {
            CodeRedeem::First(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(firsts.len(), 1, "a code redeemed twice");
    assert_eq!(
        firsts[0].used_by_family, None,
        "First returns the code as it was"
    );
    let winner = match o.redeem_code("h1", "late").unwrap() {
        CodeRedeem::Reused(c) => c.used_by_family.unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(winner.starts_with("fam"));
    assert!(results.iter().all(|r| match r {
        CodeRedeem::Reused(c) => c.used_by_family.as_deref() == Some(winner.as_str()),
        CodeRedeem::First(_) => true,
        CodeRedeem::Unknown => false,
    }));
    assert_eq!(o.redeem_code("nope", "f").unwrap(), CodeRedeem::Unknown);
}

fn refresh_rotation_and_reuse<B: Backend>(b: &B) {
    let o = b.oidc();
    let rt = |family: &str| RefreshToken {
        family: family.into(),
        expires_at: 1_000,
        used: false,
    };
    o.put_refresh("r1", &rt("f")).unwrap();
    assert_eq!(o.refresh("r1").unwrap(), Some(rt("f")));
    let wins = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let (o, wins) = (o.clone(), &wins);
            sc.spawn(move || {
                if o.use_refresh("r1").unwrap() {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1, "a refresh token used twice");
    assert!(o.refresh("r1").unwrap().unwrap().used);
    // Rotation: the successor is fresh; the spent one stays spent (reuse is detectable).
    o.put_refresh("r2", &rt("f")).unwrap();
    assert!(o.use_refresh("r2").unwrap());
    assert!(!o.use_refresh("r1").unwrap());
    assert!(!o.use_refresh("unknown").unwrap());
    assert_eq!(o.refresh("unknown").unwrap(), None);
}

/// The refresh grant's one-step rotation: of eight concurrent rotations of one token
/// exactly one happens (old token used, family extended, successor stored); the losers
/// store nothing; the joined read returns the token with its family.
fn refresh_rotates_in_one_step<B: Backend>(b: &B) {
    let o = b.oidc();
    o.put_family(&family("fr", "sr", "ur")).unwrap();
    let old = RefreshToken {
        family: "fr".into(),
        expires_at: 600,
        used: false,
    };
    o.put_refresh("old", &old).unwrap();
    let (rt, fam) = o.refresh_and_family("old").unwrap().unwrap();
    assert_eq!(rt, old);
    assert_eq!(fam.map(|f| f.id), Some("fr".to_string()));
    let wins = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (o, wins) = (o.clone(), &wins);
            sc.spawn(move || {
                let next = RefreshToken {
                    family: "fr".into(),
                    expires_at: 900,
                    used: false,
                };
                if o.rotate_refresh("old", &format!("next{i}"), &next).unwrap() {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        wins.load(Ordering::SeqCst),
        1,
        "a refresh token rotated twice"
    );
    assert!(o.refresh("old").unwrap().unwrap().used);
    let successors: Vec<_> = (0..8)
        .filter_map(|i| o.refresh(&format!("next{i}")).unwrap())
        .collect();
    assert_eq!(successors.len(), 1, "only the winner's successor is stored");
    assert!(!successors[0].used);
    assert_eq!(o.family("fr").unwrap().unwrap().expires_at, 900);
    let (_, fam) = o.refresh_and_family("old").unwrap().unwrap();
    assert_eq!(
        fam.map(|f| f.expires_at),
        Some(900),
        "the family read beside its token has the extended expiry"
    );
    // A token whose family is gone reads as a token without a family.
    o.put_refresh(
        "orphan",
        &RefreshToken {
            family: "gone".into(),
            ..old.clone()
        },
    )
    .unwrap();
    let (_, fam) = o.refresh_and_family("orphan").unwrap().unwrap();
    assert!(fam.is_none());
    assert!(o.refresh_and_family("unknown").unwrap().is_none());
}

/// A batch's read-ahead changes no answer: present, absent, and written in the same
/// transaction (the write wins) read the same as without it.
fn prefetched_reads_answer_like_gets<B: Backend>(b: &B) {
    let s = b.store();
    s.transact(|tx| tx.put(Table::Users, b"present", b"1"))
        .unwrap();
    let got = s
        .transact(|tx| {
            tx.put(Table::Users, b"written", b"2")?;
            let keys = [b"present".to_vec(), b"absent".to_vec(), b"written".to_vec()];
            tx.prefetch(Table::Users, &keys)?;
            tx.put(Table::Users, b"present", b"3")?;
            Ok((
                tx.get(Table::Users, b"present")?,
                tx.get(Table::Users, b"absent")?,
                tx.get(Table::Users, b"written")?,
            ))
        })
        .unwrap();
    assert_eq!(got, (Some(b"3".to_vec()), None, Some(b"2".to_vec())));
}

fn family(id: &str, sid: &str, sub: &str) -> Family {
    Family {
        id: id.into(),
        client_id: "app".into(),
        sub: sub.into(),
        sid: sid.into(),
        scope: vec!["openid".into(), "offline_access".into()],
        auth_time: 5,
        nonce: None,
        revoked: false,
        expires_at: 500,
        identity: IdentitySnapshot::default(),
        amr: vec!["otp".into()],
        acr: "1".into(),
    }
}

fn family_revoke_and_indexes<B: Backend>(b: &B) {
    let o = b.oidc();
    o.put_family(&family("f2", "s1", "u1")).unwrap();
    o.put_family(&family("f1", "s1", "u1")).unwrap();
    o.put_family(&family("f3", "s2", "u2")).unwrap();
    assert_eq!(o.families_of_session("s1").unwrap(), ["f1", "f2"]);
    assert_eq!(o.families_of_sub("u2").unwrap(), ["f3"]);
    assert!(o.families_of_sub("nobody").unwrap().is_empty());
    assert!(o.revoke_family("f1").unwrap());
    assert!(!o.revoke_family("f1").unwrap(), "already revoked");
    assert!(!o.revoke_family("nope").unwrap());
    assert!(o.family("f1").unwrap().unwrap().revoked);
    assert!(!o.family("f2").unwrap().unwrap().revoked);
    o.touch_family("f2", 900).unwrap();
    o.touch_family("f2", 600).unwrap();
    assert_eq!(
        o.family("f2").unwrap().unwrap().expires_at,
        900,
        "never shortened"
    );
    o.touch_family("f1", 900).unwrap();
    assert!(
        o.family("f1").unwrap().unwrap().revoked,
        "touch never un-revokes"
    );
    assert_eq!(o.family("nope").unwrap(), None);
}

/// A revocation that comes before its family is stored (a code reused while its first
/// redemption is still issuing, a logout racing a redemption) leaves a tombstone: the late
/// family is born revoked.
fn late_families_are_born_revoked<B: Backend>(b: &B) {
    let o = b.oidc();
    assert!(
        !o.revoke_family("f-late").unwrap(),
        "nothing live to revoke yet"
    );
    o.put_family(&family("f-late", "s-x", "u")).unwrap();
    assert!(o.family("f-late").unwrap().unwrap().revoked, "reused code");
    o.put_session("sec-l", &session("s-ended", "u", 10_000))
        .unwrap();
    assert!(o.delete_session("s-ended").unwrap().is_some());
    o.put_family(&family("f-after-logout", "s-ended", "u"))
        .unwrap();
    assert!(
        o.family("f-after-logout").unwrap().unwrap().revoked,
        "ended session"
    );
    o.put_family(&family("f-other", "s-other", "u")).unwrap();
    assert!(!o.family("f-other").unwrap().unwrap().revoked);
    // Tombstones outlive the purge that first sees them by an hour, then go (uncounted;
    // the three families expired meanwhile).
    assert_eq!(o.purge_expired(100).unwrap(), 0);
    assert_eq!(o.purge_expired(100 + 3600).unwrap(), 3);
    o.put_family(&family("f-late", "s-y", "u")).unwrap();
    assert!(!o.family("f-late").unwrap().unwrap().revoked);
}

fn session(sid: &str, sub: &str, expires_at: u64) -> Session {
    Session {
        sid: sid.into(),
        sub: sub.into(),
        auth_time: 1,
        expires_at,
        amr: vec!["otp".into()],
        acr: "1".into(),
        identity: IdentitySnapshot::default(),
        clients: vec![],
    }
}

fn sessions<B: Backend>(b: &B) {
    let o = b.oidc();
    o.put_session("sec1", &session("sid1", "u", 50)).unwrap();
    o.put_session("sec2", &session("sid2", "u", 50)).unwrap();
    o.put_session("sec3", &session("sid3", "v", 50)).unwrap();
    o.add_session_client("sid1", "app").unwrap();
    o.add_session_client("sid1", "app").unwrap();
    o.add_session_client("sid1", "spa").unwrap();
    o.add_session_client("nope", "app").unwrap();
    let s1 = o.session_by_secret("sec1").unwrap().unwrap();
    assert_eq!(s1.clients, ["app", "spa"]);
    assert_eq!(o.session("sid1").unwrap().unwrap(), s1);
    assert_eq!(
        o.session_by_secret("sid1").unwrap(),
        None,
        "sid is not the secret"
    );
    let of_u: Vec<String> = o
        .sessions_of("u")
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    assert_eq!(of_u, ["sid1", "sid2"]);
    assert_eq!(o.delete_session("sid1").unwrap().unwrap().sid, "sid1");
    assert_eq!(o.delete_session("sid1").unwrap(), None);
    assert_eq!(o.session_by_secret("sec1").unwrap(), None);
    assert_eq!(o.sessions_of("u").unwrap().len(), 1);
    // Pending requests.
    let p = PendingRequest {
        request: code("x").request,
        csrf: "c".into(),
        expires_at: 40,
    };
    o.put_pending("txn", &p).unwrap();
    assert_eq!(o.pending("txn").unwrap(), Some(p));
    o.delete_pending("txn").unwrap();
    assert_eq!(o.pending("txn").unwrap(), None);
    o.flush().unwrap();
}

fn key(kid: &str, alg: SigningAlg) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg,
        pkcs8: "AAAA".into(),
        created_at: 10,
        sign_from: 20,
        retire_after: None,
    }
}

fn keys_list<B: Backend>(b: &B) {
    let o = b.oidc();
    assert!(o.keys().unwrap().is_empty());
    o.put_key(&key("k2", SigningAlg::ES256)).unwrap();
    o.put_key(&key("k1", SigningAlg::RS256)).unwrap();
    o.put_key(&key("k3", SigningAlg::EdDSA)).unwrap();
    let mut retiring = key("k1", SigningAlg::RS256);
    retiring.retire_after = Some(99);
    o.put_key(&retiring).unwrap();
    let ks = o.keys().unwrap();
    let kids: Vec<&str> = ks.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "k2", "k3"]);
    assert_eq!(ks[0], retiring);
    o.delete_key("k2").unwrap();
    let kids: Vec<String> = o.keys().unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["k1", "k3"]);
}

/// Attempts charged at once from many threads (or receivers) are each counted, and no
/// more than `max` of them pass before the lock.
fn attempts_count_atomically<B: Backend>(b: &B) {
    let o = b.oidc();
    let passed = AtomicUsize::new(0);
    std::thread::scope(|t| {
        for _ in 0..8 {
            t.spawn(|| {
                for _ in 0..5 {
                    let mut ok = false;
                    o.update_attempts("loc:race", &mut |a| ok = a.charge(100, 12, 600).is_ok())
                        .unwrap();
                    if ok {
                        passed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(passed.load(Ordering::SeqCst), 12);
    let a = o.attempts("loc:race").unwrap();
    assert_eq!((a.failures, a.locked_until), (12, 700));
    o.update_attempts("loc:race", &mut |a| a.refund(12))
        .unwrap();
    assert_eq!(o.attempts("loc:race").unwrap().locked_until, 0);
}

fn device_grant(user_code_hash: &str) -> DeviceGrant {
    DeviceGrant {
        client_id: "tv".into(),
        scope: vec!["openid".into()],
        user_code_hash: user_code_hash.into(),
        created_at: 40,
        expires_at: 100,
        interval: 5,
        last_poll: 0,
        status: DeviceStatus::Pending,
    }
}

fn device_grants_index_and_redeem_once<B: Backend>(b: &B) {
    let o = b.oidc();
    assert!(o.insert_device("d1", &device_grant("u1")).unwrap());
    assert!(
        !o.insert_device("d2", &device_grant("u1")).unwrap(),
        "a user code names one grant"
    );
    assert!(o.device("d2").unwrap().is_none(), "nothing written");
    let (h, g) = o.device_by_user_code("u1").unwrap().unwrap();
    assert_eq!((h.as_str(), g.client_id.as_str()), ("d1", "tv"));
    assert!(o.device_by_user_code("u2").unwrap().is_none());
    assert_eq!(o.update_device("nope", &mut |_| true).unwrap(), None);
    // A refusing `f` writes nothing.
    assert_eq!(
        o.update_device("d1", &mut |g| {
            g.interval = 99;
            false
        })
        .unwrap(),
        Some(false)
    );
    assert_eq!(o.device("d1").unwrap().unwrap().interval, 5);
    let approval = DeviceApproval {
        sid: "s1".into(),
        sub: "u1".into(),
        auth_time: 50,
        amr: vec!["otp".into()],
        acr: "a".into(),
        identity: IdentitySnapshot::default(),
        approved_at: 60,
    };
    assert_eq!(
        o.update_device("d1", &mut |g| {
            g.status = DeviceStatus::Approved {
                approval: Box::new(approval.clone()),
            };
            true
        })
        .unwrap(),
        Some(true)
    );
    // Eight pollers at once (on PostgreSQL, eight connections): exactly one redeems.
    let wins: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let o = o.clone();
                sc.spawn(move || {
                    o.update_device("d1", &mut |g| match g.status {
                        DeviceStatus::Approved { .. } => {
                            g.status = DeviceStatus::Redeemed {
                                family: format!("fam{i}"),
                            };
                            true
                        }
                        _ => false,
                    })
                    .unwrap()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| usize::from(h.join().unwrap() == Some(true)))
            .sum()
    });
    assert_eq!(wins, 1);
    assert!(matches!(
        o.device("d1").unwrap().unwrap().status,
        DeviceStatus::Redeemed { .. }
    ));
    // Kept an hour past expiry (a late poll hears "expired"), then purged with its index.
    assert_eq!(
        o.purge_devices(100 + DEVICE_KEEP_EXPIRED_SECS - 1).unwrap(),
        0
    );
    assert_eq!(o.purge_devices(100 + DEVICE_KEEP_EXPIRED_SECS).unwrap(), 1);
    assert!(o.device("d1").unwrap().is_none());
    assert!(o.device_by_user_code("u1").unwrap().is_none());
    assert!(
        o.insert_device("d3", &device_grant("u1")).unwrap(),
        "code free again"
    );
}

fn attempts_and_purge<B: Backend>(b: &B) {
    let o = b.oidc();
    assert_eq!(o.attempts("loc:x").unwrap(), Attempts::default());
    let a = Attempts {
        failures: 3,
        window_start: 5,
        locked_until: 15,
    };
    o.put_attempts("loc:x", &a).unwrap();
    assert_eq!(o.attempts("loc:x").unwrap(), a);
    o.put_session("sec", &session("sid", "u", 10)).unwrap();
    o.put_session("sec-live", &session("sid-live", "u", 10_000))
        .unwrap();
    o.put_pending(
        "p",
        &PendingRequest {
            request: code("x").request,
            csrf: "c".into(),
            expires_at: 10,
        },
    )
    .unwrap();
    let mut c = code("sid");
    c.expires_at = 10;
    o.put_code("c", &c).unwrap();
    let mut f = family("f", "sid", "u");
    f.expires_at = 10;
    o.put_family(&f).unwrap();
    o.put_refresh(
        "r",
        &RefreshToken {
            family: "f".into(),
            expires_at: 10,
            used: false,
        },
    )
    .unwrap();
    // Session, pending request, family, refresh token; the code lingers an hour (so a
    // late replay is still recognised as reuse); the attempt counter a day.
    assert_eq!(o.purge_expired(11).unwrap(), 4);
    assert!(o.session_by_secret("sec").unwrap().is_none());
    assert!(o.session("sid-live").unwrap().is_some());
    assert!(o.families_of_session("sid").unwrap().is_empty());
    assert!(matches!(
        o.redeem_code("c", "g").unwrap(),
        CodeRedeem::First(_)
    ));
    assert_eq!(o.purge_expired(10 + 3600).unwrap(), 1);
    // The long session and the attempt counter (a day after its window opened).
    assert_eq!(o.purge_expired(5 + 86_400).unwrap(), 2);
    assert_eq!(o.attempts("loc:x").unwrap(), Attempts::default());
}

// ---------------------------------------------------------------------------------------
// Passkeys

fn passkey(cred: &str, sub: &str, created_at: u64) -> PasskeyRecord {
    PasskeyRecord {
        cred_id: cred.into(),
        sub: sub.into(),
        username: format!("{sub}@example.org"),
        user_handle: format!("h-{sub}"),
        name: format!("key {cred}"),
        created_at,
        last_used: None,
        expires_at: 1_000,
        disabled: None,
        backup_eligible: false,
        credential: serde_json::json!({"counter": 0}),
        identity: IdentitySnapshot::default(),
    }
}

fn passkeys_insert_once_and_index<B: Backend>(b: &B) {
    let o = b.oidc();
    assert!(o.insert_passkey(&passkey("c2", "u", 20)).unwrap());
    assert!(o.insert_passkey(&passkey("c1", "u", 10)).unwrap());
    assert!(o.insert_passkey(&passkey("c3", "v", 5)).unwrap());
    // The same credential id again, even for another person: refused, nothing changed.
    assert!(!o.insert_passkey(&passkey("c1", "v", 99)).unwrap());
    assert_eq!(o.passkey("c1").unwrap().unwrap(), passkey("c1", "u", 10));
    let of_u: Vec<String> = o
        .passkeys_of("u")
        .unwrap()
        .into_iter()
        .map(|p| p.cred_id)
        .collect();
    assert_eq!(of_u, ["c1", "c2"], "oldest first");
    let named: Vec<String> = o
        .passkeys_by_username("v@example.org")
        .unwrap()
        .into_iter()
        .map(|p| p.cred_id)
        .collect();
    assert_eq!(named, ["c3"]);
    assert!(
        !o.delete_passkey("v", "c1").unwrap(),
        "only the owner removes"
    );
    assert!(o.delete_passkey("u", "c1").unwrap());
    assert!(!o.delete_passkey("u", "c1").unwrap());
    assert_eq!(o.passkey("c1").unwrap(), None);
    assert_eq!(o.passkeys_of("u").unwrap().len(), 1);
    // Another receiver on the same database sees the passkey enrolled here.
    assert_eq!(b.oidc().passkey("c2").unwrap().unwrap().sub, "u");
}

fn live_subjects_hold_a_session_or_a_working_passkey<B: Backend>(b: &B) {
    let o = b.oidc();
    assert!(o.live_subjects().unwrap().is_empty());
    o.put_session("sec1", &session("sid1", "zed", 50)).unwrap();
    o.put_session("sec2", &session("sid2", "zed", 50)).unwrap();
    o.put_session("sec3", &session("sid3", "amy", 50)).unwrap();
    assert!(o.insert_passkey(&passkey("c1", "amy", 1)).unwrap());
    assert!(o.insert_passkey(&passkey("c2", "bob", 1)).unwrap());
    assert!(o.insert_passkey(&passkey("c3", "off", 1)).unwrap());
    o.update_passkey("c3", &mut |r| {
        r.disabled = Some("expired".into());
        true
    })
    .unwrap();
    assert_eq!(
        o.live_subjects().unwrap(),
        ["amy", "bob", "zed"],
        "each once, in order"
    );
    o.delete_session("sid3").unwrap();
    assert!(o.delete_passkey("bob", "c2").unwrap());
    assert_eq!(b.other_oidc().live_subjects().unwrap(), ["amy", "zed"]);
}

fn passkey_updates_are_atomic<B: Backend>(b: &B) {
    let o = b.oidc();
    o.insert_passkey(&passkey("c", "u", 1)).unwrap();
    assert_eq!(o.update_passkey("nope", &mut |_| true).unwrap(), None);
    assert_eq!(o.update_passkey("c", &mut |_| false).unwrap(), Some(false));
    // Racing uses of one counter value: each moves the counter only forward, and
    // exactly one of the racers for each value wins.
    let wins = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            let o = o.clone();
            let wins = &wins;
            s.spawn(move || {
                let won = o
                    .update_passkey("c", &mut |r| {
                        let n = r.credential["counter"].as_u64().unwrap();
                        if n >= 1 {
                            return false;
                        }
                        r.credential["counter"] = serde_json::json!(n + 1);
                        true
                    })
                    .unwrap();
                if won == Some(true) {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1);
    assert_eq!(o.passkey("c").unwrap().unwrap().credential["counter"], 1);
}

fn ceremonies_are_single_use<B: Backend>(b: &B) {
    let o = b.oidc();
    let c = Ceremony {
        kind: CeremonyKind::SignIn,
        bound_to: "txn".into(),
        sub: None,
        name: None,
        state: serde_json::json!({"challenge": "abc"}),
        expires_at: 10,
    };
    o.put_ceremony("id", &c).unwrap();
    let got = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let o = o.clone();
            let got = &got;
            s.spawn(move || {
                if o.take_ceremony("id").unwrap().is_some() {
                    got.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(got.load(Ordering::SeqCst), 1, "exactly one taker");
    o.put_ceremony("old", &c).unwrap();
    o.purge_expired(11).unwrap();
    assert_eq!(o.take_ceremony("old").unwrap(), None, "purged when expired");
}

fn pushed_requests_are_single_use_and_bound<B: Backend>(b: &B) {
    let (o, other) = (b.oidc(), b.other_oidc());
    let r = PushedRequest {
        client_id: "spa".into(),
        params: vec![("scope".into(), "openid".into())],
        expires_at: 10,
    };
    o.put_pushed("id", &r).unwrap();
    // Another client's take leaves it in place.
    assert_eq!(
        other.take_pushed("id", "app").unwrap(),
        PushedTake::OtherClient
    );
    assert_eq!(
        other.take_pushed("nope", "spa").unwrap(),
        PushedTake::Unknown
    );
    // Pushed on one receiver, taken on another sharing the store, by exactly one taker.
    let got = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for h in [o.clone(), other.clone(), o.clone(), other.clone()] {
            let got = &got;
            let want = r.clone();
            s.spawn(move || match h.take_pushed("id", "spa").unwrap() {
                PushedTake::Taken(x) => {
                    assert_eq!(x, want);
                    got.fetch_add(1, Ordering::SeqCst);
                }
                PushedTake::Unknown => {}
                PushedTake::OtherClient => panic!("the right client"),
            });
        }
    });
    assert_eq!(got.load(Ordering::SeqCst), 1, "exactly one taker");
    assert_eq!(o.take_pushed("id", "spa").unwrap(), PushedTake::Unknown);
    o.put_pushed("old", &r).unwrap();
    o.purge_expired(11).unwrap();
    assert_eq!(
        other.take_pushed("old", "spa").unwrap(),
        PushedTake::Unknown,
        "purged when expired"
    );
}

fn security_events_in_order<B: Backend>(b: &B) {
    let o = b.oidc();
    let ev = |kind: &str| SecurityEvent {
        id: 0,
        at: 5,
        kind: kind.into(),
        sub: Some("u".into()),
        credential: None,
        detail: None,
        address: None,
    };
    let a = o.append_event(&ev("passkey_enrolled")).unwrap();
    let c = b.oidc().append_event(&ev("passkey_sign_in")).unwrap();
    assert!(c > a, "ids increase across handles");
    let all = o.events(0, 10).unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["passkey_enrolled", "passkey_sign_in"]);
    assert_eq!(all[0].id, a);
    assert_eq!(o.events(a, 10).unwrap().len(), 1);
    assert_eq!(o.events(0, 1).unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// The back-channel logout outbox

fn delivery(id: &str, next_attempt_ms: u64) -> LogoutDelivery {
    LogoutDelivery {
        id: id.into(),
        client_id: "app".into(),
        uri: "https://app.inside.example/bc".into(),
        sub: "u".into(),
        sid: format!("sid-{id}"),
        attempts: 0,
        next_attempt_ms,
        created_ms: next_attempt_ms,
    }
}

fn ids(v: &[LogoutDelivery]) -> Vec<&str> {
    v.iter().map(|d| d.id.as_str()).collect()
}

fn logout_outbox_claims_and_bound<B: Backend>(b: &B) {
    let s = b.oidc();
    const FAR: u64 = 1 << 50;
    assert!(s.enqueue_logout(&delivery("a", 100), 3).unwrap());
    assert!(s.enqueue_logout(&delivery("b", 200), 3).unwrap());
    assert!(s.enqueue_logout(&delivery("c", FAR), 3).unwrap());
    assert!(
        !s.enqueue_logout(&delivery("x", 100), 3).unwrap(),
        "a full outbox refuses"
    );
    assert_eq!(ids(&s.pending_logouts().unwrap()), ["a", "b", "c"]);
    assert_eq!(s.count_logouts().unwrap(), 3);

    // Another receiver (a restart, or the next receiver of a cluster) sees them all.
    let other = b.other_oidc();
    assert_eq!(
        other.pending_logouts().unwrap(),
        s.pending_logouts().unwrap()
    );

    // Due ones, earliest first, up to the limit; a held one is not handed out again.
    assert_eq!(ids(&s.claim_logouts("r1", 300, 30_300, 1).unwrap()), ["a"]);
    assert_eq!(ids(&s.claim_logouts("r1", 300, 30_300, 10).unwrap()), ["b"]);
    assert!(
        other
            .claim_logouts("r2", 300, 30_300, 10)
            .unwrap()
            .is_empty()
    );

    // Only the holder reschedules; that releases the claim.
    assert!(!other.reschedule_logout("a", "r2", 1, 400).unwrap());
    assert!(s.reschedule_logout("a", "r1", 1, 400).unwrap());
    assert!(
        other
            .claim_logouts("r2", 399, 30_399, 10)
            .unwrap()
            .is_empty()
    );
    let again = other.claim_logouts("r2", 450, 30_450, 10).unwrap();
    assert_eq!(ids(&again), ["a"]);
    assert_eq!((again[0].attempts, again[0].next_attempt_ms), (1, 400));
    assert_eq!(again[0], {
        let mut d = delivery("a", 400);
        d.attempts = 1;
        d.created_ms = 100;
        d
    });

    // r1 dies holding b: its claim runs out at 30_300, then r2 takes b over.
    assert!(
        other
            .claim_logouts("r2", 30_299, 60_000, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&other.claim_logouts("r2", 30_300, 60_300, 10).unwrap()),
        ["b"]
    );
    assert!(
        !s.reschedule_logout("b", "r1", 2, 500).unwrap(),
        "r1 lost it"
    );

    // Finished deliveries leave; the bound counts what is left.
    s.finish_logout("a").unwrap();
    other.finish_logout("b").unwrap();
    s.finish_logout("nope").unwrap();
    assert_eq!(ids(&s.pending_logouts().unwrap()), ["c"]);
    assert_eq!(other.count_logouts().unwrap(), 1);
    assert!(s.enqueue_logout(&delivery("d", 100), 3).unwrap());
}

fn logout_outbox_concurrent_claims_are_disjoint<B: Backend>(b: &B) {
    let s = b.oidc();
    for i in 0..40 {
        assert!(
            s.enqueue_logout(&delivery(&format!("d{i:02}"), 10), 1000)
                .unwrap()
        );
    }
    let handles = [b.oidc(), b.other_oidc(), b.oidc(), b.other_oidc()];
    let got: Vec<Vec<String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(n, h)| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..20 {
                        let c = h.claim_logouts(&format!("r{n}"), 1000, 60_000, 3).unwrap();
                        mine.extend(c.into_iter().map(|d| d.id));
                    }
                    mine
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut all: Vec<String> = got.into_iter().flatten().collect();
    all.sort();
    let want: Vec<String> = (0..40).map(|i| format!("d{i:02}")).collect();
    assert_eq!(all, want, "every delivery claimed exactly once");
}
