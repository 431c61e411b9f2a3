//! The link: datagrams off a UDP socket or a serial line, through the protocol's
//! [`BlockDecoder`], into the bounded ingest queue.

pub mod serial;
pub mod source_filter;
pub mod udp;

use crate::clock::now_ms;
use std::sync::Arc;

use airlock_protocol::keys::LinkKey;
use airlock_protocol::link::{BlockDecoder, DecoderConfig};
use airlock_protocol::seal::authenticates;
use airlock_protocol::trust::TrustStore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config::LinkConfig;
use crate::ingest::Incoming;
use crate::metrics::{LinkRefusal, Metrics, RateLimiter};

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
            self.refuse(
                bytes,
                source,
                LinkRefusal::OversizeDatagram,
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
            Err(e) => self.refuse(bytes, source, LinkRefusal::from(&e), &e.to_string()),
        }
        Ok(())
    }

    /// Counts a refused datagram under `reason` and logs it, rate-limited, with the same word and the datagram's source and SHA-256
    /// prefix. Every link refusal goes through here, so the metric label and the log line
    /// cannot disagree.
    pub fn refuse(&mut self, bytes: &[u8], source: &str, why: LinkRefusal, detail: &str) {
        self.metrics.link_error(why);
        let reason = why.label();
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use airlock_protocol::link::DatagramHeader;

    use super::*;
    use crate::metrics::LINK_REASONS;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn header(symbol_size: u16, block_len: u32) -> DatagramHeader {
        DatagramHeader {
            session_id: 7,
            block_id: 1,
            block_len,
            symbol_size,
            payload_id: [0; 4],
        }
    }

    /// Each refusal's log line names a reason, and the metric of that very label counted it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_refusal_is_logged_and_counted_under_the_same_word() {
        let cfg: LinkConfig = toml::from_str("datagram_size = 1200").unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::new());
        let mut ingress = LinkIngress::new(&cfg, &[], tx, metrics.clone(), 1000);
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut bad_crc = header(64, 64).write(&[0; 64]);
        bad_crc[20] ^= 1;
        let datagrams: Vec<Vec<u8>> = vec![
            vec![0; 10],                          // short_datagram
            bad_crc,                              // crc
            header(8, 64).write(&[0; 8]),         // bad_header (symbol size 8)
            header(64, u32::MAX).write(&[0; 64]), // block_too_large
            vec![0; 1201],                        // oversize_datagram
        ];
        for d in &datagrams {
            ingress.datagram(d, "192.0.2.1:9").await.unwrap();
        }
        ingress.refuse(b"x", "192.0.2.9:9", LinkRefusal::SourceNotAllowed, "test");
        ingress.refuse(&[], "/dev/null", LinkRefusal::Cobs, "test");

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("reason=").nth(1))
            .filter_map(|r| r.split_whitespace().next())
            .map(|r| r.trim_matches('"'))
            .collect();
        assert_eq!(logged.len(), datagrams.len() + 2, "{text}");
        let mut seen = std::collections::BTreeSet::new();
        for word in &logged {
            assert!(
                LINK_REASONS.contains(word),
                "logged reason {word} is no metric label"
            );
            seen.insert(*word);
        }
        for word in seen {
            let lines = logged.iter().filter(|w| **w == word).count() as u64;
            assert_eq!(
                metrics.link_errors(word),
                lines,
                "metric {word} vs its log lines:\n{text}"
            );
        }
        let rendered = metrics.render(&crate::metrics::Scrape::default());
        for r in LINK_REASONS {
            assert!(
                rendered.contains(&format!("airlock_link_errors_total{{reason=\"{r}\"}}")),
                "{r} not rendered"
            );
        }
        assert_eq!(metrics.link_errors("bad_header"), 1);
        assert_eq!(metrics.link_errors("crc"), 1);
    }
}
