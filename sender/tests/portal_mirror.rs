//! The portal inside the real daemon, without an outside IdP: a loopback HTTP server plays
//! the IdP's two static documents (discovery, JWKS), and the datagrams the daemon sends
//! over UDP on 127.0.0.1 are opened with the protocol crate.
//! - the IdpMirror carries the documents byte for byte as served, and again when they change;
//! - the portal's pages carry the security headers and accessible markup;
//! - a callback that no login started is refused; a bad `[portal]` names file and key.
//!
//! The full login through a real IdP and a real browser is tests/portal/ (npm).

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_protocol::message::{Body, IdpMirror};
use airlock_sender::daemon::Daemon;
use airlock_sender::portal;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use tokio::net::{TcpListener, UdpSocket};

type Docs = Arc<Mutex<(Vec<u8>, Vec<u8>)>>;

/// Serves `docs` (discovery, JWKS) exactly as stored; returns the issuer URL.
async fn static_idp(docs: Docs) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(d): State<Docs>| async move { d.lock().unwrap().0.clone() }),
        )
        .route(
            "/jwks",
            get(|State(d): State<Docs>| async move { d.lock().unwrap().1.clone() }),
        )
        .with_state(docs);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    issuer
}

/// Unusual spacing and key order on purpose: only a byte-exact copy keeps them.
fn discovery(issuer: &str) -> Vec<u8> {
    format!(
        "{{ \"issuer\": \"{issuer}\",\n  \"jwks_uri\":\"{issuer}/jwks\", \"authorization_endpoint\":\"{issuer}/auth\",\
         \"token_endpoint\":\"{issuer}/token\",\"response_types_supported\":[\"code\"],\
         \"subject_types_supported\":[\"public\"],\"id_token_signing_alg_values_supported\":[\"EdDSA\"] }}\n"
    )
    .into_bytes()
}

fn portal_toml(issuer: &str, redirect: &str) -> String {
    format!(
        r#"
[portal]
listen = "127.0.0.1:0"
help_contact = "idm@example.com"
allow_plain_http = true
refresh_secs = 5

[[portal.idps]]
name = "corp"
display_name = "Corp <login>"
issuer = "{issuer}"
client_id = "airlock-portal"
redirect_url = "{redirect}"
id_token_algs = ["EdDSA"]
"#
    )
}

async fn next_mirror(sock: &UdpSocket, rx: &mut MiniReceiver, seen: usize) -> IdpMirror {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mirrors: Vec<IdpMirror> = rx
            .envelopes
            .iter()
            .filter_map(|e| match &e.body {
                Body::IdpMirror(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if let Some(m) = mirrors.get(seen) {
            return m.clone();
        }
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .expect("timed out waiting for an IdpMirror")
            .unwrap();
        rx.push_datagram(&buf[..n]);
    }
}

/// A plain HTTP/1.1 GET: (status, raw head, body).
async fn get_page(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let r = airlock_tests::http::get(addr, path).await.unwrap();
    (r.status, r.head.to_ascii_lowercase(), r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_documents_cross_byte_for_byte_and_again_on_change() {
    let docs: Docs = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let issuer = static_idp(docs.clone()).await;
    let jwks_v1 = jwks_json().into_bytes();
    *docs.lock().unwrap() = (discovery(&issuer), jwks_v1.clone());

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let fx = Fixture::new(
        &format!("[link.udp]\ntarget = \"127.0.0.1:{port}\""),
        &portal_toml(&issuer, "http://127.0.0.1:9/callback"),
    );
    let config = fx.config();
    let daemon = Daemon::start(&config, None).await.unwrap();
    let handle = portal::start(&config).await.unwrap().unwrap();
    let mut rx = MiniReceiver::new(fx.trust());

    let first = next_mirror(&sock, &mut rx, 0).await;
    assert_eq!(first.issuer, issuer);
    assert_eq!(
        first.discovery,
        discovery(&issuer),
        "discovery byte for byte"
    );
    assert_eq!(first.jwks, jwks_v1, "JWKS byte for byte");

    // The IdP rotates its keys: the next refresh mirrors the new JWKS.
    let jwks_v2 = format!("{}\n", jwks_json().replace("idp-1", "idp-2")).into_bytes();
    docs.lock().unwrap().1 = jwks_v2.clone();
    let second = next_mirror(&sock, &mut rx, 1).await;
    assert_eq!(second.jwks, jwks_v2);
    assert!(second.fetched_at >= first.fetched_at);

    // The pages, while we are here.
    let (status, head, body) = get_page(handle.local_addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny") && head.contains("cache-control: no-store"));
    assert!(body.contains(r#"<html lang="en">"#) && body.contains("<h1>"));
    assert!(
        body.contains(r#"href="/login/corp">Corp &lt;login&gt;</a>"#),
        "{body}"
    );
    assert!(!body.contains("<script"));
    let (status, head, css) = get_page(handle.local_addr, "/assets/portal.css").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"));
    assert!(css.contains(".code"));

    // Starting a login redirects to the IdP with PKCE S256, state and nonce, and sets the cookie.
    let (status, head, _) = get_page(handle.local_addr, "/login/corp").await;
    assert_eq!(status, 303);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap();
    assert!(location.starts_with(&format!("{}/auth?", issuer.to_ascii_lowercase())));
    for part in [
        "code_challenge_method=s256",
        "state=",
        "nonce=",
        "client_id=airlock-portal",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }
    assert!(head.contains("set-cookie: airlock_portal_login="));
    assert!(head.contains("httponly") && head.contains("samesite=lax"));
    let binding_of = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("set-cookie: airlock_portal_login="))
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_string()
    };
    let minted = binding_of(&head);
    // A second tab of the same browser keeps its binding; a binding planted by someone
    // else (cookie injection) is not adopted: the portal mints its own.
    let addr = handle.local_addr;
    let start_with = |cookie: String| async move {
        let url = format!("http://{addr}/login/corp");
        let r = airlock_tests::http::request("GET", &url, &[("Cookie", cookie)], None)
            .await
            .unwrap();
        (r.status, r.head.to_ascii_lowercase())
    };
    let (status, head) = start_with(format!("airlock_portal_login={minted}")).await;
    assert_eq!(status, 303);
    assert_eq!(binding_of(&head), minted, "second tab keeps the binding");
    let planted = "ab".repeat(24);
    let (status, head) = start_with(format!("airlock_portal_login={planted}")).await;
    assert_eq!(status, 303);
    assert_ne!(
        binding_of(&head),
        planted,
        "a planted binding is not adopted"
    );

    // A callback no login started gets no code, and nothing is queued.
    let (status, _, body) = get_page(handle.local_addr, "/callback?state=forged&code=x").await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown, used or expired"), "{body}");
    assert!(!body.contains("transfer-code"));

    drop(handle);
    daemon.stop();
    daemon.wait().await.unwrap();
    assert!(
        !rx.kinds().contains(&"login_ticket"),
        "no ticket was ever sent"
    );
}

#[tokio::test]
async fn a_bad_portal_section_names_the_file_and_the_key() {
    let fx = Fixture::udp(9);
    let text = std::fs::read_to_string(&fx.config_path).unwrap()
        + &portal_toml("http://127.0.0.1:9", "http://127.0.0.1:9/cb");
    std::fs::write(&fx.config_path, text).unwrap();
    let e = portal::start(&fx.config()).await.err().unwrap().to_string();
    assert!(e.contains("sender.toml"), "{e}");
    assert!(e.contains("portal.idps[0].redirect_url"), "{e}");

    let text = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("help_contact", "helpdesk");
    std::fs::write(&fx.config_path, text).unwrap();
    let e = airlock_sender::config::Config::load(&fx.config_path)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sender.toml") && e.contains("helpdesk"), "{e}");
}

/// Starts a portal (no sender daemon: the IdP need not answer) with `extra` lines in
/// its `[portal]` section.
async fn bare_portal(extra: &str) -> (Fixture, portal::PortalHandle) {
    let fx = Fixture::udp(9);
    let section = portal_toml("http://127.0.0.1:9", "http://127.0.0.1:9/callback")
        .replace("refresh_secs = 5", &format!("refresh_secs = 5\n{extra}"));
    let text = std::fs::read_to_string(&fx.config_path).unwrap() + &section;
    std::fs::write(&fx.config_path, text).unwrap();
    let handle = portal::start(&fx.config()).await.unwrap().unwrap();
    (fx, handle)
}

/// Reads until the peer closes; None if it did not within a bound far above the limits.
async fn until_closed(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .ok()
        .map(|_| all)
}

/// Slowloris against the portal: a request head that never ends and an idle connection
/// are closed after `header_read_timeout_secs`; a normal request is answered.
#[tokio::test]
async fn the_portal_closes_slow_request_heads() {
    use tokio::io::AsyncWriteExt;
    let (_fx, handle) = bare_portal("header_read_timeout_secs = 1").await;
    let mut slow = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(until_closed(&mut slow).await.is_some(), "slow head closed");
    let mut idle = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .unwrap();
    assert!(until_closed(&mut idle).await.is_some(), "idle closed");
    let (status, _, _) = get_page(handle.local_addr, "/healthz").await;
    assert_eq!(status, 200);
}

/// With `max_connections` open, a further connection is not served until one ends.
#[tokio::test]
async fn the_portal_serves_at_most_max_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_fx, handle) = bare_portal("max_connections = 2\nheader_read_timeout_secs = 600").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(handle.local_addr)
                .await
                .unwrap(),
        );
    }
    let mut probe = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_secs(2), probe.read(&mut first)).await;
    assert!(early.is_err(), "not served while two are open");
    drop(held.pop());
    let rest = until_closed(&mut probe).await.expect("answered");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
