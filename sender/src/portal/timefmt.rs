//! UTC date formatting for pages (no calendar crate for two functions).

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn parts(unix: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil(days);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// "2026-11-28 21:05 UTC"
pub fn utc(unix: u64) -> String {
    let (y, m, d, h, min, _) = parts(unix);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02} UTC")
}

/// "2026-11-28T21:05:09Z"
pub fn iso8601(unix: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
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
