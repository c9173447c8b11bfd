//! The only Rust code that touches Web APIs. It reads the page, runs the one timer, and carries out the sends the
//! tracker prepares (`transport`). All state lives in one [`Runtime`] per page. The DOM listeners are in
//! `js/capture.js` (a few hundred bytes of JS instead of kilobytes of closures and bindings in the module); they
//! call the exports in `api.rs`, which land here.
//!
//! Nothing here may throw into the host page: Web API errors are ignored, and a call that arrives while the runtime
//! is busy (re-entrancy) is dropped rather than panicking.

mod device;
mod transport;

use crate::options::Options;
use crate::tracker::{Device, Environment, Page, Tracker};
use device::BrowserDevice;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub struct Runtime {
    pub tracker: Tracker,
    pub dev: BrowserDevice,
    window: web_sys::Window,
    /// `{collector}/v1/batch`.
    endpoint: String,
    timer: Option<(i32, f64)>,
    on_timer: js_sys::Function,
    flush_requested: bool,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

/// Starts the SDK on this page. A second call is ignored.
pub fn start(options: Options) {
    if RUNTIME.with(|r| r.borrow().is_some()) {
        return;
    }
    let Some(window) = web_sys::window() else { return };
    let document = window.document();
    let navigator = window.navigator();
    let gpc = js_sys::Reflect::get(&navigator, &JsValue::from_str("globalPrivacyControl")).is_ok_and(|v| v.is_truthy());
    let screen = window.screen().ok();
    let env = Environment {
        locale: navigator.language().unwrap_or_default(),
        screen_width: screen.as_ref().and_then(|s| s.width().ok()).unwrap_or(0).max(0) as u32,
        screen_height: screen.as_ref().and_then(|s| s.height().ok()).unwrap_or(0).max(0) as u32,
        gpc,
    };
    let visible = document.as_ref().is_none_or(|d| !d.hidden());
    let mut dev = BrowserDevice::new(&window);
    let endpoint = format_endpoint(&options.collector);
    let tracker = Tracker::start(options, env, current_page(&window), visible, &mut dev);
    let on_timer = Closure::<dyn FnMut()>::new(|| {
        with(&mut |rt| {
            // The timer was armed for the oldest waiting event's deadline (or a retry): send now.
            rt.timer = None;
            rt.flush_requested = true;
            rt.pump(Send::Now);
        })
    })
    .into_js_value()
    .unchecked_into();
    RUNTIME.with(|r| {
        *r.borrow_mut() = Some(Runtime { tracker, dev, window: window.clone(), endpoint, timer: None, on_timer, flush_requested: false });
    });
    with(&mut |rt| rt.pump(Send::Now));
}

fn format_endpoint(collector: &str) -> String {
    let mut s = String::with_capacity(collector.len() + 9);
    s.push_str(collector);
    s.push_str("/v1/batch");
    s
}

/// What the browser says about the current page.
pub fn current_page(window: &web_sys::Window) -> Page {
    let document = window.document();
    Page {
        url: window.location().href().unwrap_or_default(),
        referrer: document.as_ref().map(|d| d.referrer()).unwrap_or_default(),
        title: document.as_ref().map(|d| d.title()).unwrap_or_default(),
    }
}

/// Runs `f` on the runtime, if started and not busy. Every public call and every listener goes through here.
/// (Takes `&mut dyn FnMut` rather than a generic closure: one copy of this code in the module, not one per caller.)
pub fn with(f: &mut dyn FnMut(&mut Runtime)) {
    RUNTIME.with(|r| {
        if let Ok(mut guard) = r.try_borrow_mut() {
            if let Some(rt) = guard.as_mut() {
                f(rt);
            }
        }
    });
}

/// Runs a tracker call, then lets delivery react (arm the timer, or send a full batch soon).
pub fn call(f: &mut dyn FnMut(&mut Tracker, &mut BrowserDevice)) {
    with(&mut |rt| {
        f(&mut rt.tracker, &mut rt.dev);
        rt.pump(Send::Later);
    });
}

/// Whether [`Runtime::pump`] may send from the current call stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Send {
    Now,
    /// From a tracking call: never encode and send inside the caller's `track()`; a zero-delay timer does it.
    Later,
}

impl Runtime {
    /// Sends the next batch if one may go now; otherwise arms the timer for when one may. Cheap when nothing
    /// changes: `track()` calls this, and after the first event it only compares two numbers.
    #[inline(never)]
    fn pump(&mut self, send: Send) {
        if self.tracker.outbox.in_flight().is_some() || self.tracker.outbox.is_empty() {
            return;
        }
        let now = self.dev.now();
        let retry_at = self.tracker.outbox.retry_at;
        let sealed_waiting = self.tracker.outbox.batches().next().is_some();
        let due = if now < retry_at {
            retry_at
        } else if self.flush_requested || sealed_waiting || self.tracker.batch_full() {
            now
        } else {
            now + self.tracker.options.flush_interval_ms
        };
        if due <= now && send == Send::Now {
            self.send_next();
        } else {
            self.arm(due, now);
        }
    }

    fn send_next(&mut self) {
        self.flush_requested = false;
        if let Some(request) = self.tracker.next_request(&mut self.dev) {
            transport::send(&self.window, &self.endpoint, request);
        }
    }

    /// Arms the timer for `due` unless it already fires no later.
    fn arm(&mut self, due: f64, now: f64) {
        if let Some((handle, at)) = self.timer {
            if at <= due {
                return;
            }
            self.window.clear_timeout_with_handle(handle);
        }
        let delay = (due - now).clamp(0.0, 2_147_483_647.0) as i32;
        self.timer = self.window.set_timeout_with_callback_and_timeout_and_arguments_0(&self.on_timer, delay).ok().map(|h| (h, due));
    }

    /// `flush()`: send what waits now instead of at the next tick.
    pub fn flush(&mut self) {
        self.flush_requested = true;
        self.tracker.online();
        self.pump(Send::Now);
    }

    /// The answer to a send.
    fn answered(&mut self, batch_key: &str, status: Option<u16>, retry_after: Option<&str>) {
        self.tracker.answered(&mut self.dev, batch_key, status, retry_after);
        self.pump(Send::Now);
    }

    /// The page is going out of sight (or away): the rest leaves by beacon.
    pub fn hidden(&mut self) {
        let online = self.window.navigator().on_line();
        let navigator = self.window.navigator();
        let endpoint = &self.endpoint;
        self.tracker.hidden(&mut self.dev, |body| online && navigator.send_beacon_with_opt_str(endpoint, Some(body)).unwrap_or(false));
    }
}
