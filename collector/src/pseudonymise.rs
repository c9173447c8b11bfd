//! Pseudonymisation (DESIGN.md §5): keyed HMAC-SHA-256 of personal values, with the key held outside the
//! database, and the cookieless visitor hash with per-site random salts that rotate daily and live only in memory.

use crate::identity::{normalize_email, normalize_phone, IdKind, Identifier};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// Hashes personal values under the secret key. Equal inputs give equal outputs, so hashed values still join
/// (identity graph, erasure, suppression), but nobody without the key can recompute or reverse them.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
    /// Keys used before a rotation: new values are hashed with `key` only, but look-ups, exports, erasures and
    /// suppression checks also try these, so people hashed under an old key are still found.
    previous: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key redacted>)")
    }
}

/// The prefix of every hashed value, so stored data says what it is.
pub const HASH_PREFIX: &str = "hmac:";

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Self {
        Pseudonymizer { key: key.to_vec(), previous: Vec::new() }
    }

    /// After a rotation: `key` is the new key, `previous` the old ones (newest first).
    pub fn with_previous(key: &[u8], previous: &[Vec<u8>]) -> Self {
        Pseudonymizer { key: key.to_vec(), previous: previous.to_vec() }
    }

    /// The same pseudonymiser under each previous key (for matching values hashed before a rotation).
    pub fn previous_generations(&self) -> impl Iterator<Item = Pseudonymizer> + '_ {
        self.previous.iter().map(|k| Pseudonymizer::new(k))
    }

    /// `hmac:` + 32 hex digits (128 bits) of HMAC-SHA-256(key, domain ‖ 0 ‖ value). The domain (`email`,
    /// `phone`, `user_id`, …) keeps equal values of different kinds apart.
    pub fn hash(&self, domain: &str, value: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 32);
        out.push_str(HASH_PREFIX);
        for b in &digest[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// The suppression key of an identifier (what erasure records and ingest checks): never the value itself.
pub fn suppression_hash(pseudo: &Pseudonymizer, id: &Identifier) -> String {
    pseudo.hash(&format!("suppress:{}", id.kind.as_string()), &id.value)
}

/// An identifier as the store keeps it, from its raw value: e-mail addresses and phone numbers normalised and
/// hashed; a user or anonymous ID that is an e-mail address hashed too (raw e-mails never reach the disk); an
/// external ID hashed when its type names e-mail. `None` when the value cannot be that kind.
pub fn stored_identifier(kind: IdKind, raw: &str, pseudo: &Pseudonymizer) -> Option<Identifier> {
    let trimmed = raw.trim();
    let value = match &kind {
        IdKind::Email => pseudo.hash("email", &normalize_email(trimmed)?),
        IdKind::Phone => pseudo.hash("phone", &normalize_phone(trimmed)?),
        IdKind::AnonymousId | IdKind::UserId if trimmed.starts_with(HASH_PREFIX) => trimmed.to_owned(),
        IdKind::AnonymousId | IdKind::UserId => match normalize_email(trimmed) {
            Some(email) => pseudo.hash(&kind.as_string(), &email),
            None => trimmed.to_owned(),
        },
        IdKind::External(name) if name.to_ascii_lowercase().contains("email") => match normalize_email(trimmed) {
            Some(email) => pseudo.hash("email", &email),
            None => trimmed.to_owned(),
        },
        IdKind::External(_) => trimmed.to_owned(),
    };
    (!value.is_empty()).then(|| Identifier::new(kind, value))
}

// The bytes an `@` starts with in its spellings of [`at_sign_len`]: raw, URL-escaped, JSON-escaped.
const AT_RAW: u8 = b'@';
const AT_URL: u8 = b'%';
const AT_JSON: u8 = b'\\';

/// How many bytes the `@` at the start of `rest` takes: raw (1), URL-escaped `%40` (3) or JSON-escaped `\u0040` (6)
/// — all three are how an event's text may carry it.
fn at_sign_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [AT_RAW, ..] => Some(1),
        [AT_URL, b'4', b'0', ..] => Some(3),
        [AT_JSON, b'u', b'0', b'0', b'4', b'0', ..] => Some(6),
        _ => None,
    }
}

/// Whether `bytes` hold a byte an `@` may start with, in any spelling. Most texts hold none, and this branch-free
/// test (which the compiler vectorises) is cheaper than setting up [`at_signs`]' scan, for the ~10 short texts of
/// every event. Written as a `matches!` on the constants: the same test as three `==`s was compiled to a scalar loop
/// in the collector (~2,000 more instructions per event).
fn has_at_sign_start(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| found | matches!(b, AT_RAW | AT_URL | AT_JSON))
}

/// Every `@` in `bytes`, in any spelling, as (position, length): one fast scan for the bytes they start with.
fn at_signs(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    memchr::memchr3_iter(AT_RAW, AT_URL, AT_JSON, bytes).filter_map(|i| Some((i, at_sign_len(&bytes[i..])?)))
}

/// Text with every e-mail address replaced by its keyed hash (the same as the address's `email` identifier): for
/// quarantined payloads and for every text of an accepted event, so raw e-mail addresses never reach the disk.
/// Works on any text (JSON or not); JSON stays valid. Borrows when there is nothing to replace.
pub fn redact_emails<'t>(text: &'t str, pseudo: &Pseudonymizer) -> Cow<'t, str> {
    if !has_at_sign_start(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let is_local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let is_domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    let bytes = text.as_bytes();
    let mut out = String::new();
    // `text[..copied]` is in `out` already.
    let mut copied = 0;
    for (at, marker) in at_signs(bytes) {
        if at < copied {
            // Inside an address already replaced.
            continue;
        }
        let mut start = at;
        while start > copied && is_local(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + marker;
        while end < bytes.len() && is_domain(bytes[end]) {
            end += 1;
        }
        let (local, domain) = (&text[start..at], &text[at + marker..end]);
        if let Some(email) = (!local.is_empty() && domain.contains('.')).then(|| normalize_email(&format!("{local}@{domain}"))).flatten() {
            out.push_str(&text[copied..start]);
            out.push_str(&pseudo.hash("email", &email));
            copied = end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The cookieless visitor key of one request: `c:` + 16 hex digits of HMAC-SHA-256(salt, site ‖ IP ‖ user agent).
/// With the salt gone (it never leaves memory and is replaced daily), nobody can recompute it.
pub fn cookieless_visitor(salt: &[u8; 16], site: &str, ip: &str, user_agent: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC takes keys of any length");
    for part in [site, ip, user_agent] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let digest = mac.finalize().into_bytes();
    let mut out = String::from("c:");
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Per-site random salts by UTC day: the current and the previous day's only, in memory only.
#[derive(Default)]
pub struct SaltBook {
    sites: Mutex<HashMap<String, SiteSalts>>,
}

#[derive(Clone, Copy)]
struct SiteSalts {
    day: i64,
    current: [u8; 16],
    previous: Option<(i64, [u8; 16])>,
}

impl SaltBook {
    /// The salt of `site` for `day` (days since the epoch, UTC). A new day draws a fresh salt with `random`; the
    /// day before is kept as `previous`, anything older is forgotten. Asking for yesterday gives `previous`;
    /// asking for an older day gives `None` (its salt no longer exists).
    pub fn salt(&self, site: &str, day: i64, random: &mut dyn FnMut() -> [u8; 16]) -> Option<[u8; 16]> {
        let mut sites = self.sites.lock().expect("salt book");
        let entry = sites.entry(site.to_owned()).or_insert_with(|| SiteSalts { day, current: random(), previous: None });
        if day > entry.day {
            let previous = (day == entry.day + 1).then_some((entry.day, entry.current));
            *entry = SiteSalts { day, current: random(), previous };
        }
        if day == entry.day {
            Some(entry.current)
        } else {
            entry.previous.filter(|(d, _)| *d == day).map(|(_, s)| s)
        }
    }

    /// How many salts exist for `site` (1 or 2).
    #[cfg(test)]
    fn held(&self, site: &str) -> usize {
        self.sites.lock().unwrap().get(site).map_or(0, |s| 1 + usize::from(s.previous.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_domain_separated() {
        let a = Pseudonymizer::new(b"key-a");
        let b = Pseudonymizer::new(b"key-b");
        let h = a.hash("email", "alice@example.com");
        assert!(h.starts_with("hmac:") && h.len() == 37);
        assert_eq!(h, a.hash("email", "alice@example.com"));
        assert_ne!(h, b.hash("email", "alice@example.com"));
        assert_ne!(h, a.hash("user_id", "alice@example.com"));
        assert!(!format!("{a:?}").contains("key-a"));
    }

    #[test]
    fn quarantined_text_keeps_no_email() {
        let p = Pseudonymizer::new(b"k");
        let text = r#"{"userId":"Bob@Example.com","x":"a@b","y":"@home","z":"mail me: c.d+e@f-g.co!"}"#;
        let out = redact_emails(text, &p);
        assert!(!out.contains("Bob@Example.com") && !out.contains("c.d+e@f-g.co"), "{out}");
        assert!(out.contains(&p.hash("email", "bob@example.com")) && out.contains(&p.hash("email", "c.d+e@f-g.co")));
        assert!(out.contains(r#""x":"a@b""#) && out.contains(r#""y":"@home""#), "not e-mails, kept: {out}");
        assert_eq!(redact_emails("no at sign", &p), "no at sign");
        assert!(matches!(redact_emails(r#"{"p":"50%","q":"a\"b","r":"%4","s":"\u004"}"#, &p), Cow::Borrowed(_)), "escapes of other characters");
        assert_eq!(at_signs(br"x%40y \u0040 @ %4 \u00 %").collect::<Vec<_>>(), vec![(1, 3), (6, 6), (13, 1)]);
        assert_eq!(redact_emails("trailing@", &p), "trailing@");
        // Escaped the URL way or the JSON way, it is the same address.
        let escaped = redact_emails(r#"{"u":"https://s.example/?to=dan%40mail.example","t":"dan\u0040mail.example","n":"100%40"}"#, &p);
        assert!(!escaped.contains("dan%40mail") && !escaped.contains("dan\\u0040mail"), "{escaped}");
        assert_eq!(escaped.matches(&p.hash("email", "dan@mail.example")).count(), 2, "{escaped}");
        assert!(escaped.contains(r#""n":"100%40""#), "{escaped}");
    }

    #[test]
    fn rotation_keeps_old_hashes_findable() {
        let old = Pseudonymizer::new(b"old-key");
        let rotated = Pseudonymizer::with_previous(b"new-key", &[b"old-key".to_vec()]);
        assert_ne!(rotated.hash("email", "a@b.co"), old.hash("email", "a@b.co"), "new values use the new key");
        let generations: Vec<String> = rotated.previous_generations().map(|p| p.hash("email", "a@b.co")).collect();
        assert_eq!(generations, vec![old.hash("email", "a@b.co")]);
    }

    #[test]
    fn stored_identifiers_never_hold_raw_emails() {
        let p = Pseudonymizer::new(b"k");
        let email = stored_identifier(IdKind::Email, " Alice@Example.com", &p).unwrap();
        assert_eq!(email.value, p.hash("email", "alice@example.com"));
        assert_eq!(stored_identifier(IdKind::UserId, "alice@example.com", &p).unwrap().value, p.hash("user_id", "alice@example.com"));
        assert_eq!(stored_identifier(IdKind::UserId, "u-1", &p).unwrap().value, "u-1");
        assert_eq!(stored_identifier(IdKind::External("email_md5".into()), "A@b.co", &p).unwrap().value, p.hash("email", "a@b.co"));
        assert_eq!(stored_identifier(IdKind::Email, "nope", &p), None);
        assert_eq!(stored_identifier(IdKind::Phone, "+1 (555) 010-9999", &p).unwrap().value, p.hash("phone", "+15550109999"));
    }

    #[test]
    fn salts_rotate_daily_and_old_ones_are_gone() {
        let book = SaltBook::default();
        let mut n = 0u8;
        let mut random = || {
            n += 1;
            [n; 16]
        };
        let day1 = book.salt("shop", 100, &mut random).unwrap();
        assert_eq!(book.salt("shop", 100, &mut random), Some(day1), "stable within a day");
        let day2 = book.salt("shop", 101, &mut random).unwrap();
        assert_ne!(day1, day2);
        assert_eq!(book.salt("shop", 100, &mut random), Some(day1), "yesterday's is still there");
        assert_eq!(book.held("shop"), 2);
        let day3 = book.salt("shop", 102, &mut random).unwrap();
        assert_eq!(book.salt("shop", 100, &mut random), None, "the day before yesterday is gone for good");
        assert_eq!(book.held("shop"), 2);
        assert_ne!(book.salt("blog", 102, &mut random).unwrap(), day3, "each site has its own");
        // A gap of days keeps no previous salt.
        book.salt("shop", 110, &mut random).unwrap();
        assert_eq!(book.held("shop"), 1);
        let v1 = cookieless_visitor(&day1, "shop", "203.0.113.7", "UA");
        let v2 = cookieless_visitor(&day2, "shop", "203.0.113.7", "UA");
        assert_ne!(v1, v2, "the same visitor hashes differently on another day");
        assert_eq!(v1, cookieless_visitor(&day1, "shop", "203.0.113.7", "UA"));
    }
}
