//! The SDK's options. `js/client.js` parses and validates them (the script tag's `data-*` attributes and the npm
//! package's `init({...})`; invalid options are the only errors the SDK ever raises, with stable codes) and hands
//! the module typed values: parsing text in the module cost more than it does in JS.

use crate::consent::Mode;

/// What is captured automatically. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// Page views on load and on SPA navigations.
    pub pageviews: bool,
    /// Clicks on links and buttons, outbound links, downloads.
    pub clicks: bool,
    /// Form submissions (never field values).
    pub forms: bool,
    /// Engaged time and scroll depth, sent when the page is hidden.
    pub engagement: bool,
}

impl Capture {
    pub const ALL: Capture = Capture { pageviews: true, clicks: true, forms: true, engagement: true };
    pub const NONE: Capture = Capture { pageviews: false, clicks: false, forms: false, engagement: false };
}

/// What the module decides with. The write key and the collector are `js/host.js`'s, which writes and sends the
/// requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Default [`Mode::Required`].
    pub consent: Mode,
    /// How long an event may wait before its batch is sent. Default 2,000 ms.
    pub flush_interval_ms: f64,
    /// A batch is sent as soon as this many events wait. Default 20.
    pub batch_size: usize,
    /// Default: everything.
    pub capture: Capture,
    /// Extra query-parameter names to scrub from URLs (matched as lower-case substrings), comma-separated (as
    /// `js/client.js` passes them: one text, not a vector of them, is less code in the module).
    pub scrub: String,
    /// How long the anonymous ID lives on the device. Default 395 days (13 months, the CNIL's ceiling).
    pub id_lifetime_days: u32,
}

pub const DEFAULT_FLUSH_INTERVAL_MS: f64 = 2_000.0;
pub const DEFAULT_BATCH_SIZE: usize = 20;
pub const DEFAULT_ID_LIFETIME_DAYS: u32 = 395;

impl Options {
    /// The defaults (`js/client.js` parses and validates the options).
    pub fn new() -> Options {
        Options {
            consent: Mode::Required,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            batch_size: DEFAULT_BATCH_SIZE,
            capture: Capture::ALL,
            scrub: String::new(),
            id_lifetime_days: DEFAULT_ID_LIFETIME_DAYS,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Capture {
    /// From `js/client.js`'s flags: 1 page views, 2 clicks, 4 forms, 8 engagement.
    pub fn from_bits(bits: u32) -> Capture {
        Capture { pageviews: bits & 1 != 0, clicks: bits & 2 != 0, forms: bits & 4 != 0, engagement: bits & 8 != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = Options::new();
        assert_eq!(o.consent, Mode::Required);
        assert_eq!((o.flush_interval_ms, o.batch_size, o.id_lifetime_days), (2_000.0, 20, 395));
        assert_eq!(o.capture, Capture::ALL);
        assert!(o.scrub.is_empty());
    }

    #[test]
    fn capture_flags() {
        assert_eq!(Capture::from_bits(15), Capture::ALL);
        assert_eq!(Capture::from_bits(0), Capture::NONE);
        assert_eq!(Capture::from_bits(5), Capture { pageviews: true, clicks: false, forms: true, engagement: false });
    }
}
