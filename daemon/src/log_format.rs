//! The log format on stderr, the same flag on both daemons: `--log-format text|json`.
//!
//! The level filter is `RUST_LOG` (default `info`) for both, so an operator's unit file and
//! log shipper work the same for the sender and the receiver.

/// How a daemon logs on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `format` on stderr, filtered by `RUST_LOG` (default
/// `info`). Called once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The words both daemons accept, and the default.
    #[test]
    fn the_values_are_text_and_json() {
        let words: Vec<String> = LogFormat::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(words, ["text", "json"]);
        assert_eq!(LogFormat::default(), LogFormat::Text);
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
    }
}
