//! The module's only `#[wasm_bindgen]` exports. `js/client.js` wraps the public ones into the API (it stringifies
//! properties and traits with the browser's native `JSON.stringify` and catches everything), so these take text;
//! `js/capture.js` calls the capture ones (`navigated`, `click`, …) from its DOM listeners.

use crate::browser::{self, call, with};
use crate::consent::Update;
use crate::navigation::Trigger;
use crate::tracker::{Click, FormSubmit};
use wasm_bindgen::prelude::*;

/// Starts the SDK. `options` is `name=value` lines (`writeKey=wk_demo\ncollector=https://…`). Invalid options are
/// the only error the SDK raises: the thrown value is `code:option` (`missing_write_key:writeKey`), which
/// `js/client.js` turns into an `Error` with a `code`. Returns what `js/capture.js` should listen for: 1 page views,
/// 2 clicks, 4 forms, 8 engagement.
#[wasm_bindgen]
pub fn init(options: &str) -> Result<u32, JsValue> {
    let pairs: Vec<(String, String)> =
        options.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    match crate::options::parse(&pairs) {
        Ok(o) => {
            let c = o.capture;
            browser::start(o);
            Ok(u32::from(c.pageviews) | u32::from(c.clicks) << 1 | u32::from(c.forms) << 2 | u32::from(c.engagement) << 3)
        }
        Err(e) => {
            let mut thrown = String::from(e.code);
            thrown.push(':');
            thrown.push_str(&e.option);
            Err(JsValue::from_str(&thrown))
        }
    }
}

#[wasm_bindgen]
pub fn track(event: &str, properties: Option<String>) {
    call(&mut |t, dev| t.track(dev, event, properties.as_deref()));
}

#[wasm_bindgen]
pub fn page(name: Option<String>, properties: Option<String>) {
    call(&mut |t, dev| t.page(dev, name.as_deref(), properties.as_deref()));
}

#[wasm_bindgen]
pub fn identify(user_id: Option<String>, traits: Option<String>) {
    call(&mut |t, dev| t.identify(dev, user_id.as_deref(), traits.as_deref()));
}

#[wasm_bindgen]
pub fn alias(user_id: &str, previous_id: Option<String>) {
    call(&mut |t, dev| t.alias(dev, user_id, previous_id.as_deref()));
}

#[wasm_bindgen]
pub fn group(group_id: &str, traits: Option<String>) {
    call(&mut |t, dev| t.group(dev, group_id, traits.as_deref()));
}

#[wasm_bindgen]
pub fn reset() {
    call(&mut |t, dev| t.reset(dev));
}

#[wasm_bindgen]
pub fn flush() {
    with(&mut |rt| rt.flush());
}

/// The URL may have changed: 0 `pushState`, 1 `replaceState`, 2 `popstate`, 3 `hashchange`.
#[wasm_bindgen]
pub fn navigated(trigger: u8) {
    let trigger = match trigger {
        0 => Trigger::PushState,
        1 => Trigger::ReplaceState,
        2 => Trigger::PopState,
        _ => Trigger::HashChange,
    };
    let mut page = Some(browser::current_page());
    call(&mut |t, dev| t.navigated(dev, page.take().unwrap_or_default(), trigger));
}

/// A click on a link or button (`href` only for links; never an input's value).
#[wasm_bindgen]
pub fn click(selector: String, text: String, tag: String, href: Option<String>, download: bool) {
    let mut click = Some(Click { selector, tag, text, href, download_attribute: download });
    call(&mut |t, dev| {
        if let Some(c) = click.take() {
            t.clicked(dev, &c);
        }
    });
}

/// A form submission (no field values).
#[wasm_bindgen]
pub fn submit(selector: String, id: String, action: String, method: String) {
    let form = FormSubmit { selector, id, action, method };
    call(&mut |t, dev| t.form_submitted(dev, &form));
}

/// The answer to a send (`js/host.js`): `status` 0 for a network error.
#[wasm_bindgen]
pub fn answered(batch_key: &str, status: u16, retry_after: Option<String>) {
    with(&mut |rt| rt.answered(batch_key, status, retry_after.as_deref()));
}

/// The timer fired (`js/host.js`).
#[wasm_bindgen]
pub fn tick() {
    with(&mut |rt| rt.tick());
}

#[wasm_bindgen]
pub fn hidden() {
    with(&mut |rt| rt.hidden());
}

#[wasm_bindgen]
pub fn shown() {
    call(&mut |t, dev| t.shown(crate::tracker::Device::now(dev)));
}

/// The viewport's bottom edge and the document height, in CSS pixels.
#[wasm_bindgen]
pub fn scrolled(bottom: f64, height: f64) {
    with(&mut |rt| rt.tracker.scrolled(bottom, height));
}

#[wasm_bindgen]
pub fn consent(analytics: Option<bool>, marketing: Option<bool>, personalization: Option<bool>) {
    call(&mut |t, dev| t.consent(dev, Update { analytics, marketing, personalization }));
}
