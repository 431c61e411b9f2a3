//! Load figures for docs/performance.md (the OpenID provider's request rates).
//! Ignored by default; run in release:
//! `cargo test --release -p airlock-receiver --test integration -- oidc_bench:: --ignored --nocapture --test-threads=1`
//! Bounded by request count, loopback only; prints rates and p50/p99, asserts only correctness.

use crate::oidc_support;

use std::time::{Duration, Instant};

use oidc_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CONNS: usize = 16;

/// A keep-alive HTTP/1.1 connection (the load generator).
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(base: &str) -> Conn {
        let host = base.strip_prefix("http://").unwrap().to_string();
        let s = TcpStream::connect(&host).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            io: BufReader::new(s),
            host,
        }
    }

    async fn post(&mut self, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.io.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let status: u16 = line[9..12].parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0u8; len];
        self.io.read_exact(&mut buf).await.unwrap();
        (status, String::from_utf8(buf).unwrap())
    }
}

fn report(name: &str, total: usize, wall: Duration, mut lat: Vec<Duration>) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{name}: {total} requests over {CONNS} connections in {:.2} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}

/// One logged-in grant of the public ES256 client: (access token, refresh token).
async fn grant(op: &Op, i: usize) -> (String, String) {
    let p = pkce(&format!("bench{i}"));
    let a = AuthParams {
        client: "spa",
        redirect: "http://127.0.0.1:1/cb",
        scope: "openid offline_access",
        pkce: Some(&p),
        extra: "",
    };
    let cb = login(
        op,
        &mut Browser::default(),
        &a,
        &op.ticket(&format!("user{i}"), 300),
    )
    .await;
    let code = query_param(&cb, "code").unwrap();
    let t = token(
        op,
        None,
        &format!(
            "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={}",
            enc(&code),
            enc("http://127.0.0.1:1/cb"),
            p.verifier
        ),
    )
    .await
    .json();
    (
        t["access_token"].as_str().unwrap().into(),
        t["refresh_token"].as_str().unwrap().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release"]
async fn bench_refresh_introspection_logins() {
    let op = Op::start(None).await;
    let per_conn = 1500;

    // Refresh grants, ES256: each connection rotates its own family.
    let mut grants = Vec::new();
    for i in 0..CONNS {
        grants.push(grant(&op, i).await);
    }
    let rts = grants.iter().map(|(_, rt)| rt.clone()).collect();
    let (wall, lat) = refresh_load(&op.base, rts, per_conn).await;
    report(
        "refresh_token grants (ES256, rotation)",
        CONNS * per_conn,
        wall,
        lat,
    );

    // Introspection of live access tokens by a confidential client (secret cached after argon2 once).
    let (access, _) = grant(&op, 99).await;
    let auth = basic("app", CONF_SECRET).1;
    let per_conn = 4000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (base, access, auth) = (op.base.clone(), access.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&base).await;
            let mut lat = Vec::with_capacity(per_conn);
            let body = format!("token={access}");
            for _ in 0..per_conn {
                let t0 = Instant::now();
                let (status, body) = c.post("/introspect", Some(&auth), &body).await;
                lat.push(t0.elapsed());
                assert!(status == 200 && body.contains("\"active\":true"), "{body}");
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    report(
        "introspection (ES256 access token)",
        CONNS * per_conn,
        start.elapsed(),
        lat,
    );

    // Complete logins: authorize -> login page -> code (argon2id verify) -> token.
    // The test tickets use argon2id m=1 MiB, t=1; the sender's real cost sets the floor.
    let n = 200;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let op = std::sync::Arc::new(op);
    for w in 0..4 {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..n / 4 {
                let t0 = Instant::now();
                grant(&op, 1000 + w * 1000 + i).await;
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    lat.sort();
    println!(
        "complete logins (4 browsers, argon2id m=1MiB t=1): {n} in {:.2} s = {:.0}/s; p50 {:.1} ms, p99 {:.1} ms",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        lat[n / 2].as_secs_f64() * 1e3,
        lat[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e3
    );
}

/// CPU seconds this process (provider and load generator) has used, from /proc/self/stat
/// (utime + stime, at the usual 100 ticks per second): on a shared machine the rate per
/// CPU second is the comparable figure, wall-clock rates depend on the neighbours.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of proc(5), counted from after the command name (field 3 is f[0]).
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// `CONNS` keep-alive connections each sending `per_conn` requests `body(i)` to `/token`
/// with `auth`; every answer must be 200 with an access token. Returns the wall time and
/// the latencies.
async fn token_load(
    base: &str,
    per_conn: usize,
    auth: Option<String>,
    body: impl Fn(usize) -> String + Clone + Send + 'static,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (base, auth, body) = (base.to_string(), auth.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&base).await;
            let mut lat = Vec::with_capacity(per_conn);
            for i in 0..per_conn {
                let t0 = Instant::now();
                let (status, answer) = c.post("/token", auth.as_deref(), &body(i)).await;
                lat.push(t0.elapsed());
                assert!(
                    status == 200 && answer.contains("\"access_token\""),
                    "{answer}"
                );
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (start.elapsed(), lat)
}

/// One keep-alive connection per refresh token in `rts`, each rotating its own family
/// `rounds` times: the refresh token of an answer is the next request's. Returns the wall
/// time and the latencies.
async fn refresh_load(base: &str, rts: Vec<String>, rounds: usize) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut rt in rts {
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&base).await;
            let mut lat = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t0 = Instant::now();
                let (status, body) = c
                    .post(
                        "/token",
                        None,
                        &format!("grant_type=refresh_token&client_id=spa&refresh_token={rt}"),
                    )
                    .await;
                lat.push(t0.elapsed());
                assert_eq!(status, 200, "{body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                rt = v["refresh_token"].as_str().unwrap().to_string();
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (start.elapsed(), lat)
}

/// Client-credentials grants beside refresh grants, on one provider (sled) and in one run,
/// so both see the same machine: the refresh grant (ES256, rotation) as in
/// [`bench_refresh_introspection_logins`], then `grant_type=client_credentials` by a
/// confidential client (Basic; argon2 once, then the cached secret digest) with ES256 and
/// with RS256 access tokens. Each client-credentials grant stores its grant family (for
/// introspection and revocation) and signs one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release"]
async fn bench_client_credentials() {
    let tmp = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = tmp.path().join("db");
    let op = Op::start_custom(
        tmp,
        db,
        airlock_receiver::oidc::util::Clock::manual(now()),
        Default::default(),
        None,
        |c| {
            use airlock_receiver::oidc::config::SigningAlg;
            for (i, alg) in [(1, SigningAlg::ES256), (2, SigningAlg::RS256)] {
                c.clients[i].id_token_signed_response_alg = alg;
                c.clients[i].client_credentials_scopes = vec!["orders.read".into()];
                c.clients[i].client_credentials_audience = vec!["https://orders.inside".into()];
                c.clients[i].grant_types.push("client_credentials".into());
            }
        },
    )
    .await;
    let rounds = std::env::var("AIRLOCK_BENCH_CC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize);

    let mut rts = Vec::new();
    for i in 0..CONNS {
        rts.push(grant(&op, i).await.1);
    }
    let cpu0 = process_cpu_secs();
    let (wall, lat) = refresh_load(&op.base, rts, rounds).await;
    report(
        "refresh_token grants (ES256, rotation)",
        CONNS * rounds,
        wall,
        lat,
    );
    let cpu = process_cpu_secs() - cpu0;
    println!(
        "  CPU {cpu:.1} s (provider + load generator) = {:.0} grants per CPU second",
        (CONNS * rounds) as f64 / cpu
    );

    for (client, label) in [("app", "ES256"), ("ed", "RS256")] {
        // One grant first: argon2 verifies the secret once, then its digest is cached (16
        // first authentications at once would count as attempts and lock the client, D24).
        let warm = token(
            &op,
            Some(basic(client, CONF_SECRET)),
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(warm.status, 200, "{}", warm.body);
        let auth = basic(client, CONF_SECRET).1;
        let cpu0 = process_cpu_secs();
        let (wall, lat) = token_load(&op.base, rounds, Some(auth), |_| {
            "grant_type=client_credentials&scope=orders.read".to_string()
        })
        .await;
        report(
            &format!("client_credentials grants ({label}, Basic)"),
            CONNS * rounds,
            wall,
            lat,
        );
        let cpu = process_cpu_secs() - cpu0;
        println!(
            "  CPU {cpu:.1} s (provider + load generator) = {:.0} grants per CPU second",
            (CONNS * rounds) as f64 / cpu
        );
    }
    assert_eq!(
        op.provider.metric("client_credentials_grants", "ok"),
        2 * (CONNS * rounds + 1) as u64
    );
}

/// Passkey sign-ins beside transfer-code sign-ins, on one provider: authorize (prompt=login)
/// -> login page -> WebAuthn options -> signed assertion (the test authenticator, ES256)
/// -> code -> token, by 4 browsers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release"]
async fn bench_passkey_logins() {
    use crate::oidc_passkey as pk;
    let op = std::sync::Arc::new(pk::start(|_| {}).await);
    let workers = 4;
    let n = 400;
    let mut keys = Vec::new();
    for w in 0..workers {
        keys.push(pk::enrolled(&op, &format!("pk{w}")).await);
    }
    for (label, passkey) in [("transfer-code", false), ("passkey", true)] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (w, mut key) in std::mem::take(&mut keys).into_iter().enumerate() {
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..n / workers {
                    let t0 = Instant::now();
                    if passkey {
                        let mut b = Browser::default();
                        let r =
                            pk::passkey_sign_in_with(&op, &mut b, &mut key, "", "&prompt=login")
                                .await;
                        assert_eq!(r.status, 303, "{}", r.body);
                        pk::redeem(&op, r.location()).await;
                    } else {
                        // A LoginTicket-only person: no enrolment offer, straight back.
                        grant(&op, 5000 + w * 1000 + i).await;
                    }
                    lat.push(t0.elapsed());
                }
                (key, lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            let (key, l) = t.await.unwrap();
            keys.push(key);
            lat.extend(l);
        }
        let wall = start.elapsed();
        lat.sort();
        println!(
            "{label} sign-ins, authorize -> {label} -> code -> token ({workers} browsers): {n} in {:.2} s = {:.0}/s; p50 {:.1} ms, p99 {:.1} ms",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            lat[n / 2].as_secs_f64() * 1e3,
            lat[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e3
        );
    }
    assert_eq!(op.provider.metric("passkey_sign_ins", "ok"), n as u64);
}
