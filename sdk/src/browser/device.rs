//! [`Device`] on the browser, through `js/host.js`: `Date.now`, `crypto.getRandomValues`, `localStorage`, and what
//! the browser writes with less code than the module would: UUIDs and the events' `context` (`JSON.stringify`).
//! Storage failures (quota, storage disabled, private modes) are swallowed there: the tracker then keeps its state
//! in memory.

use super::host;
use crate::tracker::Device;

pub struct BrowserDevice;

impl Device for BrowserDevice {
    fn now(&self) -> f64 {
        host::now()
    }

    fn random(&mut self, out: &mut [u8]) {
        host::random(out);
    }

    fn uuid(&mut self, out: &mut String) {
        host::uuid(out);
    }

    fn load(&self, key: &str) -> Option<String> {
        host::load(key, false)
    }

    fn load_json(&self, key: &str) -> Option<String> {
        host::load(key, true)
    }

    fn store(&mut self, key: &str, value: &str) {
        host::store(key, Some(value));
    }

    fn remove(&mut self, key: &str) {
        host::store(key, None);
    }

    fn context(&mut self, url: &str, referrer: &str, consent: u32, session: Option<&str>) -> String {
        host::context(url, referrer, consent, session)
    }

    /// Every key: the tracker keeps those with its prefix.
    fn keys(&self, _prefix: &str) -> String {
        host::keys()
    }
}
