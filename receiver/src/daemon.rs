//! `airlock-receiver run`: the link, the ingest thread, the ops listener and the provider.

use std::sync::Arc;

use airlock_protocol::seal::Freshness;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::backup::IngestGate;
use crate::backup::export::BackupSource;
use crate::clock::now_ms;
use crate::config::Config;
use crate::config::StoreBackend;
use crate::identity_directory::StoreDirectory;
use crate::ingest::{Incoming, Ingest, IngestError, IngestHooks, NoHooks};
use crate::link::{LinkIngress, LinkIoError, serial, udp};
use crate::metrics::Metrics;
use crate::oidc::config::OidcConfig;
use crate::oidc::directory::IdentityDirectory;
use crate::oidc::error::OidcError;
use crate::oidc::pg_store::PgOidcStore;
use crate::oidc::provider::{OidcDeps, Provider};
use crate::oidc::util::Clock;
use crate::ops::{self, OpsState};
use crate::store::postgres::PgStore;
use crate::store::{SledStore, Store, StoreError};
use crate::transparency::{CheckpointKey, Checkpointer, Policy};
use crate::trust_set::{BaseTrust, TrustError};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Link(#[from] LinkIoError),
    #[error("OpenID provider: {0}")]
    Oidc(#[from] OidcError),
    #[error("cannot start the ops listener on {addr}: {source}")]
    Ops {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("the ingest thread stopped unexpectedly")]
    IngestThread,
    #[error("transparency log: {0}")]
    Transparency(#[from] crate::transparency::TransparencyError),
    #[error(
        "cannot write the ops token file {path}: {source} (set [ops] token_file to a writable path)"
    )]
    Token {
        path: String,
        source: std::io::Error,
    },
}

/// Ends a revoked user's sessions through the provider, off the ingest thread.
struct ProviderHooks {
    provider: Provider,
    runtime: tokio::runtime::Handle,
}

impl IngestHooks for ProviderHooks {
    fn revoked(&self, local_sub: &str) {
        let p = self.provider.clone();
        let sub = local_sub.to_owned();
        self.runtime.spawn_blocking(move || {
            if let Err(e) = p.revoke_user(&sub) {
                tracing::error!(local_sub = %sub, error = %e, "could not end the revoked user's sessions");
            }
        });
    }
}

/// Runs until SIGINT/SIGTERM, or until a part fails.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RunError::DataDir {
        dir: cfg.data_dir.display().to_string(),
        source,
    })?;
    match (cfg.store.backend, cfg.store.postgres.clone()) {
        (StoreBackend::Postgres, Some(pg)) => {
            // HA: store and provider state shared with the other receivers.
            let store = Arc::new(PgStore::open(&pg)?);
            let oidc = PgOidcStore::new(&store);
            run_on(cfg, store, move |oc, directory| {
                let clock = Clock::system();
                oidc.init_keys_once(clock.now())?;
                Provider::with_store(oc, Arc::new(oidc), directory, clock)
            })
            .await
        }
        _ => {
            let store = Arc::new(SledStore::open_with_cache(
                &cfg.store_path(),
                cfg.store.cache_bytes(),
            )?);
            let db = store.db();
            let backup_db = Some(store.db());
            run_on_with(cfg, store, backup_db, move |oc, directory| {
                Provider::new(oc, OidcDeps::new(db, directory))
            })
            .await
        }
    }
}

/// The daemon on an open store; `provider` builds the OpenID provider on its state.
async fn run_on<S: Store>(
    cfg: Config,
    store: Arc<S>,
    make_provider: impl FnOnce(OidcConfig, Arc<dyn IdentityDirectory>) -> Result<Provider, OidcError>,
) -> Result<(), RunError> {
    run_on_with(cfg, store, None, make_provider).await
}

/// [`run_on`], with the sled database the ops listener's `GET /backup` exports.
async fn run_on_with<S: Store>(
    cfg: Config,
    store: Arc<S>,
    backup_db: Option<sled::Db>,
    make_provider: impl FnOnce(OidcConfig, Arc<dyn IdentityDirectory>) -> Result<Provider, OidcError>,
) -> Result<(), RunError> {
    let base = BaseTrust::load(&cfg.trust)?;
    let link_keys: Vec<_> = base.links.iter().map(|(_, k)| k.clone()).collect();
    for (path, k) in &base.signers {
        tracing::info!(kid = %k.kid, fingerprint = %k.fingerprint(), file = %path.display(), "trusted signer");
    }
    for (path, k) in &base.links {
        tracing::info!(kid = k.kid, fingerprint = %k.fingerprint(), file = %path.display(), "link key");
    }
    let metrics = Arc::new(Metrics::new());
    let provider = match &cfg.oidc {
        Some(oc) => {
            // Effects become visible to the provider only once the ingest flushed them.
            let directory = Arc::new(if store.durable_on_commit() {
                StoreDirectory::new(store.clone())
            } else {
                StoreDirectory::gated(store.clone(), metrics.clone())
            });
            Some(make_provider(oc.clone(), directory)?)
        }
        None => None,
    };
    let hooks: Box<dyn IngestHooks> = match &provider {
        Some(p) => Box::new(ProviderHooks {
            provider: p.clone(),
            runtime: tokio::runtime::Handle::current(),
        }),
        None => Box::new(NoHooks),
    };
    let fresh = Freshness {
        max_age_secs: cfg.freshness.max_age_secs,
        max_skew_secs: cfg.freshness.max_skew_secs,
    };
    let checkpointer = start_transparency(&cfg, &*store, &metrics)?;
    let mut ingest = Ingest::new(
        store.clone(),
        base,
        fresh,
        metrics.clone(),
        hooks,
        cfg.ingest.reject_log_per_sec,
    )?;
    if let Some(c) = checkpointer {
        ingest.set_checkpointer(c);
    }
    let (tx, rx) = mpsc::channel::<Incoming>(cfg.ingest.queue_frames);
    let gate = Arc::new(IngestGate::new());
    let backup = match backup_db {
        Some(db) => {
            let path = cfg.ops_token_file();
            let token =
                crate::backup::export::write_token(&path).map_err(|source| RunError::Token {
                    path: path.display().to_string(),
                    source,
                })?;
            tracing::info!(token_file = %path.display(), "ops token for GET /backup written (mode 0600)");
            metrics.backup_last_unix_secs.store(
                crate::backup::export::read_last_backup(&cfg.data_dir),
                std::sync::atomic::Ordering::Relaxed,
            );
            Some(Arc::new(
                BackupSource::new(db, gate.clone(), &token).record_in(cfg.data_dir.clone()),
            ))
        }
        None => None,
    };
    let ingest_done = spawn_ingest(ingest, rx, cfg.ingest.max_batch, gate);

    let ops_state = Arc::new(OpsState {
        metrics: metrics.clone(),
        store: store.clone(),
        alarm_after_secs: cfg.heartbeat.alarm_after_secs,
        started_ms: now_ms(),
        provider: provider.clone(),
        backup,
        trust: cfg.trust.clone(),
    });
    // The status page's chart: the rejection counters once a minute.
    let sampled = metrics.clone();
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            sampled.sample_rejects(now_ms());
        }
    });
    let ops_listener = tokio::net::TcpListener::bind(cfg.ops.listen)
        .await
        .map_err(|source| RunError::Ops {
            addr: cfg.ops.listen.to_string(),
            source,
        })?;
    let ops_task = tokio::spawn(async move { ops::serve_on(ops_listener, ops_state).await });

    let ingress = LinkIngress::new(
        &cfg.link,
        &link_keys,
        tx,
        metrics.clone(),
        cfg.ingest.reject_log_per_sec,
    );
    let link_task = match (&cfg.link.udp, &cfg.link.serial) {
        (Some(u), _) => {
            let sources = u.source_filter().map_err(LinkIoError::Sources)?;
            let socket = udp::bind(u)?;
            tracing::info!(listen = %u.listen, allowed_sources = ?u.allowed_sources, "listening for datagrams");
            tokio::spawn(udp::run(socket, ingress, sources))
        }
        (None, Some(s)) => {
            let port = serial::open(s)?;
            tracing::info!(device = %s.device.display(), baud = s.baud, "reading the serial line");
            tokio::spawn(serial::run(s.clone(), port, ingress))
        }
        (None, None) => return Err(RunError::Link(LinkIoError::IngestGone)),
    };
    let provider_task = provider.map(|p| tokio::spawn(async move { p.serve().await }));
    tracing::info!(ops = %cfg.ops.listen, "airlock-receiver running");

    let result = tokio::select! {
        _ = shutdown_signal() => { tracing::info!("shutting down"); Ok(()) }
        r = ingest_done => match r { Ok(Ok(())) => Ok(()), Ok(Err(e)) => Err(e.into()), Err(_) => Err(RunError::IngestThread) },
        r = link_task => match r { Ok(Err(e)) => Err(e.into()), _ => Err(RunError::IngestThread) },
        r = ops_task => match r {
            Ok(Err(source)) => Err(RunError::Ops { addr: cfg.ops.listen.to_string(), source }),
            _ => Err(RunError::IngestThread),
        },
        r = async { match provider_task { Some(t) => t.await, None => std::future::pending().await } } => match r {
            Ok(Err(e)) => Err(e.into()),
            _ => Err(RunError::IngestThread),
        },
    };
    sampler.abort();
    // Everything accepted was flushed by the ingest before it was acknowledged anywhere.
    store.flush()?;
    result
}

/// The checkpoint key (created at first start), the tree (built from the log when the
/// store has none yet, checked against the latest checkpoint when `verify_on_start`), and
/// the checkpointer the ingest signs with. None when `[transparency]` is disabled.
fn start_transparency<S: Store>(
    cfg: &Config,
    store: &S,
    metrics: &Arc<Metrics>,
) -> Result<Option<Checkpointer>, RunError> {
    let t = &cfg.transparency;
    if !t.enabled {
        tracing::warn!("[transparency] is disabled: no Merkle tree, no checkpoints");
        return Ok(None);
    }
    let file = cfg.checkpoint_key_file();
    // One store, one log, one key: a receiver joining a store whose checkpoints another
    // receiver signs gets that key copied, never a new one.
    crate::transparency::refuse_new_key(store, &file)?;
    let (key, created) = CheckpointKey::load_or_create(&file, t.origin.as_deref())?;
    if created {
        tracing::info!(file = %file.display(), public = %crate::transparency::key::public_path(&file).display(), "checkpoint key created");
    }
    tracing::info!(log = key.name(), verifier_key = %key.verifier(), fingerprint = %key.fingerprint(), "checkpoint key");
    crate::transparency::claim_log(store, &key, &file)?;
    let entries = crate::transparency::ensure_tree(store, Some(key.verifier()), t.verify_on_start)?;
    tracing::info!(entries, "Merkle tree of the frame log ready");
    let policy = Policy {
        every_entries: t.every_entries,
        every_ms: t.every_secs.saturating_mul(1000),
    };
    Ok(Some(Checkpointer::new(
        store,
        key,
        policy,
        now_ms(),
        metrics.clone(),
    )?))
}

/// The ingest runs on two threads of its own (sled and Ed25519 are blocking work): a
/// verifier opens the next burst while the committer logs and applies the current one.
fn spawn_ingest<S: Store>(
    mut ingest: Ingest<S>,
    mut rx: mpsc::Receiver<Incoming>,
    max_batch: usize,
    gate: Arc<IngestGate>,
) -> oneshot::Receiver<Result<(), IngestError>> {
    let (done_tx, done_rx) = oneshot::channel();
    // Two bursts in flight at most: memory stays bounded by the queue plus 2 * max_batch.
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
    let verifier = ingest.verifier();
    std::thread::spawn(move || {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Vec::with_capacity(max_batch.min(1024));
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(x) => batch.push(x),
                    Err(_) => break,
                }
            }
            if opened_tx.send(verifier.open(batch)).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let result = (|| {
            loop {
                // Wakes at least once a second for the checkpoint time rule.
                let next = opened_rx.recv_timeout(std::time::Duration::from_secs(1));
                // A backup copies the state between two batches.
                let _held = gate.hold();
                match next {
                    Ok(opened) => {
                        ingest.process_opened(opened)?;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                ingest.tick();
            }
            Ok(())
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "ingest failed; stopping");
        }
        let _ = done_tx.send(result);
    });
    done_rx
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
