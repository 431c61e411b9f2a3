//! The ops listener: `/healthz` (the store answers, heartbeats arrive), `/metrics`, the
//! live `/gaps` and `/users` that the CLI reads while the daemon holds the store,
//! `/checkpoint`: the latest signed checkpoint of the frame log (C2SP signed note, text),
//! `POST /keys/rotate` (from loopback only), which `keys rotate` uses while the daemon
//! holds the store, and `GET /backup` (loopback only, bearer token from the token file), the
//! online backup `airlock-receiver backup` takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::clock::now_ms;
use crate::metrics::{Metrics, Scrape};
use crate::reports::{GapReport, users_from_store};
use crate::store::{Store, Table, meta};

pub struct OpsState<S: Store> {
    pub metrics: Arc<Metrics>,
    pub store: Arc<S>,
    pub alarm_after_secs: u64,
    pub started_ms: u64,
    /// The OpenID provider, whose counters are appended to `/metrics`.
    pub provider: Option<crate::oidc::provider::Provider>,
    /// The sled store's export for `GET /backup`; None on PostgreSQL (pg_dump backs it up).
    pub backup: Option<Arc<crate::backup::export::BackupSource>>,
    /// The configured trust (files), for the status page's signing-key schedule.
    pub trust: crate::config::TrustConfig,
}

/// Health of the link, judged by heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok { heartbeat_age_secs: u64 },
    NoHeartbeat { silent_secs: u64 },
}

impl<S: Store> OpsState<S> {
    /// Seconds since the last heartbeat, or since start-up when none arrived since.
    pub fn silent_secs(&self, now_ms: u64) -> u64 {
        let last = self.metrics.last_heartbeat_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last.max(self.started_ms)) / 1000
    }

    /// Unhealthy once no heartbeat arrived for `alarm_after_secs` (counting from start-up
    /// when none arrived since).
    pub fn health(&self, now_ms: u64) -> Health {
        let last = self.metrics.last_heartbeat_ms.load(Ordering::Relaxed);
        let silent_secs = self.silent_secs(now_ms);
        if silent_secs > self.alarm_after_secs {
            Health::NoHeartbeat { silent_secs }
        } else if last == 0 {
            Health::Ok {
                heartbeat_age_secs: silent_secs,
            }
        } else {
            Health::Ok {
                heartbeat_age_secs: now_ms.saturating_sub(last) / 1000,
            }
        }
    }
}

pub fn router<S: Store>(state: Arc<OpsState<S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/status", get(status_page::<S>))
        .route("/gaps", get(gaps::<S>))
        .route("/users", get(users::<S>))
        .route("/checkpoint", get(checkpoint::<S>))
        .route("/checkpoints", get(checkpoints::<S>))
        .route("/keys/rotate", post(rotate_keys::<S>))
        .route("/backup", get(backup::<S>))
        .with_state(state)
}

pub async fn serve<S: Store>(listen: SocketAddr, state: Arc<OpsState<S>>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "ops listener (/healthz, /metrics) up");
    serve_on(listener, state).await
}

/// Serves the ops router on a bound listener (with the peer address `/keys/rotate` checks).
pub async fn serve_on<S: Store>(
    listener: tokio::net::TcpListener,
    state: Arc<OpsState<S>>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// What `POST /keys/rotate` answers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RotateAnswer {
    /// The new kids (published now).
    pub kids: Vec<String>,
    /// When they start signing (Unix seconds).
    pub sign_from: u64,
}

/// Starts a key rotation on the running provider. Loopback peers only: the ops listener
/// may be exposed for scraping, and a rotation is an operator's act.
async fn rotate_keys<S: Store>(
    State(s): State<Arc<OpsState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "key rotation is accepted from loopback only: run `airlock-receiver keys rotate` on the receiver host\n",
        )
            .into_response();
    }
    let Some(p) = s.provider.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "this receiver runs no OpenID provider (no [oidc] section)\n",
        )
            .into_response();
    };
    let delay = p.config().key_rotation_delay_secs;
    match tokio::task::spawn_blocking(move || p.rotate_keys_unless_pending()).await {
        Ok(Ok(Ok(kids))) => {
            let sign_from = now_ms() / 1000 + delay;
            tracing::info!(?kids, sign_from, "signing keys rotated through the ops listener");
            axum::Json(RotateAnswer { kids, sign_from }).into_response()
        }
        Ok(Ok(Err(sign_from))) => (
            StatusCode::CONFLICT,
            format!(
                "a rotation is already under way: its new keys sign from {sign_from} (Unix seconds); rotate again after that\n"
            ),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("key rotation failed: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "key rotation failed: the task stopped\n",
        )
            .into_response(),
    }
}

/// The chunks a backup's producer thread sends, as an HTTP body.
struct ChunkStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Vec<u8>, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Streams a consistent export of the sled store (see `crate::backup`). Loopback peers with
/// the token only: the export holds every private key in the store.
async fn backup<S: Store>(
    State(s): State<Arc<OpsState<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "backup refused: not from loopback");
        return (
            StatusCode::FORBIDDEN,
            "a backup is served to loopback only: run `airlock-receiver backup` on the receiver host\n",
        )
            .into_response();
    }
    let Some(src) = s.backup.clone() else {
        return (
            StatusCode::CONFLICT,
            "this receiver's store is PostgreSQL: back it up with `pg_dump --serializable-deferrable` (docs/operations.md, \"Backup and restore\")\n",
        )
            .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !src.authorized(presented) {
        tracing::warn!(%peer, "backup refused: missing or wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            "the backup token is missing or wrong: use the token file this daemon wrote at start ([ops] token_file, default <data_dir>/ops.token; it changes at every start)\n",
        )
            .into_response();
    }
    let snap_src = src.clone();
    let snap = match tokio::task::spawn_blocking(move || crate::backup::export::snapshot(&snap_src))
        .await
    {
        Ok(Ok(snap)) => snap,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "backup failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("backup failed: {e}\n"),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "backup failed: the task stopped\n",
            )
                .into_response();
        }
    };
    let header_info = snap.header.clone();
    tracing::info!(
        log_entries = header_info.log_length,
        ingest_pause_us = header_info.ingest_pause_us,
        "backup started"
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let metrics = s.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let sent =
            crate::backup::export::stream(&src, snap, |chunk| tx.blocking_send(Ok(chunk)).is_ok());
        match sent {
            Ok(sum) => {
                metrics.backups_served.fetch_add(1, Ordering::Relaxed);
                metrics
                    .backup_last_unix_secs
                    .store(now_ms() / 1000, Ordering::Relaxed);
                src.record_done(now_ms() / 1000);
                metrics
                    .backup_last_pause_us
                    .store(header_info.ingest_pause_us, Ordering::Relaxed);
                tracing::info!(
                    log_entries = header_info.log_length,
                    head = %header_info.head_hash,
                    trees = sum.trees,
                    rows = sum.rows,
                    bytes = sum.bytes,
                    ingest_pause_us = header_info.ingest_pause_us,
                    seconds = started.elapsed().as_secs_f64(),
                    "backup served"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, log_entries = header_info.log_length, "backup failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(ChunkStream(rx)),
    )
        .into_response()
}

/// How long `/healthz` waits for the store to answer before calling the node unhealthy.
const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads one small record: a receiver that cannot read its store (a PostgreSQL primary gone,
/// a dropped schema, a broken disk) must leave the load balancer's rotation.
async fn probe_store<S: Store>(store: Arc<S>) -> Result<(), String> {
    let read = tokio::task::spawn_blocking(move || store.get(Table::Meta, meta::HEAD));
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, read).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => Err("the store probe failed".into()),
        Err(_) => Err(format!(
            "no answer within {} s",
            STORE_PROBE_TIMEOUT.as_secs()
        )),
    }
}

async fn healthz<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    if let Err(e) = probe_store(s.store.clone()).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: the store cannot be read ({e}): check the database and [store] in the receiver config\n"),
        )
            .into_response();
    }
    let conflicts = s.metrics.rejected("seq_conflict");
    if conflicts > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: {conflicts} frames reuse seqs already accepted with other content (metric reason seq_conflict): \
                 the sender runs from an old backup of its outbox (or its clock was set back), and those approvals are NOT applied; \
                 stop the sender, move its outbox aside so that it starts a new chain above every seq it used, check its clock, \
                 restart it, then restart the receiver (docs/operations.md, \"Outbox lost\")\n"
            ),
        )
            .into_response();
    }
    let forged = s.metrics.link_stats().blocks_unauthenticated;
    let forged_note = if forged > 0 {
        format!(
            "; {forged} forged FEC blocks (no frame passes the AEAD) seen on the link: someone on the diode segment is injecting datagrams"
        )
    } else {
        String::new()
    };
    match s.health(now_ms()) {
        Health::Ok { heartbeat_age_secs } => (
            StatusCode::OK,
            format!("ok: last heartbeat {heartbeat_age_secs} s ago{forged_note}\n"),
        )
            .into_response(),
        Health::NoHeartbeat { silent_secs } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: no heartbeat for {silent_secs} s (alarm after {} s): check the diode, the link and the sender{forged_note}\n",
                s.alarm_after_secs
            ),
        )
            .into_response(),
    }
}

async fn metrics<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    let store_readable = probe_store(s.store.clone()).await.is_ok();
    let now = now_ms();
    let last = s.metrics.last_heartbeat_ms.load(Ordering::Relaxed);
    let mut text = s.metrics.render(&Scrape {
        heartbeat_age_secs: (last > 0).then(|| now.saturating_sub(last) / 1000),
        heartbeat_silent_secs: s.silent_secs(now),
        alarm_after_secs: s.alarm_after_secs,
        store_readable,
    });
    if let Some(p) = &s.provider {
        text.push_str(&p.metrics_text());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status_page<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    let store_readable = probe_store(s.store.clone()).await.is_ok();
    let now = now_ms();
    let (healthy, health) = match s.health(now) {
        Health::Ok { heartbeat_age_secs } => (
            store_readable,
            if !store_readable {
                "unhealthy: the store cannot be read".to_string()
            } else if s.metrics.last_heartbeat_ms.load(Ordering::Relaxed) == 0 {
                format!("ok: waiting for the first heartbeat (started {heartbeat_age_secs} s ago)")
            } else {
                format!("ok: last heartbeat {heartbeat_age_secs} s ago")
            },
        ),
        Health::NoHeartbeat { silent_secs } => (
            false,
            format!(
                "unhealthy: no heartbeat for {silent_secs} s: check the diode, the link and the sender"
            ),
        ),
    };
    let store = s.store.clone();
    let trust = s.trust.clone();
    let (counts, signers) = tokio::task::spawn_blocking(move || {
        let users = users_from_store(&*store).map(|u| u.len()).unwrap_or(0);
        let gaps = GapReport::from_store(&*store).ok();
        let keys: crate::store::records::KeySet = store
            .get(Table::Meta, meta::KEYS)
            .ok()
            .flatten()
            .and_then(|v| crate::store::decode_json(Table::Meta, meta::KEYS, &v).ok())
            .unwrap_or_default();
        let signers = crate::trust_set::BaseTrust::load(&trust)
            .map(|base| crate::trust_cmd::signer_schedule(&base, &keys))
            .unwrap_or_default();
        ((users, gaps), signers)
    })
    .await
    .unwrap_or(((0, None), Vec::new()));
    let (gap_ranges, missing_seqs) = counts.1.map_or((0, 0), |g| {
        g.signers.values().fold((0u64, 0u64), |(r, m), sg| {
            (
                r + sg.missing.len() as u64,
                m + sg.missing.iter().map(|(a, b)| b - a + 1).sum::<u64>(),
            )
        })
    });
    let last = s.metrics.last_heartbeat_ms.load(Ordering::Relaxed);
    let view = crate::status_page::StatusView {
        healthy,
        health,
        heartbeat_age_secs: (last > 0).then(|| now.saturating_sub(last) / 1000),
        alarm_after_secs: s.alarm_after_secs,
        frames_accepted: s.metrics.frames_accepted.load(Ordering::Relaxed),
        log_entries: s.metrics.log_entries.load(Ordering::Relaxed),
        gap_ranges,
        missing_seqs,
        users: counts.0,
        store_readable,
        history: s.metrics.reject_history(now),
        signers,
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::status_page::render(&view),
    )
        .into_response()
}

fn json_or_500<T: serde::Serialize>(r: Result<T, crate::store::StoreError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn gaps<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    json_or_500(GapReport::from_store(&*s.store))
}

async fn users<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    json_or_500(users_from_store(&*s.store))
}

async fn checkpoint<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    let store = s.store.clone();
    let read = tokio::task::spawn_blocking(move || crate::transparency::latest_note(&*store)).await;
    match read {
        Ok(Ok(Some(note))) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
        }
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            "no checkpoint signed yet: the log is empty, or [transparency] is disabled\n",
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the store read failed").into_response(),
    }
}

async fn checkpoints<S: Store>(State(s): State<Arc<OpsState<S>>>) -> Response {
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || crate::transparency::cmd::rows_from_store(&*store))
        .await
    {
        Ok(r) => json_or_500(r),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the store read failed").into_response(),
    }
}
