//! When a navigation is a new page view: the initial load always is; History API changes and hash changes are when
//! they lead somewhere else. No duplicates when a router calls `pushState` and `replaceState` for the same URL, or
//! when `popstate` and `hashchange` both fire for one step.

/// What told us the URL may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Load,
    PushState,
    ReplaceState,
    PopState,
    HashChange,
}

/// The page identity a page view is counted for: the URL without its fragment, unless the fragment is a route
/// (`#/…` or `#!…`, as hash routers write them).
pub fn page_key(url: &str) -> &str {
    match crate::text::split_once(url, b'#') {
        Some((_, fragment)) if fragment.starts_with("/") || fragment.starts_with("!") => url,
        Some((base, _)) => base,
        None => url,
    }
}

/// Remembers the last page viewed and decides about the next.
#[derive(Debug, Default)]
pub struct Navigation {
    last: Option<String>,
}

impl Navigation {
    /// True when a page view should be sent for `url` (an absolute URL, already scrubbed).
    pub fn is_new_page_view(&mut self, url: &str, trigger: Trigger) -> bool {
        let key = page_key(url);
        if trigger != Trigger::Load && self.last.as_deref() == Some(key) {
            return false;
        }
        self.last = Some(key.to_owned());
        true
    }

    /// The URL of the last page view, if any: the referrer of the next SPA page view.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Trigger::*;

    #[track_caller]
    fn check(steps: &[(&str, Trigger, bool)]) {
        let mut nav = Navigation::default();
        for (i, (url, trigger, expected)) in steps.iter().enumerate() {
            assert_eq!(nav.is_new_page_view(url, *trigger), *expected, "step {i}: {trigger:?} {url}");
        }
    }

    #[test]
    fn spa_navigations_count_once() {
        check(&[
            ("https://a.example/", Load, true),
            ("https://a.example/", ReplaceState, false),
            ("https://a.example/products", PushState, true),
            ("https://a.example/products", ReplaceState, false),
            ("https://a.example/products", PushState, false),
            ("https://a.example/products?page=2", PushState, true),
            ("https://a.example/products", PopState, true),
            ("https://a.example/products#reviews", HashChange, false),
            ("https://a.example/products#reviews", PopState, false),
        ]);
    }

    #[test]
    fn hash_routes_are_pages_and_anchors_are_not() {
        check(&[
            ("https://a.example/app#/inbox", Load, true),
            ("https://a.example/app#/inbox/42", HashChange, true),
            ("https://a.example/app#/inbox/42", PopState, false),
            ("https://a.example/app#!/settings", HashChange, true),
            ("https://a.example/app#top", HashChange, true),
            ("https://a.example/app#bottom", HashChange, false),
        ]);
    }

    #[test]
    fn a_reload_is_a_page_view() {
        check(&[("https://a.example/", Load, true), ("https://a.example/", Load, true)]);
    }
}
