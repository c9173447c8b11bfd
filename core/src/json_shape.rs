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
    let mut shape = Shape::default();
    let mut depth = 0usize;
    let mut outer_is_object = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0usize;
    for (i, &b) in json.as_bytes().iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                shape.longest_string = shape.longest_string.max(i - string_start);
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'{' | b'[' => {
                if depth == 0 {
                    outer_is_object = b == b'{';
                }
                depth += 1;
                shape.depth = shape.depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 && outer_is_object => shape.top_level_keys += 1,
            _ => {}
        }
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
    }
}
