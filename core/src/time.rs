//! Time rules of the wire format: RFC 3339 parsing and formatting in epoch milliseconds, and clock-skew correction.
//!
//! Hand-written rather than pulling a date crate into the browser module: the grammar we accept is small and the
//! civil-date arithmetic is the well-known days-from-civil algorithm.

use crate::limits::MAX_FUTURE_SKEW_MS;

/// Parses an ISO-8601 / RFC 3339 date-time (`2024-05-01T12:00:00.123Z`, `…+02:00`, `…+0200`, space instead of `T`,
/// any number of fraction digits) into epoch milliseconds. A missing offset means UTC. `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (h, m) = match rest.len() {
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                2 => (digits(rest, 0, 2)?, 0),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let total = h * 60 + m;
            if sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(secs * 1_000 + millis)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form JavaScript's `toISOString` produces.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3_600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// The event time after clock-skew correction, and whether it had to be clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrectedTime {
    pub timestamp_ms: i64,
    /// True when the corrected time lay more than [`MAX_FUTURE_SKEW_MS`] after the receive time and was set to it.
    pub clamped_future: bool,
}

/// Segment's rule: `timestamp = receivedAt − (sentAt − originalTimestamp)`. Without `sentAt` the device time is
/// taken as is; without a device time the receive time is the event time. Far-future results are clamped.
pub fn corrected_timestamp(received_at_ms: i64, original_ms: Option<i64>, sent_at_ms: Option<i64>) -> CorrectedTime {
    let timestamp_ms = match (original_ms, sent_at_ms) {
        (Some(original), Some(sent)) => received_at_ms.saturating_sub(sent.saturating_sub(original)),
        (Some(original), None) => original,
        (None, _) => received_at_ms,
    };
    if timestamp_ms > received_at_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        CorrectedTime { timestamp_ms: received_at_ms, clamped_future: true }
    } else {
        CorrectedTime { timestamp_ms, clamped_future: false }
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<i64>) {
        assert_eq!(parse_rfc3339_ms(input), expected, "{input}");
    }

    #[test]
    fn parses_the_forms_libraries_send() {
        check("1970-01-01T00:00:00Z", Some(0));
        check("1970-01-01T00:00:00.001Z", Some(1));
        check("2024-02-29T12:34:56.789Z", Some(1_709_210_096_789));
        check("2024-02-29T12:34:56.789123Z", Some(1_709_210_096_789));
        check("2024-02-29T12:34:56.7Z", Some(1_709_210_096_700));
        check("2024-02-29T14:34:56.789+02:00", Some(1_709_210_096_789));
        check("2024-02-29T14:34:56.789+0200", Some(1_709_210_096_789));
        check("2024-02-29T10:34:56.789-02:00", Some(1_709_210_096_789));
        check("2024-02-29 12:34:56.789", Some(1_709_210_096_789));
        check("1969-12-31T23:59:59.999Z", Some(-1));
    }

    #[test]
    fn refuses_what_is_not_a_date_time() {
        for bad in ["", "now", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01",
            "2024-01-01T24:00:00Z", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00Zjunk", "2024-01-01T00:00:00+25:00",
            "２０２４-01-01T00:00:00Z"] {
            check(bad, None);
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1, -1, 1_709_210_096_789, 4_102_444_800_000, -62_135_596_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
        assert_eq!(format_rfc3339_ms(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn skew_correction_follows_segment() {
        // Device clock 1 h fast: event made at device 11:00, sent at device 11:05, received at server 10:05.
        let h = 3_600_000;
        let got = corrected_timestamp(10 * h + 300_000, Some(11 * h), Some(11 * h + 300_000));
        assert_eq!(got, CorrectedTime { timestamp_ms: 10 * h, clamped_future: false });
        assert_eq!(corrected_timestamp(5, None, Some(7)).timestamp_ms, 5);
        assert_eq!(corrected_timestamp(5, Some(3), None).timestamp_ms, 3);
        let far = corrected_timestamp(0, Some(MAX_FUTURE_SKEW_MS + 1), None);
        assert_eq!(far, CorrectedTime { timestamp_ms: 0, clamped_future: true });
        assert!(!corrected_timestamp(0, Some(MAX_FUTURE_SKEW_MS), None).clamped_future);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = parse_rfc3339_ms(&s);
        }

        #[test]
        fn format_parse_identity(ms in -60_000_000_000_000i64..60_000_000_000_000) {
            proptest::prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }
}
