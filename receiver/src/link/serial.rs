//! Serial: a byte stream of COBS-encoded, 0x00-delimited datagrams (the RS-232 diode).

use std::time::Duration;

use airlock_protocol::link::cobs::Deframer;
use tokio::io::AsyncReadExt;
use tokio_serial::SerialPortBuilderExt;

use super::{LinkIngress, LinkIoError};
use crate::config::SerialConfig;
use crate::metrics::LinkRefusal;

/// Opens the device as configured.
pub fn open(cfg: &SerialConfig) -> Result<tokio_serial::SerialStream, LinkIoError> {
    tokio_serial::new(cfg.device.to_string_lossy(), cfg.baud)
        .open_native_async()
        .map_err(|e| LinkIoError::Serial {
            device: cfg.device.display().to_string(),
            detail: e.to_string(),
        })
}

/// Reads the line until the ingest goes away; reopens the device after errors.
pub async fn run(
    cfg: SerialConfig,
    first: tokio_serial::SerialStream,
    mut ingress: LinkIngress,
) -> Result<(), LinkIoError> {
    let source = cfg.device.display().to_string();
    // Encoded length of the largest datagram: COBS adds one byte per 254, plus one.
    let max_encoded = ingress.max_datagram + ingress.max_datagram / 254 + 2;
    let mut port = Some(first);
    let mut buf = vec![0u8; 8192];
    loop {
        let mut stream = match port.take() {
            Some(p) => p,
            None => match open(&cfg) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "serial device unavailable; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // A fresh deframer after a reopen: a half-received datagram is lost, not glued.
        let mut deframer = Deframer::new(max_encoded);
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => {
                    tracing::warn!(device = %source, "serial line closed; reopening");
                    break;
                }
                Ok(n) => {
                    for item in deframer.push(buf.get(..n).unwrap_or_default()) {
                        match item {
                            Ok(datagram) => ingress.datagram(&datagram, &source).await?,
                            Err(e) => {
                                ingress.refuse(&[], &source, LinkRefusal::Cobs, &e.to_string())
                            }
                        }
                    }
                }
                Err(e) => {
                    ingress.refuse(
                        &[],
                        &source,
                        LinkRefusal::SerialIo,
                        &format!("serial read failed: {e}; reopening"),
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
