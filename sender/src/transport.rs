//! The physical side of the link: UDP (unicast or multicast) or a serial line with COBS.

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

/// Where datagrams go.
pub enum Transport {
    Udp {
        socket: UdpSocket,
        target: SocketAddr,
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

    /// The bytes that will go on the wire for one datagram (what pacing counts).
    pub fn wire_bytes(&self, datagram: &[u8]) -> Vec<u8> {
        match self {
            Transport::Udp { .. } => datagram.to_vec(),
            Transport::Stream(_) => cobs::frame(datagram),
        }
    }

    /// Sends wire bytes from [`Self::wire_bytes`].
    pub async fn send(&mut self, wire: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Udp { socket, target } => socket.send_to(wire, *target).await.map(|_| ()),
            Transport::Stream(w) => w.write_all(wire).await,
        }
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
    })
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
