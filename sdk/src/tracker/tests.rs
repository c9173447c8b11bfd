//! The tracker's rules, run natively on an in-memory device with an explicit clock.

use super::*;
use crate::consent::Mode;
use crate::options::{Capture, DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_ID_LIFETIME_DAYS};
use serde_json::Value;
use std::collections::BTreeMap;

/// Storage in a map, time set by the test, randomness from a counter; every write is logged.
#[derive(Default)]
struct TestDevice {
    now: f64,
    counter: u64,
    storage: BTreeMap<String, String>,
    writes: Vec<String>,
}

impl Device for TestDevice {
    fn now(&self) -> f64 {
        self.now
    }
    fn random(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            self.counter = self.counter.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *b = (self.counter >> 56) as u8;
        }
    }
    fn load(&self, key: &str) -> Option<String> {
        self.storage.get(key).cloned()
    }
    /// As `js/host.js` reads the user ID: a JSON string, or raw text (from an earlier version) made one.
    fn load_json(&self, key: &str) -> Option<String> {
        let v = self.storage.get(key)?;
        let text = if v.starts_with('"') { serde_json::from_str::<String>(v).ok()? } else { v.clone() };
        Some(serde_json::to_string(&text).unwrap())
    }
    fn store(&mut self, key: &str, value: &str) {
        self.writes.push(key.to_owned());
        self.storage.insert(key.to_owned(), value.to_owned());
    }
    fn remove(&mut self, key: &str) {
        self.storage.remove(key);
    }
    /// The context's JSON as `js/host.js` writes it, from the facts the tracker passes (the page's own facts —
    /// title, locale, screen, path and campaign — are the browser tests').
    fn context(&mut self, url: &str, referrer: &str, consent: u32, session: Option<&str>) -> String {
        let bit = |b: u32| consent & b != 0;
        let source = ["default", "stored", "explicit"][(consent >> 4 & 3) as usize];
        let mut c = serde_json::json!({
            "library": {"name": "footprint-sdk", "version": env!("CARGO_PKG_VERSION")},
            "page": {"url": url, "referrer": referrer},
            "consent": {
                "categoryPreferences": {"necessary": true, "analytics": bit(1), "marketing": bit(2), "personalization": bit(4)},
                "mode": if bit(8) { "implied" } else { "required" },
                "source": source,
                "gpc": bit(64),
            },
        });
        match session {
            Some(s) => c["sessionId"] = s.into(),
            None if !bit(1) => c["cookieless"] = true.into(),
            None => {}
        }
        c.to_string()
    }
    /// Every key, as the browser's does (the tracker keeps its own).
    fn keys(&self, _prefix: &str) -> String {
        self.storage.keys().cloned().collect::<Vec<_>>().join("\n")
    }
}

const T0: f64 = 1_800_000_000_000.0;

fn options(mode: Mode) -> Options {
    Options {
        consent: mode,
        flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
        batch_size: DEFAULT_BATCH_SIZE,
        capture: Capture::ALL,
        scrub: String::new(),
        id_lifetime_days: DEFAULT_ID_LIFETIME_DAYS,
    }
}

fn page(url: &str) -> Page {
    Page { url: url.into(), referrer: "https://search.example/?q=shoes".into() }
}

fn start(mode: Mode, dev: &mut TestDevice) -> Tracker {
    start_with(options(mode), Environment { gpc: false }, dev)
}

fn start_with(options: Options, env: Environment, dev: &mut TestDevice) -> Tracker {
    if dev.now == 0.0 {
        dev.now = T0;
    }
    Tracker::start(options, env, page("https://shop.example/p?x=1"), true, dev)
}

/// The events of a request body as the collector reads them: the batch's `context` merged into each event's
/// (Segment's batch envelope rule: keys the event has win).
fn batch_events(body: &str) -> Vec<Value> {
    let body: Value = serde_json::from_str(body).expect("the body is JSON");
    let shared = body.get("context").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut events = body["batch"].as_array().unwrap().clone();
    for e in &mut events {
        let context = e.as_object_mut().unwrap().entry("context").or_insert_with(|| Value::Object(Default::default()));
        for (k, v) in &shared {
            context.as_object_mut().unwrap().entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    events
}

/// The form of the messageIds the device writes: the batch's storage key (the page's random key base, a UUID, and
/// the batch's ID) and the event's place in its batch, `fp_q.{uuid}-{batch}-{place}`.
fn is_message_id(id: &str) -> bool {
    id.len() > 42 && id.starts_with(STORED_BATCH_PREFIX) && ids::is_uuid(&id[5..41]) && id[41..].split('-').skip(1).map(|n| n.parse::<u32>().is_ok()).eq([true, true])
}

/// A JSON string, as `js/client.js` passes names and IDs.
fn s(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The request body `js/host.js` writes for a batch (`Batch::body` mirrors it), within the batch's bound.
fn body_of(batch: &Batch) -> String {
    let body = batch.body("2027-01-15T08:00:00.000Z", "wk_demo");
    assert!(body.len() <= batch.body_bytes(), "{} > {}", body.len(), batch.body_bytes());
    for e in batch_events(&body) {
        assert!(e.to_string().len() <= MAX_EVENT_BYTES || e["properties"].get("footprintDropped").is_some() || e["type"] == "alias");
    }
    body
}

/// The next request: the batch and its body.
fn request(t: &mut Tracker, dev: &mut TestDevice) -> Option<(u32, String)> {
    t.next_request(dev).map(|b| (b.id, body_of(b)))
}

/// Every event the tracker would send now, as JSON (drains the outbox as if each batch were accepted).
fn sent(t: &mut Tracker, dev: &mut TestDevice) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some((batch, text)) = request(t, dev) {
        let body: Value = serde_json::from_str(&text).expect("the body is JSON");
        assert_eq!(body["writeKey"], "wk_demo");
        assert!(footprint_core::time::parse_rfc3339_ms(body["sentAt"].as_str().unwrap()).is_some());
        events.extend(batch_events(&text));
        assert_eq!(t.answered(dev, batch, Some(200), None), None);
    }
    events
}

fn names(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event"].as_str().or(e["type"].as_str()).unwrap().to_owned()).collect()
}

#[test]
fn required_mode_without_consent_writes_nothing_and_sends_no_identifier() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    t.track(&mut dev, &s("Signed Up"), Some(r#"{"plan":"pro"}"#));
    t.identify(&mut dev, Some(&s("user-1")), Some(r#"{"email":"a@b.example"}"#));
    t.alias(&mut dev, &s("user-2"), None);
    t.group(&mut dev, &s("acme"), None);
    let mut beaconed = Vec::new();
    t.hidden(&mut dev, |batch| {
        beaconed.push(body_of(batch));
        true
    });
    t.shown(dev.now);
    t.reset(&mut dev);
    let mut events: Vec<Value> = beaconed.iter().flat_map(|b| batch_events(b)).collect();
    events.extend(sent(&mut t, &mut dev));
    assert!(dev.writes.is_empty(), "no storage writes: {:?}", dev.writes);
    assert_eq!(names(&events), ["page", "Signed Up"], "identity calls wait for consent");
    for e in &events {
        assert!(e.get("anonymousId").is_none() && e.get("userId").is_none(), "{e}");
        assert!(e["context"].get("sessionId").is_none());
        assert_eq!(e["context"]["cookieless"], true);
        assert_eq!(e["context"]["consent"]["categoryPreferences"]["analytics"], false);
        assert!(e["messageId"].as_str().is_some_and(is_message_id), "{e}");
    }
    assert_eq!(events[1]["properties"]["plan"], "pro");
}

#[test]
fn granting_consent_creates_an_id_that_survives_a_reload() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    t.identify(&mut dev, Some(&s("user-1")), Some(r#"{"plan":"pro"}"#));
    t.consent(&mut dev, Update { analytics: Some(true), ..Update::default() });
    t.track(&mut dev, &s("After"), None);
    let events = sent(&mut t, &mut dev);
    assert_eq!(names(&events), ["page", "Consent Updated", "identify", "After"]);
    let id = t.anonymous_id().unwrap().to_owned();
    assert!(events[0].get("anonymousId").is_none(), "events made before consent stay anonymous");
    for e in &events[1..] {
        assert_eq!(e["anonymousId"], id.as_str());
        assert_eq!(e["userId"], "user-1");
        assert!(e["context"]["sessionId"].is_string());
        assert!(e["context"].get("cookieless").is_none());
    }
    assert_eq!(events[1]["properties"], serde_json::json!({"analytics": true, "marketing": false, "personalization": false}));
    assert_eq!(events[2]["traits"]["plan"], "pro");
    assert_eq!(dev.load(KEY_CONSENT).as_deref(), Some("1"));

    // Reload: same device, no consent() call on the new page.
    dev.now += 5_000.0;
    let mut t = start(Mode::Required, &mut dev);
    let events = sent(&mut t, &mut dev);
    assert_eq!(t.anonymous_id(), Some(id.as_str()));
    assert_eq!(events[0]["anonymousId"], id.as_str());
    assert_eq!(events[0]["userId"], "user-1");
    assert_eq!(events[0]["context"]["consent"]["source"], "stored");
}

#[test]
fn withdrawing_consent_erases_the_device() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Implied, &mut dev);
    assert!(t.anonymous_id().is_some(), "implied mode identifies from the start");
    t.identify(&mut dev, Some(&s("u")), None);
    t.track(&mut dev, &s("x"), None);
    t.seal(&mut dev);
    assert!(dev.storage.keys().any(|k| k.starts_with(STORED_BATCH_PREFIX)));
    t.consent(&mut dev, Update { analytics: Some(false), ..Update::default() });
    assert!(dev.storage.is_empty(), "left on the device: {:?}", dev.storage.keys().collect::<Vec<_>>());
    let events = sent(&mut t, &mut dev);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "Consent Updated");
    assert!(last.get("anonymousId").is_none() && last.get("userId").is_none());
}

#[test]
fn global_privacy_control_keeps_marketing_off_and_scrubs_click_ids() {
    let mut dev = TestDevice::default();
    let env = Environment { gpc: true };
    let mut t = start_with(options(Mode::Implied), env, &mut dev);
    t.consent(&mut dev, Update { marketing: Some(true), ..Update::default() });
    t.navigated(&mut dev, page("https://shop.example/landing?gclid=abc&utm_source=news"), Trigger::PushState);
    let events = sent(&mut t, &mut dev);
    for e in &events {
        assert_eq!(e["context"]["consent"]["categoryPreferences"]["marketing"], false);
        assert_eq!(e["context"]["consent"]["gpc"], true);
    }
    let last = events.last().unwrap();
    assert_eq!(last["context"]["page"]["url"], "https://shop.example/landing?utm_source=news");
}

#[test]
fn spa_navigation_sends_one_page_view_with_the_previous_page_as_referrer() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    t.navigated(&mut dev, page("https://shop.example/p?x=1"), Trigger::ReplaceState);
    t.navigated(&mut dev, page("https://shop.example/cart?email=a@b.example"), Trigger::PushState);
    t.navigated(&mut dev, page("https://shop.example/cart"), Trigger::ReplaceState);
    t.navigated(&mut dev, page("https://shop.example/cart#totals"), Trigger::HashChange);
    let events = sent(&mut t, &mut dev);
    assert_eq!(names(&events), ["page", "page"]);
    let ctx = &events[1]["context"]["page"];
    assert_eq!(ctx["url"], "https://shop.example/cart");
    assert_eq!(ctx["referrer"], "https://shop.example/p?x=1");
    assert_eq!(events[0]["context"]["page"]["referrer"], "https://search.example/?q=shoes");
}

#[test]
fn clicks_become_click_outbound_and_download_events() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    // The browser says whether a link leads to another origin (the page is https://shop.example).
    let click = |href: Option<&'static str>, download| {
        let other_origin = href.is_some_and(|h| !h.starts_with("https://shop.example/"));
        Click { selector: r#""nav#top > a""#, tag: r#""a""#, text: r#""Read more""#, href, download_attribute: download, other_origin }
    };
    t.clicked(&mut dev, &Click { selector: r#""button#buy""#, tag: r#""button""#, text: r#""Buy""#, ..Click::default() });
    t.clicked(&mut dev, &click(Some("https://shop.example/about"), false));
    t.clicked(&mut dev, &click(Some("https://elsewhere.example/?token=t"), false));
    t.clicked(&mut dev, &click(Some("https://shop.example/report.pdf"), false));
    t.form_submitted(&mut dev, &FormSubmit { selector: r#""form#signup""#, id: r#""signup""#, action: "https://shop.example/join?email=x@y.example", method: r#""post""# });
    let events = sent(&mut t, &mut dev);
    assert_eq!(names(&events), ["page", "Element Clicked", "Element Clicked", "Outbound Link Clicked", "File Downloaded", "Form Submitted"]);
    assert_eq!(events[1]["properties"], serde_json::json!({"selector": "button#buy", "text": "Buy", "tag": "button"}));
    assert_eq!(events[2]["properties"]["selector"], "nav#top > a");
    assert_eq!(events[2]["properties"]["text"], "Read more");
    assert_eq!(events[3]["properties"]["href"], "https://elsewhere.example/");
    assert_eq!(events[4]["properties"]["extension"], "pdf");
    assert_eq!(events[5]["properties"], serde_json::json!({"selector": "form#signup", "id": "signup", "action": "https://shop.example/join", "method": "post"}));
}

#[test]
fn engagement_is_reported_when_the_page_is_hidden() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    t.scrolled(1_500.0, 3_000.0);
    t.scrolled(900.0, 3_000.0);
    dev.now += 12_345.0;
    let mut beacons = Vec::new();
    t.hidden(&mut dev, |batch| {
        beacons.push(body_of(batch));
        true
    });
    assert_eq!(beacons.len(), 1, "page view and engagement in one beacon");
    let body: Value = serde_json::from_str(&beacons[0]).unwrap();
    let engaged = &body["batch"][1];
    assert_eq!(engaged["event"], "Page Engaged");
    assert_eq!(engaged["properties"], serde_json::json!({"engagedMs": 12_345, "scrollDepth": 50}));
    assert!(t.outbox.is_empty());
    // Hidden time is not engaged time.
    dev.now += 60_000.0;
    t.shown(dev.now);
    dev.now += 2_000.0;
    t.hidden(&mut dev, |batch| {
        beacons.push(body_of(batch));
        true
    });
    let body: Value = serde_json::from_str(&beacons[1]).unwrap();
    assert_eq!(body["batch"][0]["properties"]["engagedMs"], 2_000);
}

#[test]
fn the_unload_path_stays_within_the_beacon_budget_and_keeps_what_the_browser_refuses() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Implied, &mut dev);
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(10_000));
    for _ in 0..20 {
        t.track(&mut dev, &s("Big"), Some(&big));
    }
    let mut sizes = Vec::new();
    t.hidden(&mut dev, |batch| {
        sizes.push(body_of(batch).len());
        true
    });
    assert!(sizes.iter().sum::<usize>() <= BEACON_BUDGET_BYTES, "{sizes:?}");
    assert!(!t.outbox.is_empty(), "the rest waits");
    let stored = dev.storage.keys().filter(|k| k.starts_with(STORED_BATCH_PREFIX)).count();
    assert_eq!(stored, t.outbox.batches().count(), "and stays on the device for the next page");
    // The browser refuses: nothing is lost.
    let before = t.outbox.len();
    t.hidden(&mut dev, |_| false);
    assert_eq!(t.outbox.len(), before);
}

#[test]
fn a_reload_delivers_the_backlog_once() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Implied, &mut dev);
    for i in 0..5 {
        t.track(&mut dev, &s(&format!("e{i}")), None);
    }
    let req = request(&mut t, &mut dev).unwrap();
    // The page goes away before the answer (and the beacon was refused).
    t.hidden(&mut dev, |_| false);
    drop(t);
    // The site's own storage is never read as a backlog.
    dev.storage.insert("fp_qx".into(), "{\"type\":\"track\",\"event\":\"not ours\"}".into());
    dev.storage.insert("cart".into(), "{\"type\":\"track\",\"event\":\"not ours\"}".into());
    let mut t = start(Mode::Implied, &mut dev);
    let events = sent(&mut t, &mut dev);
    let mut ids: Vec<&str> = events.iter().map(|e| e["messageId"].as_str().unwrap()).collect();
    assert_eq!(names(&events), ["page", "e0", "e1", "e2", "e3", "e4", "page"]);
    assert!(req.1.contains(ids[1]), "the backlog is the same events, same messageIds");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    assert!(!dev.storage.keys().any(|k| k.starts_with(STORED_BATCH_PREFIX)), "delivered batches leave the device");
}

#[test]
fn retries_back_off_honour_retry_after_and_resume_online() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Required, &mut dev);
    let req = t.next_request(&mut dev).unwrap().id;
    let first = t.answered(&mut dev, req, None, None).unwrap();
    assert!((500.0..1_000.0).contains(&first), "{first}");
    assert!(t.next_request(&mut dev).is_none(), "waits");
    dev.now += first;
    let again = t.next_request(&mut dev).unwrap().id;
    assert_eq!(again, req);
    assert_eq!(t.answered(&mut dev, again, Some(503), Some("7")), Some(7_000.0));
    t.online();
    let third = t.next_request(&mut dev).unwrap().id;
    assert_eq!(t.answered(&mut dev, third, Some(400), None), None, "refused for good");
    assert!(t.outbox.is_empty());
    // A late answer for a batch that already left is ignored.
    assert_eq!(t.answered(&mut dev, req, Some(503), None), None);
}

#[test]
fn sessions_end_after_thirty_idle_minutes() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Implied, &mut dev);
    dev.now += 29.0 * 60_000.0;
    t.track(&mut dev, &s("a"), None);
    dev.now += 31.0 * 60_000.0;
    t.track(&mut dev, &s("b"), None);
    let events = sent(&mut t, &mut dev);
    let s: Vec<&str> = events.iter().map(|e| e["context"]["sessionId"].as_str().unwrap()).collect();
    assert_eq!(s[0], s[1]);
    assert_ne!(s[1], s[2]);
    let session_writes = dev.writes.iter().filter(|k| *k == KEY_SESSION).count();
    assert_eq!(session_writes, 3, "written on start, once a minute at most, and on a new session");
}

#[test]
fn the_anonymous_id_expires_and_reset_replaces_it() {
    let mut dev = TestDevice::default();
    let t = start(Mode::Implied, &mut dev);
    let first = t.anonymous_id().unwrap().to_owned();
    dev.now += f64::from(DEFAULT_ID_LIFETIME_DAYS) * 86_400_000.0 + 1.0;
    let mut t = start(Mode::Implied, &mut dev);
    let second = t.anonymous_id().unwrap().to_owned();
    assert_ne!(first, second);
    t.identify(&mut dev, Some(&s("u1")), None);
    t.reset(&mut dev);
    assert_ne!(t.anonymous_id().unwrap(), second);
    assert_eq!(dev.load(KEY_USER_ID), None);
    dev.storage.insert(KEY_ANONYMOUS_ID.into(), "not-a-uuid.1".into());
    let t = start(Mode::Implied, &mut dev);
    assert!(ids::is_uuid(t.anonymous_id().unwrap()), "junk on the device is replaced");
}

#[test]
fn every_event_is_valid_for_the_collector() {
    let mut dev = TestDevice::default();
    let mut t = start(Mode::Implied, &mut dev);
    t.track(&mut dev, &s("Quote \" and \\ and \n"), Some(r#"{"k":"v"}"#));
    t.track(&mut dev, &s("Not an object"), Some("[1,2]"));
    t.track(&mut dev, &s("Huge"), Some(&format!("{{\"x\":\"{}\"}}", "y".repeat(MAX_EVENT_BYTES))));
    t.track(&mut dev, &s("   "), None);
    t.page(&mut dev, Some(&s("Home")), None);
    t.identify(&mut dev, Some(&s("u")), Some(r#"{"plan":"pro"}"#));
    t.alias(&mut dev, &s("u2"), None);
    t.group(&mut dev, &s("g"), None);
    let events = sent(&mut t, &mut dev);
    assert_eq!(events.len(), 8, "the blank track name is ignored");
    assert_eq!(events[1]["event"], "Quote \" and \\ and \n");
    for e in &events {
        let text = e.to_string();
        let wire: footprint_core::WireEvent = serde_json::from_str(&text).unwrap();
        footprint_core::validate_event(text.len(), wire, None, footprint_core::validate::IdentityRule::Required).unwrap_or_else(|r| panic!("{r:?}: {text}"));
    }
    assert!(events[2].get("properties").is_none());
    assert_eq!(events[3]["properties"]["footprintDropped"], "too_large");
    assert_eq!(events[6]["previousId"], "u");
}

#[test]
fn json_strings_blank_and_stored_ids_checked() {
    for blank_text in ["", "   ", " \t\n\u{c}\r"] {
        assert!(blank(&s(blank_text)), "{blank_text:?}");
    }
    assert!(blank(""), "no text at all (js/client.js's warm-up calls track() with one)");
    for text in ["a", " a ", "\\", "\\t", "\u{b}", "\u{a0}"] {
        assert!(!blank(&s(text)), "{text:?}");
    }
    // A stored user ID that starts like a JSON string but is not one is not sent again, nor a blank one.
    for junk in ["\"u\",\"admin\":true", "\"\\x\"", "\" \"", "   "] {
        let mut dev = TestDevice::default();
        dev.storage.insert(KEY_CONSENT.into(), "1".into());
        dev.storage.insert(KEY_USER_ID.into(), junk.into());
        let mut t = start(Mode::Required, &mut dev);
        assert!(sent(&mut t, &mut dev).iter().all(|e| e.get("userId").is_none() && e.get("admin").is_none()), "{junk}");
    }
    // One stored raw by an earlier version is read as the text it is.
    let mut dev = TestDevice::default();
    dev.storage.insert(KEY_CONSENT.into(), "1".into());
    dev.storage.insert(KEY_USER_ID.into(), "user \"1\"".into());
    let mut t = start(Mode::Required, &mut dev);
    assert_eq!(sent(&mut t, &mut dev)[0]["userId"], "user \"1\"");
    dev.storage.remove(KEY_USER_ID);
    let mut t = start(Mode::Required, &mut dev);
    t.identify(&mut dev, Some(&s("u \"1\"")), None);
    let mut t = start(Mode::Required, &mut dev);
    assert_eq!(sent(&mut t, &mut dev)[0]["userId"], "u \"1\"", "kept as a JSON string, read back");
}
