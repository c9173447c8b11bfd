//! The tracker: builds events, keeps identity and consent, and drives the outbox. Sans-IO: time, randomness and
//! storage come through [`Device`], so the whole state machine runs in native unit tests; `browser/` implements
//! `Device` on the real Web APIs and carries out the sends this module prepares.

use crate::consent::{from_record, Consent, Update};
use crate::navigation::{Navigation, Trigger};
use crate::options::Options;
use crate::queue::{Batch, Outbox, StorageOp, RENDERED_EXTRA, STORED_BATCH_PREFIX};
use crate::text::cut;
use crate::{ids, json, url};
use footprint_core::limits::{BEACON_BUDGET_BYTES, MAX_EVENT_BYTES, MAX_URL_BYTES};
use std::rc::Rc;

/// Storage keys. Everything the SDK keeps on the device starts with `fp_`.
pub const KEY_ANONYMOUS_ID: &str = "fp_id";
pub const KEY_SESSION: &str = "fp_s";
pub const KEY_USER_ID: &str = "fp_u";
pub const KEY_CONSENT: &str = "fp_c";

/// The longest selector kept (`js/capture.js` builds it by walking the DOM).
pub const MAX_SELECTOR_CHARS: usize = 256;

/// A session ends after this much inactivity.
pub const SESSION_TIMEOUT_MS: f64 = 30.0 * 60_000.0;
/// The session's last-activity time is written to the device at most this often.
const SESSION_WRITE_EVERY_MS: f64 = 60_000.0;
/// Click-ID parameters (ads, core's list): scrubbed from URLs unless `marketing` is granted.
use crate::url::CLICK_IDS;


/// What the tracker needs from its environment.
pub trait Device {
    /// Epoch milliseconds.
    fn now(&self) -> f64;
    /// Fills `out` with cryptographically random bytes.
    fn random(&mut self, out: &mut [u8]);
    /// Appends a new random UUIDv4 (IDs and `messageId`s) to `out`.
    fn uuid(&mut self, out: &mut String) {
        let mut bytes = [0u8; 16];
        self.random(&mut bytes);
        out.push_str(&ids::uuid_v4(bytes));
    }
    fn load(&self, key: &str) -> Option<String>;
    /// The value under `key` as a JSON string, written by the device's own JSON writer (valid JSON whatever the
    /// storage held: it is the site's storage too): a value that starts with `"` read as JSON (`None` when it is not
    /// one JSON string), any other as the text it is (an earlier version stored IDs raw).
    fn load_json(&self, key: &str) -> Option<String>;
    fn store(&mut self, key: &str, value: &str);
    fn remove(&mut self, key: &str);
    /// The `context` object (JSON) of the events made in one state, from what the tracker decided: `library`
    /// (`footprint-sdk` and the package's version); `page` with `url` and `referrer` as given (scrubbed and bounded)
    /// and the page's `title` (no `path` or `search`: the collector reads the path from `url`); `campaign` from the
    /// UTM parameters of `url`'s query (Segment's names: `source`, `medium`, `name` ← `utm_campaign`, `term`,
    /// `content`; values as they are, at most 256 bytes; left out when there are none); `locale` and `screen`
    /// (`width`, `height`);
    /// `consent` from [`Consent::bits`]; `sessionId` when `session` is given, and `cookieless: true` without
    /// analytics consent. The browser writes it with `JSON.stringify` (`js/host.js`): the facts it alone knows
    /// (title, locale, screen) need not cross, and it is far less code than writing the JSON here.
    fn context(&mut self, url: &str, referrer: &str, consent: u32, session: Option<&str>) -> String;
    /// The storage keys that start with `prefix` (at least; the tracker ignores others), one per line (one text:
    /// collecting a vector of them costs the module more).
    fn keys(&self, prefix: &str) -> String;
}

/// What the browser says about the page; URLs absolute, not yet scrubbed.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub url: String,
    pub referrer: String,
}

/// What the tracker needs to know about the device (the facts that only travel in `context` stay with the
/// device: see [`Device::context`]).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `navigator.globalPrivacyControl`.
    pub gpc: bool,
}

/// A clicked link or button, as the page's capture code saw it. Its texts are JSON strings (`js/capture.js` makes
/// them short and bounded and runs `JSON.stringify`), but for the `href`, which the tracker classifies and scrubs.
/// (Texts borrowed: the module's `call` lends them from its text buffer.)
#[derive(Debug, Clone, Default)]
pub struct Click<'a> {
    /// A stable CSS selector of the element (at most [`MAX_SELECTOR_CHARS`]).
    pub selector: &'a str,
    /// Lower-case tag name (at most 16 characters).
    pub tag: &'a str,
    /// A short text: `js/capture.js` collapses whitespace and keeps at most 64 characters (never an input's value).
    pub text: &'a str,
    /// The link's absolute `href` (as the browser serializes it, not JSON), for links.
    pub href: Option<&'a str>,
    pub download_attribute: bool,
    /// A web link (http/https) to another origin than the page's, as the browser parsed it.
    pub other_origin: bool,
}

/// A submitted form: JSON strings like [`Click`]'s, but for the `action` URL; `method` as the browser reflects it
/// (`form.method`: `get`, `post` or `dialog`, lower-case).
#[derive(Debug, Clone, Default)]
pub struct FormSubmit<'a> {
    pub selector: &'a str,
    /// Made short like [`Click::text`].
    pub id: &'a str,
    pub action: &'a str,
    pub method: &'a str,
}

pub struct Tracker {
    pub options: Options,
    pub consent: Consent,
    anonymous_id: Option<String>,
    /// A JSON string (as `identify` and `alias` pass it, and as it is kept on the device).
    user_id: Option<String>,
    /// Traits of an `identify` made before analytics consent: sent when consent comes, never stored.
    waiting_identify: Option<Option<String>>,
    session: Option<Session>,
    page: Page,
    nav: Navigation,
    /// The `context` of the next event, built once per page, identity, session and consent state and shared by
    /// every event made in that state (`None`: rebuild it and `ids` before the next event); it travels once per
    /// batch (see `queue`).
    context: Option<Rc<String>>,
    /// `,"anonymousId":…,"userId":…` (only with analytics consent), or empty: the end of the events' lines.
    ids: String,
    engagement: Engagement,
    pub outbox: Outbox,
}

/// An event's `type`, as the digit that starts its line (`queue` lists what each one means).
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Kind {
    Track = b'0',
    Page = b'1',
    Identify = b'2',
    Alias = b'3',
    Group = b'4',
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    last_activity: f64,
    written_at: f64,
}

#[derive(Debug, Default, Clone)]
struct Engagement {
    visible_since: Option<f64>,
    engaged_ms: f64,
    /// Deepest scroll seen, in percent of the document height.
    max_scroll_pct: u32,
}

impl Tracker {
    /// Starts the tracker on a page: reads a remembered consent grant, and with analytics consent the IDs and the
    /// queued backlog; sends the initial page view when page views are captured.
    pub fn start(options: Options, env: Environment, page: Page, visible: bool, dev: &mut impl Device) -> Tracker {
        let remembered = dev.load(KEY_CONSENT).and_then(|r| from_record(&r));
        let consent = Consent::initial(options.consent, remembered, env.gpc);
        let now = dev.now();
        let mut t = Tracker {
            options,
            consent,
            anonymous_id: None,
            user_id: None,
            waiting_identify: None,
            session: None,
            page,
            nav: Navigation::default(),
            context: None,
            ids: String::new(),
            engagement: Engagement { visible_since: visible.then_some(now), ..Engagement::default() },
            outbox: Outbox::default(),
        };
        t.outbox.key_base.push_str(STORED_BATCH_PREFIX);
        dev.uuid(&mut t.outbox.key_base);
        t.outbox.key_base.push('-');
        if t.consent.allows_device_storage() {
            t.open_device(dev);
            for key in crate::text::split(&dev.keys(STORED_BATCH_PREFIX), b'\n').filter(|k| k.starts_with(STORED_BATCH_PREFIX)) {
                if let Some(stored) = dev.load(key) {
                    t.outbox.restore(key, &stored);
                }
            }
        }
        if t.options.capture.pageviews {
            let url = t.page_url();
            t.nav.is_new_page_view(&url, Trigger::Load);
            t.page(dev, None, None);
        }
        t
    }

    /// Analytics consent is in force: read or create the anonymous ID and the session, read the user ID.
    fn open_device(&mut self, dev: &mut impl Device) {
        let now = dev.now();
        let lifetime_ms = f64::from(self.options.id_lifetime_days) * 86_400_000.0;
        let stored = read_stamp(dev, KEY_ANONYMOUS_ID).filter(|(_, created)| now - created < lifetime_ms && *created <= now + 86_400_000.0);
        match stored {
            Some((id, _)) => self.anonymous_id = Some(id),
            None => self.new_anonymous_id(dev, now),
        }
        self.session = read_stamp(dev, KEY_SESSION)
            .filter(|(_, last)| now - last < SESSION_TIMEOUT_MS)
            .map(|(id, last)| Session { id, last_activity: last, written_at: last });
        if self.user_id.is_none() {
            self.user_id = dev.load_json(KEY_USER_ID).filter(|u| u.starts_with("\"") && u.len() <= 257 && !blank(u));
        }
        self.context = None;
    }

    /// `raw` scrubbed (the site's patterns too, and ad click IDs unless marketing is granted) and bounded.
    fn clean_url(&self, raw: &str) -> String {
        let click_ids = if self.consent.granted().marketing { "" } else { CLICK_IDS };
        let mut url = url::scrub_with(raw, &self.options.scrub, click_ids);
        url.truncate(cut(&url, MAX_URL_BYTES).len());
        url
    }

    fn page_url(&self) -> String {
        self.clean_url(&self.page.url)
    }

    // ----- the public calls -------------------------------------------------------------------------------------

    /// `track(event, properties?)`. The texts of the public calls are JSON, as `js/client.js` passes them: names
    /// and IDs are JSON strings (IDs trimmed of ASCII whitespace), `properties` and `traits` what `JSON.stringify`
    /// made of them. A name or ID that is blank is none.
    pub fn track(&mut self, dev: &mut impl Device, event: &str, properties: Option<&str>) {
        if blank(event) {
            return;
        }
        self.emit(dev, Kind::Track, Some(event), properties);
    }

    /// `page(name?, properties?)`.
    pub fn page(&mut self, dev: &mut impl Device, name: Option<&str>, properties: Option<&str>) {
        self.emit(dev, Kind::Page, name.filter(|n| !blank(n)), properties);
    }

    /// `identify(userId?, traits?)`. Without analytics consent nothing identifying leaves the page: the call waits
    /// in memory and is sent when consent is granted.
    pub fn identify(&mut self, dev: &mut impl Device, user_id: Option<&str>, traits: Option<&str>) {
        if let Some(u) = user_id.filter(|u| !blank(u)) {
            self.user_id = Some(u.to_owned());
            self.context = None;
            if self.consent.allows_device_storage() {
                dev.store(KEY_USER_ID, u);
            }
        }
        if !self.consent.allows_device_storage() {
            self.waiting_identify = Some(traits.map(str::to_owned));
            return;
        }
        if self.user_id.is_some() || self.anonymous_id.is_some() {
            self.emit(dev, Kind::Identify, None, traits);
        }
    }

    /// `alias(userId, previousId?)`: links `previousId` (default: the current user or anonymous ID) to `userId`.
    /// Identity operation: sent only with analytics consent.
    pub fn alias(&mut self, dev: &mut impl Device, user_id: &str, previous_id: Option<&str>) {
        if blank(user_id) || !self.consent.allows_device_storage() {
            return;
        }
        // The anonymous ID is a UUID: its JSON string is the ID in quotes.
        let anonymous = self.anonymous_id.as_ref().map(|a| {
            let mut q = String::with_capacity(38);
            q.push('"');
            q.push_str(a);
            q.push('"');
            q
        });
        let previous = previous_id.or(self.user_id.as_deref()).or(anonymous.as_deref());
        let Some(previous) = previous.filter(|p| !blank(p)).map(str::to_owned) else { return };
        self.user_id = Some(user_id.to_owned());
        self.context = None;
        dev.store(KEY_USER_ID, user_id);
        self.emit(dev, Kind::Alias, Some(&previous), Some(""));
    }

    /// `group(groupId, traits?)`. Identity operation: sent only with analytics consent.
    pub fn group(&mut self, dev: &mut impl Device, group_id: &str, traits: Option<&str>) {
        if blank(group_id) || !self.consent.allows_device_storage() {
            return;
        }
        self.emit(dev, Kind::Group, Some(group_id), traits);
    }

    /// `reset()`: logout. Forgets the user ID and traits, and starts a new anonymous ID and session.
    pub fn reset(&mut self, dev: &mut impl Device) {
        self.user_id = None;
        self.waiting_identify = None;
        self.session = None;
        dev.remove(KEY_USER_ID);
        dev.remove(KEY_SESSION);
        if self.consent.allows_device_storage() {
            self.new_anonymous_id(dev, dev.now());
        }
        self.context = None;
    }

    /// A new anonymous ID, stored with its creation time.
    fn new_anonymous_id(&mut self, dev: &mut impl Device, now: f64) {
        let mut id = String::with_capacity(36);
        dev.uuid(&mut id);
        dev.store(KEY_ANONYMOUS_ID, &stamp(&id, now));
        self.anonymous_id = Some(id);
    }

    /// `consent({analytics?, marketing?, personalization?})`. Granting analytics creates the device state;
    /// withdrawing it erases everything the SDK kept on the device. The change is an event too.
    pub fn consent(&mut self, dev: &mut impl Device, update: Update) {
        let before = self.consent.allows_device_storage();
        self.consent = self.consent.updated(update);
        let after = self.consent.allows_device_storage();
        match self.consent.record() {
            Some(record) => {
                dev.store(KEY_CONSENT, record);
                if !before {
                    self.open_device(dev);
                    if let Some(u) = &self.user_id {
                        dev.store(KEY_USER_ID, u);
                    }
                }
            }
            None if before => self.erase_device(dev),
            None => {}
        }
        self.context = None;
        let g = self.consent.granted();
        let mut props = String::from("{");
        json::push_bool_member(&mut props, "analytics", g.analytics);
        json::push_bool_member(&mut props, "marketing", g.marketing);
        json::push_bool_member(&mut props, "personalization", g.personalization);
        props.push('}');
        self.track_props(dev, "\"Consent Updated\"", props);
        if after {
            if let Some(traits) = self.waiting_identify.take() {
                if self.user_id.is_some() {
                    self.emit(dev, Kind::Identify, None, traits.as_deref());
                }
            }
        }
    }

    fn erase_device(&mut self, dev: &mut impl Device) {
        for key in [KEY_ANONYMOUS_ID, KEY_SESSION, KEY_USER_ID, KEY_CONSENT] {
            dev.remove(key);
        }
        self.outbox.unstore_all();
        self.apply_ops(dev);
        self.anonymous_id = None;
        self.session = None;
    }

    // ----- automatic capture ------------------------------------------------------------------------------------

    /// The URL may have changed (History API, `popstate`, `hashchange`).
    pub fn navigated(&mut self, dev: &mut impl Device, page: Page, trigger: Trigger) {
        if !self.options.capture.pageviews {
            self.page = page;
            self.context = None;
            return;
        }
        let url = self.clean_url(&page.url);
        if !self.nav.is_new_page_view(&url, trigger) {
            return;
        }
        let now = dev.now();
        self.send_engagement(dev, now);
        // In a single-page app the previous view is the referrer of the next.
        let referrer = self.page.url.clone();
        self.page = Page { referrer, ..page };
        self.context = None;
        self.page(dev, None, None);
    }

    pub fn clicked(&mut self, dev: &mut impl Device, click: &Click<'_>) {
        if !self.options.capture.clicks {
            return;
        }
        let mut props = String::from("{");
        json::push_raw_member(&mut props, "selector", click.selector);
        json::push_raw_member(&mut props, "text", click.text);
        json::push_raw_member(&mut props, "tag", click.tag);
        let mut event = "\"Element Clicked\"";
        if let Some(href) = click.href {
            let clean = self.clean_url(href);
            match url::classify_link(href, click.other_origin, click.download_attribute) {
                url::LinkKind::Outbound => event = "\"Outbound Link Clicked\"",
                url::LinkKind::Download => {
                    event = "\"File Downloaded\"";
                    if let Some(ext) = url::extension(href) {
                        json::push_url_member(&mut props, "extension", &ext);
                    }
                }
                url::LinkKind::Internal => {}
            }
            json::push_url_member(&mut props, "href", &clean);
        }
        props.push('}');
        self.track_props(dev, event, props);
    }

    pub fn form_submitted(&mut self, dev: &mut impl Device, form: &FormSubmit<'_>) {
        if !self.options.capture.forms {
            return;
        }
        let mut props = String::from("{");
        json::push_raw_member(&mut props, "selector", form.selector);
        if !blank(form.id) {
            json::push_raw_member(&mut props, "id", form.id);
        }
        json::push_url_member(&mut props, "action", &self.clean_url(form.action));
        json::push_raw_member(&mut props, "method", form.method);
        props.push('}');
        self.track_props(dev, "\"Form Submitted\"", props);
    }

    /// The visitor scrolled: `bottom` is how far down the viewport's bottom edge is, `height` the document height.
    pub fn scrolled(&mut self, bottom: f64, height: f64) {
        if height > 0.0 {
            let pct = ((bottom / height) * 100.0).clamp(0.0, 100.0) as u32;
            self.engagement.max_scroll_pct = self.engagement.max_scroll_pct.max(pct);
        }
    }

    /// The page became visible again.
    pub fn shown(&mut self, now: f64) {
        if self.engagement.visible_since.is_none() {
            self.engagement.visible_since = Some(now);
        }
    }

    fn send_engagement(&mut self, dev: &mut impl Device, now: f64) {
        let e = &mut self.engagement;
        if let Some(since) = e.visible_since.take() {
            e.engaged_ms += (now - since).max(0.0);
        }
        let (ms, pct) = (e.engaged_ms, e.max_scroll_pct);
        let visible = e.visible_since.is_none();
        *e = Engagement { visible_since: visible.then_some(now), ..Engagement::default() };
        if !self.options.capture.engagement || ms < 1_000.0 {
            return;
        }
        let mut props = String::from("{");
        json::push_u64_member(&mut props, "engagedMs", ms as u64);
        json::push_u64_member(&mut props, "scrollDepth", u64::from(pct));
        props.push('}');
        self.track_props(dev, "\"Page Engaged\"", props);
    }

    /// An automatic `track` event (`event` a JSON string) with properties the SDK wrote.
    fn track_props(&mut self, dev: &mut impl Device, event: &str, props: String) {
        self.emit(dev, Kind::Track, Some(event), Some(&props));
    }

    // ----- events -----------------------------------------------------------------------------------------------

    /// Records an event: its line (`queue` has the form: its own JSON texts, no `messageId` — the device makes it of
    /// the batch's name and the event's place —, its time and the identifiers of the current state), appended to the batch being filled with the state's shared `context`. No
    /// JSON is written here (the device writes the line as JSON when the batch is sent) and nothing is stored: the
    /// batch goes to the device when it is sealed. `payload` is `properties` or `traits`: `None` means `{}`, and
    /// text that is not an object (what JSON.stringify made of a bad argument) is left out rather than refused. An
    /// event too large for the collector is kept, its payload replaced by a marker that says so.
    fn emit(&mut self, dev: &mut impl Device, kind: Kind, field: Option<&str>, payload: Option<&str>) {
        if self.outbox.is_full() {
            self.outbox.dropped += 1;
            return;
        }
        let time = dev.now();
        self.touch_session(dev, time);
        if self.context.is_none() {
            let ids = &mut self.ids;
            ids.clear();
            if self.consent.allows_device_storage() {
                if let Some(id) = &self.anonymous_id {
                    ids.push_str(",\"anonymousId\":\"");
                    ids.push_str(id);
                    ids.push('"');
                }
                if let Some(id) = &self.user_id {
                    ids.push_str(",\"userId\":");
                    ids.push_str(id);
                }
            }
            self.context = Some(Rc::new(self.build_context(dev)));
        }
        let Some(context) = &self.context else { return };
        let field = field.unwrap_or("");
        let mut payload = match payload {
            None => "{}",
            Some(p) if p.starts_with("{") => p,
            Some(_) => "",
        };
        // Its line at most: the kind, five tabs, the time (at most 16 bytes) and the newline.
        let len = field.len() + payload.len() + self.ids.len() + 23;
        if len + RENDERED_EXTRA > MAX_EVENT_BYTES && !payload.is_empty() {
            payload = "{\"footprintDropped\":\"too_large\"}";
        }
        let line = self.outbox.open_for(context, len, self.consent.allows_device_storage());
        json::push_ascii(line, kind as u8);
        line.push('\t');
        line.push_str(field);
        line.push('\t');
        line.push_str(payload);
        // No messageId of its own: the device makes it of the batch's name and the event's place in the batch.
        line.push_str("\t\t");
        json::push_u64(line, time.max(0.0) as u64);
        line.push('\t');
        line.push_str(&self.ids);
    }

    /// Events waiting, sealed or not.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    fn touch_session(&mut self, dev: &mut impl Device, now: f64) {
        if !self.consent.allows_device_storage() {
            return;
        }
        let s = match &mut self.session {
            Some(s) if now - s.last_activity < SESSION_TIMEOUT_MS => s,
            _ => {
                self.context = None;
                let mut id = String::with_capacity(36);
                dev.uuid(&mut id);
                self.session.insert(Session { id, last_activity: now, written_at: f64::NEG_INFINITY })
            }
        };
        s.last_activity = now;
        if now - s.written_at >= SESSION_WRITE_EVERY_MS {
            s.written_at = now;
            dev.store(KEY_SESSION, &stamp(&s.id, now));
        }
    }

    fn build_context(&self, dev: &mut impl Device) -> String {
        let allowed = self.consent.allows_device_storage();
        // No analytics consent: no identifiers at all; the collector counts the visit cookielessly.
        let session = self.session.as_ref().filter(|_| allowed).map(|s| s.id.as_str());
        dev.context(&self.page_url(), &self.clean_url(&self.page.referrer), self.consent.bits(), session)
    }

    // ----- delivery ---------------------------------------------------------------------------------------------

    /// True when enough events wait that a batch should go now rather than at the next timer tick.
    pub fn batch_full(&self) -> bool {
        self.outbox.pending_len() >= self.options.batch_size
    }

    /// Seals the waiting events into a batch (writing it to the device when consent allows).
    pub fn seal(&mut self, dev: &mut impl Device) {
        self.outbox.seal(self.consent.allows_device_storage());
        self.apply_ops(dev);
    }

    /// Carries out the outbox's storage effects.
    fn apply_ops(&mut self, dev: &mut impl Device) {
        for op in &self.outbox.take_ops() {
            match op {
                StorageOp::Write(id) => {
                    if let Some(b) = self.outbox.batches().find(|b| b.id == *id) {
                        dev.store(&b.key, &b.text);
                    }
                }
                StorageOp::Remove(key) => dev.remove(key),
            }
        }
    }

    /// The next request to send with `fetch`, if one may go now: one or more batches as one (the device writes the
    /// request body from it).
    pub fn next_request(&mut self, dev: &mut impl Device) -> Option<&Batch> {
        self.seal(dev);
        self.outbox.start_send(dev.now())
    }

    /// The answer to a request: `status` is `None` for a network failure. Returns the wait before the next attempt
    /// when the batch will be retried.
    pub fn answered(&mut self, dev: &mut impl Device, batch: u32, status: Option<u16>, retry_after: Option<&str>) -> Option<f64> {
        if self.outbox.in_flight() != Some(batch) {
            // A batch that already left by beacon: nothing to do.
            return None;
        }
        match crate::delivery::classify(status) {
            crate::delivery::Outcome::Done | crate::delivery::Outcome::Refused => {
                self.outbox.delivered(batch);
                self.apply_ops(dev);
                None
            }
            crate::delivery::Outcome::Retry => {
                self.outbox.failed(batch);
                let mut r = [0u8; 4];
                dev.random(&mut r);
                let jitter = f64::from(u32::from_le_bytes(r)) / 4_294_967_296.0;
                let after = retry_after.and_then(crate::delivery::parse_retry_after);
                let delay = crate::delivery::retry_delay_ms(self.outbox.attempt, jitter, after);
                self.outbox.retry_at = dev.now() + delay;
                Some(delay)
            }
        }
    }

    /// The page is being hidden (tab switch, navigation, close): report engagement and hand every waiting batch
    /// to `beacon` (which returns whether the browser took it), within the browser's 64 KiB budget. Batches the
    /// browser refused stay queued (and on the device, with consent) for the next send or the next page.
    pub fn hidden(&mut self, dev: &mut impl Device, mut beacon: impl FnMut(&Batch) -> bool) {
        let now = dev.now();
        self.send_engagement(dev, now);
        self.engagement.visible_since = None;
        self.seal(dev);
        let mut budget = BEACON_BUDGET_BYTES;
        // Always the first batch left: each one handed over leaves the outbox at once.
        loop {
            let Some(batch) = self.outbox.batches().next() else { break };
            let bytes = batch.body_bytes();
            if bytes > budget || !beacon(batch) {
                break;
            }
            budget -= bytes;
            self.outbox.remove_first();
        }
        self.apply_ops(dev);
    }

    /// The browser came back online: retry at once.
    pub fn online(&mut self) {
        self.outbox.retry_now();
    }

    /// The current anonymous ID (only ever set with analytics consent).
    pub fn anonymous_id(&self) -> Option<&str> {
        self.anonymous_id.as_deref()
    }
}

/// A stored [`stamp`]: the ID and its time, when the ID is a UUID (anything else on the device is not trusted).
fn read_stamp(dev: &impl Device, key: &str) -> Option<(String, f64)> {
    let v = dev.load(key)?;
    let (id, time) = crate::text::split_once(&v, b'.')?;
    let time = crate::text::parse_u64(time)? as f64;
    ids::is_uuid(id).then(|| (id.to_owned(), time))
}

/// `id.time` — an ID with the epoch-ms time it was made or last used.
fn stamp(id: &str, ms: f64) -> String {
    let mut s = String::with_capacity(id.len() + 16);
    s.push_str(id);
    s.push('.');
    json::push_u64(&mut s, ms.max(0.0) as u64);
    s
}

/// Whether a JSON string holds nothing but ASCII whitespace (spaces and the escapes `\t \n \f \r`), or nothing.
fn blank(json: &str) -> bool {
    let b = json.as_bytes();
    let mut i = 1;
    while i + 1 < b.len() {
        i += match (b[i], b[i + 1]) {
            (b' ', _) => 1,
            (b'\\', b't' | b'n' | b'f' | b'r') => 2,
            _ => return false,
        };
    }
    true
}

#[cfg(test)]
mod tests;
