//! A serial line with the return wire cut, made of two pseudo-terminals and a relay.
//!
//! ```text
//! airlock-sender --> [sender_device] pty A (master) --relay--> pty B (master) [receiver_device] --> airlock-receiver
//! ```
//! The sender opens `sender_device` and the receiver `receiver_device` by path, as they would
//! open `/dev/ttyS0`. The relay splits the byte stream on 0x00 (the COBS frame delimiter),
//! runs each frame through the same impairment model as the UDP relay (so a corrupted byte
//! hits the COBS encoding, as line noise would), and writes it on with its delimiter.
//!
//! The harness keeps both pty slave ends open itself, so the ptys survive a child's restart
//! (without it the master reads EIO while no child has the device open). It never reads them.
//! A child that opens its device in exclusive mode (serialport's default, TIOCEXCL) leaves
//! the tty exclusive when it dies, because the harness still holds it: restarting that child
//! works as root (CAP_SYS_ADMIN passes TIOCEXCL), which the tests and CI are. Clearing the flag
//! from here would need the harness to take a flock that then blocks the restarted child.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_serial::{SerialPort, SerialStream};

use crate::impair::{ImpairConfig, ImpairError};
use crate::udp_relay::{RelayStats, Shared};

#[derive(Debug, thiserror::Error)]
pub enum SerialPathError {
    #[error("cannot create a pseudo-terminal pair: {0} (is /dev/ptmx available?)")]
    Pty(#[from] tokio_serial::Error),
    #[error("the pseudo-terminal has no device path")]
    NoPath,
    #[error(transparent)]
    Impair(#[from] ImpairError),
}

#[derive(Debug, Clone)]
pub struct SerialPathConfig {
    pub impair: ImpairConfig,
    /// Keep up to this many frames (without delimiter) for replay.
    pub record_limit: usize,
    /// A run of bytes longer than this without a delimiter is discarded (line garbage).
    pub max_frame: usize,
    /// A frame the receiver side cannot take within this time is dropped (a diode does not
    /// wait for the receiver), counted in `send_errors`.
    pub write_timeout: Duration,
    pub idle_flush: Duration,
}

impl Default for SerialPathConfig {
    fn default() -> Self {
        Self {
            impair: ImpairConfig::default(),
            record_limit: 0,
            max_frame: 64 * 1024,
            write_timeout: Duration::from_millis(500),
            idle_flush: Duration::from_millis(20),
        }
    }
}

/// A running serial path. Dropping it stops the relay and closes the ptys.
pub struct SerialPath {
    sender_device: PathBuf,
    receiver_device: PathBuf,
    shared: Arc<Mutex<Shared>>,
    inject_tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    /// Held open so the ptys outlive a child's restart; never read.
    _slaves: Vec<SerialStream>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn pty_pair() -> Result<(SerialStream, SerialStream, PathBuf), SerialPathError> {
    let (master, slave) = SerialStream::pair()?;
    let path = slave.name().ok_or(SerialPathError::NoPath)?;
    Ok((master, slave, PathBuf::from(path)))
}

impl SerialPath {
    pub fn start(config: SerialPathConfig) -> Result<Self, SerialPathError> {
        let (tx_master, tx_slave, sender_device) = pty_pair()?;
        let (rx_master, rx_slave, receiver_device) = pty_pair()?;
        let shared = Arc::new(Mutex::new(Shared::new(config.impair, config.record_limit)?));
        let (stop_tx, stop_rx) = oneshot::channel();
        let (inject_tx, inject_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(relay_loop(
            tx_master,
            rx_master,
            shared.clone(),
            config,
            inject_rx,
            stop_rx,
        ));
        Ok(Self {
            sender_device,
            receiver_device,
            shared,
            inject_tx,
            _slaves: vec![tx_slave, rx_slave],
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The device the sender writes to.
    pub fn sender_device(&self) -> &std::path::Path {
        &self.sender_device
    }

    /// The device the receiver reads from.
    pub fn receiver_device(&self) -> &std::path::Path {
        &self.receiver_device
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> RelayStats {
        self.lock().stats()
    }

    pub fn set_impairment(&self, config: ImpairConfig) -> Result<(), ImpairError> {
        self.lock().impairer.set_config(config)
    }

    pub fn set_drop_filter(&self, filter: impl FnMut(&[u8]) -> bool + Send + 'static) {
        self.lock().filter = Some(Box::new(filter));
    }

    pub fn clear_drop_filter(&self) {
        self.lock().filter = None;
    }

    /// Frames recorded so far, COBS-encoded, without their delimiter.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.lock().recorded.clone()
    }

    /// Writes raw bytes, then a delimiter, to the receiver side (bypassing impairments).
    pub fn inject_frame(&self, frame: Vec<u8>) {
        if self.inject_tx.send(frame).is_ok() {
            self.lock().stats.injected += 1;
        }
    }

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

impl Drop for SerialPath {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Splits a byte stream on 0x00; a frame longer than `max` is discarded up to its delimiter.
struct Splitter {
    buf: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl Splitter {
    fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for &b in bytes {
            if b == 0 {
                if !self.overflowed && !self.buf.is_empty() {
                    frames.push(std::mem::take(&mut self.buf));
                }
                self.buf.clear();
                self.overflowed = false;
            } else if self.buf.len() >= self.max {
                self.overflowed = true;
                self.buf.clear();
            } else if !self.overflowed {
                self.buf.push(b);
            }
        }
        frames
    }
}

async fn relay_loop(
    mut from: SerialStream,
    mut to: SerialStream,
    shared: Arc<Mutex<Shared>>,
    config: SerialPathConfig,
    mut inject: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut splitter = Splitter {
        buf: Vec::new(),
        max: config.max_frame,
        overflowed: false,
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let out: Vec<Vec<u8>> = tokio::select! {
            _ = &mut stop => return,
            Some(frame) = inject.recv() => vec![frame],
            r = tokio::time::timeout(config.idle_flush, from.read(&mut buf)) => {
                let (out, pause) = {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(Ok(n)) if n > 0 => {
                            let frames = splitter.push(buf.get(..n).unwrap_or_default());
                            (frames.iter().flat_map(|f| s.admit(f)).collect(), false)
                        }
                        Ok(_) => {
                            // EOF or EIO: nobody has the device open right now.
                            s.stats.recv_errors += 1;
                            (Vec::new(), true)
                        }
                        Err(_idle) => (s.impairer.flush(), false),
                    }
                };
                if pause {
                    tokio::time::sleep(config.idle_flush).await;
                }
                out
            }
        };
        for mut frame in out {
            frame.push(0);
            let sent = tokio::time::timeout(config.write_timeout, to.write_all(&frame)).await;
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            match sent {
                Ok(Ok(())) => s.stats.forwarded += 1,
                _ => s.stats.send_errors += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_frames_on_zero_and_drops_oversized() {
        let mut s = Splitter {
            buf: Vec::new(),
            max: 4,
            overflowed: false,
        };
        assert_eq!(s.push(&[1, 2, 0, 0, 3]), vec![vec![1, 2]]);
        assert_eq!(s.push(&[4, 0]), vec![vec![3, 4]]);
        assert!(s.push(&[1, 2, 3, 4, 5, 6]).is_empty());
        assert_eq!(s.push(&[7, 0, 8, 0]), vec![vec![8]]);
    }
}
