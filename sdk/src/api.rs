//! The module's only exports: `texts` and `call`. One `call` for every operation instead of one export per method
//! keeps both the module and the JS side small (each export costs a wrapper on either side). `js/client.js` maps the
//! public API onto it (it stringifies properties and traits with the browser's native `JSON.stringify` and catches
//! everything), `js/capture.js` calls it from DOM listeners, `js/host.js` passes the texts in and calls it from
//! `fetch` answers and the timer; the operation numbers are the table below.
//!
//! Texts cross as UTF-8 in one buffer: `js/host.js` asks [`texts`] for room, writes the call's texts one after the
//! other, and passes their byte lengths (-1 for none) to [`call`].

use crate::browser::{self, OneThread};
use crate::consent::Mode;
use crate::consent::Update;
use crate::navigation::Trigger;
use crate::options::{Capture, Options};
use crate::tracker::{Click, FormSubmit};
use std::cell::Cell;
use wasm_bindgen::prelude::*;

/// The texts of the call being made (written by `js/host.js` past the vector's length).
static TEXTS: OneThread<Cell<Vec<u8>>> = OneThread(Cell::new(Vec::new()));

/// Room for `bytes` bytes of texts for the next [`call`]; returns where to write them.
#[wasm_bindgen]
pub fn texts(bytes: usize) -> *mut u8 {
    let mut v = TEXTS.0.take();
    v.clear();
    v.reserve(bytes);
    let at = v.as_mut_ptr();
    TEXTS.0.set(v);
    at
}

/// Every call into the module: `op` says which, `n`/`m` are its numbers and `a`–`d` the byte lengths of its texts
/// (-1: none) in the buffer of [`texts`]. The texts are JSON (strings, and objects for properties and traits:
/// `js/client.js` and `js/capture.js` run `JSON.stringify`), but for URLs and the scrub patterns.
///
/// | op | call | arguments |
/// |---|---|---|
/// | 0 | `track` | `a` event, `b` properties |
/// | 1 | `page` | `a` name, `b` properties |
/// | 2 | `identify` | `a` user ID, `b` traits |
/// | 3 | `alias` | `a` user ID, `b` previous ID |
/// | 4 | `group` | `a` group ID, `b` traits |
/// | 5 | `reset` | |
/// | 6 | `flush` | |
/// | 7 | `consent` | `n` = analytics + 3·marketing + 9·personalization, each 0 left as is, 1 denied, 2 granted |
/// | 8 | navigated | `n` 0 `pushState`, 1 `replaceState`, 2 `popstate`, 3 `hashchange` |
/// | 9 | a click on a link or button | `a` selector, `b` text, `c` tag, `d` href (links only; a URL, not JSON), `n` 1 with a `download` attribute + 2 for a web link to another origin |
/// | 10 | a form submission (no field values) | `a` selector, `b` id, `c` action (a URL, not JSON), `d` method |
/// | 11 | the answer to a send | `n` status (0: network error), `m` the batch, `a` `Retry-After` |
/// | 12 | the timer fired | |
/// | 13 | the page is hidden or going away | |
/// | 14 | the page is visible again | |
/// | 15 | scrolled | `n` the viewport's bottom edge, `m` the document height (CSS pixels) |
/// | 16 | nothing but a clock read (warm-up) | `a`, `b` empty |
/// | 17 | start (options `js/client.js` validated; it keeps the write key and the collector) | `a` scrub patterns (comma-separated, lower-case); `n` = consent (0 required, 1 implied) + 2·capture flags (1 page views, 2 clicks, 4 forms, 8 engagement) + 32·batch size + 16384·ID lifetime in days; `m` flush interval (ms) |
#[wasm_bindgen]
pub fn call(op: u32, n: f64, m: f64, a: isize, b: isize, c: isize, d: isize) {
    // The buffer stays out of its cell for the call: the texts are borrowed from it (no copies, and nothing to
    // drop but the buffer), and a call made from inside this one (none is) would only find an empty buffer.
    let buffer = TEXTS.0.take();
    let mut at = 0;
    let mut next = |len: isize| {
        let len = usize::try_from(len).ok()?;
        // SAFETY: js/host.js wrote the texts, UTF-8 from TextEncoder, back to back into the buffer's spare room,
        // which nothing else touches until the buffer goes back into its cell below.
        let bytes = unsafe { core::slice::from_raw_parts(buffer.as_ptr().add(at), len) };
        at += len;
        Some(unsafe { core::str::from_utf8_unchecked(bytes) })
    };
    let (a, b, c, d) = (next(a), next(b), next(c), next(d));
    if op == 17 {
        start(n as u32, m, a);
    } else if op == 16 {
        // Warm-up from js/client.js: a round trip through the same path as `track()` (the call, the texts, the clock).
        browser::host::now();
    } else {
        // One closure for every operation on the running SDK: each closure passed as `dyn FnMut` costs the module a
        // function and a vtable of shims.
        browser::with(&mut |rt| {
            let (t, dev) = (&mut rt.tracker, &mut rt.dev);
            match op {
                0 => t.track(dev, text(a), b),
                1 => t.page(dev, a, b),
                2 => t.identify(dev, a, b),
                3 => t.alias(dev, text(a), b),
                4 => t.group(dev, text(a), b),
                5 => t.reset(dev),
                7 => {
                    let n = n as u32;
                    let choice = |v: u32| match v % 3 {
                        0 => None,
                        v => Some(v == 2),
                    };
                    t.consent(dev, Update { analytics: choice(n), marketing: choice(n / 3), personalization: choice(n / 9) });
                }
                8 => {
                    let trigger = match n as u32 {
                        0 => Trigger::PushState,
                        1 => Trigger::ReplaceState,
                        2 => Trigger::PopState,
                        _ => Trigger::HashChange,
                    };
                    t.navigated(dev, browser::current_page(), trigger);
                }
                9 => {
                    let n = n as u32;
                    t.clicked(dev, &Click { selector: text(a), text: text(b), tag: text(c), href: d, download_attribute: n & 1 != 0, other_origin: n & 2 != 0 });
                }
                10 => t.form_submitted(dev, &FormSubmit { selector: text(a), id: text(b), action: text(c), method: text(d) }),
                14 => t.shown(crate::tracker::Device::now(dev)),
                15 => t.scrolled(n, m),
                6 => return rt.flush(),
                11 => return rt.answered(m as u32, n as u16, a),
                12 => return rt.tick(),
                13 => return rt.hidden(),
                _ => return,
            }
            // A tracking call: delivery reacts (arms the timer, or sends a full batch soon).
            rt.tracked();
        });
    }
    TEXTS.0.set(buffer);
}

/// A text, `""` for none.
fn text(s: Option<&str>) -> &str {
    s.unwrap_or("")
}

/// Operation 17: starts the SDK with the options `js/client.js` validated.
fn start(n: u32, m: f64, a: Option<&str>) {
    let mut o = Options::new();
    o.scrub = text(a).to_owned();
    o.consent = if n & 1 == 1 { Mode::Implied } else { Mode::Required };
    o.capture = Capture::from_bits(n >> 1 & 15);
    o.batch_size = (n >> 5 & 511) as usize;
    o.id_lifetime_days = n >> 14;
    o.flush_interval_ms = m;
    browser::start(o);
}
