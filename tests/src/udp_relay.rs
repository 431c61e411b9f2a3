//! A UDP relay on 127.0.0.1 that stands in for the diode: datagrams sent to its listen port
//! go to the target port through the impairment model.
//!
//! It can also record what it received and later inject datagrams straight to the target
//! (bypassing the impairments): replays of recorded ones, random noise, or forgeries with a
//! valid header and CRC. A drop filter picks out chosen datagrams (e.g. every datagram of
//! some block ids) for gap tests. Counters say what happened to every datagram.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::datagram;
use crate::impair::{ImpairConfig, ImpairError, ImpairStats, Impairer};

/// Decides, per datagram, whether to drop it before the impairment model sees it.
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// Why the relay could not start or inject.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot bind the relay on {addr}: {source} (is the port in use?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("relay addresses must be on 127.0.0.1 in tests, got {0}")]
    NotLoopback(SocketAddr),
    #[error(transparent)]
    Impair(#[from] ImpairError),
    #[error("cannot send to {target}: {source}")]
    Send {
        target: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the sender sends (port 0: pick a free one, see [`UdpRelay::local_addr`]).
    pub listen: SocketAddr,
    /// Where the receiver listens.
    pub target: SocketAddr,
    pub impair: ImpairConfig,
    /// Keep up to this many received datagrams for replay (0: record nothing).
    pub record_limit: usize,
    /// After this long without traffic, datagrams held back for reordering are released.
    pub idle_flush: Duration,
    /// Allow addresses other than loopback (the operator binary only).
    pub allow_non_loopback: bool,
}

impl RelayConfig {
    /// A perfect relay from a free loopback port to `target`.
    pub fn to(target: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            impair: ImpairConfig::default(),
            record_limit: 0,
            idle_flush: Duration::from_millis(20),
            allow_non_loopback: false,
        }
    }
}

/// Everything the relay counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// What the impairment model did (its `received` excludes filtered datagrams).
    pub impair: ImpairStats,
    /// Datagrams read from the listen socket.
    pub received: u64,
    /// Dropped by the drop filter.
    pub filtered: u64,
    /// Datagrams sent on to the target (impaired traffic only).
    pub forwarded: u64,
    /// Datagrams injected (replays and forgeries).
    pub injected: u64,
    /// Datagrams kept for replay.
    pub recorded: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
}

impl std::fmt::Display for RelayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.impair;
        write!(
            f,
            "received {} forwarded {} filtered {} lost {} (random {}, burst {} in {} bursts) \
             duplicated {} reordered {} corrupted {} injected {} send_errors {}",
            self.received,
            self.forwarded,
            self.filtered,
            i.lost(),
            i.lost_random,
            i.lost_burst,
            i.bursts,
            i.duplicated,
            i.reordered,
            i.corrupted,
            self.injected,
            self.send_errors
        )
    }
}

pub(crate) struct Shared {
    pub(crate) impairer: Impairer,
    pub(crate) filter: Option<DropFilter>,
    pub(crate) recorded: Vec<Vec<u8>>,
    pub(crate) record_limit: usize,
    pub(crate) stats: RelayStats,
}

impl Shared {
    pub(crate) fn new(impair: ImpairConfig, record_limit: usize) -> Result<Self, ImpairError> {
        Ok(Self {
            impairer: Impairer::new(impair)?,
            filter: None,
            recorded: Vec::new(),
            record_limit,
            stats: RelayStats::default(),
        })
    }

    pub(crate) fn stats(&self) -> RelayStats {
        RelayStats {
            impair: self.impairer.stats(),
            ..self.stats
        }
    }

    /// Runs one received datagram through record, filter and impairments.
    pub(crate) fn admit(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.stats.received += 1;
        if self.recorded.len() < self.record_limit {
            self.recorded.push(bytes.to_vec());
            self.stats.recorded += 1;
        }
        if let Some(filter) = self.filter.as_mut()
            && filter(bytes)
        {
            self.stats.filtered += 1;
            return Vec::new();
        }
        self.impairer.process(bytes.to_vec())
    }
}

/// A running relay. Dropping it stops it.
pub struct UdpRelay {
    local: SocketAddr,
    target: SocketAddr,
    socket: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn check_loopback(addr: SocketAddr, allow: bool) -> Result<(), RelayError> {
    if allow || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(RelayError::NotLoopback(addr))
    }
}

impl UdpRelay {
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        check_loopback(config.listen, config.allow_non_loopback)?;
        check_loopback(config.target, config.allow_non_loopback)?;
        let socket = bind_with_buffers(config.listen).map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;
        let local = socket.local_addr().map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;
        let socket = Arc::new(socket);
        let shared = Arc::new(Mutex::new(Shared::new(config.impair, config.record_limit)?));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(forward_loop(
            socket.clone(),
            shared.clone(),
            config.target,
            config.idle_flush,
            stop_rx,
        ));
        Ok(Self {
            local,
            target: config.target,
            socket,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The address the sender must send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the counters half-updated in a way
        // that matters to a test: keep going with the inner value.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> RelayStats {
        self.lock().stats()
    }

    /// Change the impairments from now on (counters and random stream carry on).
    pub fn set_impairment(&self, config: ImpairConfig) -> Result<(), RelayError> {
        Ok(self.lock().impairer.set_config(config)?)
    }

    /// Drop every datagram for which `filter` returns true, until cleared.
    pub fn set_drop_filter(&self, filter: impl FnMut(&[u8]) -> bool + Send + 'static) {
        self.lock().filter = Some(Box::new(filter));
    }

    pub fn clear_drop_filter(&self) {
        self.lock().filter = None;
    }

    /// The datagrams recorded so far (up to the record limit), in arrival order.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.lock().recorded.clone()
    }

    /// Sends raw bytes straight to the target, bypassing filter and impairments.
    pub async fn inject(&self, bytes: &[u8]) -> Result<(), RelayError> {
        self.socket
            .send_to(bytes, self.target)
            .await
            .map_err(|source| RelayError::Send {
                target: self.target,
                source,
            })?;
        self.lock().stats.injected += 1;
        Ok(())
    }

    /// Injects every recorded datagram again, in order (a replay attack on the link).
    /// Returns how many were sent.
    pub async fn replay_recorded(&self) -> Result<usize, RelayError> {
        let recorded = self.recorded();
        for d in &recorded {
            self.inject(d).await?;
            // Keep a burst of replays from overflowing the receiver's socket buffer.
            tokio::task::yield_now().await;
        }
        Ok(recorded.len())
    }

    /// Stops forwarding and waits for the relay task to end; returns the final counters.
    pub async fn stop(mut self) -> RelayStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.stats()
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A drop filter that drops every datagram (source and repair) of the given block ids,
/// in any session: with all symbols gone, no amount of FEC recovers those blocks.
pub fn drop_blocks(block_ids: impl IntoIterator<Item = u32>) -> impl FnMut(&[u8]) -> bool + Send {
    let ids: std::collections::BTreeSet<u32> = block_ids.into_iter().collect();
    move |d: &[u8]| datagram::peek(d).is_some_and(|p| ids.contains(&p.block_id))
}

/// A drop filter that drops `count` consecutive datagrams starting at the `start`-th one it
/// sees (0-based): one outage on the link.
pub fn drop_span(start: u64, count: u64) -> impl FnMut(&[u8]) -> bool + Send {
    let mut seen = 0u64;
    move |_d: &[u8]| {
        let i = seen;
        seen += 1;
        (start..start.saturating_add(count)).contains(&i)
    }
}

/// Socket buffers large enough that a burst from an unpaced sender is not dropped by the
/// kernel before the relay reads it: the relay's own losses must be the seeded ones only.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

fn bind_with_buffers(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max for non-root users.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn forward_loop(
    socket: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
    target: SocketAddr,
    idle_flush: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    // Larger than any UDP payload, so nothing is truncated.
    let mut buf = vec![0u8; 65_536];
    loop {
        let out = tokio::select! {
            _ = &mut stop => return,
            r = tokio::time::timeout(idle_flush, socket.recv_from(&mut buf)) => {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(Ok((n, _from))) => s.admit(buf.get(..n).unwrap_or_default()),
                    Ok(Err(_)) => {
                        s.stats.recv_errors += 1;
                        Vec::new()
                    }
                    Err(_idle) => s.impairer.flush(),
                }
            }
        };
        for d in out {
            let ok = socket.send_to(&d, target).await.is_ok();
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                s.stats.forwarded += 1;
            } else {
                s.stats.send_errors += 1;
            }
        }
    }
}
