//! How a clicked element is described: a short text. (The stable CSS selector is built by `js/capture.js`,
//! which walks the DOM; this bounds whatever text arrives.)

/// The longest text kept from an element.
pub const MAX_TEXT_CHARS: usize = 64;
/// The longest selector kept.
pub const MAX_SELECTOR_CHARS: usize = 256;

/// `raw` with whitespace runs collapsed to one space, trimmed, cut to [`MAX_TEXT_CHARS`] characters.
/// (ASCII whitespace only: the Unicode tables `split_whitespace` needs cost more than they are worth here.)
pub fn short_text(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut gap = false;
    for c in raw.chars() {
        if c.is_ascii_whitespace() {
            gap = !out.is_empty();
            continue;
        }
        if chars + usize::from(gap) >= MAX_TEXT_CHARS {
            break;
        }
        if gap {
            out.push(' ');
            chars += 1;
            gap = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_short_and_tidy() {
        assert_eq!(short_text("  Buy\n\t now  "), "Buy now");
        assert_eq!(short_text(""), "");
        assert_eq!(short_text(&"é".repeat(100)).chars().count(), MAX_TEXT_CHARS);
    }
}
