//! Talking to the daemons' local ops endpoints in tests: free ports, a minimal HTTP GET on
//! 127.0.0.1, and Prometheus text parsing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP port that was free a moment ago on 127.0.0.1 (the daemon binds it soon after).
pub fn free_tcp_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> std::io::Result<SocketAddr> {
    std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// A plain-HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on a loopback address (HTTP/1.0, connection closed by the server).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok(Response {
            status,
            body: body.to_string(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP GET timed out"))?
}

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

    #[tokio::test]
    async fn gets_over_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                .await
                .unwrap();
        });
        let r = http_get(addr, "/metrics").await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    }
}
