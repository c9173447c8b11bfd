//! How a clicked element is described: a short text. (The stable CSS selector is built by `js/capture.js`,
//! which walks the DOM; this bounds whatever text arrives.)

use crate::text::split_at;

/// The longest text kept from an element.
pub const MAX_TEXT_CHARS: usize = 64;
/// The longest selector kept.
pub const MAX_SELECTOR_CHARS: usize = 256;

/// `raw` with whitespace runs collapsed to one space, trimmed, cut to [`MAX_TEXT_CHARS`] characters.
/// (ASCII whitespace only, and byte-wise: the Unicode tables `split_whitespace` needs, and `char` decoding, cost more
/// than they are worth here. UTF-8 continuation bytes are never ASCII, so words are cut at character boundaries.)
pub fn short_text(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::new();
    let mut chars = 0;
    let mut i = 0;
    while i < bytes.len() && chars < MAX_TEXT_CHARS {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if chars > 0 {
            if chars + 1 >= MAX_TEXT_CHARS {
                break;
            }
            out.push(' ');
            chars += 1;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            // A character starts at every byte that is not a UTF-8 continuation byte.
            if bytes[i] & 0xc0 != 0x80 {
                if chars == MAX_TEXT_CHARS {
                    break;
                }
                chars += 1;
            }
            i += 1;
        }
        out.push_str(split_at(split_at(raw, i).0, start).1);
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
