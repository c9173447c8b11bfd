//! [`Device`] on the browser, through `js/host.js`: `Date.now`, `crypto.getRandomValues`, `localStorage`. Storage
//! failures (quota, storage disabled, private modes) are swallowed there: the tracker then keeps its state in memory.

use super::host;
use crate::tracker::Device;

pub struct BrowserDevice {
    /// Random bytes drawn 256 at a time: one call into the browser per 16 message IDs.
    pool: [u8; 256],
    used: usize,
}

impl BrowserDevice {
    pub fn new() -> BrowserDevice {
        BrowserDevice { pool: [0; 256], used: 256 }
    }
}

impl Device for BrowserDevice {
    fn now(&self) -> f64 {
        host::now()
    }

    fn random(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.used == self.pool.len() {
                host::random(&mut self.pool);
                self.used = 0;
            }
            *b = self.pool[self.used];
            self.used += 1;
        }
    }

    fn load(&self, key: &str) -> Option<String> {
        host::load(key)
    }

    fn store(&mut self, key: &str, value: &str) {
        host::store(key, Some(value));
    }

    fn remove(&mut self, key: &str) {
        host::store(key, None);
    }

    fn keys(&self, prefix: &str) -> String {
        host::keys(prefix)
    }
}
