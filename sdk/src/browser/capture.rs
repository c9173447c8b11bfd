//! The listeners: clicks and form submissions (capture phase, passive: they never delay or cancel the page's own
//! handlers or navigation), History API and hash navigations, visibility and page hide, scroll depth, online.
//! They live as long as the page; their closures are intentionally never freed.

use super::{call, current_page, with};
use crate::element::Step;
use crate::navigation::Trigger;
use crate::options::Capture;
use crate::tracker::{Click, FormSubmit};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AddEventListenerOptions, Element, Event, EventTarget, HtmlAnchorElement, HtmlFormElement};

/// What counts as clickable.
const CLICKABLE: &str = "a,button,[role=button],input[type=submit],input[type=button]";

pub fn install(window: &web_sys::Window, capture: Capture) {
    let Some(document) = window.document() else { return };
    if capture.clicks {
        listen(&document, "click", |event| {
            if let Some(click) = describe_click(&event) {
                call(&mut |t, dev| t.clicked(dev, &click));
            }
        });
    }
    if capture.forms {
        listen(&document, "submit", |event| {
            let Some(form) = event.target().and_then(|t| t.dyn_into::<HtmlFormElement>().ok()) else { return };
            let submit = FormSubmit { path: path(&form), action: form.action(), method: form.method() };
            call(&mut |t, dev| t.form_submitted(dev, &submit));
        });
    }
    // Navigations are watched even when page views are not captured: the page context must follow the URL.
    hook_history(window, "pushState", Trigger::PushState);
    hook_history(window, "replaceState", Trigger::ReplaceState);
    listen(window, "popstate", |_| navigated(Trigger::PopState));
    listen(window, "hashchange", |_| navigated(Trigger::HashChange));
    let doc = document.clone();
    listen(&document, "visibilitychange", move |_| {
        if doc.hidden() {
            with(&mut |rt| rt.hidden());
        } else {
            call(&mut |t, dev| t.shown(crate::tracker::Device::now(dev)));
        }
    });
    listen(window, "pagehide", |_| with(&mut |rt| rt.hidden()));
    listen(window, "online", |_| with(&mut |rt| rt.flush()));
    if capture.engagement {
        let win = window.clone();
        listen(window, "scroll", move |_| {
            let bottom = win.scroll_y().unwrap_or(0.0) + win.inner_height().ok().and_then(|h| h.as_f64()).unwrap_or(0.0);
            let height = win.document().and_then(|d| d.document_element()).map(|e| f64::from(e.scroll_height())).unwrap_or(0.0);
            with(&mut |rt| rt.tracker.scrolled(bottom, height));
        });
    }
}

fn listen(target: &EventTarget, name: &str, handler: impl FnMut(Event) + 'static) {
    let options = AddEventListenerOptions::new();
    options.set_capture(true);
    options.set_passive(true);
    let closure = Closure::<dyn FnMut(Event)>::new(handler);
    let _ = target.add_event_listener_with_callback_and_add_event_listener_options(name, closure.as_ref().unchecked_ref(), &options);
    closure.forget();
}

fn navigated(trigger: Trigger) {
    let Some(window) = web_sys::window() else { return };
    let page = current_page(&window);
    let mut page = Some(page);
    call(&mut |t, dev| t.navigated(dev, page.take().unwrap_or_default(), trigger));
}

/// Wraps `history[name]` so that a navigation is noticed right after the page's router made it. The original is
/// called first, with the same `this` and arguments, and its result or exception passes through unchanged.
fn hook_history(window: &web_sys::Window, name: &str, trigger: Trigger) {
    let Ok(history) = window.history() else { return };
    let history: JsValue = history.into();
    let key = JsValue::from_str(name);
    let Ok(original) = js_sys::Reflect::get(&history, &key).and_then(|f| f.dyn_into::<js_sys::Function>()) else { return };
    let this = history.clone();
    let wrapper = Closure::<dyn FnMut(JsValue, JsValue, JsValue) -> Result<JsValue, JsValue>>::new(move |state, title, url| {
        let result = original.call3(&this, &state, &title, &url)?;
        navigated(trigger);
        Ok(result)
    });
    let _ = js_sys::Reflect::set(&history, &key, wrapper.as_ref());
    wrapper.forget();
}

fn describe_click(event: &Event) -> Option<Click> {
    let target: Element = event.target()?.dyn_into().ok()?;
    let element = target.closest(CLICKABLE).ok()??;
    let tag = element.tag_name().to_ascii_lowercase();
    // Never an input's value: for inputs only their accessible label.
    let text = if tag == "input" {
        element.get_attribute("aria-label").or_else(|| element.get_attribute("title")).unwrap_or_default()
    } else {
        element.text_content().unwrap_or_default()
    };
    let (href, download_attribute) = match element.dyn_ref::<HtmlAnchorElement>() {
        Some(a) if element.has_attribute("href") => (Some(a.href()), element.has_attribute("download")),
        _ => (None, false),
    };
    Some(Click { path: path(&element), text: crate::element::short_text(&text), href, download_attribute })
}

/// The element and its ancestors, as selector steps.
fn path(element: &Element) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut current = Some(element.clone());
    while let Some(el) = current {
        if steps.len() == crate::element::MAX_SELECTOR_DEPTH {
            break;
        }
        let tag = el.tag_name().to_ascii_lowercase();
        if tag == "html" || tag == "body" {
            break;
        }
        let id = el.id();
        let has_id = !id.is_empty();
        steps.push(Step { nth_of_type: nth_of_type(&el, &tag), classes: el.get_attribute("class").unwrap_or_default(), tag, id });
        if has_id {
            break;
        }
        current = el.parent_element();
    }
    steps
}

/// 1-based position among same-tag siblings when there are several, else 0.
fn nth_of_type(el: &Element, tag: &str) -> u32 {
    let same = |e: &Element| e.tag_name().eq_ignore_ascii_case(tag);
    let mut before = 0;
    let mut sibling = el.previous_element_sibling();
    while let Some(s) = sibling {
        before += u32::from(same(&s));
        sibling = s.previous_element_sibling();
    }
    let mut after = el.next_element_sibling();
    let mut any_after = false;
    while let Some(s) = after {
        if same(&s) {
            any_after = true;
            break;
        }
        after = s.next_element_sibling();
    }
    if before == 0 && !any_after {
        0
    } else {
        before + 1
    }
}
