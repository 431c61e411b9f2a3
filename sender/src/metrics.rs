//! Counters and gauges, and a tiny Prometheus text endpoint on a local TCP port.
//!
//! The endpoint answers every request with the metrics (GET /metrics or any path) and
//! closes the connection; there is nothing else to serve, so no HTTP framework is needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use airlock_daemon::metrics_text::{Exposition, Kind, Metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

macro_rules! metrics {
    ($($name:ident : $kind:ident, $help:literal;)*) => {
        /// Every metric the sender exports; names are `airlock_sender_<field>`.
        #[derive(Debug, Default)]
        pub struct Metrics { $(pub $name: AtomicU64,)* }

        impl Metrics {
            /// One row per metric: name, type, help and the value now.
            pub fn table(&self) -> Vec<Metric<'static>> {
                vec![$(Metric {
                    name: concat!("airlock_sender_", stringify!($name)),
                    kind: Kind::$kind,
                    help: Some($help),
                    value: self.$name.load(Relaxed),
                },)*]
            }

            /// Prometheus text exposition format 0.0.4.
            pub fn render(&self) -> String {
                let mut out = Exposition::with_capacity(4096);
                out.metrics(&self.table());
                out.finish()
            }
        }
    };
}

metrics! {
    records_ingested_total: Counter, "Accepted records moved from the spool into the outbox.";
    frames_sealed_total: Counter, "Frames signed, logged and handed to the link (new seqs).";
    provision_frames_total: Counter, "Provision frames sealed (carousel included).";
    revoke_frames_total: Counter, "Revoke frames sealed.";
    ticket_frames_total: Counter, "LoginTicket frames sealed.";
    heartbeat_frames_total: Counter, "Heartbeat frames sealed.";
    carousel_frames_total: Counter, "Provision frames re-sealed by the carousel.";
    expired_dropped_total: Counter, "Queued records dropped unsent because they expired while waiting.";
    frames_resent_total: Counter, "Logged frames re-encrypted and sent again (resend command or restart).";
    frame_repeats_total: Counter, "Extra repetitions of frames sent.";
    blocks_sent_total: Counter, "Blocks FEC-encoded and sent.";
    datagrams_sent_total: Counter, "Datagrams written to the link.";
    bytes_sent_total: Counter, "Bytes written to the link (after COBS on serial).";
    send_errors_total: Counter, "Datagrams the link refused to send.";
    spool_errors_total: Counter, "Spool files that could not be read (moved aside as .damaged).";
    storage_errors_total: Counter, "Outbox storage failures.";
    pending_records: Gauge, "Accepted records waiting to be sealed.";
    last_seq: Gauge, "The last seq sealed.";
    sent_through_seq: Gauge, "Highest seq whose first transmission has left the sender.";
    pacing_bytes_per_second: Gauge, "Configured pacing rate (0 = off).";
    backup_last_timestamp_seconds: Gauge, "Unix time of the last completed `airlock-sender backup` (0 = none; kept in data_dir/last-backup.json across restarts).";
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Serves the metrics until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read (and ignore) the request head; bounded so a slow client cannot hold memory.
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                .await;
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the metrics port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_help_type_and_value() {
        let m = Metrics::default();
        m.last_seq.store(42, Relaxed);
        let text = m.render();
        assert!(
            text.contains("# TYPE airlock_sender_last_seq gauge\nairlock_sender_last_seq 42\n")
        );
        assert!(text.contains("# TYPE airlock_sender_frames_sealed_total counter"));
    }
}
