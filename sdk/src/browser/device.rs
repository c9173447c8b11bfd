//! [`Device`] on the real Web APIs: `Date.now`, `crypto.getRandomValues`, `localStorage`. Storage failures (quota,
//! storage disabled, private mode) are swallowed: the tracker then simply keeps its state in memory.

use crate::tracker::Device;
use web_sys::{Crypto, Storage};

pub struct BrowserDevice {
    storage: Option<Storage>,
    crypto: Option<Crypto>,
    /// Random bytes drawn 256 at a time: one call into the browser per 16 message IDs.
    pool: [u8; 256],
    used: usize,
}

impl BrowserDevice {
    pub fn new(window: &web_sys::Window) -> BrowserDevice {
        BrowserDevice {
            // Reading the property can throw (storage blocked): treat as "no storage".
            storage: window.local_storage().ok().flatten(),
            crypto: window.crypto().ok(),
            pool: [0; 256],
            used: 256,
        }
    }
}

impl Device for BrowserDevice {
    fn now(&self) -> f64 {
        js_sys::Date::now()
    }

    fn random(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.used == self.pool.len() {
                let filled = self.crypto.as_ref().is_some_and(|c| c.get_random_values_with_u8_array(&mut self.pool).is_ok());
                if !filled {
                    // No Web Crypto (very old browsers): Math.random is not cryptographic, but IDs stay unique enough.
                    for p in self.pool.iter_mut() {
                        *p = (js_sys::Math::random() * 256.0) as u8;
                    }
                }
                self.used = 0;
            }
            *b = self.pool[self.used];
            self.used += 1;
        }
    }

    fn load(&self, key: &str) -> Option<String> {
        self.storage.as_ref()?.get_item(key).ok().flatten()
    }

    fn store(&mut self, key: &str, value: &str) {
        if let Some(s) = &self.storage {
            let _ = s.set_item(key, value);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(s) = &self.storage {
            let _ = s.remove_item(key);
        }
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let Some(s) = &self.storage else { return Vec::new() };
        let n = s.length().unwrap_or(0);
        (0..n).filter_map(|i| s.key(i).ok().flatten()).filter(|k| k.starts_with(prefix)).collect()
    }
}
