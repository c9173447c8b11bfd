//! Small text helpers that keep the browser module small: byte-wise search instead of `str::find(&str)` (which
//! brings the two-way searcher), slicing that cannot panic (a panicking `&s[a..b]` brings `core::fmt`'s Unicode
//! tables for its error message), splitting at ASCII separator bytes instead of `char` patterns (which bring the
//! char searcher, `memchr` and UTF-8 decoding), and integer parsing without the float parser.

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

/// The byte offset of the first `byte` in `s`.
pub fn find_byte(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|b| b == byte)
}

/// `s` split around its first `sep` (an ASCII byte).
pub fn split_once(s: &str, sep: u8) -> Option<(&str, &str)> {
    let (before, rest) = split_at(s, find_byte(s, sep)?);
    Some((before, split_at(rest, 1).1))
}

/// The parts of `s` between `sep` bytes (ASCII), like `str::split` with a `char`.
pub fn split(s: &str, sep: u8) -> Split<'_> {
    Split { rest: Some(s), sep }
}

pub struct Split<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        Some(match split_once(s, self.sep) {
            Some((part, rest)) => {
                self.rest = Some(rest);
                part
            }
            None => {
                self.rest = None;
                s
            }
        })
    }
}

/// `s` without the leading bytes that are in `set` (ASCII).
pub fn trim_start_bytes<'a>(s: &'a str, set: &[u8]) -> &'a str {
    let mut rest = s;
    while rest.as_bytes().first().is_some_and(|b| set.iter().any(|x| x == b)) {
        rest = split_at(rest, 1).1;
    }
    rest
}

/// `s` split at byte `at`; all of `s` and `""` when `at` is not a character boundary or past the end.
pub fn split_at(s: &str, at: usize) -> (&str, &str) {
    if s.is_char_boundary(at) {
        // SAFETY: `at` is a character boundary of `s` (which includes `at <= s.len()`).
        unsafe { (s.get_unchecked(..at), s.get_unchecked(at..)) }
    } else {
        (s, "")
    }
}

/// At most `max` bytes of `s`, cut at a character boundary (a slice: no copy).
pub fn cut(s: &str, mut max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    while !s.is_char_boundary(max) {
        max -= 1;
    }
    split_at(s, max).0
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
        assert_eq!((cut("grüße", 9), cut("grüße", 3), cut("grüße", 2)), ("grüße", "gr", "gr"));
        assert_eq!(parse_u64("1800000000000"), Some(1_800_000_000_000));
        for bad in ["", "-1", "1.5", "1e3", "99999999999999999999"] {
            assert_eq!(parse_u64(bad), None, "{bad}");
        }
        assert_eq!(join(&["a", "b", "c"], " > "), "a > b > c");
        assert_eq!(split_once("k=v=w", b'='), Some(("k", "v=w")));
        assert_eq!(split_once("kv", b'='), None);
        assert_eq!(split("a&&b&", b'&').collect::<Vec<_>>(), ["a", "", "b", ""]);
        assert_eq!(split("", b'&').collect::<Vec<_>>(), [""]);
        assert_eq!(trim_start_bytes("/?/x?", b"/?"), "x?");
        assert_eq!(join::<&str>(&[], "\n"), "");
    }
}
