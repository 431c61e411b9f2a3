//! Talking to the daemons' local ops endpoints in tests: free ports, an HTTP GET on
//! 127.0.0.1 ([`crate::http`]), Prometheus text parsing, and the clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A TCP port that was free a moment ago on 127.0.0.1 (the daemon binds it soon after).
pub fn free_tcp_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> std::io::Result<SocketAddr> {
    std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `GET path` on a loopback address: [`crate::http::get`].
pub use crate::http::{Response, get as http_get};

/// Prometheus text exposition: `name{labels}` -> value (comments and junk lines skipped).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.trim().rsplit_once(char::is_whitespace)?;
            Some((key.trim().to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of a metric whose labels contain all of `labels` (`k="v"` pairs).
pub fn metric_sum(metrics: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            let base = k.split('{').next().unwrap_or("");
            base == name
                && labels
                    .iter()
                    .all(|(lk, lv)| k.contains(&format!("{lk}=\"{lv}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let m = parse_metrics(
            "# HELP x y\n# TYPE a counter\na_total 3\nrej_total{reason=\"replay\"} 2\n\
             rej_total{reason=\"bad_cbor\",link=\"udp\"} 5\nbad line\n",
        );
        assert_eq!(m.get("a_total"), Some(&3.0));
        assert_eq!(metric_sum(&m, "rej_total", &[]), 7.0);
        assert_eq!(metric_sum(&m, "rej_total", &[("reason", "replay")]), 2.0);
        assert_eq!(metric_sum(&m, "nope", &[]), 0.0);
    }
}
