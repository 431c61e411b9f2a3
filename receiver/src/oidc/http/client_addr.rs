//! The client address the per-address limits count under.
//!
//! The TCP peer, unless it is one of `oidc.trusted_proxies`: then the address that proxy
//! reports (`Forwarded: for=`, RFC 7239, else `X-Forwarded-For`), read from the right and
//! skipping further trusted proxies, so a client cannot choose its own address by writing
//! the header itself. IPv6 addresses are keyed by their /64: one host owns a whole /64
//! and can rotate within it at will.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

pub use crate::link::source_filter::IpNet as Cidr;

/// IPv4-mapped IPv6 addresses are IPv4 addresses.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The limit key of an address: the IPv4 address, or the IPv6 /64.
pub fn address_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// One `for=` value of a Forwarded element, or one X-Forwarded-For entry, as an address.
fn hop(value: &str) -> Option<IpAddr> {
    let v = value.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        // "[2001:db8::1]:4711"
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    // "192.0.2.1:4711"
    v.rsplit_once(':')
        .and_then(|(a, _)| a.parse::<std::net::Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// The hops a proxy reports, leftmost first; `None` for a hop that is not an address
/// ("unknown", an obfuscated identifier).
fn reported_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| hop(v))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(hop)
        .collect()
}

/// The address of the client behind `peer`, given the trusted proxies.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for h in reported_hops(headers).into_iter().rev() {
        match h {
            // The first address that is not a proxy of ours is the client.
            Some(ip) if !is_trusted(ip) => return ip,
            Some(ip) => client = ip,
            // A hop our proxy could not name: the last proxy is all we know.
            None => return client,
        }
    }
    client
}

/// The limit key of the client behind `peer`.
pub fn client_key(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> String {
    address_key(client_ip(peer, headers, trusted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_keyed_by_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aa::1")), "2001:db8:1:2::/64");
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(address_key(ip("192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 192.0.2.5, 10.0.0.2"),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("192.0.2.5"));
        assert_eq!(client_ip(ip("192.0.2.99"), &h, &trusted), ip("192.0.2.99"));
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https"),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        h.insert("forwarded", HeaderValue::from_static("for=unknown"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        let none = HeaderMap::new();
        assert_eq!(client_ip(ip("10.0.0.1"), &none, &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }
}
