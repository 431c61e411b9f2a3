//! Which UDP source addresses may feed the decoder (`link.udp.allowed_sources`).
//!
//! The diode's output has one fixed address. Datagrams from anywhere else are dropped before
//! the decoder, so a host on the inside segment cannot take the decoder's session and block
//! slots from the real sender. This is a filter, not authentication: a source address can be
//! forged, and frames are authenticated by their AEAD tag and signature either way.

use std::net::IpAddr;

/// An address or a network (`10.0.0.5`, `10.0.0.0/24`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write an address (10.0.0.5) or a network (10.0.0.0/24, fd00::/8)";
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network: {hint}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{text}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// A dual-stack socket reports IPv4 senders as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let bits = usize::from(prefix);
    let (whole, rest) = (bits / 8, bits % 8);
    if a.get(..whole) != b.get(..whole) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(whole), b.get(whole)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

/// The allowed sources; empty allows every source.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    nets: Vec<IpNet>,
}

impl SourceFilter {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.nets.is_empty() || self.nets.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_match() {
        let one = IpNet::parse("10.0.0.5").unwrap();
        assert!(one.contains(ip("10.0.0.5")));
        assert!(!one.contains(ip("10.0.0.6")));
        let net = IpNet::parse("10.1.0.0/20").unwrap();
        assert!(net.contains(ip("10.1.15.255")));
        assert!(!net.contains(ip("10.1.16.0")));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.5")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
    }

    #[test]
    fn mapped_ipv4_senders_match_ipv4_entries() {
        let net = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(net.contains(ip("::ffff:192.0.2.9")));
    }

    #[test]
    fn bad_entries_say_how_to_write_them() {
        let e = IpNet::parse("10.0.0.300").unwrap_err();
        assert!(e.contains("10.0.0.0/24"), "{e}");
        let e = IpNet::parse("10.0.0.0/33").unwrap_err();
        assert!(e.contains("0 to 32"), "{e}");
        assert!(IpNet::parse("fd00::/129").is_err());
        assert!(IpNet::parse("host.example").is_err());
    }

    #[test]
    fn an_empty_filter_allows_everything() {
        assert!(SourceFilter::default().allows(ip("203.0.113.7")));
        let f = SourceFilter::new(vec![IpNet::parse("127.0.0.2").unwrap()]);
        assert!(f.allows(ip("127.0.0.2")));
        assert!(!f.allows(ip("127.0.0.1")));
    }
}
