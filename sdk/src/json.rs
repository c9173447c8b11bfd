//! Hand-written JSON output: members, integers and URLs, appended to a `String`.
//!
//! serde_json costs about 23 KB brotli in the browser module (research/wasm-toolchain.md §3); what the SDK writes is a
//! handful of known shapes, so a few push functions do. No `core::fmt` either: it drags in formatting machinery.

/// Appends `url` as a JSON string. The module escapes nothing else: every other text it writes into JSON arrives as
/// JSON already (`js/client.js` and `js/capture.js` pass texts through `JSON.stringify`), or is its own. A URL as
/// the browser serializes it has no control characters and no `"` (percent-encoded), but may hold `\`; for any
/// text, `"` and `\` are escaped and control characters left out.
pub fn push_url(out: &mut String, url: &str) {
    out.push('"');
    for &b in url.as_bytes() {
        if b == b'"' || b == b'\\' {
            push_ascii(out, b'\\');
        }
        if b >= 0x20 {
            // SAFETY: whole UTF-8 sequences are copied (only ASCII control bytes are left out).
            unsafe { out.as_mut_vec().push(b) }
        }
    }
    out.push('"');
}

/// Appends `"key":` and `url` as a JSON string ([`push_url`]), preceded by a comma unless `out` ends an opening brace.
pub fn push_url_member(out: &mut String, key: &str, url: &str) {
    push_separator(out);
    push_key(out, key);
    push_url(out, url);
}

/// Appends `"key":` — `key` must be a literal that needs no escaping.
pub fn push_key(out: &mut String, key: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
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

/// Appends the decimal digits of `n`, taken eight at a time in 32-bit arithmetic (every event's time goes through
/// here): a 64-bit division is a slow instruction, a 32-bit division by a constant compiles to a multiplication.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut low = 0;
    loop {
        if i % 8 == 4 {
            low = (n % 100_000_000) as u32;
            n /= 100_000_000;
        }
        i -= 1;
        digits[i] = b'0' + (low % 10) as u8;
        low /= 10;
        if low == 0 && n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        push_ascii(out, d);
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

    #[test]
    fn urls_are_json_strings() {
        let check = |url: &str, expected: &str| {
            let mut out = String::new();
            push_url(&mut out, url);
            assert_eq!(out, expected);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), url.replace(|c: char| c < ' ', ""));
        };
        check("https://a.example/p?q=1#x", r#""https://a.example/p?q=1#x""#);
        check("foo:a\\b?c=\\\"", r#""foo:a\\b?c=\\\"""#);
        check("https://a.example/gr\u{fc}\u{df}e\n", "\"https://a.example/gr\u{fc}\u{df}e\"");
    }

    #[test]
    fn members_get_commas_between_them() {
        let mut out = String::from("{");
        push_raw_member(&mut out, "a", "\"x\"");
        push_bool_member(&mut out, "b", true);
        push_u64_member(&mut out, "c", 0);
        push_raw_member(&mut out, "d", "{}");
        out.push('}');
        assert_eq!(out, r#"{"a":"x","b":true,"c":0,"d":{}}"#);
    }

    #[test]
    fn integers() {
        for (n, s) in [(0u64, "0"), (7, "7"), (10, "10"), (99_999_999, "99999999"), (100_000_000, "100000000"), (1_700_000_000_000, "1700000000000"), (10_000_000_000_000_001, "10000000000000001"), (18_446_744_073_709_551_615, "18446744073709551615")] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, s);
        }
        let powers = (0..64).flat_map(|k| [1u64 << k, (1u64 << k) - 1]).chain((0..20).flat_map(|k| [10u64.pow(k), 10u64.pow(k) - 1, 10u64.pow(k) + 1]));
        for n in powers.chain((0..100_000).map(|i| i * 7_919_123_457)) {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
