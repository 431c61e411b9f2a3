//! The portal's outbound HTTP client (the outside side has a network): hyper-util over
//! rustls with the system's root certificates. It never follows redirects (openidconnect
//! requires that, against SSRF), bounds every response and every request's time, and
//! refuses plain http unless the config allows it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use thiserror::Error;

/// Largest response body read (discovery documents and JWKS are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot load the system's root certificates: {0} (install ca-certificates)")]
    Roots(std::io::Error),
    #[error(
        "{url}: plain http is refused; use https (or portal.allow_plain_http for loopback tests)"
    )]
    PlainHttp { url: String },
    #[error("{url}: {error}")]
    Request { url: String, error: String },
    #[error("{url}: no answer within {secs} s", secs = TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url}: the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    allow_plain_http: bool,
}

impl HttpClient {
    pub fn new(allow_plain_http: bool) -> Result<Self, HttpError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(HttpError::Roots)?
            .https_or_http()
            .enable_http1()
            .build();
        let inner = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            inner,
            allow_plain_http,
        })
    }

    /// Sends one request; the response of any status comes back, its body bounded.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = request.uri().to_string();
        if request.uri().scheme_str() != Some("https") && !self.allow_plain_http {
            return Err(HttpError::PlainHttp { url });
        }
        let (parts, body) = request.into_parts();
        let request = hyper::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let fail = |error: String| HttpError::Request {
            url: url.clone(),
            error,
        };
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| HttpError::TooLarge { url: url.clone() })?
                .to_bytes();
            Ok(hyper::Response::from_parts(parts, bytes.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout { url: url.clone() })?
    }

    /// GET of a document; its bytes exactly as served (status 200 only).
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let request = hyper::Request::get(url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| HttpError::Request {
                url: url.to_string(),
                error: e.to_string(),
            })?;
        let response = self.send(request).await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(HttpError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        Ok(response.into_body())
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
