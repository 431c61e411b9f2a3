//! One vocabulary for what is wrong with a daemon's config file, and the value checks
//! serde cannot express.
//!
//! Both daemons read a TOML file that denies unknown keys, then check the values. Every
//! error names the file and, for a value, the key, what is allowed and what was found:
//!
//! - the file cannot be read: [`ConfigError::Read`] (the io error is its source);
//! - the text is not TOML, a key is unknown, missing or of the wrong type:
//!   [`ConfigError::Parse`], one line naming the line, its text and its table;
//! - a key's value cannot work, or a required key is absent: [`ConfigError::Key`];
//! - a file a key names cannot be read: [`ConfigError::KeyFile`] (the io error is its source).
//!
//! Sections check themselves into a [`KeyProblem`] (the key below the section and what to
//! do); the caller prefixes the section ([`KeyProblem::under`]) and adds the file
//! ([`KeyProblem::in_file`]). Numbers are checked with [`Key`], so the wording of a range
//! is the same for every key of both daemons.

use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A daemon's config file cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// Why the read failed.
        source: std::io::Error,
    },
    /// Not TOML, an unknown or missing key, or a value of the wrong type.
    #[error("config file {file}: {detail}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// One line: where and what the TOML reader says is wrong.
        detail: String,
    },
    /// A key's value cannot work, or a key that is needed is absent.
    #[error("config file {file}: {problem}")]
    Key {
        /// The config file.
        file: PathBuf,
        /// The key and what to do.
        problem: KeyProblem,
    },
    /// A file a key names cannot be read.
    #[error("config file {file}: key `{key}`: cannot read {}: {source}", path.display())]
    KeyFile {
        /// The config file.
        file: PathBuf,
        /// The key naming the file.
        key: String,
        /// The file it names (resolved against the config file's directory).
        path: PathBuf,
        /// Why the read failed.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The key at fault, if the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { problem, .. } => Some(&problem.key),
            ConfigError::KeyFile { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// Whether the key has a value that cannot work or has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The value is set and cannot work.
    Invalid,
    /// The key (or one of a set of keys) must be set.
    Missing,
}

/// One key of a config section that cannot work: which key and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("key `{key}`{}{problem}", match kind { ProblemKind::Invalid => ": ", ProblemKind::Missing => " is missing: " })]
pub struct KeyProblem {
    /// The dotted key, e.g. `link.mtu` or `clients[0].client_id`.
    pub key: String,
    /// What is wrong and what to do, e.g. "must be from 1 to 600 seconds, got 0".
    pub problem: String,
    /// A bad value or a missing key.
    pub kind: ProblemKind,
}

impl KeyProblem {
    /// `key` has a value that cannot work; `problem` says what is allowed or what to do.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        KeyProblem {
            key: key.into(),
            problem: problem.into(),
            kind: ProblemKind::Invalid,
        }
    }

    /// `key` must be set; `what_to_do` says how.
    pub fn missing(key: impl Into<String>, what_to_do: impl Into<String>) -> Self {
        KeyProblem {
            key: key.into(),
            problem: what_to_do.into(),
            kind: ProblemKind::Missing,
        }
    }

    /// The same problem with the key below `section` (`"oidc"` makes `issuer` `oidc.issuer`).
    #[must_use]
    pub fn under(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }

    /// The problem as an error of the config file `file`.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError::Key {
            file: file.to_path_buf(),
            problem: self,
        }
    }
}

/// Reads a config file: its text, or [`ConfigError::Read`].
pub fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// Parses config text read from `file` (named only in messages), or [`ConfigError::Parse`].
pub fn parse_toml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_path_buf(),
        detail: parse_detail(text, &e),
    })
}

/// One line: where (line number and the line's text) and what toml says is wrong.
fn parse_detail(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    // The table the line belongs to, since toml's message names only the key.
    let table = text
        .lines()
        .take(line_no.saturating_sub(1))
        .filter(|l| l.trim_start().starts_with('['))
        .last()
        .map(|t| format!(" in {}", t.trim()))
        .unwrap_or_default();
    format!("line {line_no} (`{line}`){table}: {message}")
}

/// A numeric key to check: `Key::new("link.mtu").unit("bytes").range(mtu, 576..=65_507)?`.
///
/// Every check words its refusal the same way ("must be from 1 to 600 seconds, got 0"),
/// with the reason, if given, after a colon.
#[derive(Debug, Clone)]
pub struct Key<'a> {
    name: String,
    unit: Option<&'a str>,
    why: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// The dotted key name, as the person editing the file sees it.
    pub fn new(name: impl Into<String>) -> Self {
        Key {
            name: name.into(),
            unit: None,
            why: None,
        }
    }

    /// The unit the bounds are in ("seconds", "bytes"), said after the bounds.
    #[must_use]
    pub fn unit(mut self, unit: &'a str) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Why the bound is there, or what to do, said after the refusal.
    #[must_use]
    pub fn why(mut self, why: &'a str) -> Self {
        self.why = Some(why);
        self
    }

    /// `value` must lie in `allowed` (both ends included; NaN never does).
    pub fn range<T: PartialOrd + Debug>(
        self,
        value: T,
        allowed: RangeInclusive<T>,
    ) -> Result<(), KeyProblem> {
        if allowed.contains(&value) {
            return Ok(());
        }
        let (lo, hi) = allowed.into_inner();
        let bounds = format!("from {lo:?} to {hi:?}{}", self.unit_text());
        Err(self.refuse(&bounds, &value))
    }

    /// `value` must be at most `max`.
    pub fn at_most<T: PartialOrd + Debug>(self, value: T, max: T) -> Result<(), KeyProblem> {
        if value <= max {
            return Ok(());
        }
        let bounds = format!("at most {max:?}{}", self.unit_text());
        Err(self.refuse(&bounds, &value))
    }

    /// `value` must be at least `min`.
    pub fn at_least<T: PartialOrd + Debug>(self, value: T, min: T) -> Result<(), KeyProblem> {
        if value >= min {
            return Ok(());
        }
        let bounds = format!("at least {min:?}{}", self.unit_text());
        Err(self.refuse(&bounds, &value))
    }

    /// `value` must be 0 (the feature is off) or at least `min`.
    pub fn off_or_at_least<T: PartialOrd + Debug + Default>(
        self,
        value: T,
        min: T,
    ) -> Result<(), KeyProblem> {
        if value == T::default() || value >= min {
            return Ok(());
        }
        let bounds = format!("0 (off) or at least {min:?}{}", self.unit_text());
        Err(self.refuse(&bounds, &value))
    }

    fn unit_text(&self) -> String {
        self.unit.map(|u| format!(" {u}")).unwrap_or_default()
    }

    fn refuse(self, bounds: &str, value: &dyn Debug) -> KeyProblem {
        let why = self.why.map(|w| format!(": {w}")).unwrap_or_default();
        KeyProblem::new(self.name, format!("must be {bounds}, got {value:?}{why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_says_the_bounds_the_unit_the_value_and_why() {
        assert_eq!(Key::new("a").range(5u32, 1..=10), Ok(()));
        assert_eq!(Key::new("a").range(1u32, 1..=10), Ok(()));
        assert_eq!(Key::new("a").range(10u32, 1..=10), Ok(()));
        let e = Key::new("send.heartbeat_secs")
            .unit("seconds")
            .why("the receiver alarms after three missed beats")
            .range(0u64, 1..=3600)
            .unwrap_err();
        assert_eq!(e.key, "send.heartbeat_secs");
        assert_eq!(
            e.to_string(),
            "key `send.heartbeat_secs`: must be from 1 to 3600 seconds, got 0: the receiver alarms after three missed beats"
        );
        let e = Key::new("x").range(11u8, 1..=10).unwrap_err();
        assert_eq!(e.problem, "must be from 1 to 10, got 11");
    }

    #[test]
    fn floats_keep_their_point_and_nan_is_refused() {
        let e = Key::new("fec.repair_ratio")
            .range(9.0f64, 0.0..=4.0)
            .unwrap_err();
        assert_eq!(e.problem, "must be from 0.0 to 4.0, got 9.0");
        assert!(Key::new("r").range(f64::NAN, 0.0..=4.0).is_err());
        assert!(Key::new("r").range(f64::INFINITY, 0.0..=4.0).is_err());
    }

    #[test]
    fn one_sided_bounds() {
        assert_eq!(Key::new("a").at_most(10u32, 10), Ok(()));
        let e = Key::new("link.linger_ms")
            .unit("ms")
            .at_most(60_000u32, 10_000)
            .unwrap_err();
        assert_eq!(e.problem, "must be at most 10000 ms, got 60000");
        assert_eq!(Key::new("a").at_least(1u32, 1), Ok(()));
        let e = Key::new("a").at_least(0u32, 1).unwrap_err();
        assert_eq!(e.problem, "must be at least 1, got 0");
        assert_eq!(Key::new("a").off_or_at_least(0u32, 10), Ok(()));
        assert_eq!(Key::new("a").off_or_at_least(10u32, 10), Ok(()));
        let e = Key::new("send.carousel_secs")
            .off_or_at_least(5u32, 10)
            .unwrap_err();
        assert_eq!(e.problem, "must be 0 (off) or at least 10, got 5");
    }

    #[test]
    fn problems_are_prefixed_by_their_section_and_name_the_file() {
        let e = KeyProblem::new("issuer", "must be https")
            .under("oidc")
            .in_file(Path::new("/etc/airlock/receiver.toml"));
        assert_eq!(e.key(), Some("oidc.issuer"));
        assert_eq!(
            e.to_string(),
            "config file /etc/airlock/receiver.toml: key `oidc.issuer`: must be https"
        );
        let e = KeyProblem::missing("trust.signers", "list the sender's public key files")
            .in_file(Path::new("r.toml"));
        assert_eq!(
            e.to_string(),
            "config file r.toml: key `trust.signers` is missing: list the sender's public key files"
        );
    }

    #[test]
    fn io_errors_are_the_source_not_flattened() {
        use std::error::Error as _;
        let e = read(Path::new("/nonexistent/airlock.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        let source = e.source().expect("the io error is the source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert!(
            e.to_string()
                .starts_with("cannot read config file /nonexistent/airlock.toml: ")
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        a: u32,
        #[serde(default)]
        t: Option<Table>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Table {
        b: u32,
    }

    #[test]
    fn a_parse_error_is_one_line_naming_the_line_and_its_table() {
        let e = parse_toml::<Sample>("a = 1\n[t]\nb = 2\ncolour = 3\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file s.toml: line 4 (`colour = 3`) in [t]: "),
            "{e}"
        );
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse_toml::<Sample>("", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `a`"), "{e}");
    }
}
