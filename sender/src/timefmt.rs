//! UTC dates for pages and the command line (the `time` crate).

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const MINUTES: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
const ISO8601: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

fn format(unix: u64, items: &[BorrowedFormatItem<'_>]) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(items).ok())
        .unwrap_or_else(|| format!("unix {unix}"))
}

/// "2026-11-28 21:05 UTC"
pub fn utc(unix: u64) -> String {
    format(unix, MINUTES)
}

/// "2026-11-28T21:05:09Z"
pub fn iso8601(unix: u64) -> String {
    format(unix, ISO8601)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_900_000), "2026-11-28 21:06 UTC");
    }
}
