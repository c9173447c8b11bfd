//! The module's only `#[wasm_bindgen]` exports: `init` and one `call` for everything else. One export instead of
//! one per method keeps both the module and wasm-bindgen's JS glue small (each export costs a wrapper on either
//! side). `js/client.js` maps the public API onto it (it stringifies properties and traits with the browser's native
//! `JSON.stringify` and catches everything); `js/capture.js` and `js/host.js` call it from DOM listeners, `fetch`
//! answers and the timer. The operation numbers are the `OP` table of `js/client.js`.

use crate::browser::{self, call as tracker_call, with};
use crate::consent::Update;
use crate::consent::Mode;
use crate::navigation::Trigger;
use crate::options::{Capture, Options};
use crate::text;
use crate::tracker::{Click, FormSubmit};
use wasm_bindgen::prelude::*;

/// Starts the SDK with options `js/client.js` has validated: `text` is the write key, the collector and the scrub
/// patterns (comma-separated, lower-cased) on three lines; `consent` 0 required / 1 implied; `capture` flags 1 page
/// views, 2 clicks, 4 forms, 8 engagement.
#[wasm_bindgen]
pub fn init(text: &str, consent: u32, flush_interval_ms: u32, batch_size: u32, capture: u32, id_lifetime_days: u32) {
    let mut lines = text::split(text, b'\n');
    let mut next = || lines.next().unwrap_or("");
    let mut o = Options::new(next().to_owned(), next().to_owned());
    o.scrub = text::split(next(), b',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    o.consent = if consent == 1 { Mode::Implied } else { Mode::Required };
    o.flush_interval_ms = f64::from(flush_interval_ms);
    o.batch_size = batch_size as usize;
    o.capture = Capture::from_bits(capture);
    o.id_lifetime_days = id_lifetime_days;
    browser::start(o);
}

/// Every other call into the module: `op` says which, `n`/`m` and `a`–`d` are its arguments.
///
/// | op | call | arguments |
/// |---|---|---|
/// | 0 | `track` | `a` event, `b` properties (JSON) |
/// | 1 | `page` | `a` name, `b` properties |
/// | 2 | `identify` | `a` user ID, `b` traits |
/// | 3 | `alias` | `a` user ID, `b` previous ID |
/// | 4 | `group` | `a` group ID, `b` traits |
/// | 5 | `reset` | |
/// | 6 | `flush` | |
/// | 7 | `consent` | `n` = analytics + 3·marketing + 9·personalization, each 0 left as is, 1 denied, 2 granted |
/// | 8 | navigated | `n` 0 `pushState`, 1 `replaceState`, 2 `popstate`, 3 `hashchange` |
/// | 9 | a click on a link or button | `a` selector, `b` text, `c` tag, `d` href (links only), `n` 1 with a `download` attribute |
/// | 10 | a form submission (no field values) | `a` selector, `b` id, `c` action, `d` method |
/// | 11 | the answer to a send | `a` batch key, `n` status (0: network error), `b` `Retry-After` |
/// | 12 | the timer fired | |
/// | 13 | the page is hidden or going away | |
/// | 14 | the page is visible again | |
/// | 15 | scrolled | `n` the viewport's bottom edge, `m` the document height (CSS pixels) |
/// | 16 | nothing but a clock read (warm-up) | `a`, `b` empty |
#[wasm_bindgen]
pub fn call(op: u32, n: f64, m: f64, a: Option<String>, b: Option<String>, c: Option<String>, d: Option<String>) {
    if op == 0 {
        // track(): the texts are moved into the event, not copied.
        let mut args = Some((a.unwrap_or_default(), b));
        return tracker_call(&mut |t, dev| {
            if let Some((event, properties)) = args.take() {
                t.track_owned(dev, event, properties)
            }
        });
    }
    let (a, b) = (a.as_deref(), b.as_deref());
    match op {
        1 => tracker_call(&mut |t, dev| t.page(dev, a, b)),
        2 => tracker_call(&mut |t, dev| t.identify(dev, a, b)),
        3 => tracker_call(&mut |t, dev| t.alias(dev, a.unwrap_or(""), b)),
        4 => tracker_call(&mut |t, dev| t.group(dev, a.unwrap_or(""), b)),
        5 => tracker_call(&mut |t, dev| t.reset(dev)),
        6 => with(&mut |rt| rt.flush()),
        7 => {
            let n = n as u32;
            let choice = |v: u32| match v % 3 {
                0 => None,
                v => Some(v == 2),
            };
            let update = Update { analytics: choice(n), marketing: choice(n / 3), personalization: choice(n / 9) };
            tracker_call(&mut |t, dev| t.consent(dev, update));
        }
        8 => {
            let trigger = match n as u32 {
                0 => Trigger::PushState,
                1 => Trigger::ReplaceState,
                2 => Trigger::PopState,
                _ => Trigger::HashChange,
            };
            let mut page = Some(browser::current_page());
            tracker_call(&mut |t, dev| t.navigated(dev, page.take().unwrap_or_default(), trigger));
        }
        9 => {
            let text = |s: Option<&str>| s.unwrap_or("").to_owned();
            let click = Click { selector: text(a), text: text(b), tag: text(c.as_deref()), href: d, download_attribute: n == 1.0 };
            tracker_call(&mut |t, dev| t.clicked(dev, &click));
        }
        10 => {
            let text = |s: Option<&str>| s.unwrap_or("").to_owned();
            let form = FormSubmit { selector: text(a), id: text(b), action: text(c.as_deref()), method: text(d.as_deref()) };
            tracker_call(&mut |t, dev| t.form_submitted(dev, &form));
        }
        11 => with(&mut |rt| rt.answered(a.unwrap_or(""), n as u16, b)),
        12 => with(&mut |rt| rt.tick()),
        13 => with(&mut |rt| rt.hidden()),
        14 => tracker_call(&mut |t, dev| t.shown(crate::tracker::Device::now(dev))),
        15 => with(&mut |rt| rt.tracker.scrolled(n, m)),
        // Warm-up from js/client.js: a round trip through the same wrappers as `track()` (the call, the string
        // arguments' allocation, the clock).
        16 => {
            browser::host::now();
        }
        _ => {}
    }
}
