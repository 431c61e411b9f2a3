//! The HTTPS listener: a certificate from the inside PKI (here: openssl, self-signed),
//! checked with curl against that CA; cookies get `Secure`; bad files fail clearly.

use crate::oidc_support;

use std::process::Command;
use std::sync::Arc;

use airlock_receiver::oidc::util::Clock;
use airlock_receiver::oidc::{OidcDeps, Provider};
use oidc_support::*;

fn make_cert(dir: &std::path::Path) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl is installed")
        .status
        .success();
    assert!(ok, "openssl made a certificate");
}

fn free_port() -> u16 {
    airlock_tests::ops::free_tcp_port().unwrap().port()
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    make_cert(tmp.path());
    let port = free_port();
    let mut cfg = config(port, None);
    cfg.issuer = format!("https://127.0.0.1:{port}");
    cfg.allow_plain_http = false;
    cfg.tls_cert = Some(tmp.path().join("cert.pem"));
    cfg.tls_key = Some(tmp.path().join("key.pem"));
    let db = sled::Config::new().temporary(true).open().unwrap();
    let deps = OidcDeps {
        db,
        directory: Arc::new(MemDirectory::default()),
        clock: Clock::system(),
    };
    let provider = Provider::new(cfg, deps).unwrap();
    let server = tokio::spawn(provider.serve());
    let ca = tmp.path().join("cert.pem").display().to_string();
    let url = format!("https://127.0.0.1:{port}/.well-known/openid-configuration");
    let mut body = None;
    for _ in 0..100 {
        let (ca, url) = (ca.clone(), url.clone());
        body = tokio::task::spawn_blocking(move || curl(&["--cacert", &ca, &url]))
            .await
            .unwrap();
        if body.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let body = body.expect("HTTPS answers");
    assert!(
        body.contains(&format!("\"issuer\":\"https://127.0.0.1:{port}\"")),
        "{body}"
    );
    // Plain HTTP on the TLS port gets no OpenID answer.
    let plain = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    let answer = tokio::task::spawn_blocking(move || curl(&[&plain]))
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(!answer.contains("issuer"));
    let p = pkce("t");
    let auth = format!(
        "https://127.0.0.1:{port}/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid&code_challenge={}&code_challenge_method=S256",
        enc("http://127.0.0.1:1/cb"),
        p.challenge
    );
    let r = tokio::task::spawn_blocking(move || curl(&["--cacert", &ca, &auth]))
        .await
        .unwrap()
        .unwrap();
    let cookie = r
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: __host-airlock_csrf=")
        })
        .expect("csrf cookie");
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let hsts = r
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("strict-transport-security:")
        })
        .expect("HSTS over TLS");
    assert!(hsts.contains("max-age=31536000"), "{hsts}");
    assert!(
        r.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{r}"
    );
    server.abort();
}

#[tokio::test]
async fn unreadable_certificate_fails_with_the_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = config(port, None);
    cfg.issuer = format!("https://127.0.0.1:{port}");
    cfg.allow_plain_http = false;
    cfg.tls_cert = Some(tmp.path().join("missing-cert.pem"));
    cfg.tls_key = Some(tmp.path().join("missing-key.pem"));
    let db = sled::Config::new().temporary(true).open().unwrap();
    let deps = OidcDeps {
        db,
        directory: Arc::new(MemDirectory::default()),
        clock: Clock::system(),
    };
    let e = Provider::new(cfg, deps)
        .unwrap()
        .serve()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing-cert.pem") && e.contains("oidc.tls_key"),
        "{e}"
    );
}
