//! How a clicked element or a submitted form is described: a short text and a stable CSS selector. Pure: the
//! browser layer walks the DOM and hands over tag names, ids, classes and positions.

/// The longest text kept from an element.
pub const MAX_TEXT_CHARS: usize = 64;
/// How many ancestors a selector names at most (it stops earlier at an element with an id).
pub const MAX_SELECTOR_DEPTH: usize = 4;

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

/// One element on the way from the clicked element up to the document.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Lower-case tag name.
    pub tag: String,
    pub id: String,
    /// The `class` attribute as written.
    pub classes: String,
    /// 1-based position among same-tag siblings, when there are several; 0 otherwise.
    pub nth_of_type: u32,
}

/// True for ids and class names that look generated (CSS-in-JS hashes, framework ids): they change between builds,
/// so a selector using them would not be stable.
pub fn looks_generated(name: &str) -> bool {
    let digits = name.bytes().filter(u8::is_ascii_digit).count();
    name.len() > 32 || digits >= 3 || name.starts_with("css-") || name.starts_with("sc-") || name.contains(':')
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') && !name.as_bytes()[0].is_ascii_digit()
}

/// A selector from the element (first step) up: each step is `tag#id` (and the walk stops there), or
/// `tag.class` with at most two stable classes and `:nth-of-type(n)` when needed. At most [`MAX_SELECTOR_DEPTH`] steps.
pub fn selector(steps: &[Step]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for step in steps.iter().take(MAX_SELECTOR_DEPTH) {
        let mut part = step.tag.clone();
        if is_plain_name(&step.id) && !looks_generated(&step.id) {
            part.push('#');
            part.push_str(&step.id);
            parts.push(part);
            break;
        }
        for class in step.classes.split_whitespace().filter(|c| is_plain_name(c) && !looks_generated(c)).take(2) {
            part.push('.');
            part.push_str(class);
        }
        if step.nth_of_type > 0 {
            part.push_str(":nth-of-type(");
            crate::json::push_u64(&mut part, u64::from(step.nth_of_type));
            part.push(')');
        }
        parts.push(part);
    }
    parts.reverse();
    crate::text::join(&parts, " > ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(tag: &str, id: &str, classes: &str, nth: u32) -> Step {
        Step { tag: tag.into(), id: id.into(), classes: classes.into(), nth_of_type: nth }
    }

    #[test]
    fn text_is_short_and_tidy() {
        assert_eq!(short_text("  Buy\n\t now  "), "Buy now");
        assert_eq!(short_text(""), "");
        assert_eq!(short_text(&"é".repeat(100)).chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn selectors_are_stable() {
        assert_eq!(selector(&[step("button", "buy", "btn primary", 0)]), "button#buy");
        assert_eq!(
            selector(&[step("a", "", "link css-1x2y3z", 2), step("li", "", "", 3), step("ul", "", "menu", 0), step("nav", "top", "", 0)]),
            "nav#top > ul.menu > li:nth-of-type(3) > a.link:nth-of-type(2)"
        );
        assert_eq!(selector(&[step("a", ":r1:", "", 0), step("div", "", "", 0)]), "div > a");
        let deep: Vec<Step> = (0..10).map(|_| step("div", "", "", 0)).collect();
        assert_eq!(selector(&deep), "div > div > div > div");
        assert_eq!(selector(&[step("a", "x\"]", "a\"b", 0)]), "a", "never emits characters that need escaping");
    }
}
