//! Small text helpers that keep the browser module small: byte-wise search instead of `str::find(&str)` (which
//! brings the two-way searcher), slicing that cannot panic (a panicking `&s[a..b]` brings `core::fmt`'s Unicode
//! tables for its error message), and integer parsing without the float parser.

/// The byte offset of the first `needle` in `hay`.
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return Some(0);
    }
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| &h[i..i + n.len()] == n)
}

pub fn contains(hay: &str, needle: &str) -> bool {
    find(hay, needle).is_some()
}

/// `s` split at byte `at`; all of `s` and `""` when `at` is not a character boundary or past the end.
pub fn split_at(s: &str, at: usize) -> (&str, &str) {
    s.split_at_checked(at).unwrap_or((s, ""))
}

/// A decimal integer of 1 to 19 digits, nothing else.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
}

/// `parts` joined with `separator`.
pub fn join<S: AsRef<str>>(parts: &[S], separator: &str) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.as_ref().len() + separator.len()).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(p.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(find("https://a", "://"), Some(5));
        assert_eq!(find("ab", "abc"), None);
        assert_eq!(find("", "a"), None);
        assert_eq!(find("aaab", "ab"), Some(2));
        assert!(contains("access_token", "token") && !contains("tok", "token"));
        assert_eq!(split_at("grüße", 2), ("gr", "üße"));
        assert_eq!(split_at("grüße", 3), ("grüße", ""));
        assert_eq!(split_at("ab", 9), ("ab", ""));
        assert_eq!(parse_u64("1800000000000"), Some(1_800_000_000_000));
        for bad in ["", "-1", "1.5", "1e3", "99999999999999999999"] {
            assert_eq!(parse_u64(bad), None, "{bad}");
        }
        assert_eq!(join(&["a", "b", "c"], " > "), "a > b > c");
        assert_eq!(join::<&str>(&[], "\n"), "");
    }
}
