//! `airlock-sender run`: wires the outbox, the sealing engine, the link task and the
//! metrics endpoint together, and shuts them down in order on SIGINT/SIGTERM.
//!
//! Shutdown order: the engine stops sealing and flushes the outbox; dropping its channel
//! lets the link task send what it holds and flush the transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use airlock_protocol::keys::{KeyError, LinkKey, SignerKey};
use airlock_protocol::link::LinkParams;
use airlock_protocol::seal::Sealer;
use rand::RngCore;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::cores::Placement;
use crate::engine::{Engine, EngineError, EngineSettings};
use crate::link::sendloop::{SendError, SendLoop, SendSettings};
use crate::link::transport::{Transport, TransportError};
use crate::metrics::{self, Metrics};
use crate::outbox::{Outbox, OutboxError};
use crate::spool::{self, SpoolError};

/// Batches (of up to 1024 frames) between the committer and the link task; few, so sealing
/// never runs far ahead of a paced link (issued_at stays close to the send time).
const CHANNEL_BATCHES: usize = 2;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("link: {0}")]
    Send(#[from] SendError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen for metrics on {addr}: {error} (change metrics.listen)")]
    Metrics {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot create data_dir {dir}: {error}")]
    DataDir {
        dir: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Portal(#[from] crate::portal::PortalError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Witness(#[from] crate::witness::WitnessError),
    #[error("a daemon task failed: {0}")]
    Task(String),
}

/// The runtime `run` uses: the link task, the metrics endpoint and the portal run here, on
/// worker threads kept off the signing thread's core (see [`crate::cores`]).
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let placement = Placement::for_process(config.send.dedicated_signing_core);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || placement.enter_helper())
        .build()
}

/// The link parameters the config describes.
pub fn link_params(config: &Config) -> LinkParams {
    LinkParams {
        datagram_size: config.link.mtu,
        max_block_bytes: config.link.max_block_bytes,
        linger: Duration::from_millis(config.link.linger_ms),
        repair_ratio: config.fec.repair_ratio,
        min_repair: config.fec.min_repair,
    }
}

/// A running daemon.
pub struct Daemon {
    shutdown: Arc<AtomicBool>,
    engine: std::thread::JoinHandle<Result<(), EngineError>>,
    link: tokio::task::JoinHandle<Result<(), SendError>>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    pub metrics_addr: Option<SocketAddr>,
    pub session_id: u64,
}

impl Daemon {
    /// Starts everything. `transport` overrides the configured link (tests use a pty pair).
    pub async fn start(config: &Config, transport: Option<Transport>) -> Result<Self, DaemonError> {
        Self::start_with(config, transport, false).await
    }

    /// [`Daemon::start`]; `allow_stale_outbox` skips the check that the outbox is not older
    /// than what a recorded witness checkpoint says the receiver has accepted.
    pub async fn start_with(
        config: &Config,
        transport: Option<Transport>,
        allow_stale_outbox: bool,
    ) -> Result<Self, DaemonError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| DaemonError::DataDir {
            dir: config.data_dir.clone(),
            error,
        })?;
        spool::ensure_dir(&config.spool_dir())?;
        let sealer = Sealer::new(
            SignerKey::load(&config.keys.signer)?,
            LinkKey::load(&config.keys.link)?,
        );
        let outbox = Outbox::open(&config.db_dir())?;
        check_not_stale(config, &outbox, sealer.signer_kid(), allow_stale_outbox)?;
        let transport = match transport {
            Some(t) => t,
            None => Transport::open(&config.link).await?,
        };
        let metrics = Arc::new(Metrics::default());
        metrics
            .pacing_bytes_per_second
            .store(config.send.pacing_bytes_per_sec, Relaxed);
        let (metrics_task, metrics_addr) = start_metrics(config, &metrics).await?;
        let session_id = rand::rngs::OsRng.next_u64();
        let sent_through = Arc::new(AtomicU64::new(0));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let settings = SendSettings {
            params: link_params(config),
            repetitions: config.send.repetitions,
            spacing: Duration::from_millis(config.send.repetition_spacing_ms),
            pacing_bytes_per_sec: config.send.pacing_bytes_per_sec,
        };
        let send_loop = SendLoop::new(
            session_id,
            settings,
            transport,
            metrics.clone(),
            sent_through.clone(),
        )?;
        let link_done = Arc::new(AtomicBool::new(false));
        let link = tokio::spawn(send_loop.run(rx, shutdown.clone(), link_done.clone()));
        let placement = Placement::for_process(config.send.dedicated_signing_core);
        if let Some(cpu) = placement.signing_cpu() {
            tracing::info!(cpu, "the signing thread has a CPU of its own");
        }
        let signing = placement.clone();
        let engine = Engine::new(
            outbox,
            sealer,
            tx,
            metrics.clone(),
            engine_settings(config, session_id, link_done, placement),
            shutdown.clone(),
            sent_through,
        )?;
        let engine = std::thread::Builder::new()
            .name("airlock-engine".into())
            .spawn(move || {
                signing.enter_signing();
                engine.run()
            })
            .map_err(|e| DaemonError::Task(e.to_string()))?;
        tracing::info!(session_id = format!("{session_id:016x}"), metrics = ?metrics_addr, "airlock-sender running");
        Ok(Self {
            shutdown,
            engine,
            link,
            metrics_task,
            metrics,
            metrics_addr,
            session_id,
        })
    }

    /// Asks the daemon to stop (it finishes its current step and flushes).
    pub fn stop(&self) {
        self.shutdown.store(true, Relaxed);
    }

    pub fn is_finished(&self) -> bool {
        self.engine.is_finished() || self.link.is_finished()
    }

    /// Waits for the engine and the link task to end.
    pub async fn wait(self) -> Result<(), DaemonError> {
        let shutdown = self.shutdown.clone();
        let engine = tokio::task::spawn_blocking(move || self.engine.join());
        let engine_result = engine
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?
            .map_err(|_| DaemonError::Task("the engine thread panicked".into()))?;
        shutdown.store(true, Relaxed);
        let link_result = self
            .link
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?;
        if let Some(t) = self.metrics_task {
            t.abort();
        }
        engine_result?;
        link_result?;
        Ok(())
    }
}

fn engine_settings(
    config: &Config,
    session_id: u64,
    link_done: Arc<AtomicBool>,
    placement: Placement,
) -> EngineSettings {
    EngineSettings {
        session_id,
        heartbeat_secs: config.send.heartbeat_secs,
        carousel: (config.send.carousel_secs > 0)
            .then(|| Duration::from_secs(config.send.carousel_secs)),
        retention_secs: config.outbox.log_retention_days.saturating_mul(86_400),
        spool_dir: config.spool_dir(),
        status_file: config.status_file(),
        data_dir: config.data_dir.clone(),
        link_done,
        placement,
    }
}

async fn start_metrics(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Option<tokio::task::JoinHandle<()>>, Option<SocketAddr>), DaemonError> {
    let Some(addr) = config.metrics.listen else {
        return Ok((None, None));
    };
    let listener = metrics::bind(addr)
        .await
        .map_err(|error| DaemonError::Metrics { addr, error })?;
    let bound = listener.local_addr().ok();
    Ok((
        Some(tokio::spawn(metrics::serve(listener, metrics.clone()))),
        bound,
    ))
}

/// Refuses an outbox whose chain (when it continues under `signer_kid`) is behind what a
/// recorded witness checkpoint says the receiver has accepted: sealing on it would reuse
/// seqs. A chain of another signer is not continued (the engine starts a new one above
/// every seq used before), so it is no danger.
fn check_not_stale(
    config: &Config,
    outbox: &Outbox,
    signer_kid: &str,
    allow: bool,
) -> Result<(), DaemonError> {
    let kid = outbox.chain_kid()?;
    if kid != signer_kid {
        return Ok(());
    }
    let last = outbox.chain()?.next_seq.saturating_sub(1);
    let Some(stale) = crate::witness::check_outbox(&config.data_dir, &kid, last)? else {
        return Ok(());
    };
    if allow {
        tracing::warn!(
            signer_kid = kid,
            outbox_seq = stale.outbox_seq,
            seen_seq = stale.seen_seq,
            "--allow-stale-outbox: running on an outbox older than the receiver has seen; frames up to the seen seq reuse seqs and are refused (seq_conflict)"
        );
        return Ok(());
    }
    Err(crate::backup::BackupError::from(stale).into())
}

/// Runs until SIGINT or SIGTERM (or a fatal error), then shuts down in order.
pub async fn run_until_signal(
    config: &Config,
    allow_stale_outbox: bool,
) -> Result<(), DaemonError> {
    let portal = crate::portal::start(config).await?;
    let daemon = Daemon::start_with(config, None, allow_stale_outbox).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Task(format!("cannot watch SIGTERM: {e}")))?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tick.tick() => if daemon.is_finished() { break; },
        }
    }
    drop(portal);
    daemon.stop();
    let result = daemon.wait().await;
    match &result {
        Ok(()) => tracing::info!("stopped; outbox flushed"),
        Err(e) => tracing::error!(error = %e, "stopped with an error"),
    }
    result
}
