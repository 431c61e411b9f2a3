//! The tests' one HTTP/1.1 client: one exchange per connection (`Connection: close`), on
//! plain-HTTP loopback addresses, with chunked bodies decoded. Hand-written on purpose: the
//! tests look at exactly what the daemons send (every header, the raw head) and send
//! requests a full client would refuse to (odd methods, missing or duplicated headers).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status, headers as sent, body (de-chunked).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and header lines, as received.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Location` header, or "".
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// The body as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// How long one exchange may take before it is an error (a hung daemon, not a slow one).
const EXCHANGE: Duration = Duration::from_secs(30);

/// One exchange with `url` (`http://ADDR/path`). A body is sent form-encoded.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("{url}: only http:// URLs are supported")))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: SocketAddr = authority.parse().map_err(|e| {
        invalid(format!(
            "{url}: the host must be an IP address and port: {e}"
        ))
    })?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(EXCHANGE, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{method} {url} timed out"),
            )
        })??;
    parse(&String::from_utf8_lossy(&raw))
}

/// `GET path` on a loopback address.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request("GET", &format!("http://{addr}{path}"), &[], None).await
}

/// A whole response as read off a closed connection.
pub fn parse(text: &str) -> std::io::Result<Response> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid(format!("no end of the response head in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("no status code in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.to_string(), v.trim_start().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        head: head.to_string(),
        headers,
        body,
    })
}

/// A chunked body (RFC 9112 section 7.1; extensions and trailers ignored).
fn dechunk(mut s: &str) -> std::io::Result<String> {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16)
            .map_err(|e| invalid(format!("chunk size {size:?}: {e}")))?;
        if n == 0 {
            break;
        }
        let chunk = rest
            .get(..n)
            .ok_or_else(|| invalid(format!("a chunk of {n} bytes is cut short")))?;
        out.push_str(chunk);
        s = rest
            .get(n..)
            .unwrap_or("")
            .strip_prefix("\r\n")
            .unwrap_or("");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r =
            parse("HTTP/1.1 302 Found\r\nLocation: /next\r\nSet-Cookie: a=1\r\n\r\nbye").unwrap();
        assert_eq!(
            (r.status, r.location(), r.body.as_str()),
            (302, "/next", "bye")
        );
        assert_eq!(r.header("set-cookie"), Some("a=1"));
        let r = parse(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "hello, world");
        assert!(
            parse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nshort\r\n").is_err()
        );
        assert!(parse("garbage").is_err());
    }

    #[tokio::test]
    async fn one_exchange_over_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&req).ends_with("a=b") {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                .await
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let r = request(
            "POST",
            &format!("http://{addr}/token"),
            &[("Origin", "http://x".into())],
            Some("a=b"),
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /token HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nOrigin: http://x\r\n"), "{req}");
        assert!(req.contains("\r\nContent-Length: 3\r\n"), "{req}");
    }
}
