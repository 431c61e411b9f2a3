//! UDP: unicast or multicast, with a large receive buffer (a diode has no back-pressure:
//! the kernel buffer is what absorbs bursts while the verifier catches up).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::source_filter::SourceFilter;
use super::{LinkIngress, LinkIoError};
use crate::config::{Ipv6Interface, MulticastJoin, UdpConfig};
use crate::metrics::LinkRefusal;

/// Binds the socket as configured; warns when the kernel grants less buffer than asked.
pub fn bind(cfg: &UdpConfig) -> Result<UdpSocket, LinkIoError> {
    let addr = cfg.listen;
    let err = |source| LinkIoError::Udp {
        addr: addr.to_string(),
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if cfg.multicast_group.is_some() {
        // Several receivers on one host may listen to the same group and port.
        socket.set_reuse_address(true).map_err(err)?;
    }
    socket
        .set_recv_buffer_size(cfg.receive_buffer_bytes)
        .map_err(err)?;
    let granted = socket.recv_buffer_size().map_err(err)?;
    // Linux reports twice the usable size it granted; anything below the request means a cap.
    if granted < cfg.receive_buffer_bytes {
        tracing::warn!(
            requested = cfg.receive_buffer_bytes,
            granted,
            "the kernel capped the UDP receive buffer: bursts may be dropped before the receiver sees them; \
             raise it with `sysctl -w net.core.rmem_max={}`",
            cfg.receive_buffer_bytes
        );
    } else {
        tracing::info!(
            requested = cfg.receive_buffer_bytes,
            granted,
            "UDP receive buffer set"
        );
    }
    let join = cfg
        .multicast_join()
        .map_err(|(key, problem)| err(std::io::Error::other(format!("{key}: {problem}"))))?;
    // Bind the group's port on any address so the group's datagrams are delivered.
    let bind_addr = match &join {
        Some(MulticastJoin::V4 { .. }) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())),
        Some(MulticastJoin::V6 { .. }) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port())),
        None => addr,
    };
    socket.bind(&bind_addr.into()).map_err(err)?;
    match join {
        Some(MulticastJoin::V4 { group, interface }) => {
            socket.join_multicast_v4(&group, &interface).map_err(err)?;
            tracing::info!(%group, iface = %interface, "joined multicast group");
        }
        Some(MulticastJoin::V6 { group, interface }) => {
            let index = interface_index(interface.as_ref()).map_err(err)?;
            socket.join_multicast_v6(&group, index).map_err(err)?;
            tracing::info!(%group, iface = index, "joined multicast group");
        }
        None => {}
    }
    socket.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(socket.into()).map_err(err)
}

/// The index of the interface an IPv6 join names (0: the one the route picks).
fn interface_index(interface: Option<&Ipv6Interface>) -> std::io::Result<u32> {
    match interface {
        None => Ok(0),
        Some(Ipv6Interface::Index(index)) => Ok(*index),
        Some(Ipv6Interface::Name(name)) => nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| {
            std::io::Error::other(format!(
                "no network interface named {name:?} ({e}): check link.udp.multicast_interface against `ip link`"
            ))
        }),
    }
}

/// Reads datagrams until the ingest goes away; only `sources` reach the decoder.
pub async fn run(
    socket: UdpSocket,
    mut ingress: LinkIngress,
    sources: SourceFilter,
) -> Result<(), LinkIoError> {
    // One byte more than allowed, so an oversize datagram is recognised, not truncated.
    let mut buf = vec![0u8; ingress.max_datagram + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let bytes = buf.get(..n).unwrap_or_default();
                if sources.allows(from.ip()) {
                    ingress.datagram(bytes, &from.to_string()).await?;
                } else {
                    ingress.refuse(
                        bytes,
                        &from.to_string(),
                        LinkRefusal::SourceNotAllowed,
                        "source is not in link.udp.allowed_sources",
                    );
                }
            }
            Err(e) => {
                // ICMP errors and the like: log and go on; the socket stays usable.
                tracing::warn!(error = %e, "UDP receive failed");
            }
        }
    }
}
