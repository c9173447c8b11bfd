//! Hand-written JSON output: string escaping and integers, appended to a `String`.
//!
//! serde_json costs about 23 KB brotli in the browser module (research/wasm-toolchain.md §3); what the SDK writes is a
//! handful of known shapes, so a few push functions do. No `core::fmt` either: it drags in formatting machinery.

/// Appends `s` as a JSON string literal, quotes included. Control characters, quotes and backslashes are escaped;
/// everything else, non-ASCII included, is copied as UTF-8.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(crate::text::split_at(crate::text::split_at(s, i).0, start).1);
        if escape.is_empty() {
            out.push_str("\\u00");
            push_ascii(out, hex_digit(b >> 4));
            push_ascii(out, hex_digit(b & 0xf));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(crate::text::split_at(s, start).1);
    out.push('"');
}

/// Appends `"key":` — `key` must be a literal that needs no escaping.
pub fn push_key(out: &mut String, key: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

/// Appends `"key":"value"` with `value` escaped, preceded by a comma unless `out` ends an opening brace.
pub fn push_member(out: &mut String, key: &str, value: &str) {
    push_separator(out);
    push_key(out, key);
    push_str(out, value);
}

/// Appends `"key":value` where `value` is already JSON (an object, a number, `true`…).
pub fn push_raw_member(out: &mut String, key: &str, raw: &str) {
    push_separator(out);
    push_key(out, key);
    out.push_str(raw);
}

/// Appends `"key":true|false`.
pub fn push_bool_member(out: &mut String, key: &str, value: bool) {
    push_raw_member(out, key, if value { "true" } else { "false" });
}

/// Appends `"key":n`.
pub fn push_u64_member(out: &mut String, key: &str, n: u64) {
    push_separator(out);
    push_key(out, key);
    push_u64(out, n);
}

/// A comma, unless the object or array just opened.
fn push_separator(out: &mut String) {
    if !matches!(out.as_bytes().last(), Some(b'{' | b'[') | None) {
        out.push(',');
    }
}

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        push_ascii(out, d);
    }
}

/// Appends `n` as exactly `width` digits (leading zeros; higher digits cut).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut div = 1;
    for _ in 1..width {
        div *= 10;
    }
    let mut n = n % (div * 10);
    while div > 0 {
        push_ascii(out, b'0' + (n / div) as u8);
        n %= div;
        div /= 10;
    }
}

/// Appends epoch milliseconds as `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (quoted), the form `footprint_core::time` formats
/// and parses; written here without `core::fmt`, and tested against core's formatter.
pub fn push_timestamp(out: &mut String, ms: f64) {
    out.push('"');
    push_iso_time(out, ms);
    out.push('"');
}

/// Appends epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn push_iso_time(out: &mut String, ms: f64) {
    let ms = ms.max(0.0) as u64;
    let (secs, millis) = (ms / 1_000, ms % 1_000);
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, non-negative days only).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    for (n, width, sep) in [(year, 4, b'-'), (month, 2, b'-'), (day, 2, b'T'), (sod / 3_600, 2, b':'), (sod / 60 % 60, 2, b':'), (sod % 60, 2, b'.'), (millis, 3, b'Z')] {
        push_padded(out, n, width);
        push_ascii(out, sep);
    }
}

pub fn hex_digit(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + n - 10
    }
}

/// Appends one ASCII byte (others are ignored). Smaller than `String::push`, which encodes any `char` as UTF-8.
pub fn push_ascii(out: &mut String, b: u8) {
    if b.is_ascii() {
        // SAFETY: an ASCII byte is a whole UTF-8 character.
        unsafe { out.as_mut_vec().push(b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        let mut out = String::new();
        push_str(&mut out, input);
        assert_eq!(out, expected);
    }

    #[test]
    fn escapes_what_json_requires_and_nothing_else() {
        check("plain", r#""plain""#);
        check("a\"b\\c", r#""a\"b\\c""#);
        check("l1\nl2\r\t", r#""l1\u000al2\u000d\u0009""#);
        check("\u{0}\u{1f}", r#""\u0000\u001f""#);
        check("grüße 👣 </script>", "\"grüße 👣 </script>\"");
    }

    #[test]
    fn members_get_commas_between_them() {
        let mut out = String::from("{");
        push_member(&mut out, "a", "x");
        push_bool_member(&mut out, "b", true);
        push_u64_member(&mut out, "c", 0);
        push_raw_member(&mut out, "d", "{}");
        out.push('}');
        assert_eq!(out, r#"{"a":"x","b":true,"c":0,"d":{}}"#);
    }

    #[test]
    fn timestamps_match_the_core_formatter() {
        let mut ms = 0i64;
        while ms < 7_000_000_000_000 {
            let mut out = String::new();
            push_timestamp(&mut out, ms as f64);
            assert_eq!(out, format!("\"{}\"", footprint_core::time::format_rfc3339_ms(ms)), "{ms}");
            ms = ms * 3 + 86_399_999;
        }
        let mut out = String::new();
        push_timestamp(&mut out, 1_709_210_096_789.0);
        assert_eq!(out, "\"2024-02-29T12:34:56.789Z\"");
    }

    #[test]
    fn integers() {
        for (n, s) in [(0u64, "0"), (7, "7"), (10, "10"), (18_446_744_073_709_551_615, "18446744073709551615")] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, s);
        }
        let mut out = String::new();
        push_padded(&mut out, 7, 3);
        push_padded(&mut out, 2024, 4);
        assert_eq!(out, "0072024");
    }
}
