//! The pure parts of the load generator: realistic Segment events, request bodies whose `messageId`s are stamped
//! fresh for every request (the collector deduplicates, so a benchmark that resends IDs measures nothing), latency
//! percentiles, and readers for `/proc` figures of the server under test.
//!
//! Events follow `research/perf-baselines.md` §1: 70% `page`, 30% `track`, each with `anonymousId`, `messageId`,
//! `timestamp`, `properties` and a `context` with library, locale, page and userAgent; about 690 bytes each.

use serde_json::json;

/// Length of every generated `messageId` (UUID-shaped: 8-4-4-4-12 hex digits).
pub const ID_LEN: usize = 36;

/// The placeholder written into templates where a fresh `messageId` goes.
const ID_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// A small deterministic PRNG (SplitMix64): the same seed gives the same events.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (((b >> 48) as u16) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

const PAGES: &[(&str, &str)] = &[
    ("/", "Northwind Outfitters — Outdoor gear for every season"),
    ("/pricing", "Pricing — Northwind Outfitters"),
    ("/products/alpine-jacket", "Alpine Jacket, waterproof, 3 layers — Northwind Outfitters"),
    ("/products/trail-runner-2", "Trail Runner 2 — Northwind Outfitters"),
    ("/blog/how-to-layer-for-winter-hiking", "How to layer for winter hiking — Northwind Journal"),
    ("/collections/tents", "Tents and shelters — Northwind Outfitters"),
    ("/cart", "Your cart — Northwind Outfitters"),
    ("/checkout/shipping", "Checkout: shipping — Northwind Outfitters"),
    ("/help/returns", "Returns and exchanges — Help centre"),
    ("/about", "About us — Northwind Outfitters"),
];

const QUERIES: &[&str] = &[
    "",
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=winter_sale",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=hiking+jacket",
    "?ref=homepage_banner",
];

const REFERRERS: &[&str] =
    &["", "https://www.google.com/", "https://duckduckgo.com/", "https://www.bing.com/", "https://news.ycombinator.com/", "https://shop.example/"];

/// Browser user agents; the collector parses them (browser, OS, device, bot flag).
pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
];

const LOCALES: &[&str] = &["en-US", "en-GB", "de-DE", "fr-FR", "nl-NL", "es-ES"];

const TRACK_EVENTS: &[&str] = &["Product Viewed", "Product Added", "Checkout Started", "Signed Up", "Newsletter Subscribed", "Search Performed"];

const CATEGORIES: &[&str] = &["Jackets", "Footwear", "Tents", "Backpacks", "Accessories"];

/// One event as JSON text, with [`ID_PLACEHOLDER`] where the `messageId` goes. `visitors` bounds how many distinct
/// anonymous visitors appear; `now_ms` is the wall clock (timestamps fall in the few seconds before it).
pub fn event_json(rng: &mut Rng, visitors: u64, now_ms: i64) -> String {
    let visitor = rng.below(visitors.max(1));
    let anonymous_id = Rng::new(visitor ^ 0x5EED).uuid();
    let (path, title) = *rng.pick(PAGES);
    let query = *rng.pick(QUERIES);
    let url = format!("https://shop.example{path}{query}");
    let referrer = *rng.pick(REFERRERS);
    let timestamp = rfc3339_ms(now_ms - rng.below(5_000) as i64);
    let context = json!({
        "library": {"name": "footprint.js", "version": "0.1.0"},
        "locale": rng.pick(LOCALES),
        "page": {"path": path, "referrer": referrer, "title": title, "url": url},
        "userAgent": rng.pick(USER_AGENTS),
    });
    let event = if rng.below(10) < 7 {
        json!({
            "type": "page",
            "name": title.split(" — ").next().unwrap_or(title),
            "messageId": ID_PLACEHOLDER,
            "anonymousId": anonymous_id,
            "timestamp": timestamp,
            "properties": {"path": path, "title": title, "url": url},
            "context": context,
        })
    } else {
        json!({
            "type": "track",
            "event": rng.pick(TRACK_EVENTS),
            "messageId": ID_PLACEHOLDER,
            "anonymousId": anonymous_id,
            "timestamp": timestamp,
            "properties": {
                "product_id": format!("sku-{:05}", rng.below(100_000)),
                "category": rng.pick(CATEGORIES),
                "price": (rng.below(20_000) as f64) / 100.0,
                "currency": "EUR",
                "quantity": 1 + rng.below(3),
            },
            "context": context,
        })
    };
    event.to_string()
}

/// A request body with the byte offsets of its `messageId`s, stamped afresh for every request.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: &'static str,
    pub body: Vec<u8>,
    pub id_offsets: Vec<usize>,
}

impl Template {
    fn new(path: &'static str, body: String) -> Template {
        let id_offsets = body.match_indices(ID_PLACEHOLDER).map(|(at, _)| at).collect();
        Template { path, body: body.into_bytes(), id_offsets }
    }

    pub fn events(&self) -> usize {
        self.id_offsets.len()
    }

    /// A copy of the body with fresh, unique `messageId`s from `ids`.
    pub fn stamp(&self, ids: &mut IdSource) -> Vec<u8> {
        let mut body = self.body.clone();
        for &at in &self.id_offsets {
            ids.write_next(&mut body[at..at + ID_LEN]);
        }
        body
    }
}

/// `count` batch bodies (`POST /v1/batch`) of `batch_size` events each.
pub fn batch_templates(seed: u64, count: usize, batch_size: usize, now_ms: i64) -> Vec<Template> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let events: Vec<String> = (0..batch_size).map(|_| event_json(&mut rng, 5_000, now_ms)).collect();
            let body = format!("{{\"batch\":[{}],\"sentAt\":\"{}\"}}", events.join(","), rfc3339_ms(now_ms));
            Template::new("/v1/batch", body)
        })
        .collect()
}

/// `count` single-event bodies, each for its own endpoint (`/v1/page` or `/v1/track`).
pub fn single_templates(seed: u64, count: usize, now_ms: i64) -> Vec<Template> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let body = event_json(&mut rng, 5_000, now_ms);
            let path = if body.contains("\"type\":\"track\"") { "/v1/track" } else { "/v1/page" };
            Template::new(path, body)
        })
        .collect()
}

/// Unique `messageId`s: a per-process run tag, the worker number and a per-worker sequence number.
#[derive(Debug, Clone)]
pub struct IdSource {
    run: u32,
    worker: u16,
    seq: u64,
}

impl IdSource {
    pub fn new(run: u32, worker: u16) -> Self {
        IdSource { run, worker, seq: 0 }
    }

    /// Writes the next ID (`RRRRRRRR-WWWW-0000-SSSS-SSSSSSSSSSSS`, 36 bytes) into `out`.
    pub fn write_next(&mut self, out: &mut [u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let seq = self.seq;
        self.seq += 1;
        fn put(out: &mut [u8], range: std::ops::Range<usize>, value: u64) {
            for (i, at) in range.rev().enumerate() {
                out[at] = HEX[((value >> (4 * i)) & 0xf) as usize];
            }
        }
        put(out, 0..8, u64::from(self.run));
        put(out, 9..13, u64::from(self.worker));
        put(out, 14..18, 0);
        put(out, 19..23, (seq >> 48) & 0xffff);
        put(out, 24..36, seq & 0xffff_ffff_ffff);
        for dash in [8, 13, 18, 23] {
            out[dash] = b'-';
        }
    }
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the event model's own formatter).
pub use footprint_core::time::format_rfc3339_ms as rfc3339_ms;

/// The `p`-th percentile (0..=100) of ascending `sorted` values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How often `needle` occurs in `haystack` (non-overlapping).
pub fn count_occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || haystack.len() < needle.len() {
        return 0;
    }
    let (mut count, mut at) = (0, 0);
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            count += 1;
            at += needle.len();
        } else {
            at += 1;
        }
    }
    count
}

/// utime + stime, in clock ticks, from the text of `/proc/<pid>/stat` (all threads of the process).
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// cutime + cstime, in clock ticks: the CPU time of the children the process has waited for (`/proc/<pid>/stat`).
pub fn stat_reaped_children_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 16 and 17.
    Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
}

/// The parent's pid (field 4) from the text of `/proc/<pid>/stat`.
pub fn stat_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// A `kB` figure such as `VmHWM:` or `VmRSS:` from the text of `/proc/<pid>/status`.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// Busy and total jiffies of all CPUs from the first line of `/proc/stat`.
pub fn proc_stat_busy_total(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum(); // user nice system idle iowait irq softirq steal
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn events_are_valid_json_with_the_expected_mix_and_size() {
        let mut rng = Rng::new(7);
        let events: Vec<String> = (0..2_000).map(|_| event_json(&mut rng, 5_000, NOW)).collect();
        let mut pages = 0;
        for text in &events {
            let v: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(v["messageId"], ID_PLACEHOLDER);
            assert!(v["anonymousId"].as_str().is_some_and(|s| s.len() == 36));
            assert!(v["context"]["userAgent"].is_string() && v["context"]["library"]["name"].is_string());
            assert!(v["context"]["page"]["url"].is_string() && v["context"]["locale"].is_string());
            assert!(v["properties"].is_object());
            match v["type"].as_str() {
                Some("page") => pages += 1,
                Some("track") => assert!(v["event"].is_string()),
                other => panic!("unexpected type {other:?}"),
            }
        }
        let share = pages as f64 / events.len() as f64;
        assert!((0.66..0.74).contains(&share), "page share {share}");
        let mean = events.iter().map(String::len).sum::<usize>() as f64 / events.len() as f64;
        assert!((600.0..780.0).contains(&mean), "mean event size {mean}");
    }

    #[test]
    fn stamped_batches_are_valid_and_every_message_id_is_unique() {
        let templates = batch_templates(1, 4, 30, NOW);
        let mut ids = IdSource::new(0xdead_beef, 3);
        let mut seen = HashSet::new();
        for round in 0..50 {
            let template = &templates[round % templates.len()];
            assert_eq!(template.events(), 30);
            let body = template.stamp(&mut ids);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert!(v["sentAt"].is_string());
            for event in v["batch"].as_array().unwrap() {
                let id = event["messageId"].as_str().unwrap().to_owned();
                assert_eq!(id.len(), ID_LEN);
                assert!(id.starts_with("deadbeef-0003-"), "{id}");
                assert!(seen.insert(id), "duplicate messageId");
            }
        }
        assert_eq!(seen.len(), 50 * 30);
        // Another worker's IDs never collide with this one's.
        let mut other = IdSource::new(0xdead_beef, 4);
        let body = templates[0].stamp(&mut other);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["batch"].as_array().unwrap().iter().all(|e| !seen.contains(e["messageId"].as_str().unwrap())));
    }

    #[test]
    fn single_templates_name_their_endpoint() {
        for t in single_templates(2, 100, NOW) {
            let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
            assert_eq!(t.events(), 1);
            assert_eq!(t.path, format!("/v1/{}", v["type"].as_str().unwrap()));
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 99.0), 0);
        assert_eq!(percentile(&[5], 0.0), 5);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (footprint (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 200";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_reaped_children_ticks(stat), Some(0));
        assert_eq!(stat_reaped_children_ticks("9 (postgres) S 1 9 9 0 -1 0 0 0 0 0 250 75 40 2 20"), Some(42));
        assert_eq!(stat_ppid(stat), Some(1));
        let status = "Name:\tfootprint\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(status_kb(status, "VmHWM:"), Some(51_234));
        assert_eq!(status_kb(status, "VmSwap:"), None);
        assert_eq!(proc_stat_busy_total("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2"), Some((15, 100)));
        assert_eq!(count_occurrences(br#"[{"status":"accepted"},{"status":"accepted"}]"#, b"\"accepted\""), 2);
    }
}
