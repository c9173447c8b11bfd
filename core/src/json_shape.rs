//! One linear pass over JSON text that has already been parsed once, measuring what the limits bound:
//! nesting depth, top-level key count and the longest string. Cheaper than building a value tree; [`bound`] is
//! cheaper still, and for most objects enough.

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// 1 for a flat object or array, 0 for a scalar.
    pub depth: usize,
    /// Keys of the outermost object (0 when the value is not an object).
    pub top_level_keys: usize,
    /// Longest string (key or value), in bytes of JSON text between the quotes.
    pub longest_string: usize,
}

/// Measures valid JSON text. On invalid text the result is meaningless but the function still returns.
pub fn measure(json: &str) -> Shape {
    let bytes = json.as_bytes();
    let mut shape = Shape::default();
    let mut depth = 0usize;
    let mut outer_is_object = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // A string is skipped eight bytes at a time: most of an event's bytes are inside strings.
                let start = i + 1;
                let mut end = start;
                loop {
                    end = quote_or_backslash(bytes, end);
                    match bytes.get(end) {
                        Some(b'\\') => end += 2,
                        _ => break,
                    }
                }
                let end = end.min(bytes.len());
                shape.longest_string = shape.longest_string.max(end - start);
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                if depth == 0 {
                    outer_is_object = bytes[i] == b'{';
                }
                depth += 1;
                shape.depth = shape.depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 && outer_is_object => shape.top_level_keys += 1,
            _ => {}
        }
        i += 1;
    }
    shape
}

/// Upper bounds of [`measure`]'s figures, from byte counts alone: the depth is at most the number of `{` and `[`
/// bytes, the top-level keys at most the number of `:` bytes (each key is followed by one; strings only add more),
/// and the longest string at most the text's length. One branch-free pass that the compiler vectorises: an event's
/// properties and context are mostly far inside the limits, and this proves it for ~1/10 of `measure`'s cost.
pub fn bound(json: &str) -> Shape {
    let (mut opens, mut colons) = (0usize, 0usize);
    // Narrow per-chunk counters keep the vector lanes wide; a chunk of 255 bytes cannot overflow them.
    for chunk in json.as_bytes().chunks(255) {
        let (mut o, mut c) = (0u8, 0u8);
        for &b in chunk {
            // `|0x20` maps `[` (0x5b) onto `{` (0x7b), and no other byte onto it.
            o += u8::from(b | 0x20 == b'{');
            c += u8::from(b == b':');
        }
        opens += usize::from(o);
        colons += usize::from(c);
    }
    Shape { depth: opens, top_level_keys: colons, longest_string: json.len() }
}

/// The index of the first `"` or `\\` at or after `from` (`bytes.len()` when there is none): a word at a time, with
/// the "has a zero byte" bit trick on the word XORed with each byte sought.
fn quote_or_backslash(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    let zero_bytes = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            // The lowest flagged byte is exact (a borrow can only flag bytes above a real zero byte).
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\') {
        i += 1;
    }
    i.min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, depth: usize, keys: usize, longest: usize) {
        assert_eq!(measure(json), Shape { depth, top_level_keys: keys, longest_string: longest }, "{json}");
    }

    #[test]
    fn measures() {
        check("1", 0, 0, 0);
        check("{}", 1, 0, 0);
        check(r#"{"a":1,"bb":{"c":[1,2,{"d":"x:y"}]}}"#, 4, 2, 3);
        check(r#"{"a":"{[\"quoted\":]}"}"#, 1, 1, 15);
        check(r#"[{"a":1},{"b":2}]"#, 2, 0, 1);
        check(r#"{"a":"ends with \\\\","b":"\"\\"}"#, 1, 2, 14);
        // Truncated text still returns.
        check(r#"{"a":"open"#, 1, 1, 4);
        check(r#"{"a":"\"#, 1, 1, 1);
        check(r#"{"long":"0123456789abcdef\"ghijklmnop\\q","k":"x"}"#, 1, 2, 31);
    }

    #[test]
    fn bound_is_never_below_measure() {
        let texts = [
            "1",
            "{}",
            "[]",
            r#"{"a":1,"bb":{"c":[1,2,{"d":"x:y"}]}}"#,
            r#"{"a":"{[\"quoted\":]}"}"#,
            r#"[{"a":1},{"b":2}]"#,
            r#"{"a":"ends with \\\\","b":"\"\\"}"#,
            r#"{"k":[[[[[[[[[[[1]]]]]]]]]]]}"#,
        ];
        let long_keys: String = format!("{{{}}}", (0..600).map(|i| format!("\"k{i}\":[{{\"x\":\"{}\"}}]", "y".repeat(i % 7))).collect::<Vec<_>>().join(","));
        for text in texts.iter().copied().chain([long_keys.as_str()]) {
            let (exact, bound) = (measure(text), bound(text));
            assert!(bound.depth >= exact.depth && bound.top_level_keys >= exact.top_level_keys && bound.longest_string >= exact.longest_string, "{text}: {bound:?} < {exact:?}");
        }
        // Brackets inside strings count too (a bound, not a measure), and `[` is counted like `{`.
        assert_eq!(bound(r#"{"a":"[{"}"#), Shape { depth: 3, top_level_keys: 1, longest_string: 10 });
        assert_eq!(bound(&long_keys).top_level_keys, 1_200);
    }

    #[test]
    fn the_word_scan_finds_what_a_byte_scan_finds() {
        // Every position of quotes and backslashes among bytes that look like them in part (0x22 / 0x5c neighbours,
        // bytes with the high bit set), at every offset and length around the word size.
        let alphabet = [b'a', b'"', b'\\', 0x21, 0x23, 0x5b, 0x5d, 0xa2, 0xdc, 0x00, 0xff, 0x02];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|k| alphabet[((seed >> (k % 60)) as usize + k * 7) % alphabet.len()]).collect();
            for from in 0..=len {
                let expected = (from..len).find(|&k| matches!(bytes[k], b'"' | b'\\')).unwrap_or(len);
                assert_eq!(quote_or_backslash(&bytes, from), expected, "{bytes:?} from {from}");
            }
        }
    }
}
