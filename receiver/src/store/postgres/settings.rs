//! `[store.postgres]`: where the database is and how to reach it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_daemon::config_check::{Key, KeyProblem};
use serde::Deserialize;

use crate::store::StoreError;

/// Connection settings of the PostgreSQL backend.
///
/// Either `url` (`postgres://user@host:port/dbname`, no password in it) or the separate
/// `host`/`port`/`user`/`dbname`; the password, if any, comes from `password_file` so that
/// the config file can be world-readable.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub dbname: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections kept open, at least 2 (ingest and the provider each hold one).
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    #[serde(default = "default_timeout")]
    pub connect_timeout_secs: u64,
    /// `disable` (default; loopback or a trusted segment) or `require` (rustls).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM bundle of the CA(s) that sign the database's certificate (required with TLS:
    /// there is no system trust store to fall back on inside).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_pool() -> usize {
    8
}

fn default_timeout() -> u64 {
    5
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Disable,
    Require,
}

/// A problem in `[store.postgres]`: the key (below `store.postgres.`) and what to do.
fn problem(key: &'static str, p: impl Into<String>) -> KeyProblem {
    KeyProblem::new(key, p)
}

impl PostgresConfig {
    /// Settings from a URL alone (tests, tools).
    pub fn from_url(url: &str) -> Self {
        PostgresConfig {
            url: Some(url.to_owned()),
            host: None,
            port: None,
            user: None,
            dbname: None,
            password_file: None,
            pool_size: default_pool(),
            connect_timeout_secs: default_timeout(),
            tls: TlsMode::Disable,
            ca_file: None,
        }
    }

    /// Relative file names are relative to the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.password_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn validate(&self) -> Result<(), KeyProblem> {
        match (&self.url, &self.host) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "url",
                    "set either `url` or `host`/`port`/..., not both",
                ));
            }
            (None, None) => {
                return Err(problem(
                    "url",
                    "no database given: set `url = \"postgres://airlock@db.inside:5432/airlock\"` or `host`",
                ));
            }
            _ => {}
        }
        if let Some(u) = &self.url {
            let parsed: postgres::Config = u.parse().map_err(|e| {
                problem(
                    "url",
                    format!(
                        "not a PostgreSQL URL ({e}); expected postgres://user@host:port/dbname"
                    ),
                )
            })?;
            if parsed.get_password().is_some() {
                return Err(problem(
                    "url",
                    "contains a password: move it into a file named by `password_file`",
                ));
            }
        }
        Key::new("pool_size").range(self.pool_size, 2..=1000)?;
        Key::new("connect_timeout_secs")
            .unit("seconds")
            .at_least(self.connect_timeout_secs, 1)?;
        if self.tls == TlsMode::Require && self.ca_file.is_none() {
            return Err(problem(
                "ca_file",
                "tls = \"require\" needs the PEM file of the CA that signed the database certificate",
            ));
        }
        Ok(())
    }

    /// The database as shown in messages: never the password.
    pub fn shown(&self) -> String {
        match self.client_config() {
            Ok(c) => {
                let host = c
                    .get_hosts()
                    .first()
                    .map(|h| match h {
                        postgres::config::Host::Tcp(s) => s.clone(),
                        postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_else(|| "localhost".into());
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!(
                    "postgres://{}@{host}:{port}/{}",
                    c.get_user().unwrap_or(""),
                    c.get_dbname().unwrap_or("")
                )
            }
            Err(_) => "postgres (invalid settings)".into(),
        }
    }

    /// The client configuration, password included.
    pub fn client_config(&self) -> Result<postgres::Config, StoreError> {
        let open = |detail: String| StoreError::Open {
            path: "[store.postgres]".into(),
            detail,
        };
        let mut c: postgres::Config = match &self.url {
            Some(u) => u
                .parse()
                .map_err(|e| open(format!("`url` is not a PostgreSQL URL: {e}")))?,
            None => postgres::Config::new(),
        };
        if let Some(h) = &self.host {
            c.host(h);
        }
        if let Some(p) = self.port {
            c.port(p);
        }
        if let Some(u) = &self.user {
            c.user(u);
        }
        if let Some(d) = &self.dbname {
            c.dbname(d);
        }
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f).map_err(|e| {
                open(format!(
                    "cannot read password_file {}: {e}; create it (mode 0600) with the database password",
                    f.display()
                ))
            })?;
            c.password(text.trim_end_matches(['\n', '\r']));
        }
        c.connect_timeout(Duration::from_secs(self.connect_timeout_secs));
        c.application_name("airlock-receiver");
        Ok(c)
    }

    /// rustls client config trusting exactly the CAs of `ca_file`.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, StoreError> {
        if self.tls == TlsMode::Disable {
            return Ok(None);
        }
        let open = |detail: String| StoreError::Open {
            path: self.shown(),
            detail,
        };
        let Some(ca) = &self.ca_file else {
            return Err(open("tls = \"require\" needs `ca_file`".into()));
        };
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| open(format!("cannot read ca_file {}: {e}", ca.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| open(format!("ca_file {}: bad PEM: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| {
                open(format!(
                    "ca_file {}: not a usable CA certificate: {e}",
                    ca.display()
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(open(format!(
                "ca_file {} holds no certificate",
                ca.display()
            )));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| open(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Arc::new(cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_password_is_refused() {
        let c = PostgresConfig::from_url("postgres://a:secret@h/db");
        assert_eq!(c.validate().unwrap_err().key, "url");
        assert!(
            PostgresConfig::from_url("postgres://a@h:5433/db")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn shown_hides_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let mut c = PostgresConfig::from_url("postgres://a@h:5433/db");
        c.password_file = Some(pw);
        assert_eq!(c.shown(), "postgres://a@h:5433/db");
        assert_eq!(
            c.client_config().unwrap().get_password(),
            Some(&b"hunter2"[..])
        );
    }

    #[test]
    fn tls_needs_a_ca() {
        let mut c = PostgresConfig::from_url("postgres://a@h/db");
        c.tls = TlsMode::Require;
        assert_eq!(c.validate().unwrap_err().key, "ca_file");
    }
}
