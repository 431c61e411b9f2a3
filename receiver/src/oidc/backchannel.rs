//! Back-channel logout delivery: a POST of `logout_token` to a configured inside URI.
//!
//! A hand-written HTTP/1.1 client over a tokio TcpStream, wrapped in rustls for `https://`
//! URIs: the receiver only ever calls URIs an operator configured, and this keeps the
//! dependency tree (and the audit) small.
//!
//! HTTPS trusts exactly the CA certificates of `oidc.backchannel_ca_file`, never the
//! system's roots: an air-gapped site runs its own CA, and a public root vouching for an
//! inside name is not a reason to hand it a logout token. The certificate must name the
//! URI's host (DNS name or IP address); TLS 1.2 and 1.3 only (rustls has nothing older).
//!
//! A logout that does not arrive leaves a revoked user signed in to that app, so failed
//! deliveries are tried again ([`RetrySchedule`]): after connection errors, timeouts, a
//! garbled answer, HTTP 5xx and 429 — not after another 4xx, where the app has refused the
//! token itself, and not after a refused certificate (see [`DeliveryError::is_transient`]).
//! Each attempt carries a freshly signed token (a logout token is valid for two minutes).
//! The deliveries waiting for their next attempt live in the store (the outbox,
//! [`crate::oidc::store::LogoutDelivery`]), so a restart resumes them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `oidc.backchannel_ca_file` cannot be used; the message names the file and says what
/// it must hold.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CaBundleError(String);

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

/// One attempt (connect, TLS handshake, request, status line) must finish within this.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A receiver's claim on a delivery lasts this long: well beyond one attempt, so only a
/// receiver that died mid-attempt loses its claim; then another one takes over.
pub const LEASE: Duration = Duration::from_secs(30);

/// Attempts in flight at once per receiver.
pub const IN_FLIGHT: usize = 32;

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

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("unsupported back-channel URI {0:?} (only http:// or https://host[:port]/path)")]
    Uri(String),
    #[error(
        "https:// back-channel URI but no oidc.backchannel_ca_file: set it to the PEM bundle of the inside CA"
    )]
    NoCaBundle,
    #[error("connecting or sending: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed: `reason` is the metric label (`tls_untrusted`,
    /// `tls_name`, `tls_expired`, `tls_handshake`).
    #[error("TLS refused ({reason}): {detail}")]
    Tls {
        reason: &'static str,
        detail: String,
    },
    #[error("timed out")]
    Timeout,
    #[error("the app answered HTTP {0}")]
    Status(u16),
    #[error("the app's answer was not HTTP")]
    Response,
}

impl DeliveryError {
    /// Whether the same request could succeed later. A refused certificate is not: it
    /// takes an operator (a new CA bundle, a new app certificate) to change, and trying
    /// again would only hand more logout tokens to whoever answers with it.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Io(_) | DeliveryError::Timeout | DeliveryError::Response => true,
            DeliveryError::Status(code) => *code >= 500 || *code == 429,
            DeliveryError::Uri(_) | DeliveryError::NoCaBundle | DeliveryError::Tls { .. } => false,
        }
    }

    /// The label of `airlock_oidc_backchannel_logout_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Uri(_) => "uri",
            DeliveryError::NoCaBundle => "no_ca_bundle",
            DeliveryError::Io(_) => "connect",
            DeliveryError::Tls { reason, .. } => reason,
            DeliveryError::Timeout => "timeout",
            DeliveryError::Status(c) if *c >= 500 => "http_5xx",
            DeliveryError::Status(_) => "http_4xx",
            DeliveryError::Response => "response",
        }
    }

    /// Every [`DeliveryError::reason`] (exported at 0 from start-up).
    pub const REASONS: &'static [&'static str] = &[
        "uri",
        "no_ca_bundle",
        "connect",
        "tls_untrusted",
        "tls_name",
        "tls_expired",
        "tls_handshake",
        "timeout",
        "http_4xx",
        "http_5xx",
        "response",
    ];
}

/// The parts of a back-channel URI a request needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Host as it goes into the TLS server name and the connect call (no brackets).
    host: url::Host<String>,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse(uri: &str) -> Result<Target, DeliveryError> {
        let bad = || DeliveryError::Uri(uri.to_string());
        let u = url::Url::parse(uri).map_err(|_| bad())?;
        let tls = match u.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad()),
        };
        if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
            return Err(bad());
        }
        let host = u.host().ok_or_else(bad)?.to_owned();
        let port = u.port_or_known_default().ok_or_else(bad)?;
        let authority = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        Ok(Target {
            tls,
            host,
            port,
            authority,
            path,
        })
    }

    fn server_name(&self) -> Result<ServerName<'static>, DeliveryError> {
        Ok(match &self.host {
            url::Host::Domain(d) => ServerName::try_from(d.clone())
                .map_err(|_| DeliveryError::Uri(self.authority.clone()))?,
            url::Host::Ipv4(a) => ServerName::IpAddress(std::net::IpAddr::V4(*a).into()),
            url::Host::Ipv6(a) => ServerName::IpAddress(std::net::IpAddr::V6(*a).into()),
        })
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        match &self.host {
            url::Host::Domain(d) => TcpStream::connect((d.as_str(), self.port)).await,
            url::Host::Ipv4(a) => TcpStream::connect((*a, self.port)).await,
            url::Host::Ipv6(a) => TcpStream::connect((*a, self.port)).await,
        }
    }
}

/// Whether `uri` is a back-channel URI this client can call (the config check).
pub fn check_uri(uri: &str) -> Result<(), String> {
    Target::parse(uri).map(|_| ()).map_err(|e| e.to_string())
}

/// What the provider's outbox worker ([`crate::oidc::outbox`]) keeps between rounds.
pub struct Outbox {
    pub transport: Transport,
    /// This process's name on the claims it takes in the (possibly shared) outbox.
    pub owner: String,
    /// Woken when a delivery is queued, finished, or due again.
    pub wake: Arc<tokio::sync::Notify>,
    /// Attempts in flight at once.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Deliveries waiting in the whole outbox when the worker last counted (the gauge).
    pub depth: std::sync::atomic::AtomicU64,
}

impl Outbox {
    pub fn new(transport: Transport, in_flight: usize) -> Outbox {
        Outbox {
            transport,
            owner: crate::oidc::util::random_token(12),
            wake: Arc::new(tokio::sync::Notify::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(in_flight)),
            depth: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// The delivery client: plain HTTP, and HTTPS trusting the configured inside CA bundle.
#[derive(Clone, Default)]
pub struct Transport {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Transport {
    /// Reads the CA bundle (`oidc.backchannel_ca_file`) once, at start-up; the error
    /// names the file and says what it must hold.
    pub fn load(ca_file: Option<&Path>) -> Result<Transport, CaBundleError> {
        let Some(path) = ca_file else {
            return Ok(Transport::default());
        };
        let fail = |what: String| {
            CaBundleError(format!(
                "oidc.backchannel_ca_file {}: {what}; give a PEM file with the certificate(s) of the inside CA \
                 that issues the apps' HTTPS certificates (-----BEGIN CERTIFICATE----- blocks)",
                path.display()
            ))
        };
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(fail("it holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| fail(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(cfg))),
        })
    }

    /// Whether an `https://` URI can be called (a CA bundle is configured).
    pub fn has_ca_bundle(&self) -> bool {
        self.tls.is_some()
    }

    /// POSTs the logout token; success is any 2xx answer.
    pub async fn deliver(&self, uri: &str, logout_token: &str) -> Result<(), DeliveryError> {
        let target = Target::parse(uri)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", logout_token)
            .finish();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\nUser-Agent: airlock-receiver\r\n\r\n{body}",
            target.path,
            target.authority,
            body.len()
        );
        let attempt = async {
            if !target.tls {
                return exchange(target.connect().await?, &request).await;
            }
            let connector = self.tls.as_ref().ok_or(DeliveryError::NoCaBundle)?;
            let name = target.server_name()?;
            let tcp = target.connect().await?;
            let tls = connector.connect(name, tcp).await.map_err(tls_error)?;
            exchange(tls, &request).await
        };
        tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
            .await
            .map_err(|_| DeliveryError::Timeout)?
    }
}

/// A failed handshake: a TLS refusal with its reason, or a plain I/O error (the app
/// closed the connection: transient).
fn tls_error(e: std::io::Error) -> DeliveryError {
    use rustls::CertificateError as C;
    let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return DeliveryError::Io(e);
    };
    let reason = match r {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => "tls_name",
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "tls_expired",
            _ => "tls_untrusted",
        },
        _ => "tls_handshake",
    };
    DeliveryError::Tls {
        reason,
        detail: r.to_string(),
    }
}

/// Writes the request and reads the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> Result<(), DeliveryError> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
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
        assert!(!DeliveryError::NoCaBundle.is_transient());
        let tls = DeliveryError::Tls {
            reason: "tls_untrusted",
            detail: String::new(),
        };
        assert!(!tls.is_transient());
        assert_eq!(tls.reason(), "tls_untrusted");
    }

    #[test]
    fn a_refused_certificate_is_told_apart_from_a_dropped_connection() {
        let cert = |c| std::io::Error::other(rustls::Error::InvalidCertificate(c));
        let r = |e: DeliveryError| e.reason();
        assert_eq!(
            r(tls_error(cert(rustls::CertificateError::UnknownIssuer))),
            "tls_untrusted"
        );
        assert_eq!(
            r(tls_error(cert(rustls::CertificateError::BadSignature))),
            "tls_untrusted"
        );
        assert_eq!(
            r(tls_error(cert(rustls::CertificateError::NotValidForName))),
            "tls_name"
        );
        assert_eq!(
            r(tls_error(cert(rustls::CertificateError::Expired))),
            "tls_expired"
        );
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert_eq!(r(tls_error(alert)), "tls_handshake");
        let reset = tls_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(reset.is_transient(), "{reset}");
        for e in DeliveryError::REASONS {
            assert!(
                e.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn uri_forms() {
        let t = Target::parse("http://127.0.0.1:9/bc?x=1").unwrap();
        assert_eq!(
            (t.tls, t.port, t.authority.as_str(), t.path.as_str()),
            (false, 9, "127.0.0.1:9", "/bc?x=1")
        );
        let t = Target::parse("http://app").unwrap();
        assert_eq!(
            (t.port, t.authority.as_str(), t.path.as_str()),
            (80, "app", "/")
        );
        let t = Target::parse("https://app.inside.example/logout").unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        assert_eq!(
            t.server_name().unwrap(),
            ServerName::try_from("app.inside.example").unwrap()
        );
        let t = Target::parse("https://[::1]:8443/bc").unwrap();
        assert_eq!(t.authority, "[::1]:8443");
        assert!(matches!(t.server_name().unwrap(), ServerName::IpAddress(_)));
        assert!(Target::parse("ftp://app/").is_err());
        assert!(Target::parse("http://u@app/").is_err());
        assert!(Target::parse("https://u:p@app/").is_err());
        assert!(check_uri("not a uri").is_err());
    }

    #[test]
    fn a_bad_ca_bundle_names_the_file_and_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        for f in [&missing, &junk] {
            let e = Transport::load(Some(f)).err().unwrap().to_string();
            assert!(e.contains(&f.display().to_string()), "{e}");
            assert!(e.contains("oidc.backchannel_ca_file"), "{e}");
            assert!(e.contains("inside CA"), "{e}");
        }
        assert!(!Transport::load(None).unwrap().has_ca_bundle());
    }
}
