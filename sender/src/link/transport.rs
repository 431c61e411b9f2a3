//! The physical side of the link: UDP (unicast or multicast) or a serial line with COBS.
//!
//! UDP sends a run of equal-size datagrams with one `sendmsg` and UDP segmentation offload
//! (UDP_SEGMENT, Linux 4.18+): the kernel (or the NIC) cuts it into the same datagrams a
//! loop of `send_to` would produce, for a fraction of the per-datagram cost. Where the
//! kernel or the route refuses it, the transport falls back to one datagram per call.

use std::net::{Ipv4Addr, SocketAddr};

use airlock_protocol::link::cobs;
use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::config::{LinkConfig, Parity, SerialConfig, UdpConfig};

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot open UDP socket {bind} for target {target}: {error}")]
    Udp {
        bind: SocketAddr,
        target: SocketAddr,
        error: std::io::Error,
    },
    #[error(
        "cannot open serial device {device}: {error} (check the device path and that no other process uses it)"
    )]
    Serial { device: String, error: String },
    #[error("the link config names neither [link.udp] nor [link.serial]")]
    NoLink,
}

/// At most this many datagrams per segmented send (the kernel allows 64 on older kernels).
const MAX_SEGMENTS: usize = 64;
/// At most this many payload bytes per segmented send (one IP datagram's worth).
const MAX_SEGMENTED_BYTES: usize = 65_000;

/// What one [`Transport::send`] did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Datagrams that went out, and their bytes on the wire (COBS included on serial).
    pub datagrams: usize,
    pub wire_bytes: usize,
    /// Datagrams that could not be sent, and the last error.
    pub failed: usize,
    pub error: Option<std::io::Error>,
}

/// Where datagrams go.
pub enum Transport {
    Udp {
        socket: UdpSocket,
        target: SocketAddr,
        /// Whether segmented sends are still tried (cleared at the first refusal).
        segmentation: bool,
    },
    /// A byte stream (serial device, or a pty in tests): COBS-framed, 0x00-delimited.
    Stream(Box<dyn AsyncWrite + Unpin + Send>),
}

impl Transport {
    /// Opens the configured link.
    pub async fn open(config: &LinkConfig) -> Result<Self, TransportError> {
        if let Some(udp) = &config.udp {
            return open_udp(udp).await;
        }
        if let Some(serial) = &config.serial {
            return open_serial(serial);
        }
        Err(TransportError::NoLink)
    }

    /// How many bytes one datagram takes on the wire (what pacing counts).
    pub fn wire_len(&self, datagram: &[u8]) -> usize {
        match self {
            Transport::Udp { .. } => datagram.len(),
            // A serial line is slow: encoding twice costs nothing next to its byte time.
            Transport::Stream(_) => cobs::frame(datagram).len(),
        }
    }

    /// How many of the leading `datagrams` one [`Self::send`] can carry.
    pub fn batch_len(&self, datagrams: &[Vec<u8>]) -> usize {
        match self {
            Transport::Udp {
                segmentation: true, ..
            } => segmentable_run(datagrams),
            _ => datagrams.len().min(1),
        }
    }

    /// Sends `datagrams` (at most [`Self::batch_len`] of them, else one by one). A datagram
    /// that fails does not keep the others from going out.
    pub async fn send(&mut self, datagrams: &[Vec<u8>]) -> Sent {
        let mut report = Sent::default();
        if let Transport::Udp {
            socket,
            target,
            segmentation: segmentation @ true,
        } = self
            && datagrams.len() > 1
        {
            match send_segmented(socket, *target, datagrams).await {
                Ok(()) => {
                    report.datagrams = datagrams.len();
                    report.wire_bytes = datagrams.iter().map(Vec::len).sum();
                    return report;
                }
                Err(e) if segmentation_refused(&e) => {
                    *segmentation = false;
                    tracing::info!(error = %e, "UDP segmentation offload refused; sending one datagram per call");
                }
                // Another error (a full buffer, say): this run goes one by one.
                Err(_) => {}
            }
        }
        for d in datagrams {
            let wire = match self {
                Transport::Udp { socket, target, .. } => socket.send_to(d, *target).await,
                Transport::Stream(w) => {
                    let framed = cobs::frame(d);
                    w.write_all(&framed).await.map(|()| framed.len())
                }
            };
            match wire {
                Ok(n) => {
                    report.datagrams += 1;
                    report.wire_bytes += n;
                }
                Err(e) => {
                    report.failed += 1;
                    report.error = Some(e);
                }
            }
        }
        report
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Udp { .. } => Ok(()),
            Transport::Stream(w) => w.flush().await,
        }
    }
}

async fn open_udp(udp: &UdpConfig) -> Result<Transport, TransportError> {
    let bind = udp.bind.unwrap_or_else(|| match udp.target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    });
    let err = |error| TransportError::Udp {
        bind,
        target: udp.target,
        error,
    };
    let socket = UdpSocket::bind(bind).await.map_err(err)?;
    if udp.target.ip().is_multicast() {
        let ttl = udp.multicast_ttl.unwrap_or(1);
        match udp.target {
            SocketAddr::V4(_) => {
                socket.set_multicast_ttl_v4(ttl).map_err(err)?;
                if let Some(interface) = udp.multicast_interface {
                    set_multicast_interface(&socket, interface).map_err(err)?;
                }
                socket.set_multicast_loop_v4(true).ok();
            }
            // The config refuses multicast_interface for IPv6 groups: the route picks it.
            SocketAddr::V6(_) => {
                let sock = socket2::SockRef::from(&socket);
                sock.set_multicast_hops_v6(ttl).map_err(err)?;
                sock.set_multicast_loop_v6(true).ok();
            }
        }
    }
    Ok(Transport::Udp {
        socket,
        target: udp.target,
        segmentation: true,
    })
}

/// The length of the leading run that one segmented send can carry: every datagram but
/// the last as long as the first, the last no longer, within the kernel's limits.
fn segmentable_run(datagrams: &[Vec<u8>]) -> usize {
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    let limit = MAX_SEGMENTS.min(MAX_SEGMENTED_BYTES / size.max(1)).max(1);
    let mut n = 1;
    while n < datagrams.len().min(limit) && datagrams[n].len() <= size {
        n += 1;
        if datagrams[n - 1].len() < size {
            break; // a shorter datagram can only come last
        }
    }
    n
}

/// One `sendmsg` of `datagrams` (a [`segmentable_run`]) with UDP_SEGMENT set to the size
/// of the first: the kernel sends them as separate datagrams.
async fn send_segmented(
    socket: &UdpSocket,
    target: SocketAddr,
    datagrams: &[Vec<u8>],
) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;
    let first = datagrams.first().map_or(0, Vec::len);
    let size = u16::try_from(first).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let slices: Vec<std::io::IoSlice> =
        datagrams.iter().map(|d| std::io::IoSlice::new(d)).collect();
    let addr = SockaddrStorage::from(target);
    let fd = socket.as_raw_fd();
    socket
        .async_io(tokio::io::Interest::WRITABLE, || {
            let cmsg = [ControlMessage::UdpGsoSegments(&size)];
            sendmsg(fd, &slices, &cmsg, MsgFlags::empty(), Some(&addr))
                .map(|_| ())
                .map_err(std::io::Error::from)
        })
        .await
}

/// Errors that mean "this kernel or route does not do UDP segmentation", not a failed send.
/// EMSGSIZE / EINVAL come back when a segment does not fit the route's MTU: plain sends of
/// the same datagrams still work (the kernel fragments them), segmented ones never will.
fn segmentation_refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc_errno::EIO
                | libc_errno::EINVAL
                | libc_errno::EMSGSIZE
                | libc_errno::ENOPROTOOPT
                | libc_errno::EOPNOTSUPP
        )
    )
}

/// The errno values [`segmentation_refused`] looks for.
mod libc_errno {
    use nix::errno::Errno;
    pub const EIO: i32 = Errno::EIO as i32;
    pub const EINVAL: i32 = Errno::EINVAL as i32;
    pub const EMSGSIZE: i32 = Errno::EMSGSIZE as i32;
    pub const ENOPROTOOPT: i32 = Errno::ENOPROTOOPT as i32;
    pub const EOPNOTSUPP: i32 = Errno::EOPNOTSUPP as i32;
}

/// tokio has no setter for IP_MULTICAST_IF; socket2 (tokio's own socket layer) has.
fn set_multicast_interface(socket: &UdpSocket, interface: Ipv4Addr) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_multicast_if_v4(&interface)
}

fn open_serial(serial: &SerialConfig) -> Result<Transport, TransportError> {
    use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};
    let data_bits = match serial.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let parity = match serial.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = if serial.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    let port = tokio_serial::new(&serial.device, serial.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|e| TransportError::Serial {
            device: serial.device.clone(),
            error: e.to_string(),
        })?;
    Ok(Transport::Stream(Box::new(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multicast(target: &str, ttl: u32) -> UdpConfig {
        UdpConfig {
            target: target.parse().unwrap(),
            bind: None,
            multicast_ttl: Some(ttl),
            multicast_interface: None,
        }
    }

    fn sizes(lens: &[usize]) -> Vec<Vec<u8>> {
        lens.iter().map(|&n| vec![0u8; n]).collect()
    }

    #[test]
    fn a_segmentable_run_is_equal_sizes_then_at_most_one_shorter() {
        assert_eq!(segmentable_run(&sizes(&[])), 0);
        assert_eq!(segmentable_run(&sizes(&[100])), 1);
        assert_eq!(segmentable_run(&sizes(&[100, 100, 100])), 3);
        assert_eq!(
            segmentable_run(&sizes(&[100, 100, 40, 100])),
            3,
            "shorter ends it"
        );
        assert_eq!(
            segmentable_run(&sizes(&[100, 120, 100])),
            1,
            "longer cannot follow"
        );
        assert_eq!(segmentable_run(&sizes(&[10; 100])), MAX_SEGMENTS);
        let big = segmentable_run(&sizes(&[1472; 100]));
        assert_eq!(big, MAX_SEGMENTED_BYTES / 1472, "within one IP datagram");
    }

    /// A run sent in one call arrives as the same separate datagrams, in order, and the
    /// kernel here accepts segmentation (so the fast path is the one tested).
    #[tokio::test]
    async fn a_segmented_send_arrives_as_separate_datagrams() {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let config = UdpConfig {
            target: sink.local_addr().unwrap(),
            bind: None,
            multicast_ttl: None,
            multicast_interface: None,
        };
        let mut transport = open_udp(&config).await.unwrap();
        let datagrams: Vec<Vec<u8>> = (0..7u8)
            .map(|i| vec![i; if i == 6 { 300 } else { 1200 }])
            .collect();
        assert_eq!(transport.batch_len(&datagrams), 7);
        let sent = transport.send(&datagrams).await;
        assert_eq!((sent.datagrams, sent.failed), (7, 0), "{:?}", sent.error);
        assert_eq!(sent.wire_bytes, 6 * 1200 + 300);
        let mut buf = vec![0u8; 2048];
        for expected in &datagrams {
            let n = sink.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], expected.as_slice());
        }
        let Transport::Udp { segmentation, .. } = transport else {
            panic!("not UDP")
        };
        assert!(segmentation, "the kernel refused UDP_SEGMENT on loopback");
    }

    /// A line whose second write fails.
    struct SecondWriteFails(usize);

    impl AsyncWrite for SecondWriteFails {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0 += 1;
            std::task::Poll::Ready(match self.0 {
                2 => Err(std::io::Error::other("line down")),
                _ => Ok(buf.len()),
            })
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// One failed datagram is counted as failed; the others still go, counted in wire bytes.
    #[tokio::test]
    async fn a_failed_datagram_does_not_stop_the_others() {
        let mut line = Transport::Stream(Box::new(SecondWriteFails(0)));
        let datagrams = sizes(&[10, 20, 30]);
        let sent = line.send(&datagrams).await;
        assert_eq!((sent.datagrams, sent.failed), (2, 1));
        let framed = cobs::frame(&datagrams[0]).len() + cobs::frame(&datagrams[2]).len();
        assert_eq!(sent.wire_bytes, framed);
        assert_eq!(
            sent.error.map(|e| e.to_string()).as_deref(),
            Some("line down")
        );
    }

    /// The TTL (IPv4) or hop limit (IPv6) configured is the one the socket carries.
    #[tokio::test]
    async fn multicast_ttl_and_hop_limit_reach_the_socket() {
        let Transport::Udp { socket, .. } =
            open_udp(&multicast("239.1.2.3:7400", 3)).await.unwrap()
        else {
            panic!("not a UDP transport")
        };
        assert_eq!(socket.multicast_ttl_v4().unwrap(), 3);
        let Transport::Udp { socket, .. } =
            open_udp(&multicast("[ff05::1:3]:7400", 5)).await.unwrap()
        else {
            panic!("not a UDP transport")
        };
        let hops = socket2::SockRef::from(&socket).multicast_hops_v6().unwrap();
        assert_eq!(hops, 5);
    }
}
