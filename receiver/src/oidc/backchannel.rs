//! Back-channel logout delivery: a POST of `logout_token` to a configured inside URI.
//!
//! A hand-written HTTP/1.1 client over a tokio TcpStream: the receiver only ever calls
//! URIs an operator configured, and this keeps the dependency tree (and the audit) small.
//!
//! A logout that does not arrive leaves a revoked user signed in to that app, so failed
//! deliveries are tried again ([`RetrySchedule`]): after connection errors, timeouts, a
//! garbled answer, HTTP 5xx and 429 — not after another 4xx, where the app has refused the
//! token itself. Each attempt carries a freshly signed token (a logout token is valid for
//! two minutes). Retries live in memory: a receiver restart drops those still waiting.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::oidc::util::url_encode;

/// How often, and how far apart, a failed delivery is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Attempts in all, the first included (1 = never retry).
    pub attempts: u32,
    /// Wait before the second attempt; it doubles each time, up to [`MAX_RETRY_DELAY`].
    pub first_delay: Duration,
}

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

impl RetrySchedule {
    /// The wait before attempt `n` (1-based; attempt 1 goes at once), or None after the last.
    pub fn delay_before(&self, n: u32) -> Option<Duration> {
        match n {
            0 => None,
            1 => Some(Duration::ZERO),
            n if n > self.attempts => None,
            n => {
                let doublings = (n - 2).min(16);
                Some((self.first_delay * (1 << doublings)).min(MAX_RETRY_DELAY))
            }
        }
    }
}

impl DeliveryError {
    /// Whether the same request could succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Io(_) | DeliveryError::Timeout | DeliveryError::Response => true,
            DeliveryError::Status(code) => *code >= 500 || *code == 429,
            DeliveryError::Uri(_) => false,
        }
    }
}

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("unsupported back-channel URI {0:?} (only http://host:port/path)")]
    Uri(String),
    #[error("connecting or sending: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the app answered HTTP {0}")]
    Status(u16),
    #[error("the app's answer was not HTTP")]
    Response,
}

/// Splits `http://host[:port]/path` into (host:port, host, path).
fn split_uri(uri: &str) -> Result<(String, String, String), DeliveryError> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or_else(|| DeliveryError::Uri(uri.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or("/"),
        ),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(DeliveryError::Uri(uri.to_string()));
    }
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// POSTs the logout token; success is any 2xx answer.
pub async fn deliver(uri: &str, logout_token: &str) -> Result<(), DeliveryError> {
    let (addr, host, path) = split_uri(uri)?;
    let body = format!("logout_token={}", url_encode(logout_token));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: airlock-receiver\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let mut n = 0;
        // Only the status line matters.
        while n < 12 {
            let got = s.read(head.get_mut(n..).unwrap_or_default()).await?;
            if got == 0 {
                break;
            }
            n += got;
        }
        let line = String::from_utf8_lossy(head.get(..n).unwrap_or_default()).into_owned();
        let status = line
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or(DeliveryError::Response)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| DeliveryError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_stops_after_the_last_attempt() {
        let s = RetrySchedule {
            attempts: 12,
            first_delay: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (1..=13)
            .map_while(|n| s.delay_before(n))
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        assert_eq!(s.delay_before(0), None);
        let once = RetrySchedule { attempts: 1, ..s };
        assert_eq!(once.delay_before(2), None);
    }

    #[test]
    fn only_failures_that_may_pass_later_are_retried() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(DeliveryError::Io(io).is_transient());
        assert!(DeliveryError::Timeout.is_transient());
        assert!(DeliveryError::Response.is_transient());
        assert!(DeliveryError::Status(503).is_transient());
        assert!(DeliveryError::Status(429).is_transient());
        assert!(!DeliveryError::Status(400).is_transient());
        assert!(!DeliveryError::Status(404).is_transient());
        assert!(!DeliveryError::Uri("ftp://x".into()).is_transient());
    }

    #[test]
    fn uri_forms() {
        assert_eq!(
            split_uri("http://127.0.0.1:9/bc?x=1").unwrap(),
            ("127.0.0.1:9".into(), "127.0.0.1:9".into(), "/bc?x=1".into())
        );
        assert_eq!(split_uri("http://app").unwrap().0, "app:80");
        assert!(split_uri("https://app/").is_err());
        assert!(split_uri("http://u@app/").is_err());
    }
}
