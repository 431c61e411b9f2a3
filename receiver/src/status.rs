//! `airlock-receiver status`: the running daemon's state at a glance, read from its ops
//! listener (`/healthz`, `/metrics`, `/gaps`, `/users`), so it works beside a daemon that
//! holds the store and on every node of a PostgreSQL cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use thiserror::Error;

use crate::ops_client;
use crate::reports::GapReport;

#[derive(Debug, Error)]
pub enum StatusError {
    #[error(
        "the receiver does not answer on its ops listener {addr} ({detail}): is it running? (systemctl status airlock-receiver; [ops] listen in the config)"
    )]
    Down { addr: String, detail: String },
    #[error("the ops listener {addr} answered {path} with {detail}")]
    Answer {
        addr: String,
        path: String,
        detail: String,
    },
}

/// What `status` found; `healthy` sets the exit code.
#[derive(Debug)]
pub struct Status {
    pub healthy: bool,
    pub text: String,
}

/// Asks the daemon listening on `ops` and renders the summary.
pub fn status(ops: SocketAddr) -> Result<Status, StatusError> {
    let addr = ops.to_string();
    let get = |path: &str| {
        ops_client::get(ops, path).map_err(|e| StatusError::Down {
            addr: addr.clone(),
            detail: e.to_string(),
        })
    };
    let answer = |path: &str, detail: String| StatusError::Answer {
        addr: addr.clone(),
        path: path.to_string(),
        detail,
    };
    let (health_code, health) = get("/healthz")?;
    let (code, metrics_text) = get("/metrics")?;
    if code != 200 {
        return Err(answer("/metrics", format!("HTTP {code}")));
    }
    let m = parse(&metrics_text);
    let (code, gaps_text) = get("/gaps")?;
    if code != 200 {
        return Err(answer("/gaps", format!("HTTP {code}: {gaps_text}")));
    }
    let gaps: GapReport =
        serde_json::from_str(&gaps_text).map_err(|e| answer("/gaps", e.to_string()))?;
    let (code, users_text) = get("/users")?;
    if code != 200 {
        return Err(answer("/users", format!("HTTP {code}: {users_text}")));
    }
    let users: Vec<serde_json::Value> =
        serde_json::from_str(&users_text).map_err(|e| answer("/users", e.to_string()))?;

    let v = |name: &str| m.get(name).copied().unwrap_or(0.0);
    let mut out = String::new();
    let healthy = health_code == 200;
    let _ = writeln!(
        out,
        "health:     {} ({})",
        if healthy { "ok" } else { "UNHEALTHY" },
        health.trim()
    );
    let heartbeat = match m.get("airlock_heartbeat_age_seconds") {
        Some(age) => format!("last {age} s ago"),
        None => "none since start-up".into(),
    };
    let _ = writeln!(
        out,
        "heartbeat:  {heartbeat} (alarm after {} s)",
        v("airlock_heartbeat_alarm_after_seconds")
    );
    let _ = writeln!(
        out,
        "store:      {}, {} log entries",
        if v("airlock_store_readable") >= 1.0 {
            "readable"
        } else {
            "NOT readable"
        },
        v("airlock_log_entries")
    );
    let _ = writeln!(
        out,
        "frames:     {} accepted, {} duplicate, {} datagrams, {} FEC blocks lost",
        v("airlock_frames_accepted_total"),
        v("airlock_frames_duplicate_total"),
        v("airlock_link_datagrams_total"),
        v("airlock_blocks_lost_total")
    );
    let rejected: Vec<String> = m
        .iter()
        .filter_map(|(k, val)| {
            let reason = k
                .strip_prefix("airlock_frames_rejected_total{reason=\"")?
                .strip_suffix("\"}")?;
            (*val > 0.0).then(|| format!("{reason} {val}"))
        })
        .collect();
    let _ = writeln!(
        out,
        "rejected:   {} (since start-up)",
        if rejected.is_empty() {
            "none".to_string()
        } else {
            rejected.join(", ")
        }
    );
    let ranges: usize = gaps.signers.values().map(|g| g.missing.len()).sum();
    let _ = writeln!(
        out,
        "open gaps:  {ranges} ranges, {} missing seqs{}",
        v("airlock_gap_missing_seqs"),
        if ranges > 0 {
            " (airlock-receiver gaps; carry them to the sender's resend)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "users:      {} provisioned", users.len());
    Ok(Status { healthy, text: out })
}

/// `name{labels} value` lines of the exposition text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.trim().rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let m = parse(
            "# HELP x y\nairlock_log_entries 42\nairlock_frames_rejected_total{reason=\"stale\"} 3\n",
        );
        assert_eq!(m.get("airlock_log_entries"), Some(&42.0));
        assert_eq!(
            m.get("airlock_frames_rejected_total{reason=\"stale\"}"),
            Some(&3.0)
        );
    }
}
