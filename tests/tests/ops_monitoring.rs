//! The shipped monitoring (packaging/prometheus/airlock-alerts.yml, its promtool test
//! series, and packaging/grafana/airlock-dashboard.json) names only metrics the daemons
//! really export: both real binaries run with the OpenID provider on, and every metric name
//! (and every `reason` label value selected) in those files is looked up in their live
//! `/metrics`. A renamed metric or a counter that appears only at its first event fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use airlock_tests::deployment::{Deployment, Options};
use airlock_tests::ops::{free_tcp_port, http_get};

fn packaging(file: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("packaging")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (file.to_string(), text)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Every `airlock_...` metric name in `text`, with the `reason="..."` values selected on it
/// (`name{..., reason="x"}`; `!=` and `=~` matchers are not exact values and are skipped).
fn referenced(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = text_at(&bytes, i, "airlock_")
            && (i == 0 || !(is_name_char(bytes[i - 1]) || bytes[i - 1].is_ascii_uppercase()));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && is_name_char(bytes[j]) {
            j += 1;
        }
        let name: String = bytes[i..j].iter().collect();
        let mut reason = None;
        if bytes.get(j) == Some(&'{') {
            let end = bytes[j..]
                .iter()
                .position(|c| *c == '}')
                .map_or(bytes.len(), |p| j + p);
            let selector: String = bytes[j + 1..end].iter().collect();
            for matcher in selector.split(',') {
                let matcher = matcher.trim();
                if let Some(v) = matcher
                    .strip_prefix("reason=\"")
                    .or_else(|| matcher.strip_prefix("reason=\\\""))
                {
                    reason = Some(v.trim_end_matches('"').trim_end_matches('\\').to_string());
                }
            }
        }
        out.push((name, reason));
        i = j;
    }
    out
}

fn text_at(chars: &[char], at: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

#[test]
fn the_scanner_finds_names_and_reasons() {
    let found = referenced(
        "expr: increase(airlock_oidc_backchannel_logouts_total{reason=\"failed\"}[15m]) > 0 \
         and airlock_store_readable == 0 and airlock_frames_rejected_total{reason!=\"seq_conflict\"}\n\
         file airlock-alerts.yml, not_airlock_x",
    );
    assert_eq!(
        found,
        vec![
            (
                "airlock_oidc_backchannel_logouts_total".into(),
                Some("failed".into())
            ),
            ("airlock_store_readable".into(), None),
            ("airlock_frames_rejected_total".into(), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_name_only_metrics_the_daemons_export() {
    let oidc_port = free_tcp_port().unwrap().port();
    let mut d = Deployment::create(&Options {
        receiver_extra: format!(
            r#"
[oidc]
issuer = "http://127.0.0.1:{oidc_port}"
listen = "127.0.0.1:{oidc_port}"
allow_plain_http = true

[[oidc.clients]]
client_id = "app"
public = true
redirect_uris = ["http://127.0.0.1:2/cb"]
scopes = ["openid"]
"#
        ),
        ..Options::default()
    })
    .await
    .unwrap();
    d.start_receiver().await.unwrap();
    d.start_sender().await.unwrap();
    // The first heartbeat, so that the heartbeat series are all there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = d.receiver_metrics().await.unwrap();
        if m.get("airlock_heartbeats_total").copied().unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat arrived: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut live = BTreeSet::new();
    let mut names = BTreeSet::new();
    for addr in [d.receiver_ops, d.sender_metrics] {
        let body = http_get(addr, "/metrics").await.unwrap().body;
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s).to_string();
            names.insert(series.split('{').next().unwrap_or("").to_string());
            live.insert(series);
        }
    }

    let files = [
        packaging("prometheus/airlock-alerts.yml"),
        packaging("prometheus/airlock-alerts.test.yml"),
        packaging("grafana/airlock-dashboard.json"),
    ];
    let mut missing = Vec::new();
    let mut checked = 0;
    for (file, text) in &files {
        let refs = referenced(text);
        assert!(!refs.is_empty(), "{file} names no airlock metric");
        for (name, reason) in refs {
            checked += 1;
            if !names.contains(&name) {
                missing.push(format!("{file}: {name} is not exported"));
            } else if let Some(r) = reason
                && !live.contains(&format!("{name}{{reason=\"{r}\"}}"))
            {
                missing.push(format!("{file}: {name}{{reason=\"{r}\"}} is not exported"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {checked} references are not in the live /metrics:\n{}\nexported: {names:?}",
        missing.len(),
        missing.join("\n")
    );
}
