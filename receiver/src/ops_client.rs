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

/// GETs `path` with a bearer token and returns the status and the body as a reader (the
/// connection closes at its end). For large answers (`/backup`) that must not be held in memory.
pub fn get_stream(
    listen: SocketAddr,
    path: &str,
    bearer: &str,
) -> std::io::Result<(u16, std::io::BufReader<TcpStream>)> {
    use std::io::BufRead as _;
    let addr = reachable(listen);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    // The headers, up to the blank line (bounded: a listener that is not ours must not make
    // this read forever).
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            return Ok((status, r));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "too many HTTP headers",
    ))
}

/// A wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
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
