//! Enrichment at ingest: the client IP (trusted proxies only, truncated), the user agent (browser, OS, device,
//! bot flag) and the page, referrer and campaign fields. Pure functions, except the user-agent cache.

use footprint_core::sensitive::{CLICK_ID_PARAMS, SCRUB_CONTAINS, SCRUB_EXACT};
use ipnet::IpNet;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The address of the visitor: the peer, or — only when the peer is a trusted proxy — the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy. Untrusted peers cannot spoof their address this way.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// The network an address belongs to, as stored: IPv4 to `/v4_prefix`, IPv6 to `/v6_prefix` (default /24, /48).
pub fn truncate_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let mask = if v4_prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(v4_prefix.min(32))) };
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = if v6_prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(v6_prefix.min(128))) };
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// `ip` as text, as its `Display` writes it. An IPv4 address is written by hand: `Display` goes through the
/// formatter (padding, width) and cost ~1,300 instructions, once per request and again per IP field.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// What the user agent says about the visitor's software.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAgentInfo {
    pub browser: Option<String>,
    pub os: Option<String>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device: &'static str,
    pub bot: bool,
}

/// The device names [`parse_user_agent`] gives, as the `'static` strings stored events carry (for rows read back).
pub fn device_name(stored: &str) -> &'static str {
    ["desktop", "mobile", "tablet", "bot"].into_iter().find(|d| *d == stored).unwrap_or("other")
}

/// Parses a user agent. Bots are marked, never dropped.
pub fn parse_user_agent(ua: &str) -> UserAgentInfo {
    let lower = ua.to_ascii_lowercase();
    let parsed = woothee::parser::Parser::new().parse(ua);
    let by_name = ["bot", "crawler", "spider", "slurp", "facebookexternalhit", "python-requests", "curl/", "wget/", "headlesschrome"]
        .iter()
        .any(|needle| lower.contains(needle));
    let category = parsed.as_ref().map(|r| r.category).unwrap_or("");
    let bot = by_name || category == "crawler";
    let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_owned());
    let device = if bot {
        "bot"
    } else if lower.contains("ipad") || lower.contains("tablet") || (lower.contains("android") && !lower.contains("mobile")) {
        "tablet"
    } else {
        match category {
            "pc" => "desktop",
            "smartphone" | "mobilephone" => "mobile",
            _ => "other",
        }
    };
    UserAgentInfo {
        browser: parsed.as_ref().and_then(|r| known(r.name)),
        os: parsed.as_ref().and_then(|r| known(r.os)),
        device,
        bot,
    }
}

/// A bounded cache in front of [`parse_user_agent`]: real traffic repeats a few thousand agents, and parsing one
/// costs microseconds. When full, it starts over (simple, and bounded). Keys are hashed with foldhash, seeded at
/// random per process: SipHash over a ~120-byte agent was half the cost of a hit.
#[derive(Default)]
pub struct UserAgentCache {
    entries: Mutex<HashMap<Box<str>, Arc<UserAgentInfo>, foldhash::fast::RandomState>>,
}

impl UserAgentCache {
    const CAPACITY: usize = 4_096;

    pub fn get(&self, ua: &str) -> Arc<UserAgentInfo> {
        if let Some(hit) = self.entries.lock().expect("ua cache").get(ua) {
            return hit.clone();
        }
        let info = Arc::new(parse_user_agent(ua));
        let mut entries = self.entries.lock().expect("ua cache");
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(ua.into(), info.clone());
        info
    }
}

/// The host of an absolute http(s) URL, lower-cased, without port or credentials.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.bytes().rposition(|b| b == b'@').map_or(authority, |at| &authority[at + 1..]);
    let mut host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| format!("{h}]"))?
    } else {
        split_once_at(host_port, b':').map_or(host_port, |(host, _)| host).to_owned()
    };
    host.make_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The path of an absolute URL (`/` when it has none).
pub fn url_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let after_host = &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..];
    let path = after_host.split(['?', '#']).next().unwrap_or("");
    Some(if path.is_empty() { "/".to_owned() } else { path.to_owned() })
}

/// Campaign fields, from `context.campaign` or the page URL's `utm_*` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub name: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

impl Campaign {
    pub fn is_empty(&self) -> bool {
        *self == Campaign::default()
    }
}

/// Reads `utm_source`, `utm_medium`, `utm_campaign`, `utm_term` and `utm_content` from a URL's query string.
pub fn campaign_from_url(url: &str) -> Campaign {
    let mut campaign = Campaign::default();
    let Some((_, after)) = split_once_at(url, b'?') else { return campaign };
    let query = split_once_at(after, b'#').map_or(after, |(query, _)| query);
    for (pair, name, value) in params(query) {
        // Only a parameter with escapes (`%`, `+`) is decoded; the others are read as they are, and only `utm_*` ones.
        let escaped = pair.bytes().any(|b| matches!(b, b'%' | b'+'));
        let (key, value): (Cow<str>, Cow<str>) = match escaped {
            true => match form_urlencoded::parse(pair.as_bytes()).next() {
                Some(key_and_value) => key_and_value,
                None => continue,
            },
            false if pair.starts_with("utm_") => (Cow::Borrowed(name), Cow::Borrowed(value)),
            false => continue,
        };
        let slot = match key.as_ref() {
            "utm_source" => &mut campaign.source,
            "utm_medium" => &mut campaign.medium,
            "utm_campaign" => &mut campaign.name,
            "utm_term" => &mut campaign.term,
            "utm_content" => &mut campaign.content,
            _ => continue,
        };
        if slot.is_none() && !value.is_empty() {
            // At most 200 characters, cut on a character boundary.
            let end = value.char_indices().nth(200).map_or(value.len(), |(i, _)| i);
            *slot = Some(value[..end].to_owned());
        }
    }
    campaign
}

/// The URL without the query (and parameter-like fragment) parameters `drop` says to drop.
fn without_params(url: &str, drop: &dyn Fn(&str, &str) -> bool) -> String {
    // Most URLs keep every parameter: then the URL is returned as it is, without splitting and joining it.
    if keeps_everything(url, drop) {
        return url.to_owned();
    }
    rebuilt_without(url, drop)
}

/// [`without_params`] the long way: every parameter looked at, the URL put together again.
fn rebuilt_without(url: &str, drop: &dyn Fn(&str, &str) -> bool) -> String {
    let (before_hash, fragment) = match split_once_at(url, b'#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (base, query) = match split_once_at(before_hash, b'?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_hash, None),
    };
    let keep = |list: &str| -> Option<String> {
        let kept: Vec<&str> = params(list).filter(|&(p, name, value)| !p.is_empty() && !drop(name, value)).map(|(p, ..)| p).collect();
        (!kept.is_empty()).then(|| kept.join("&"))
    };
    let mut out = base.to_owned();
    if let Some(q) = query.and_then(keep) {
        out.push('?');
        out.push_str(&q);
    }
    match fragment {
        // OAuth's implicit flow puts tokens in the fragment.
        Some(f) if f.contains('=') => {
            if let Some(f) = keep(f.trim_start_matches(['/', '?'])) {
                out.push('#');
                out.push_str(&f);
            }
        }
        Some(f) => {
            out.push('#');
            out.push_str(f);
        }
        None => {}
    }
    out
}

/// Whether [`without_params`] would give `url` back unchanged: no parameter dropped, and nothing it tidies (empty
/// parameters, an empty query, a parameter-like fragment starting with `/` or `?`).
fn keeps_everything(url: &str, drop: &dyn Fn(&str, &str) -> bool) -> bool {
    let (before_hash, fragment) = split_once_at(url, b'#').map_or((url, None), |(b, f)| (b, Some(f)));
    let params_kept = |list: &str| params(list).all(|(p, name, value)| !p.is_empty() && !drop(name, value));
    let query_kept = split_once_at(before_hash, b'?').is_none_or(|(_, q)| params_kept(q));
    let fragment_kept = fragment.is_none_or(|f| !f.as_bytes().contains(&b'=') || (!f.starts_with(['/', '?']) && params_kept(f)));
    query_kept && fragment_kept
}

/// `s.split_once(byte)` for an ASCII byte. URLs' parts are short, and `str`'s general character searcher cost ~160
/// instructions a call, more than the scan itself (it was ~2 % of batched ingest).
fn split_once_at(s: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii(), "an ASCII byte is never inside a multi-byte character");
    let at = s.bytes().position(|b| b == byte)?;
    Some((&s[..at], &s[at + 1..]))
}

/// A parameter list (`a=1&b&c=`), as `split('&')` splits it, each parameter with its name (before the first `=`) and
/// value (after it; empty without one).
fn params(list: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        let (param, after) = match split_once_at(rest?, b'&') {
            Some((param, after)) => (param, Some(after)),
            None => (rest?, None),
        };
        rest = after;
        let (name, value) = split_once_at(param, b'=').unwrap_or((param, ""));
        Some((param, name, value))
    })
}

/// The URL as stored: clipped to `max` bytes, without query parameters that look like personal data or secrets
/// (`core::sensitive`'s lists, plus a value that is an e-mail address: the collector's second line of defence, for
/// events from any source) and, unless `keep_click_ids`, without advertising click identifiers. One pass over the
/// parameters, one allocation.
pub fn clean_url(url: &str, max: usize, keep_click_ids: bool) -> String {
    let url = clipped(url, max);
    if !url.as_bytes().iter().any(|b| matches!(b, b'?' | b'#')) {
        return url.to_owned();
    }
    without_params(url, &|name, value| is_sensitive_name_or_value(name, value) || (!keep_click_ids && is_click_id(name)))
}

fn is_click_id(name: &str) -> bool {
    CLICK_ID_PARAMS.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// [`is_sensitive_param`] for a parameter name in any case.
fn is_sensitive_name_or_value(name: &str, value: &str) -> bool {
    // Lower-cased on the stack: parameter names are short, and this runs for every parameter of every URL.
    let mut buffer = [0u8; 64];
    let lower = match buffer.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).unwrap_or("")
        }
        None => return is_sensitive_param(&name.to_ascii_lowercase(), value),
    };
    is_sensitive_param(lower, value)
}

/// Whether a parameter (its lower-cased name and its value) looks like personal data or a secret.
fn is_sensitive_param(name: &str, value: &str) -> bool {
    contains_scrub_pattern(name.as_bytes()) || SCRUB_EXACT.contains(&name) || looks_like_email(value)
}

/// For each byte, the patterns of `SCRUB_CONTAINS` that start with it (bit `i` for pattern `i`), computed at compile
/// time.
const SCRUB_CONTAINS_BY_FIRST: [u32; 256] = {
    assert!(SCRUB_CONTAINS.len() <= 32, "one bit per pattern");
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < SCRUB_CONTAINS.len() {
        table[SCRUB_CONTAINS[i].as_bytes()[0] as usize] |= 1 << i;
        i += 1;
    }
    table
};

/// Whether a lower-cased parameter name contains one of `SCRUB_CONTAINS` (all lower case): at each byte only the
/// patterns starting with it are compared (every pattern at every candidate byte was ~3 % of batched ingest).
fn contains_scrub_pattern(lower: &[u8]) -> bool {
    (0..lower.len()).any(|i| {
        let mut starting_here = SCRUB_CONTAINS_BY_FIRST[usize::from(lower[i])];
        while starting_here != 0 {
            if lower[i..].starts_with(SCRUB_CONTAINS[starting_here.trailing_zeros() as usize].as_bytes()) {
                return true;
            }
            starting_here &= starting_here - 1;
        }
        false
    })
}

/// Whether any of `patterns` occurs in `text`, ASCII letters compared without case: one walk over the text,
/// comparing patterns only where one of their first bytes is (nineteen `str::contains` calls per parameter name were
/// ~3 % of batched ingest).
pub fn contains_any(text: &str, patterns: &[impl AsRef<str>]) -> bool {
    let mut firsts = FirstBytes::default();
    for p in patterns {
        match p.as_ref().as_bytes().first() {
            // An empty pattern occurs everywhere, as with `str::contains`.
            None => return true,
            Some(&b) => firsts = firsts.with(b),
        }
    }
    let text = text.as_bytes();
    (0..text.len()).any(|i| {
        firsts.has(text[i]) && {
            let rest = &text[i..];
            patterns.iter().map(|p| p.as_ref().as_bytes()).any(|p| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p))
        }
    })
}

/// The first bytes of a list of patterns, in both cases (a set of 256 bits).
#[derive(Default, Clone, Copy)]
struct FirstBytes([u64; 4]);

impl FirstBytes {
    fn with(mut self, b: u8) -> FirstBytes {
        let (lower, upper) = (b.to_ascii_lowercase(), b.to_ascii_uppercase());
        self.0[(lower >> 6) as usize] |= 1 << (lower & 63);
        self.0[(upper >> 6) as usize] |= 1 << (upper & 63);
        self
    }

    fn has(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
}

/// `local@domain.tld`, raw or with `@` percent-encoded.
fn looks_like_email(value: &str) -> bool {
    // Byte scans (memchr) rather than substring searches, whose set-up alone cost more than a short value's scan.
    let bytes = value.as_bytes();
    let percent_40 = || {
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'%', &bytes[from..]) {
            if bytes[from + i + 1..].starts_with(b"40") {
                return Some((from + i, 3));
            }
            from += i + 1;
        }
        None
    };
    let at = memchr::memchr(b'@', bytes).map(|i| (i, 1)).or_else(percent_40);
    at.is_some_and(|(i, len)| i > 0 && memchr::memchr(b'.', &bytes[i + len..]).is_some())
}

/// Truncates to at most `max` bytes on a character boundary.
pub fn clip(s: &str, max: usize) -> String {
    clipped(s, max).to_owned()
}

fn clipped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub_url(url: &str) -> String {
        clean_url(url, usize::MAX, true)
    }

    fn strip_click_ids(url: &str) -> String {
        without_params(url, &|name, _| is_click_id(name))
    }

    #[test]
    fn params_split_like_str_split() {
        for list in ["", "a", "a=1", "a=1&b", "&&", "a=&=b&c==d&", "é=ü&ß"] {
            let expected: Vec<(&str, &str, &str)> =
                list.split('&').map(|p| (p, p.split('=').next().unwrap_or(""), p.split_once('=').map_or("", |(_, v)| v))).collect();
            assert_eq!(params(list).collect::<Vec<_>>(), expected, "{list:?}");
            for byte in [b'&', b'=', b'x'] {
                assert_eq!(split_once_at(list, byte), list.split_once(char::from(byte)), "{list:?} at {byte}");
            }
        }
    }

    #[test]
    fn contains_any_finds_a_pattern_anywhere() {
        let patterns = &["mail", "token", "pwd"];
        for (text, expected) in [("email", true), ("x_token_y", true), ("pwd", true), ("tok", false), ("", false), ("mai", false), ("utm_source", false)] {
            assert_eq!(contains_any(text, patterns), expected, "{text}");
            assert_eq!(patterns.iter().any(|p| text.contains(p)), expected, "{text}");
        }
        assert!(contains_any(r#"{"Email":1}"#, &["email".to_owned()]), "without case");
        assert!(contains_any("", &[""]), "an empty pattern occurs everywhere, as with str::contains");
        assert!(contains_any("x_PWD", &["Pwd"]), "a pattern's first letter in either case");
        assert!(contains_any("grüße", &["üß"]) && !contains_any("grüße", &["üx"]), "bytes past ASCII");
        assert!(!contains_any("mai", &["mail"]), "a pattern longer than what is left");
    }

    #[test]
    fn the_scrub_patterns_are_found_as_substring_search_finds_them() {
        assert!(SCRUB_CONTAINS.iter().all(|p| !p.is_empty() && p.to_ascii_lowercase() == *p), "lower case, none empty: the table relies on it");
        for name in ["user_email", "x", "", "authority", "mysession", "zz_jwt", "ref", "utm_source", "e", "emai", "apikeys", "cards", "my_api_key_2", "credentia", "ssnx"] {
            assert_eq!(contains_scrub_pattern(name.as_bytes()), SCRUB_CONTAINS.iter().any(|p| name.contains(p)), "{name}");
        }
    }

    #[test]
    fn email_like_values() {
        for (value, expected) in [
            ("a@b.co", true), ("a%40b.co", true), ("@b.co", false), ("%40b.co", false), ("a@bco", false), ("a%4", false), ("a%", false),
            ("a%20b%40c.d", true), ("100%", false), ("a%41b.c", false), ("a@b%40c", false), ("", false),
        ] {
            assert_eq!(looks_like_email(value), expected, "{value}");
        }
    }

    #[test]
    fn clean_url_clips_scrubs_and_strips_click_ids_in_one_pass() {
        assert_eq!(clean_url("https://s.example/p?gclid=1&email=a%40b.co&q=1", 1000, false), "https://s.example/p?q=1");
        assert_eq!(clean_url("https://s.example/p?gclid=1&email=a%40b.co&q=1", 1000, true), "https://s.example/p?gclid=1&q=1");
        // Clipped first, so a secret cut in half is still dropped.
        assert_eq!(clean_url("https://s.example/p?token=secret&q=1", 30, true), "https://s.example/p");
        assert_eq!(clean_url("https://s.example/p?q=1", 21, true), "https://s.example/p?q");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_text_writes_what_display_writes() {
        for text in ["0.0.0.0", "1.2.3.4", "9.10.99.100", "203.0.113.0", "255.255.255.255", "10.0.200.7", "::", "2001:db8:abcd::", "::ffff:1.2.3.4"] {
            let ip = ip(text);
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in (0..=u32::MAX).step_by(65_537) {
            let ip = IpAddr::V4(n.into());
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn client_ip_trusts_only_listed_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted), ip("203.0.113.9"), "untrusted peer cannot spoof");
        assert_eq!(client_ip(ip("10.0.0.2"), Some("1.2.3.4, 198.51.100.7, 10.0.0.5"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), Some("garbage"), &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn truncation_keeps_only_the_network() {
        assert_eq!(truncate_ip(ip("203.0.113.77"), 24, 48), ip("203.0.113.0"));
        assert_eq!(truncate_ip(ip("203.0.113.77"), 16, 48), ip("203.0.0.0"));
        assert_eq!(truncate_ip(ip("2001:db8:abcd:1234::1"), 24, 48), ip("2001:db8:abcd::"));
        assert_eq!(truncate_ip(ip("::ffff:203.0.113.77"), 24, 48), ip("203.0.113.0"));
        assert_eq!(truncate_ip(ip("203.0.113.77"), 32, 128), ip("203.0.113.77"));
        assert_eq!(truncate_ip(ip("203.0.113.77"), 0, 0), ip("0.0.0.0"));
    }

    #[test]
    fn user_agents() {
        let chrome = parse_user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36");
        assert_eq!((chrome.browser.as_deref(), chrome.os.as_deref(), chrome.device, chrome.bot), (Some("Chrome"), Some("Windows 10"), "desktop", false));
        let iphone = parse_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1");
        assert_eq!((iphone.device, iphone.bot), ("mobile", false));
        let google = parse_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!((google.device, google.bot), ("bot", true));
        assert!(parse_user_agent("curl/8.0").bot);
    }

    #[test]
    fn urls() {
        assert_eq!(url_host("https://User:pw@Shop.Example:8443/a?b#c").as_deref(), Some("shop.example"));
        assert_eq!(url_host("http://[::1]:8080/").as_deref(), Some("[::1]"));
        assert_eq!(url_host("android-app://com.x"), None);
        assert_eq!(url_path("https://shop.example").as_deref(), Some("/"));
        assert_eq!(url_path("https://shop.example/a/b?x=1#y").as_deref(), Some("/a/b"));
        let c = campaign_from_url("https://shop.example/?utm_source=news%20letter&utm_medium=email&utm_campaign=spring&x=1#utm_term=no");
        assert_eq!(c, Campaign { source: Some("news letter".into()), medium: Some("email".into()), name: Some("spring".into()), term: None, content: None });
        // A name spelled with escapes is decoded like the rest; the first of a repeated parameter wins.
        let c = campaign_from_url("https://shop.example/?utm%5Fsource=a&utm+medium=b&utm_medium=c&utm_source=d&utm_term");
        assert_eq!((c.source.as_deref(), c.medium.as_deref(), c.term), (Some("a"), Some("c"), None));
        let long = format!("https://shop.example/?utm_source={}", "é".repeat(300));
        assert_eq!(campaign_from_url(&long).source, Some("é".repeat(200)), "at most 200 characters");
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(strip_click_ids("https://s.example/?utm_source=g&gclid=abc&x=1#top"), "https://s.example/?utm_source=g&x=1#top");
        // The shortcut for URLs that keep everything gives what rebuilding them gives.
        let drop_email = |name: &str, value: &str| is_sensitive_param(&name.to_ascii_lowercase(), value);
        for url in [
            "https://s.example/p", "https://s.example/p?", "https://s.example/p?q=1&&r=2", "https://s.example/p?q=1#", "https://s.example/p?q=1#top",
            "https://s.example/p#/?a=1", "https://s.example/p#?a=1&b", "https://s.example/p#a=1", "https://s.example/p?Email=x#a=1", "https://s.example/p?q=%40",
            "https://s.example/p?x=a@b.co", "https://s.example/p?a=1#b=2&c", "?", "#=", "https://s.example/p?=1&q",
        ] {
            assert_eq!(without_params(url, &drop_email), rebuilt_without(url, &drop_email), "{url}");
        }
        assert_eq!(strip_click_ids("https://s.example/p?fbclid=1"), "https://s.example/p");
        assert_eq!(strip_click_ids("https://s.example/p?q=1"), "https://s.example/p?q=1");
        assert_eq!(scrub_url("https://s.example/p?email=a%40b.co&q=1&Access_Token=x#top"), "https://s.example/p?q=1#top");
        assert_eq!(scrub_url("https://s.example/cb#access_token=t&expires_in=3600"), "https://s.example/cb#expires_in=3600");
        assert_eq!(scrub_url("https://s.example/p?u=jo@mail.example&key=1&monkey=2"), "https://s.example/p?monkey=2");
        assert_eq!(scrub_url("https://s.example/p?at=@home"), "https://s.example/p?at=@home");
    }
}
