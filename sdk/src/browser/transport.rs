//! Sending a batch with `fetch`: a `text/plain` string body (a CORS "simple request": no preflight), no cookies.
//! `keepalive` is deliberately not used here: Chromium caps all keepalive bodies in flight at 64 KiB and silently
//! refuses the rest (research/wasm-toolchain.md §4); only the page-hide path uses `sendBeacon`.

use super::with;
use crate::tracker::Request;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{RequestCredentials, RequestInit, Response};

#[wasm_bindgen]
extern "C" {
    /// A promise, seen through `then(onFulfilled, onRejected)` with plain functions (self-freeing one-shot
    /// closures), which js-sys's typed `then2` does not take.
    #[wasm_bindgen(extends = js_sys::Object)]
    type Thenable;
    #[wasm_bindgen(method)]
    fn then(this: &Thenable, on_fulfilled: &JsValue, on_rejected: &JsValue);
}

pub fn send(window: &web_sys::Window, endpoint: &str, request: Request) {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&request.body));
    init.set_credentials(RequestCredentials::Omit);
    let key = request.batch_key;
    let failed_key = key.clone();
    let on_answer = Closure::once_into_js(move |response: JsValue| {
        let response: Response = response.unchecked_into();
        let retry_after = response.headers().get("Retry-After").ok().flatten();
        let status = response.status();
        with(&mut |rt| rt.answered(&key, Some(status), retry_after.as_deref()));
    });
    let on_error = Closure::once_into_js(move |_error: JsValue| {
        with(&mut |rt| rt.answered(&failed_key, None, None));
    });
    window.fetch_with_str_and_init(endpoint, &init).unchecked_ref::<Thenable>().then(&on_answer, &on_error);
}
