//! The accept loop of both daemons' web listeners (the receiver's OpenID provider, the
//! sender's portal), bounded against slow and idle clients: at most
//! `max_connections` connections are served at once (further ones wait in the kernel's
//! backlog, holding no descriptor of ours, until one ends), a connection must send its
//! request head within `header_read_timeout_secs` (also when idle between keep-alive
//! requests), and a request must be answered within `request_timeout_secs` (a body that
//! trickles in is cut off with 408).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum_server::accept::{Accept, DefaultAcceptor};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Counts what the limits did (`connection_cap`, `header_timeout`, `request_timeout`).
pub type OnLimit = Arc<dyn Fn(&'static str) + Send + Sync>;

/// How long to pause accepting after an accept error (out of descriptors): a tight loop
/// would only burn the CPU the other connections need to finish.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a connection has to send its request head.
    pub header_read_timeout: Duration,
    /// Time a request has to be answered.
    pub request_timeout: Duration,
}

/// Serves `app` over plain TCP on `listener` within `limits`, until dropped. `service`
/// names the listener in the log ("portal", "OpenID provider").
pub async fn serve(
    service: &'static str,
    on_limit: OnLimit,
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
) -> std::io::Result<()> {
    serve_with::<DefaultAcceptor>(service, on_limit, listener, app, limits, None).await
}

/// Like [`serve`], each connection first handed to `tls` (a TLS acceptor such as
/// `axum_server::tls_rustls::RustlsAcceptor`) when one is given.
pub async fn serve_with<A>(
    service: &'static str,
    on_limit: OnLimit,
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<A>,
) -> std::io::Result<()>
where
    A: Accept<TcpStream, ()> + Clone + Send + Sync + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Future: Send,
    A::Service: Send,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                on_limit("connection_cap");
                tracing::warn!(
                    max = limits.max_connections,
                    "{service} at its connection cap; new connections wait"
                );
                match slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return Ok(()),
                }
            }
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (app, on_limit, tls) = (app.clone(), on_limit.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(on_limit, tcp, peer, app, limits).await,
                Some(acceptor) => match acceptor.accept(tcp, ()).await {
                    Ok((stream, _)) => connection(on_limit, stream, peer, app, limits).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                },
            }
        });
    }
}

/// One HTTP/1.1 connection.
async fn connection<S>(
    on_limit: OnLimit,
    io: S,
    peer: SocketAddr,
    app: axum::Router,
    limits: Limits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(app);
    let counted = on_limit.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = hyper::service::Service::call(&inner, req);
            let on_limit = counted.clone();
            async move {
                match tokio::time::timeout(limits.request_timeout, answer).await {
                    Ok(r) => r,
                    Err(_) => {
                        on_limit("request_timeout");
                        tracing::info!(%peer, "request not complete within the request timeout");
                        let mut r = (
                            StatusCode::REQUEST_TIMEOUT,
                            "The request took too long to arrive.\n",
                        )
                            .into_response();
                        r.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        Ok(r)
                    }
                }
            }
        });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        if e.is_timeout() {
            on_limit("header_timeout");
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
