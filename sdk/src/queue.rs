//! The outbox: events wait here as JSON text, are sealed into batches, and leave one batch at a time.
//!
//! - `push` only appends (the main-thread cost of `track()`).
//! - `seal` cuts waiting events into batches that fit one request and the browser's beacon budget; each new batch is
//!   written to the device once, as one storage entry (when consent allows), so the persistent queue is never
//!   rewritten per event.
//! - One batch is in flight at a time; its answer removes it or schedules a retry with backoff.
//! - On page hide, [`Outbox::batches`] is what goes by beacon, within the 64 KiB budget.
//! - Events made in the same page, consent and session state share one `context`: it travels once per batch, as
//!   the Segment batch envelope's `context` (merged into every event of the batch by the collector), not once per
//!   event. A batch holds events of one context only; a new context starts a new batch.

use crate::json;
use crate::text::split;
use footprint_core::limits::{BEACON_BUDGET_BYTES, MAX_BATCH_EVENTS, MAX_REQUEST_BYTES};
use std::rc::Rc;

/// The largest batch, in bytes of event JSON: leaves room for the envelope inside the beacon budget (and so far
/// below the collector's request limit).
pub const MAX_BATCH_BYTES: usize = BEACON_BUDGET_BYTES - 2_048;
const _: () = assert!(MAX_BATCH_BYTES < MAX_REQUEST_BYTES);

/// The most events in one batch (the collector takes up to [`MAX_BATCH_EVENTS`]).
pub const MAX_EVENTS_PER_BATCH: usize = if MAX_BATCH_EVENTS < 500 { MAX_BATCH_EVENTS } else { 500 };

/// The most events held in memory; past it new events are counted as dropped. Large enough for a 10,000-call burst.
pub const MAX_QUEUED_EVENTS: usize = 20_000;

/// The most bytes of batches kept on the device (localStorage holds about 5 MB per origin, shared with the site).
pub const MAX_STORED_BYTES: usize = 1_000_000;

/// The storage-key prefix of persisted batches.
pub const STORED_BATCH_PREFIX: &str = "fp_q.";

#[derive(Debug)]
pub struct Batch {
    /// Unique across tabs and page loads; also its storage key after [`STORED_BATCH_PREFIX`].
    pub key: String,
    pub events: Vec<String>,
    /// The `context` every event of the batch shares (a JSON object), sent once in the envelope.
    pub context: Option<Rc<String>>,
    bytes: usize,
    /// Whether the batch is on the device.
    pub stored: bool,
}

impl Batch {
    /// The batch as stored: events one per line (event JSON never contains a raw newline), after a first line
    /// `c{…}` with the shared context when there is one.
    pub fn stored_form(&self) -> String {
        let events = crate::text::join(&self.events, "\n");
        match &self.context {
            Some(c) => {
                let mut out = String::with_capacity(c.len() + 2 + events.len());
                out.push('c');
                out.push_str(c);
                out.push('\n');
                out.push_str(&events);
                out
            }
            None => events,
        }
    }

    /// The request body: the Segment batch envelope, with `sentAt` set for this send.
    pub fn body(&self, sent_at: &str, write_key: &str) -> String {
        let mut out = String::with_capacity(self.bytes + self.events.len() + 128);
        out.push_str("{\"batch\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(e);
        }
        out.push(']');
        if let Some(c) = &self.context {
            json::push_raw_member(&mut out, "context", c);
        }
        json::push_member(&mut out, "sentAt", sent_at);
        json::push_member(&mut out, "writeKey", write_key);
        out.push('}');
        out
    }
}

/// A storage effect the caller carries out.
#[derive(Debug, PartialEq, Eq)]
pub enum StorageOp {
    Write { key: String, value: String },
    Remove { key: String },
}

#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<String>,
    /// The context of the pending events.
    pending_context: Option<Rc<String>>,
    pending_bytes: usize,
    batches: Vec<Batch>,
    in_flight: Option<String>,
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
    /// Appends one event; false when the outbox is full and the event was dropped.
    pub fn push(&mut self, event: String) -> bool {
        if self.queued >= MAX_QUEUED_EVENTS {
            self.dropped += 1;
            return false;
        }
        self.queued += 1;
        self.pending_bytes += event.len();
        self.pending.push(event);
        true
    }

    /// The context of the events pushed from now on: when it differs from the current one, the events waiting are
    /// sealed first (a batch holds one context). Returns the storage writes of that seal.
    pub fn set_context(&mut self, context: Option<Rc<String>>, new_key: impl FnMut() -> String, persist: bool) -> Vec<StorageOp> {
        let same = match (&self.pending_context, &context) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        if same {
            return Vec::new();
        }
        let ops = self.seal(new_key, persist);
        self.pending_context = context;
        ops
    }

    /// Events not yet sealed into a batch.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
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

    /// Cuts the waiting events into batches. `new_key` names each batch; `persist` says whether batches may be
    /// written to the device. Returns the storage writes to carry out.
    pub fn seal(&mut self, mut new_key: impl FnMut() -> String, persist: bool) -> Vec<StorageOp> {
        let mut ops = Vec::new();
        self.pending_bytes = 0;
        let mut open: Option<Batch> = None;
        for e in std::mem::take(&mut self.pending) {
            // An event always fits an empty batch (one too large alone still leaves, and the collector says so).
            let fits = open.as_ref().is_some_and(|b| b.events.len() < MAX_EVENTS_PER_BATCH && b.bytes + e.len() + 1 <= MAX_BATCH_BYTES);
            if !fits {
                if let Some(full) = open.take() {
                    self.close(full, persist, &mut ops);
                }
                let context = self.pending_context.clone();
                open = Some(Batch { key: new_key(), events: Vec::new(), bytes: context.as_ref().map_or(0, |c| c.len() + 2), context, stored: false });
            }
            if let Some(b) = open.as_mut() {
                b.bytes += e.len() + 1;
                b.events.push(e);
            }
        }
        if let Some(last) = open {
            self.close(last, persist, &mut ops);
        }
        ops
    }

    /// Adds a sealed batch, writing it to the device when `persist` allows and the device copy has room.
    fn close(&mut self, mut batch: Batch, persist: bool, ops: &mut Vec<StorageOp>) {
        if persist && self.stored_bytes + batch.bytes <= MAX_STORED_BYTES {
            batch.stored = true;
            self.stored_bytes += batch.bytes;
            ops.push(StorageOp::Write { key: storage_key(&batch.key), value: batch.stored_form() });
        }
        self.batches.push(batch);
    }

    /// Adds a batch found on the device at start (a backlog from an earlier page).
    pub fn restore(&mut self, key: &str, stored: &str) {
        let context = stored.strip_prefix("c{").and_then(|s| split(s, b'\n').next()).map(|c| {
            let mut text = String::with_capacity(c.len() + 1);
            text.push('{');
            text.push_str(c);
            Rc::new(text)
        });
        let events: Vec<String> = split(stored, b'\n').filter(|e| e.starts_with("{")).map(str::to_owned).collect();
        if events.is_empty() || self.queued + events.len() > MAX_QUEUED_EVENTS {
            return;
        }
        let bytes = events.iter().map(|e| e.len() + 1).sum::<usize>() + context.as_ref().map_or(0, |c: &Rc<String>| c.len() + 2);
        self.queued += events.len();
        self.stored_bytes += bytes;
        self.batches.push(Batch { key: key.to_owned(), events, context, bytes, stored: true });
    }

    /// The next batch to send, if none is in flight and no retry wait is running; it is then in flight.
    pub fn start_send(&mut self, now: f64) -> Option<&Batch> {
        if self.in_flight.is_some() || now < self.retry_at {
            return None;
        }
        let front = self.batches.first()?;
        self.in_flight = Some(front.key.clone());
        Some(front)
    }

    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.as_deref()
    }

    /// The batch `key` was delivered (or refused for good): it leaves the outbox. Returns the storage removal.
    pub fn delivered(&mut self, key: &str) -> Option<StorageOp> {
        if self.in_flight.as_deref() == Some(key) {
            self.in_flight = None;
            self.attempt = 0;
            self.retry_at = 0.0;
        }
        self.remove(key)
    }

    /// The batch `key` failed transiently: it stays at the front; the caller sets [`Outbox::retry_at`].
    pub fn failed(&mut self, key: &str) {
        if self.in_flight.as_deref() == Some(key) {
            self.in_flight = None;
            self.attempt += 1;
        }
    }

    /// Removes a batch (delivered, or handed to the browser by beacon). Returns the storage removal, if stored.
    pub fn remove(&mut self, key: &str) -> Option<StorageOp> {
        let at = self.batches.iter().position(|b| b.key == key)?;
        let batch = self.batches.remove(at);
        self.queued -= batch.events.len();
        if batch.stored {
            self.stored_bytes -= batch.bytes;
            return Some(StorageOp::Remove { key: storage_key(key) });
        }
        None
    }

    /// Consent was withdrawn: nothing may stay on the device. Returns the removals; the batches stay in memory.
    pub fn unstore_all(&mut self) -> Vec<StorageOp> {
        self.stored_bytes = 0;
        let mut ops = Vec::new();
        for b in self.batches.iter_mut().filter(|b| b.stored) {
            b.stored = false;
            ops.push(StorageOp::Remove { key: storage_key(&b.key) });
        }
        ops
    }

    /// Clears the retry wait (the browser came back online).
    pub fn retry_now(&mut self) {
        self.retry_at = 0.0;
    }
}

pub fn storage_key(batch_key: &str) -> String {
    let mut k = String::with_capacity(STORED_BATCH_PREFIX.len() + batch_key.len());
    k.push_str(STORED_BATCH_PREFIX);
    k.push_str(batch_key);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("k{n}")
        }
    }

    fn event(i: usize, pad: usize) -> String {
        format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(pad))
    }

    #[test]
    fn seals_into_batches_within_count_and_byte_limits() {
        let mut o = Outbox::default();
        for i in 0..1_200 {
            assert!(o.push(event(i, 10)));
        }
        let ops = o.seal(keys(), false);
        assert!(ops.is_empty(), "nothing written without consent");
        let sizes: Vec<usize> = o.batches().map(|b| b.events.len()).collect();
        assert_eq!(sizes, [500, 500, 200]);

        let mut o = Outbox::default();
        for i in 0..100 {
            o.push(event(i, 2_000));
        }
        o.seal(keys(), false);
        assert!(o.batches().all(|b| b.body("2024-01-01T00:00:00.000Z", "wk").len() < BEACON_BUDGET_BYTES));
        assert_eq!(o.batches().map(|b| b.events.len()).sum::<usize>(), 100);
        // An event alone larger than a batch still leaves (the collector refuses it visibly, as a failed event).
        let mut o = Outbox::default();
        o.push(event(0, MAX_BATCH_BYTES + 10));
        o.seal(keys(), false);
        assert_eq!(o.batches().count(), 1);
    }

    #[test]
    fn persists_once_per_batch_and_removes_on_delivery() {
        let mut o = Outbox::default();
        o.push(event(1, 0));
        o.push(event(2, 0));
        let ops = o.seal(keys(), true);
        assert_eq!(ops, [StorageOp::Write { key: "fp_q.k1".into(), value: "{\"i\":1,\"p\":\"\"}\n{\"i\":2,\"p\":\"\"}".into() }]);
        let body = o.start_send(0.0).unwrap().body("T", "wk");
        assert_eq!(body, r#"{"batch":[{"i":1,"p":""},{"i":2,"p":""}],"sentAt":"T","writeKey":"wk"}"#);
        assert!(o.start_send(0.0).is_none(), "one batch in flight at a time");
        assert_eq!(o.delivered("k1"), Some(StorageOp::Remove { key: "fp_q.k1".into() }));
        assert!(o.is_empty());
        assert!(o.start_send(0.0).is_none());
    }

    #[test]
    fn a_failed_batch_stays_first_and_waits() {
        let mut o = Outbox::default();
        let mut keys = keys();
        o.push(event(1, 0));
        o.seal(&mut keys, false);
        o.push(event(2, 0));
        o.seal(&mut keys, false);
        let key = o.start_send(0.0).unwrap().key.clone();
        o.failed(&key);
        assert_eq!(o.attempt, 1);
        o.retry_at = 1_000.0;
        assert!(o.start_send(999.0).is_none());
        assert_eq!(o.start_send(1_000.0).unwrap().key, key);
        o.delivered(&key);
        assert_eq!(o.attempt, 0);
        assert_eq!(o.start_send(1_000.0).unwrap().key, "k2");
    }

    #[test]
    fn restores_a_backlog_and_forgets_the_device_on_withdrawal() {
        let mut o = Outbox::default();
        o.restore("old", "{\"a\":1}\n{\"a\":2}\n");
        o.restore("junk", "not json");
        assert_eq!(o.len(), 2);
        assert_eq!(o.batches().count(), 1);
        o.push(event(3, 0));
        o.seal(keys(), true);
        assert_eq!(o.unstore_all().len(), 2);
        assert!(o.unstore_all().is_empty());
        assert_eq!(o.remove("old"), None, "no longer stored: nothing to remove from the device");
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn the_device_copy_is_bounded() {
        let mut o = Outbox::default();
        for i in 0..40 {
            o.push(event(i, 50_000));
        }
        let ops = o.seal(keys(), true);
        assert_eq!(ops.len(), MAX_STORED_BYTES / 50_020);
        assert_eq!(o.len(), 40, "what does not fit on the device stays in memory");
    }

    #[test]
    fn the_shared_context_travels_once_per_batch_and_a_new_one_starts_a_batch() {
        let mut o = Outbox::default();
        let mut keys = keys();
        let ctx = Rc::new(String::from("{\"page\":{\"path\":\"/a\"}}"));
        assert!(o.set_context(Some(ctx.clone()), &mut keys, true).is_empty(), "nothing waits: nothing to seal");
        o.push(event(1, 0));
        assert!(o.set_context(Some(Rc::new(String::clone(&ctx))), &mut keys, true).is_empty(), "an equal context continues the batch");
        o.push(event(2, 0));
        let ops = o.set_context(Some(Rc::new(String::from("{\"page\":{\"path\":\"/b\"}}"))), &mut keys, true);
        assert_eq!(ops.len(), 1, "a new context seals what waits");
        o.push(event(3, 0));
        o.seal(&mut keys, true);
        let bodies: Vec<String> = o.batches().map(|b| b.body("T", "wk")).collect();
        assert_eq!(bodies[0], r#"{"batch":[{"i":1,"p":""},{"i":2,"p":""}],"context":{"page":{"path":"/a"}},"sentAt":"T","writeKey":"wk"}"#);
        assert_eq!(bodies[1], r#"{"batch":[{"i":3,"p":""}],"context":{"page":{"path":"/b"}},"sentAt":"T","writeKey":"wk"}"#);
        // The device copy keeps the context: a reload sends the same body.
        let stored = o.batches().next().unwrap().stored_form();
        let mut reloaded = Outbox::default();
        reloaded.restore("k1", &stored);
        assert_eq!(reloaded.batches().next().unwrap().body("T", "wk"), bodies[0]);
    }

    #[test]
    fn a_full_outbox_drops_and_counts() {
        let mut o = Outbox::default();
        for i in 0..MAX_QUEUED_EVENTS {
            assert!(o.push(event(i, 0)));
        }
        assert!(!o.push(event(0, 0)));
        assert_eq!(o.dropped, 1);
    }
}
