//! URL rules: scrubbing query parameters that look like personal data or secrets, the parts of a URL, and how a
//! link is classified (outbound, download). (`context.page` and `context.campaign` are written by the browser
//! from the scrubbed URL: see `Device::context`.)
//!
//! The browser hands over absolute URLs (`location.href`, `a.href`), so this only splits text; it never resolves.

use crate::text::{contains, find, find_byte, split, split_at, trim_start_bytes};
use crate::json::push_ascii;

/// Parameter names dropped from every URL before it leaves the page — names containing one of `SCRUB_CONTAINS` or
/// equal to one of `SCRUB_EXACT` (case-insensitive) — are core's lists, the ones the collector scrubs with again.
/// Sites add their own with the `scrub` option.
use footprint_core::sensitive::{CLICK_ID_PARAMS, SCRUB_CONTAINS, SCRUB_EXACT};

macro_rules! joined {
    ($list:expr) => {{
        const BYTES: [u8; joined_len($list)] = join($list);
        // SAFETY: `&str`s joined with ASCII spaces are UTF-8.
        unsafe { core::str::from_utf8_unchecked(&BYTES) }
    }};
}

/// Core's lists as space-separated texts, joined at compile time: a table of `&str` costs the module 8 bytes of
/// pointers per name (about 450 bytes for these three), a text only its letters (−123 B brotli).
pub const CONTAINS: &str = joined!(SCRUB_CONTAINS);
pub const EXACT: &str = joined!(SCRUB_EXACT);
pub const CLICK_IDS: &str = joined!(CLICK_ID_PARAMS);

const fn joined_len(list: &[&str]) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < list.len() {
        n += list[i].len() + 1;
        i += 1;
    }
    n.saturating_sub(1)
}

const fn join<const N: usize>(list: &[&str]) -> [u8; N] {
    let mut out = [b' '; N];
    let (mut at, mut i) = (0, 0);
    while i < list.len() {
        let name = list[i].as_bytes();
        let mut j = 0;
        while j < name.len() {
            out[at] = name[j];
            at += 1;
            j += 1;
        }
        at += 1;
        i += 1;
    }
    out
}

/// Whether one of the `sep`-separated `parts` is part of `name`.
fn part_of(parts: &str, sep: u8, name: &str) -> bool {
    split(parts, sep).any(|p| !p.is_empty() && contains(name, p))
}

/// Whether `name` is one of the space-separated `names`.
fn listed(names: &str, name: &str) -> bool {
    split(names, b' ').any(|n| !n.is_empty() && n == name)
}

/// File extensions whose links count as downloads, space-separated (one string, not a table of them: smaller).
pub const DOWNLOAD_EXTENSIONS: &str = "pdf zip gz tgz bz2 xz 7z rar dmg exe msi pkg deb rpm apk iso csv xls xlsx doc docx \
    ppt pptx odt ods txt rtf epub mp3 wav mp4 mov avi mkv webm";

/// `url` without query parameters (in the query and in a `#a=b&c=d` fragment) whose name is sensitive by the
/// built-in lists or `extra` (lower-case substrings, comma-separated), and without any parameter whose value looks
/// like an e-mail address.
pub fn scrub(url: &str, extra: &str) -> String {
    scrub_with(url, extra, "")
}

/// [`scrub`], also dropping parameters named exactly one of `also`, space-separated (the ad click IDs,
/// [`CLICK_IDS`], without marketing consent).
pub fn scrub_with(url: &str, extra: &str, also: &str) -> String {
    let sensitive = |p: &str| is_sensitive(p, (extra, also));
    let (before_hash, fragment) = split_once(url, b'#');
    let (base, query) = split_once(before_hash, b'?');
    // A fragment is scrubbed when it reads like parameters (OAuth's implicit flow puts tokens there).
    let (fragment, fragment_params) = match fragment {
        Some(f) if find_byte(f, b'=').is_some() => (Some(trim_start_bytes(f, b"/?")), true),
        f => (f, false),
    };
    let dirty = |part: Option<&str>| part.is_some_and(|p| split(p, b'&').any(sensitive));
    let parts = [(b'?', query, dirty(query)), (b'#', fragment, fragment_params && dirty(fragment))];
    if !parts[0].2 && !parts[1].2 {
        return url.to_owned();
    }
    // A part with a sensitive parameter loses it (and its empty parameters); the other stays as it is. A part left
    // empty goes with its separator.
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    for (sep, part, dirty) in parts {
        let Some(part) = part.filter(|p| !p.is_empty()) else { continue };
        let mut first = true;
        for p in split(part, b'&').filter(|p| !dirty || !p.is_empty() && !sensitive(p)) {
            push_ascii(&mut out, if first { sep } else { b'&' });
            first = false;
            out.push_str(p);
        }
    }
    out
}

fn is_sensitive(param: &str, (extra, also): (&str, &str)) -> bool {
    let (name, value) = split_once(param, b'=');
    let name = name.to_ascii_lowercase();
    part_of(CONTAINS, b' ', &name) || listed(EXACT, &name) || listed(also, &name) || part_of(extra, b',', &name) || value.is_some_and(looks_like_email)
}

/// `local@domain.tld`, raw or with `@` percent-encoded.
fn looks_like_email(value: &str) -> bool {
    let at = find_byte(value, b'@').map(|i| (i, 1)).or_else(|| find(value, "%40").map(|i| (i, 3)));
    match at {
        Some((i, len)) => i > 0 && value.bytes().skip(i + len).any(|b| b == b'.'),
        None => false,
    }
}

fn split_once(s: &str, c: u8) -> (&str, Option<&str>) {
    match crate::text::split_once(s, c) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// What a clicked link is, for the event it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A file download: a `download` attribute or a known file extension.
    Download,
    /// A web link (http/https; `mailto:` and `tel:` are not followed) to another origin than the page's.
    Outbound,
    /// Anything else.
    Internal,
}

/// Classifies a link from its absolute `href` and what the browser says about it: whether it is a web link to
/// another origin (`a.origin`, `a.protocol` against `location.origin`: the browser parses URLs, this does not)
/// and whether it has a `download` attribute.
pub fn classify_link(href: &str, other_origin: bool, download_attribute: bool) -> LinkKind {
    if download_attribute || extension(href).is_some_and(|e| listed(DOWNLOAD_EXTENSIONS, &e)) {
        LinkKind::Download
    } else if other_origin {
        LinkKind::Outbound
    } else {
        LinkKind::Internal
    }
}

/// The lower-cased extension (at most 5 bytes) of the last path segment of an absolute URL, if it has one.
pub fn extension(url: &str) -> Option<String> {
    let end = url.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(url.len());
    let path = split_at(url, end).0;
    let last = split_at(path, path.bytes().rposition(|b| b == b'/')? + 1).1;
    let ext = split_at(last, last.bytes().rposition(|b| b == b'.')? + 1).1;
    (!ext.is_empty() && ext.len() <= 5).then(|| ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_joined_lists_are_cores() {
        assert_eq!(CONTAINS, SCRUB_CONTAINS.join(" "));
        assert_eq!(EXACT, SCRUB_EXACT.join(" "));
        assert_eq!(CLICK_IDS, CLICK_ID_PARAMS.join(" "));
        assert!(!listed("", "") && !listed("a b", "") && listed("a b", "b"));
    }

    #[track_caller]
    fn check(url: &str, extra: &[&str], expected: &str) {
        assert_eq!(scrub(url, &extra.join(",")), expected, "{url}");
    }

    #[test]
    fn scrubs_personal_data_and_secrets_from_queries() {
        check("https://a.example/p", &[], "https://a.example/p");
        check("https://a.example/p?q=shoes&page=2", &[], "https://a.example/p?q=shoes&page=2");
        check("https://a.example/p?email=x%40y.z&q=1", &[], "https://a.example/p?q=1");
        check("https://a.example/p?q=1&Access_Token=abc", &[], "https://a.example/p?q=1");
        check("https://a.example/p?password=hunter2", &[], "https://a.example/p");
        check("https://a.example/p?u=jo@mail.example&x=1", &[], "https://a.example/p?x=1");
        check("https://a.example/p?code=123&state=s#top", &[], "https://a.example/p#top");
        check("https://a.example/cb#access_token=t&expires_in=3600", &[], "https://a.example/cb#expires_in=3600");
        check("https://a.example/p?ref=abc&orderid=9", &["orderid"], "https://a.example/p?ref=abc");
        check("https://a.example/p?ref=abc&orderid=9&x_ssn=1", &["ssn", "orderid"], "https://a.example/p?ref=abc");
        check("https://a.example/p?key=1&monkey=2", &[], "https://a.example/p?monkey=2");
        check("https://a.example/p?&&q=1&", &[], "https://a.example/p?&&q=1&");
        check("https://a.example/p?at=@home", &[], "https://a.example/p?at=@home");
        // A part without a sensitive parameter stays as written; a parameter-like fragment loses its leading `/?`.
        check("https://a.example/p?&&q=1#access_token=t", &[], "https://a.example/p?&&q=1");
        check("https://a.example/p?token=1#/?a=b", &[], "https://a.example/p#a=b");
        check("https://a.example/p?#x", &[], "https://a.example/p?#x");
        check("https://a.example/p?token=1#", &[], "https://a.example/p");
    }

    #[test]
    fn classifies_links() {
        assert_eq!(classify_link("https://shop.example/about", false, false), LinkKind::Internal);
        assert_eq!(classify_link("https://other.example/", true, false), LinkKind::Outbound);
        assert_eq!(classify_link("https://shop.example/files/Report.PDF?v=2#p", false, false), LinkKind::Download);
        assert_eq!(classify_link("https://cdn.example/app.dmg", true, false), LinkKind::Download);
        assert_eq!(classify_link("https://shop.example/export", false, true), LinkKind::Download);
        assert_eq!(classify_link("mailto:a@b.example", false, false), LinkKind::Internal);
        assert_eq!(extension("https://a.example/a.b/c"), None);
        assert_eq!(extension("https://a.example/c.tar.GZ"), Some("gz".into()));
        assert_eq!(extension("https://a.example/?f=x.pdf"), None);
        assert_eq!(extension("https://cdn.zip/"), None);
        assert_eq!(extension("https://a.example/a.toolong"), None);
    }
}
