//! The module's only `#[wasm_bindgen]` exports. `js/client.js` wraps them into the public API (it stringifies
//! properties and traits with the browser's native `JSON.stringify` and catches everything), so these take text.

use crate::browser::{self, call, with};
use crate::consent::Update;
use wasm_bindgen::prelude::*;

/// Starts the SDK. `options` is `name=value` lines (`writeKey=wk_demo\ncollector=https://…`). Invalid options are
/// the only error the SDK raises: an `Error` whose `code` names the problem (`missing_write_key`, …).
#[wasm_bindgen]
pub fn init(options: &str) -> Result<(), JsValue> {
    let pairs: Vec<(String, String)> =
        options.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    match crate::options::parse(&pairs) {
        Ok(o) => {
            browser::start(o);
            Ok(())
        }
        Err(e) => {
            let mut message = String::from("footprint: invalid option ");
            message.push_str(&e.option);
            message.push_str(" (");
            message.push_str(e.code);
            message.push(')');
            let error = js_sys::Error::new(&message);
            let _ = js_sys::Reflect::set(&error, &JsValue::from_str("code"), &JsValue::from_str(e.code));
            Err(error.into())
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

#[wasm_bindgen]
pub fn consent(analytics: Option<bool>, marketing: Option<bool>, personalization: Option<bool>) {
    call(&mut |t, dev| t.consent(dev, Update { analytics, marketing, personalization }));
}
