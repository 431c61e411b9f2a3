//! The provider's listener against slow and idle clients: a request head must arrive in
//! time, a request must complete in time, and only so many connections are served at once.
//! No timed assertions: each waits for a connection to close or an answer to come, with a
//! generous bound.

use crate::oidc_support;

use std::time::Duration;

use oidc_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any limit under test: reaching it means the limit did not act.
const BOUND: Duration = Duration::from_secs(60);

async fn op_with(edit: impl FnOnce(&mut airlock_receiver::oidc::OidcConfig)) -> Op {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let clock = airlock_receiver::oidc::util::Clock::manual(now());
    Op::start_custom(tmp, db, clock, Default::default(), None, edit).await
}

fn addr(op: &Op) -> String {
    op.base.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes; the bytes read, or None if it did not close within BOUND.
async fn until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
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
    tokio::time::timeout(BOUND, read).await.ok().map(|_| all)
}

#[tokio::test]
async fn slow_request_heads_and_bodies_are_cut_off() {
    let op = op_with(|c| {
        c.header_read_timeout_secs = 1;
        c.request_timeout_secs = 2;
    })
    .await;
    // A head that never ends (slowloris): the connection is closed.
    let mut slow = TcpStream::connect(addr(&op)).await.unwrap();
    slow.write_all(b"GET /jwks HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut slow).await.is_some(),
        "a request head that never ends is closed"
    );
    // An idle connection (nothing sent) is closed too.
    let mut idle = TcpStream::connect(addr(&op)).await.unwrap();
    assert!(
        until_closed(&mut idle).await.is_some(),
        "an idle connection is closed"
    );
    // A body that never completes gets 408.
    let mut trickle = TcpStream::connect(addr(&op)).await.unwrap();
    trickle
        .write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type")
        .await
        .unwrap();
    let answer = until_closed(&mut trickle).await.expect("closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(op.provider.metric("listener_limits", "header_timeout") >= 1);
    assert_eq!(op.provider.metric("listener_limits", "request_timeout"), 1);
    // A normal request is answered as ever.
    let r = http("GET", &format!("{}/jwks", op.base), &[], None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn the_connection_cap_holds_extra_connections_until_one_ends() {
    let op = op_with(|c| {
        c.max_connections = 4;
        c.header_read_timeout_secs = 600;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&op)).await.unwrap());
    }
    // Let the provider take the four (a wait, not an assertion).
    let mut probe = TcpStream::connect(addr(&op)).await.unwrap();
    probe
        .write_all(b"GET /jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_secs(2), probe.read(&mut first)).await;
    assert!(
        early.is_err(),
        "a fifth connection is not served while four are open"
    );
    assert!(op.provider.metric("listener_limits", "connection_cap") >= 1);
    // One of the four goes away: the fifth is served.
    drop(held.pop());
    let rest = until_closed(&mut probe).await.expect("answered and closed");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
