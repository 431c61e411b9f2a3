//! Why a configuration could not be used: shared by the main config and its
//! `[portal]` section.

use std::path::PathBuf;

use thiserror::Error;

/// The configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("config file {file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}
