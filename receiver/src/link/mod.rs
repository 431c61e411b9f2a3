//! The link: datagrams off a UDP socket or a serial line, through the protocol's
//! [`BlockDecoder`], into the bounded ingest queue.

pub mod serial;
pub mod source_filter;
pub mod udp;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use airlock_protocol::keys::LinkKey;
use airlock_protocol::link::{BlockDecoder, DecoderConfig, LinkError};
use airlock_protocol::seal::authenticates;
use airlock_protocol::trust::TrustStore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config::LinkConfig;
use crate::ingest::Incoming;
use crate::metrics::{Metrics, RateLimiter};

#[derive(Debug, Error)]
pub enum LinkIoError {
    #[error("cannot set up the UDP socket on {addr}: {source}")]
    Udp {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "cannot open serial device {device}: {detail} (check the path, permissions and that no other program holds it)"
    )]
    Serial { device: String, detail: String },
    #[error("link.udp.allowed_sources: {0}")]
    Sources(String),
    #[error("the ingest stopped; the link has nowhere to deliver frames")]
    IngestGone,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Datagram handling shared by UDP and serial: decode, count, forward.
pub struct LinkIngress {
    decoder: BlockDecoder,
    /// The link keys: a decoded block settles its id only if one of its frames passes the
    /// AEAD under one of them (a forged block must not make the real one a duplicate).
    links: TrustStore,
    tx: mpsc::Sender<Incoming>,
    metrics: Arc<Metrics>,
    limiter: RateLimiter,
    pub max_datagram: usize,
}

impl LinkIngress {
    pub fn new(
        cfg: &LinkConfig,
        links: &[LinkKey],
        tx: mpsc::Sender<Incoming>,
        metrics: Arc<Metrics>,
        log_per_sec: u32,
    ) -> Self {
        let decoder = BlockDecoder::new(DecoderConfig {
            max_block_bytes: cfg.max_block_bytes,
            max_pending_blocks: cfg.max_pending_blocks,
            max_pending_bytes: cfg.max_pending_bytes,
            min_symbol_size: cfg.min_symbol_size,
            ..DecoderConfig::default()
        });
        let mut trust = TrustStore::new();
        for k in links {
            trust.add_link_key(k.clone());
        }
        Self {
            decoder,
            links: trust,
            tx,
            metrics,
            limiter: RateLimiter::new(log_per_sec),
            max_datagram: cfg.datagram_size,
        }
    }

    /// Takes one datagram from `source`; forwards the frames of a block it completes.
    pub async fn datagram(&mut self, bytes: &[u8], source: &str) -> Result<(), LinkIoError> {
        if bytes.len() > self.max_datagram {
            self.metrics.link_error("oversize_datagram");
            self.log_bad(
                bytes,
                source,
                "oversize_datagram",
                "datagram larger than link.datagram_size",
            );
            return Ok(());
        }
        let links = &self.links;
        let result = self
            .decoder
            .push_datagram_checked(bytes, |sealed| authenticates(sealed, links));
        self.metrics.set_link_stats(self.decoder.stats());
        match result {
            Ok(frames) => {
                let received_at_ms = now_ms();
                for sealed in frames {
                    let inc = Incoming {
                        sealed,
                        source: source.to_owned(),
                        received_at_ms,
                    };
                    self.tx
                        .send(inc)
                        .await
                        .map_err(|_| LinkIoError::IngestGone)?;
                }
            }
            Err(e) => self.log_link_error(bytes, source, &e),
        }
        Ok(())
    }

    /// Counts and logs (rate-limited) a datagram dropped before the decoder.
    pub fn refuse(&mut self, bytes: &[u8], source: &str, reason: &str) {
        self.metrics.link_error(reason);
        self.log_bad(bytes, source, reason, "datagram refused before decoding");
    }

    fn log_link_error(&mut self, bytes: &[u8], source: &str, e: &LinkError) {
        self.log_bad(bytes, source, e.reason(), &e.to_string());
    }

    /// Rate-limited warning with the datagram's source and a SHA-256 prefix.
    pub fn log_bad(&mut self, bytes: &[u8], source: &str, reason: &str, detail: &str) {
        if self.limiter.allow(now_ms()) {
            let digest = Sha256::digest(bytes);
            tracing::warn!(
                reason,
                source,
                datagram_sha256 = %hex::encode(&digest[..8]),
                len = bytes.len(),
                suppressed = self.limiter.suppressed,
                "datagram refused: {detail}"
            );
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
