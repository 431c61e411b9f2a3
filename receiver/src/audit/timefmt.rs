//! RFC 3339 times for people and SIEMs (the `time` crate): UTC only on output, any
//! offset on input.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

const WITH_MS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const WITH_SECS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

fn from_ms(ms: u64) -> Option<OffsetDateTime> {
    let nanos = i128::from(ms).checked_mul(1_000_000)?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// `2026-11-28T20:44:53.123Z` for unix milliseconds (beyond year 9999: `unix-ms N`).
pub fn format_ms(ms: u64) -> String {
    from_ms(ms)
        .and_then(|t| t.format(WITH_MS).ok())
        .unwrap_or_else(|| format!("unix-ms {ms}"))
}

/// `2026-11-28T20:44:53Z` for unix seconds (beyond year 9999: `unix N`).
pub fn format_secs(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(WITH_SECS).ok())
        .unwrap_or_else(|| format!("unix {secs}"))
}

/// Parses an RFC 3339 date-time (`2026-11-28T20:44:53Z`, `...T20:44:53.5+01:00`; a space for
/// `T` is accepted) into unix milliseconds. Dates that do not exist (2027-02-31) are refused.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let text: Cow<'_, str> = match text.get(10..11) {
        Some(" ") => Cow::Owned(format!("{}T{}", text.get(..10)?, text.get(11..)?)),
        _ => Cow::Borrowed(text),
    };
    let t = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0u64, 1_800_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(
                parse_rfc3339_ms(&format_ms(ms)),
                Some(ms),
                "{}",
                format_ms(ms)
            );
        }
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_secs(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(
            parse_rfc3339_ms("2028-02-29T00:00:00Z"),
            Some(1_835_395_200_000)
        );
    }

    #[test]
    fn offsets_and_garbage() {
        assert_eq!(
            parse_rfc3339_ms("2027-01-15T09:00:00+01:00"),
            Some(1_800_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2027-01-15 08:00:00.5Z"),
            Some(1_800_000_000_500)
        );
        for bad in [
            "",
            "2027-01-15",
            "2027-13-01T00:00:00Z",
            "2027-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2027-01-15T08:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
