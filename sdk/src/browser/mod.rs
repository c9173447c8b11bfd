//! The only Rust code that touches the browser, through the functions of `js/host.js` (storage, crypto, time,
//! `fetch`, `sendBeacon`, one timer). It carries out the sends the tracker prepares and arms the timer; all state
//! lives in one [`Runtime`] per page. The DOM listeners are in `js/capture.js`; they call the exports in `api.rs`,
//! which land here. Nothing here may throw into the host page: a call that arrives while the runtime is busy
//! (re-entrancy) is dropped rather than panicking.

pub mod alloc;
mod device;

use crate::options::Options;
use crate::tracker::{Device, Environment, Page, Tracker};
use device::BrowserDevice;
use std::cell::RefCell;

pub mod host {
    //! The imports from `js/host.js` (one-letter names: each name is in the module and in the script), as plain
    //! Wasm functions over the module's memory: a text goes out as a
    //! pointer and a byte length, and comes back as a byte length (-1: none) that [`take`] then copies in. No
    //! wasm-bindgen shims or marshalling glue: `js/host.js` is the whole JS side of the boundary.

    #[link(wasm_import_module = "h")]
    extern "C" {
        #[link_name = "n"]
        fn now_() -> f64;
        #[link_name = "r"]
        fn random_(out: *mut u8, len: usize);
        /// Writes 36 bytes (ASCII) to `out`.
        #[link_name = "u"]
        fn uuid_(out: *mut u8);
        #[link_name = "l"]
        /// `json`: the value through `JSON.parse` and `JSON.stringify`.
        fn load_(key: *const u8, key_len: usize, json: bool) -> isize;
        #[link_name = "s"]
        fn store_(key: *const u8, key_len: usize, value: *const u8, value_len: isize);
        #[link_name = "k"]
        fn keys_() -> isize;
        #[link_name = "p"]
        fn page_() -> isize;
        #[link_name = "f"]
        fn facts_() -> u32;
        #[link_name = "c"]
        fn context_(url: *const u8, url_len: usize, referrer: *const u8, referrer_len: usize, consent: u32, session: *const u8, session_len: isize) -> isize;
        #[link_name = "x"]
        fn send_(batch: *const u8, batch_len: usize, id: u32);
        #[link_name = "b"]
        fn beacon_(batch: *const u8, batch_len: usize) -> i32;
        #[link_name = "a"]
        fn arm_(ms: f64);
        /// Copies the text the last call answered (its length) to `out`.
        #[link_name = "t"]
        fn take_(out: *mut u8);
    }

    /// The text a host call answered with `len` bytes (-1: none).
    fn text(len: isize) -> Option<String> {
        let len = usize::try_from(len).ok()?;
        let mut bytes = Vec::with_capacity(len);
        // SAFETY: `take` writes exactly `len` bytes to the buffer, and they are UTF-8 (TextEncoder's output).
        unsafe {
            take_(bytes.as_mut_ptr());
            bytes.set_len(len);
            Some(String::from_utf8_unchecked(bytes))
        }
    }

    // SAFETY (every call below): the host reads only the given ranges of memory, which stay valid for the call.
    pub fn now() -> f64 {
        unsafe { now_() }
    }
    pub fn random(out: &mut [u8]) {
        unsafe { random_(out.as_mut_ptr(), out.len()) }
    }
    /// Appends a random UUIDv4 to `out`, written by the host straight into its buffer.
    pub fn uuid(out: &mut String) {
        // SAFETY: the host writes 36 ASCII bytes into the room reserved for them.
        unsafe {
            let v = out.as_mut_vec();
            v.reserve(36);
            uuid_(v.as_mut_ptr().add(v.len()));
            v.set_len(v.len() + 36);
        }
    }
    pub fn load(key: &str, json: bool) -> Option<String> {
        text(unsafe { load_(key.as_ptr(), key.len(), json) })
    }
    /// Writes `value`, or removes the key when `None`.
    pub fn store(key: &str, value: Option<&str>) {
        let (value, len) = value.map_or((core::ptr::null(), -1), |v| (v.as_ptr(), v.len() as isize));
        unsafe { store_(key.as_ptr(), key.len(), value, len) }
    }
    /// Every storage key, one per line.
    pub fn keys() -> String {
        text(unsafe { keys_() }).unwrap_or_default()
    }
    /// url and referrer, one per line.
    pub fn page() -> String {
        text(unsafe { page_() }).unwrap_or_default()
    }
    /// GPC (1/0) + 2 · visible (1/0).
    pub fn facts() -> u32 {
        unsafe { facts_() }
    }
    /// The `context` JSON (see `Device::context`).
    pub fn context(url: &str, referrer: &str, consent: u32, session: Option<&str>) -> String {
        let (session, len) = session.map_or((core::ptr::null(), -1), |s| (s.as_ptr(), s.len() as isize));
        text(unsafe { context_(url.as_ptr(), url.len(), referrer.as_ptr(), referrer.len(), consent, session, len) }).unwrap_or_default()
    }
    /// POSTs the batch (its text, which the host writes as the request body) to the collector; the answer comes
    /// back through `call` (op 11).
    pub fn send(b: &crate::queue::Batch) {
        unsafe { send_(b.text.as_ptr(), b.text.len(), b.id) }
    }
    /// `navigator.sendBeacon` of the batch; false when offline or refused.
    pub fn beacon(b: &crate::queue::Batch) -> bool {
        unsafe { beacon_(b.text.as_ptr(), b.text.len()) != 0 }
    }
    /// (Re)arms the one timer; it calls `call` (op 12).
    pub fn arm(ms: f64) {
        unsafe { arm_(ms) }
    }
}

pub struct Runtime {
    pub tracker: Tracker,
    pub dev: BrowserDevice,
    /// When the armed timer fires.
    timer: Option<f64>,
    flush_requested: bool,
}

/// A static of the module's one thread: without the `atomics` feature a Wasm module has no other (see `lib.rs`).
/// Plain statics instead of `thread_local!`, whose access path costs the module code for nothing here.
pub struct OneThread<T>(pub T);

// SAFETY: nothing runs concurrently in a module built without `atomics` (checked below).
unsafe impl<T> Sync for OneThread<T> {}

#[cfg(target_feature = "atomics")]
compile_error!("the SDK's statics (OneThread) and allocator assume a single-threaded module");

static RUNTIME: OneThread<RefCell<Option<Runtime>>> = OneThread(RefCell::new(None));

/// Starts the SDK on this page. A second call is ignored.
pub fn start(options: Options) {
    if RUNTIME.0.borrow().is_some() {
        return;
    }
    let (page, env, visible) = browser_state();
    let mut dev = BrowserDevice;
    let tracker = Tracker::start(options, env, page, visible, &mut dev);
    // The old value is `None` (checked above): forgetting it spares the module the runtime's drop code.
    core::mem::forget(RUNTIME.0.replace(Some(Runtime { tracker, dev, timer: None, flush_requested: false })));
    with(&mut |rt| rt.pump(Send::Now));
}

/// What the browser says about the current page.
pub fn current_page() -> Page {
    browser_state().0
}

/// The page, the device, and whether the page is visible (one call into the browser).
fn browser_state() -> (Page, Environment, bool) {
    let text = host::page();
    // URLs hold no raw newline.
    let (url, referrer) = crate::text::split_once(&text, b'\n').unwrap_or((&text, ""));
    let f = host::facts();
    (Page { url: url.to_owned(), referrer: referrer.to_owned() }, Environment { gpc: f & 1 == 1 }, f & 2 != 0)
}

/// Runs `f` on the runtime, if started and not busy. Every public call and every listener goes through here.
/// (Takes `&mut dyn FnMut` rather than a generic closure: one copy of this code in the module, not one per caller.)
pub fn with(f: &mut dyn FnMut(&mut Runtime)) {
    if let Ok(mut guard) = RUNTIME.0.try_borrow_mut() {
        if let Some(rt) = guard.as_mut() {
            f(rt);
        }
    }
}

/// Whether [`Runtime::pump`] may send from the current call stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Send {
    Now,
    /// From a tracking call: never store or send inside the caller's `track()`; a zero-delay timer does it.
    Later,
}

impl Runtime {
    /// Sends the next batch if one may go now; otherwise arms the timer for when one may. Cheap when nothing
    /// changes: `track()` calls this, and after the first event it only compares two numbers.
    #[inline(never)]
    fn pump(&mut self, send: Send) {
        if self.tracker.outbox.in_flight().is_some() || self.tracker.queued() == 0 {
            return;
        }
        let sealed_waiting = self.tracker.outbox.batches().next().is_some();
        if send == Send::Later && self.timer.is_some() && !sealed_waiting && !self.tracker.batch_full() {
            // The usual `track()`: nothing is urgent, and the armed timer fires no later than this event's deadline
            // (it was armed for an earlier one, or for a retry this event must wait for too). Not even the clock.
            return;
        }
        let now = self.dev.now();
        let retry_at = self.tracker.outbox.retry_at;
        let due = if now < retry_at {
            retry_at
        } else if self.flush_requested || sealed_waiting || self.tracker.batch_full() {
            now
        } else {
            now + self.tracker.options.flush_interval_ms
        };
        if due <= now && send == Send::Now {
            self.flush_requested = false;
            if let Some(batch) = self.tracker.next_request(&mut self.dev) {
                host::send(batch);
            }
        } else if self.timer.is_none_or(|at| at > due) {
            self.timer = Some(due);
            host::arm((due - now).max(0.0));
        }
    }

    /// After a tracking call: delivery reacts (arms the timer, or sends a full batch soon, from the timer).
    pub fn tracked(&mut self) {
        self.pump(Send::Later);
    }

    /// The timer fired: it was armed for the oldest waiting event's deadline (or a retry), so send now.
    pub fn tick(&mut self) {
        self.timer = None;
        self.flush_requested = true;
        self.pump(Send::Now);
    }

    /// `flush()`: send what waits now instead of at the next tick.
    pub fn flush(&mut self) {
        self.flush_requested = true;
        self.tracker.online();
        self.pump(Send::Now);
    }

    /// The answer to a send: `status` 0 means no answer (network error).
    pub fn answered(&mut self, batch: u32, status: u16, retry_after: Option<&str>) {
        let status = (status != 0).then_some(status);
        self.tracker.answered(&mut self.dev, batch, status, retry_after);
        self.pump(Send::Now);
    }

    /// The page is going out of sight (or away): the rest leaves by beacon.
    pub fn hidden(&mut self) {
        self.tracker.hidden(&mut self.dev, host::beacon);
    }
}
