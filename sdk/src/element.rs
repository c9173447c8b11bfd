//! How a clicked element is described: a short text. (The stable CSS selector is built by `js/capture.js`,
//! which walks the DOM; this bounds whatever text arrives.)

/// The longest text kept from an element.
pub const MAX_TEXT_CHARS: usize = 64;
/// The longest selector kept.
pub const MAX_SELECTOR_CHARS: usize = 256;

/// `raw` with whitespace runs collapsed to one space, trimmed, cut to [`MAX_TEXT_CHARS`] characters.
pub fn short_text(raw: &str) -> String {
    let mut out = String::new();
    for (n, word) in raw.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_TEXT_CHARS * 4 {
            break;
        }
    }
    if let Some((i, _)) = out.char_indices().nth(MAX_TEXT_CHARS) {
        out.truncate(i);
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
