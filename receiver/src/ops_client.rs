//! A tiny HTTP/1.0 client for the daemon's own ops listener (loopback), used by the CLI
//! when the daemon holds the store. No HTTP client dependency for one request.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// GETs `path`; returns (status, body).
pub fn get(listen: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(listen, "GET", path)
}

/// POSTs an empty body to `path`; returns (status, body).
pub fn post(listen: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(listen, "POST", path)
}

fn request(listen: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    // A wildcard listen address is reached on loopback.
    let addr = if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    Ok((status, body.to_owned()))
}
