//! One linear pass over JSON text that has already been parsed once, measuring what the limits bound:
//! nesting depth, top-level key count and the longest string. Cheaper than building a value tree.

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
                // A string is skipped in a tight loop of its own: most of an event's bytes are inside strings.
                let start = i + 1;
                let mut end = start;
                while let Some(&c) = bytes.get(end) {
                    match c {
                        b'"' => break,
                        b'\\' => end += 2,
                        _ => end += 1,
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
    }
}
