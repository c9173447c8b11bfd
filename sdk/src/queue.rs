//! The outbox: events wait here as lines of text, in batches that are sealed and leave one at a time.
//!
//! - An event is one line of six fields separated by tabs: its kind (a digit), its own field, its payload, its
//!   `messageId`, its time (epoch ms) and its identifiers, `kind TAB field TAB payload TAB messageId TAB ms TAB ids`.
//!   The `messageId` is empty: the device writes `{batch name}-{the event's place in its batch}` (below).
//!   The kinds are `0` track (`event`, `properties`), `1` page (`name`, `properties`), `2` identify (`traits`),
//!   `3` alias (`previousId`), `4` group (`groupId`, `traits`). The field and payload are JSON (a string and an
//!   object), each left out when empty; `ids` is JSON members (`,"anonymousId":…,"userId":…`) or empty. No field
//!   holds a tab or a newline (JSON has them escaped).
//! - A batch is one text, the same in memory and on the device: a first line `c` + the `context` all its events
//!   share + TAB + the batch's name, its storage key (the page's random key base and the batch's ID: unique across
//!   pages and tabs), then one line per event. Its lines never change once written, so a retry, a beacon or a
//!   later page sends every event with the same `messageId` (the collector dedupes on it), and no random ID is
//!   drawn per event. The device writes it as the request body when it is sent (`js/host.js`):
//!   each line as the event's JSON (`{"type":…,"event":…,"properties":…,"messageId":…,"timestamp":…,…}`) in the
//!   Segment batch envelope, whose `context` the collector merges into every event — so the context travels once
//!   per batch, and the module carries no JSON encoder. A line that is JSON already (an event stored by an earlier
//!   version) is sent as it is.
//! - [`Outbox::open_for`] makes room for an event in the batch being filled, sealing that one first when the event
//!   does not join it (one request, the browser's beacon budget, one context); `seal` closes it. Each new batch is
//!   written to the device once, as one storage entry (when consent allows), so the persistent queue is never
//!   rewritten per event. The storage effects collect in the outbox; the tracker carries them out
//!   ([`Outbox::take_ops`]).
//! - One request is in flight at a time: the front batch and those after it that share its context, within the
//!   collector's request limits (fewer requests: less for the page to answer and for the collector to take in; only
//!   a beacon is held to 64 KiB). Its answer removes them or schedules a retry with backoff.
//! - On page hide, [`Outbox::batches`] is what goes by beacon, within the 64 KiB budget.

use crate::json;
use crate::text::split;
use std::rc::Rc;
use footprint_core::limits::{BEACON_BUDGET_BYTES, MAX_BATCH_EVENTS, MAX_REQUEST_BYTES};

/// The largest batch, in bytes of event JSON: leaves room for the envelope inside the beacon budget (and so far
/// below the collector's request limit).
pub const MAX_BATCH_BYTES: usize = BEACON_BUDGET_BYTES - 2_048;
const _: () = assert!(MAX_BATCH_BYTES < MAX_REQUEST_BYTES);

/// The most events in one batch (the collector takes up to [`MAX_BATCH_EVENTS`]).
pub const MAX_EVENTS_PER_BATCH: usize = if MAX_BATCH_EVENTS < 500 { MAX_BATCH_EVENTS } else { 500 };

/// What writing a line as JSON adds at most: keys and quotes and the ISO timestamp for the ms (79 bytes for a
/// `track` with a 13-digit time), and the `messageId` (56: a 42-byte key base, a batch ID of at most 10 digits, a
/// dash, a place of at most 3 digits); checked by the tracker's tests. The batch and event limits count
/// each event's line plus this. (A clock before 2001 writes shorter times; a batch may then pass the beacon budget
/// by a few bytes an event, and the browser's refusal keeps it queued.)
pub const RENDERED_EXTRA: usize = 80 + 56;

/// The Segment batch envelope around the events and the context (`{"batch":[…],"context":…,"sentAt":…,"writeKey":…}`)
/// at most, for a write key of up to 400 bytes.
pub const ENVELOPE_BYTES: usize = 512;

/// The most batches one request carries: within the collector's limits on events and bytes per request.
pub const MAX_BATCHES_PER_REQUEST: usize = {
    let by_events = MAX_BATCH_EVENTS / MAX_EVENTS_PER_BATCH;
    let by_bytes = MAX_REQUEST_BYTES / (MAX_BATCH_BYTES + ENVELOPE_BYTES);
    if by_events < by_bytes { by_events } else { by_bytes }
};

/// The most events held in memory; past it new events are counted as dropped. Large enough for a 10,000-call burst.
pub const MAX_QUEUED_EVENTS: usize = 20_000;

/// The most bytes of batches kept on the device (localStorage holds about 5 MB per origin, shared with the site).
pub const MAX_STORED_BYTES: usize = 1_000_000;

/// The storage-key prefix of persisted batches.
pub const STORED_BATCH_PREFIX: &str = "fp_q.";

#[derive(Debug, Default)]
pub struct Batch {
    /// Names the batch on this page (a number: cheaper to keep, compare and pass to the browser than its key).
    pub id: u32,
    /// Its storage key: [`STORED_BATCH_PREFIX`] and a name unique across tabs and page loads.
    pub key: String,
    /// The context line and the events' lines, separated by newlines: what is stored and what the device sends.
    pub text: String,
    /// How many events `text` holds.
    pub count: usize,
    /// Whether the batch is on the device.
    pub stored: bool,
    /// Its context's number: batches with the same one share their context (one request may carry them).
    context: u32,
}

impl Batch {
    /// At most the bytes of the events' and the context's JSON: what counts toward the batch and device limits.
    fn bytes(&self) -> usize {
        self.text.len() + self.count * RENDERED_EXTRA
    }

    /// At most the bytes of the request body.
    pub fn body_bytes(&self) -> usize {
        self.bytes() + ENVELOPE_BYTES
    }
}

/// A storage effect the caller carries out.
#[derive(Debug, PartialEq, Eq)]
pub enum StorageOp {
    /// Write the batch with this ID (its text under its key), if it is still in the outbox.
    Write(u32),
    /// Remove this key.
    Remove(String),
}

#[derive(Debug, Default)]
pub struct Outbox {
    /// The events not yet sealed: the batch being filled (no key yet, not on the device).
    open: Batch,
    /// The context of the open batch's events (or of the last batch sealed), and contexts numbered so far.
    context: Option<Rc<String>>,
    contexts: u32,
    batches: Vec<Batch>,
    /// New batches are named this followed by their ID: [`STORED_BATCH_PREFIX`] and a random ID per page (the
    /// tracker sets it).
    pub key_base: String,
    /// Batch IDs given so far (restored batches get new ones).
    ids_made: u32,
    /// The storage effects to carry out, in order (see [`Outbox::take_ops`]).
    ops: Vec<StorageOp>,
    /// The front batch's ID while a request is in flight, and how many front batches the request carries.
    in_flight: Option<u32>,
    sending: usize,
    /// The request in flight (its text kept between requests: no allocation per request).
    request: Batch,
    /// Consecutive failed attempts of the front batch.
    pub attempt: u32,
    /// No send before this time (epoch ms).
    pub retry_at: f64,
    stored_bytes: usize,
    queued: usize,
    /// Events refused because the outbox was full.
    pub dropped: u64,
}

impl Outbox {
    /// Room for one event of at most `len` bytes that shares `context`: the open batch's text, a newline at its end,
    /// to append the event's line to (the caller checks [`Outbox::is_full`] first). A batch
    /// holds one context and fits the limits: when the event does not join the waiting ones, those are sealed
    /// first (`persist`: see [`Outbox::seal`]). An event always fits an empty batch (one too large alone still
    /// leaves, and the collector says so).
    pub fn open_for(&mut self, context: &Rc<String>, len: usize, persist: bool) -> &mut String {
        // The same `Rc` first: comparing the texts costs a microsecond an event.
        let same = self.context.as_ref().is_some_and(|c| Rc::ptr_eq(c, context) || c == context);
        let full = self.open.count >= MAX_EVENTS_PER_BATCH || self.open.bytes() + len + 1 + RENDERED_EXTRA > MAX_BATCH_BYTES;
        if !same || full {
            self.seal(persist);
        }
        if full {
            // A burst: the next batch fills too. Its room at once rather than by doubling (a dozen copies).
            self.open.text.reserve(MAX_BATCH_BYTES);
        }
        if !same {
            self.contexts += 1;
            self.context = Some(context.clone());
        }
        if self.open.count == 0 {
            // The batch's name on the context line: the device makes its events' messageIds of it. (The same text is
            // its storage key, made again at the seal: writing it into `key` here costs the module ~90 B brotli.)
            self.open.id = self.new_id();
            let open = &mut self.open;
            open.text.push('c');
            open.text.push_str(context);
            open.text.push('\t');
            open.text.push_str(&self.key_base);
            json::push_u64(&mut open.text, u64::from(open.id));
            open.context = self.contexts;
        }
        let open = &mut self.open;
        open.text.push('\n');
        open.count += 1;
        self.queued += 1;
        &mut open.text
    }

    /// Whether the outbox holds [`MAX_QUEUED_EVENTS`]: a new event is then dropped (and counted in `dropped`).
    pub fn is_full(&self) -> bool {
        self.queued >= MAX_QUEUED_EVENTS
    }

    /// Events not yet sealed into a batch.
    pub fn pending_len(&self) -> usize {
        self.open.count
    }

    /// All events in the outbox, sealed or not.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.iter()
    }

    /// Seals the waiting events into a batch, written to the device (one storage entry) when `persist` allows and
    /// the device copy has room.
    pub fn seal(&mut self, persist: bool) {
        if self.open.count == 0 {
            return;
        }
        let mut batch = std::mem::take(&mut self.open);
        batch.key = self.key_base.clone();
        json::push_u64(&mut batch.key, u64::from(batch.id));
        if persist && self.stored_bytes + batch.bytes() <= MAX_STORED_BYTES {
            batch.stored = true;
            self.stored_bytes += batch.bytes();
            self.ops.push(StorageOp::Write(batch.id));
        }
        self.batches.push(batch);
    }

    /// The storage effects of the calls so far, to carry out in order.
    pub fn take_ops(&mut self) -> Vec<StorageOp> {
        std::mem::take(&mut self.ops)
    }

    /// Adds a batch found on the device at start (a backlog from an earlier page). Its events are the lines that
    /// start with a kind, or are JSON (from an earlier version); the device sends only those.
    pub fn restore(&mut self, key: &str, stored: &str) {
        let count = split(stored, b'\n').filter(|e| matches!(e.as_bytes(), [b'0'..=b'4', b'\t', ..] | [b'{', ..])).count();
        if count == 0 || self.queued + count > MAX_QUEUED_EVENTS {
            return;
        }
        // A context of its own: it goes in a request alone.
        self.contexts += 1;
        let batch = Batch { id: self.new_id(), key: key.to_owned(), text: stored.to_owned(), count, stored: true, context: self.contexts };
        self.queued += count;
        self.stored_bytes += batch.bytes();
        self.batches.push(batch);
    }

    /// The next request, if none is in flight and no retry wait is running: the front batch and up to
    /// [`MAX_BATCHES_PER_REQUEST`] − 1 batches after it with the same context, as one batch named by the front
    /// one's ID (its text holds their texts, each ending with a newline; the device writes their one context once).
    /// Its batches are then in flight.
    pub fn start_send(&mut self, now: f64) -> Option<&Batch> {
        if self.in_flight.is_some() || now < self.retry_at {
            return None;
        }
        let front = self.batches.first()?;
        let request = &mut self.request;
        request.id = front.id;
        request.text.clear();
        request.count = 0;
        self.sending = 0;
        for b in self.batches.iter().take(MAX_BATCHES_PER_REQUEST).take_while(|b| b.context == front.context) {
            request.text.push_str(&b.text);
            request.text.push('\n');
            request.count += b.count;
            self.sending += 1;
        }
        self.in_flight = Some(front.id);
        Some(request)
    }

    pub fn in_flight(&self) -> Option<u32> {
        self.in_flight
    }

    fn new_id(&mut self) -> u32 {
        self.ids_made += 1;
        self.ids_made
    }

    /// The request `id` was delivered (or refused for good): its batches leave the outbox (and the device).
    pub fn delivered(&mut self, id: u32) {
        if self.in_flight == Some(id) {
            for _ in 0..self.sending {
                self.remove_first();
            }
        }
    }

    /// The request `id` failed transiently: its batches stay at the front; the caller sets [`Outbox::retry_at`].
    pub fn failed(&mut self, id: u32) {
        if self.in_flight == Some(id) {
            self.in_flight = None;
            self.attempt += 1;
        }
    }

    /// Removes the first batch (delivered, or handed to the browser by beacon), and its device copy. When its
    /// request is in flight, the answer no longer counts: the rest of its batches go again (`messageId` dedupes a
    /// double arrival).
    pub fn remove_first(&mut self) {
        if self.batches.is_empty() {
            return;
        }
        let batch = self.batches.remove(0);
        if self.in_flight == Some(batch.id) {
            self.in_flight = None;
            self.attempt = 0;
            self.retry_at = 0.0;
        }
        self.queued -= batch.count;
        if batch.stored {
            self.stored_bytes -= batch.bytes();
            self.ops.push(StorageOp::Remove(batch.key));
        }
    }

    /// Consent was withdrawn: nothing may stay on the device. Removes every device copy; the batches stay in memory.
    pub fn unstore_all(&mut self) {
        self.stored_bytes = 0;
        for b in self.batches.iter_mut().filter(|b| b.stored) {
            b.stored = false;
            self.ops.push(StorageOp::Remove(b.key.clone()));
        }
    }

    /// Clears the retry wait (the browser came back online).
    pub fn retry_now(&mut self) {
        self.retry_at = 0.0;
    }
}


/// The request body as `js/host.js` writes it (`body`): each event line as the event's JSON, in the Segment batch
/// envelope with the context line's context and `sentAt` set for this send. (The module leaves this to the
/// browser; the tests use this copy.)
#[cfg(test)]
impl Batch {
    pub fn body(&self, sent_at: &str, write_key: &str) -> String {
        const KINDS: [(&str, &str, &str); 5] =
            [("track", "event", "properties"), ("page", "name", "properties"), ("identify", "", "traits"), ("alias", "previousId", ""), ("group", "groupId", "traits")];
        let (mut context, mut batch, mut n, mut events) = (String::new(), "", 0, Vec::new());
        for line in split(&self.text, b'\n') {
            if let Some(c) = line.strip_prefix('c') {
                let (c, name) = c.split_once('\t').unwrap_or((c, ""));
                (context, batch, n) = (format!(",\"context\":{c}"), name, 0);
            } else if line.starts_with('{') {
                events.push(line.strip_suffix(',').unwrap_or(line).to_owned());
            } else if let [kind, f, p, id, ms, ids] = line.split('\t').collect::<Vec<_>>()[..] {
                let (kind, field, payload) = KINDS[kind.parse::<usize>().unwrap()];
                let mut e = format!("{{\"type\":\"{kind}\"");
                if !f.is_empty() {
                    e += &format!(",\"{field}\":{f}");
                }
                if !p.is_empty() {
                    e += &format!(",\"{payload}\":{p}");
                }
                let time = footprint_core::time::format_rfc3339_ms(ms.parse().unwrap());
                let id = if id.is_empty() { format!("{batch}-{n}") } else { id.to_owned() };
                n += 1;
                events.push(e + &format!(",\"messageId\":\"{id}\",\"timestamp\":\"{time}\"{ids}}}"));
            }
        }
        format!("{{\"batch\":[{}]{context},\"sentAt\":\"{sent_at}\",\"writeKey\":{}}}", events.join(","), serde_json::to_string(write_key).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        Outbox { key_base: "fp_q.k".into(), ..Outbox::default() }
    }

    fn event(i: usize, pad: usize) -> String {
        format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(pad))
    }

    /// Appends `event` as the tracker does; false when the outbox was full.
    fn push(o: &mut Outbox, context: &Rc<String>, event: &str, persist: bool) -> bool {
        if o.is_full() {
            o.dropped += 1;
            return false;
        }
        o.open_for(context, event.len(), persist).push_str(event);
        true
    }

    fn ctx(path: &str) -> Rc<String> {
        Rc::new(format!("{{\"page\":{{\"path\":\"{path}\"}}}}"))
    }

    #[test]
    fn seals_into_batches_within_count_and_byte_limits() {
        let (mut o, c) = (outbox(), ctx("/"));
        for i in 0..1_000 {
            assert!(push(&mut o, &c, &event(i, 10), false));
        }
        o.seal(false);
        assert!(o.take_ops().is_empty(), "nothing written without consent");
        // Small events: the bytes each one reserves for its JSON fill a batch before the count limit does.
        let sizes: Vec<usize> = o.batches().map(|b| b.count).collect();
        assert_eq!((sizes.len(), sizes.iter().sum::<usize>()), (3, 1_000), "{sizes:?}");
        assert!(o.batches().all(|b| b.count <= MAX_EVENTS_PER_BATCH && b.bytes() <= MAX_BATCH_BYTES));

        let mut o = outbox();
        for i in 0..100 {
            push(&mut o, &c, &event(i, 2_000), false);
        }
        o.seal(false);
        assert!(o.batches().all(|b| b.body("2024-01-01T00:00:00.000Z", "wk").len() < BEACON_BUDGET_BYTES));
        assert_eq!(o.batches().map(|b| b.count).sum::<usize>(), 100);
        // An event alone larger than a batch still leaves (the collector refuses it visibly, as a failed event).
        let mut o = outbox();
        push(&mut o, &c, &event(0, MAX_BATCH_BYTES + 10), false);
        o.seal(false);
        assert_eq!(o.batches().count(), 1);
    }

    #[test]
    fn persists_once_per_batch_and_removes_on_delivery() {
        let (mut o, c) = (outbox(), ctx("/"));
        push(&mut o, &c, &event(1, 0), true);
        push(&mut o, &c, &event(2, 0), true);
        assert!(o.take_ops().is_empty(), "nothing written before the seal");
        o.seal(true);
        assert_eq!(o.take_ops(), [StorageOp::Write(1)]);
        let batch = o.batches().next().unwrap();
        assert_eq!((batch.key.as_str(), batch.text.as_str()), ("fp_q.k1", "c{\"page\":{\"path\":\"/\"}}\tfp_q.k1\n{\"i\":1,\"p\":\"\"}\n{\"i\":2,\"p\":\"\"}"));
        let body = o.start_send(0.0).unwrap().body("T", "wk");
        assert_eq!(body, "{\"batch\":[{\"i\":1,\"p\":\"\"},{\"i\":2,\"p\":\"\"}],\"context\":{\"page\":{\"path\":\"/\"}},\"sentAt\":\"T\",\"writeKey\":\"wk\"}");
        assert!(o.start_send(0.0).is_none(), "one batch in flight at a time");
        o.delivered(1);
        assert_eq!(o.take_ops(), [StorageOp::Remove("fp_q.k1".into())]);
        assert!(o.is_empty());
        assert!(o.start_send(0.0).is_none());
    }

    #[test]
    fn one_request_carries_the_front_batches_that_share_a_context_within_the_request_limits() {
        let (mut o, c) = (outbox(), ctx("/"));
        for i in 0..1_000 {
            push(&mut o, &c, &event(i, 10), false);
        }
        push(&mut o, &ctx("/b"), &event(1_000, 10), false);
        o.seal(false);
        let counts: Vec<usize> = o.batches().map(|b| b.count).collect();
        assert_eq!((counts.len(), counts[..3].iter().sum::<usize>(), counts[3]), (4, 1_000, 1), "{counts:?}");
        let request = o.start_send(0.0).unwrap();
        assert_eq!((request.id, request.count), (1, 1_000), "a new context starts a new request");
        let body: serde_json::Value = serde_json::from_str(&request.body("T", "wk")).unwrap();
        let events = body["batch"].as_array().unwrap();
        assert!(events.iter().enumerate().all(|(i, e)| e["i"] == i), "every event once, in order");
        assert_eq!(body["context"]["page"]["path"], "/");
        assert!(o.start_send(0.0).is_none(), "one request in flight at a time");
        o.failed(1);
        assert_eq!(o.len(), 1_001, "a failed request keeps its batches");
        assert_eq!(o.start_send(0.0).unwrap().count, 1_000);
        o.delivered(1);
        assert_eq!(o.len(), 1);
        assert_eq!(o.start_send(0.0).unwrap().count, 1);

        // Within the collector's limits: events per request, and bytes.
        let mut o = outbox();
        for i in 0..3_000 {
            push(&mut o, &c, &event(i, 0), false);
        }
        o.seal(false);
        let five: usize = o.batches().take(MAX_BATCHES_PER_REQUEST).map(|b| b.count).sum();
        assert!(five <= MAX_BATCH_EVENTS && o.batches().count() > MAX_BATCHES_PER_REQUEST);
        assert_eq!(o.start_send(0.0).unwrap().count, five);
        let mut o = outbox();
        for i in 0..60 {
            push(&mut o, &c, &event(i, 20_000), false);
        }
        o.seal(false);
        let request = o.start_send(0.0).unwrap();
        let body = request.body("2024-01-01T00:00:00.000Z", "wk");
        assert!(body.len() <= request.body_bytes() && request.body_bytes() <= MAX_REQUEST_BYTES, "{}", body.len());
        assert_eq!(request.count, 3 * MAX_BATCHES_PER_REQUEST, "batches of three");

        // A batch in flight that leaves by beacon: the request's answer no longer counts, the rest goes again.
        let mut o = outbox();
        for i in 0..600 {
            push(&mut o, &c, &event(i, 0), false);
        }
        o.seal(false);
        let first = o.batches().next().unwrap().count;
        assert_eq!((o.batches().count(), o.start_send(0.0).unwrap().count), (2, 600));
        o.remove_first();
        o.delivered(1);
        assert_eq!(o.len(), 600 - first);
        assert_eq!(o.start_send(0.0).unwrap().count, 600 - first);
    }

    #[test]
    fn a_failed_batch_stays_first_and_waits() {
        let (mut o, c) = (outbox(), ctx("/"));
        push(&mut o, &c, &event(1, 0), false);
        o.seal(false);
        push(&mut o, &ctx("/b"), &event(2, 0), false);
        o.seal(false);
        let id = o.start_send(0.0).unwrap().id;
        o.failed(id);
        assert_eq!(o.attempt, 1);
        o.retry_at = 1_000.0;
        assert!(o.start_send(999.0).is_none());
        assert_eq!(o.start_send(1_000.0).unwrap().id, id);
        o.delivered(id);
        assert_eq!(o.attempt, 0);
        assert_eq!(o.start_send(1_000.0).unwrap().id, 2);
    }

    #[test]
    fn restores_a_backlog_and_forgets_the_device_on_withdrawal() {
        let mut o = outbox();
        // The forms of earlier versions: events as JSON, with trailing commas or without.
        o.restore("old", "{\"a\":1}\n{\"a\":2}\n");
        o.restore("older", "c{\"page\":{}}\n{\"a\":3},\n{\"a\":4}");
        o.restore("junk", "not json");
        assert_eq!(o.len(), 4);
        assert_eq!(o.batches().count(), 2);
        let bodies: Vec<String> = o.batches().map(|b| b.body("T", "wk")).collect();
        assert_eq!(bodies, ["{\"batch\":[{\"a\":1},{\"a\":2}],\"sentAt\":\"T\",\"writeKey\":\"wk\"}", "{\"batch\":[{\"a\":3},{\"a\":4}],\"context\":{\"page\":{}},\"sentAt\":\"T\",\"writeKey\":\"wk\"}"]);
        push(&mut o, &ctx("/"), &event(3, 0), true);
        o.seal(true);
        o.take_ops();
        o.unstore_all();
        assert_eq!(o.take_ops().len(), 3);
        o.unstore_all();
        assert!(o.take_ops().is_empty());
        o.remove_first();
        assert!(o.take_ops().is_empty(), "no longer stored: nothing to remove from the device");
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn the_device_copy_is_bounded() {
        let (mut o, c) = (outbox(), ctx("/"));
        for i in 0..40 {
            push(&mut o, &c, &event(i, 50_000), true);
        }
        o.seal(true);
        assert_eq!(o.take_ops().len(), MAX_STORED_BYTES / (50_020 + RENDERED_EXTRA));
        assert_eq!(o.len(), 40, "what does not fit on the device stays in memory");
    }

    #[test]
    fn the_shared_context_travels_once_per_batch_and_a_new_one_starts_a_batch() {
        let mut o = outbox();
        let a = ctx("/a");
        push(&mut o, &a, &event(1, 0), true);
        push(&mut o, &Rc::new(String::clone(&a)), &event(2, 0), true);
        assert!(o.take_ops().is_empty(), "an equal context continues the batch");
        push(&mut o, &ctx("/b"), &event(3, 0), true);
        assert_eq!(o.take_ops().len(), 1, "a new context seals what waits");
        o.seal(true);
        let bodies: Vec<String> = o.batches().map(|b| b.body("T", "wk")).collect();
        assert_eq!(bodies[0], "{\"batch\":[{\"i\":1,\"p\":\"\"},{\"i\":2,\"p\":\"\"}],\"context\":{\"page\":{\"path\":\"/a\"}},\"sentAt\":\"T\",\"writeKey\":\"wk\"}");
        assert_eq!(bodies[1], "{\"batch\":[{\"i\":3,\"p\":\"\"}],\"context\":{\"page\":{\"path\":\"/b\"}},\"sentAt\":\"T\",\"writeKey\":\"wk\"}");
        // The device copy is the batch's text: a reload sends the same body.
        let mut reloaded = outbox();
        reloaded.restore("k1", &o.batches().next().unwrap().text);
        assert_eq!(reloaded.batches().next().unwrap().body("T", "wk"), bodies[0]);
        assert_eq!(reloaded.len(), 2);
    }

    #[test]
    fn a_full_outbox_drops_and_counts() {
        let (mut o, c) = (outbox(), ctx("/"));
        for i in 0..MAX_QUEUED_EVENTS {
            assert!(push(&mut o, &c, &event(i, 0), false));
        }
        assert!(!push(&mut o, &c, &event(0, 0), false));
        assert_eq!(o.dropped, 1);
    }
}
