//! What `airlock-sender` and `airlock-receiver` share as daemons.
//!
//! The protocol core (`airlock-protocol`) holds no sockets and no runtime; the code both
//! daemons need around it — serving HTTP, cookies, HTML pages, checking config values,
//! the log format, rendering metrics, the files of a backup — lives here once instead of twice. Nothing here
//! knows about frames, users or tokens.

pub mod backup_files;
pub mod config_check;
pub mod cookie;
pub mod html;
pub mod listener;
pub mod log_format;
pub mod metrics_text;
