//! The SDK's options, parsed from `(name, value)` text pairs: the script tag's `data-*` attributes and the npm
//! package's `init({...})` both arrive in this form. Invalid options are the only errors the SDK ever raises.

use crate::consent::{parse_mode, Mode};
use crate::text::split;

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

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The site's public write key (required).
    pub write_key: String,
    /// The collector's base URL, without a trailing slash (the script tag defaults it to the script's origin).
    pub collector: String,
    /// Default [`Mode::Required`].
    pub consent: Mode,
    /// How long an event may wait before its batch is sent. Default 2,000 ms.
    pub flush_interval_ms: f64,
    /// A batch is sent as soon as this many events wait. Default 20.
    pub batch_size: usize,
    /// Default: everything.
    pub capture: Capture,
    /// Extra query-parameter names to scrub from URLs (matched as lower-case substrings).
    pub scrub: Vec<String>,
    /// How long the anonymous ID lives on the device. Default 395 days (13 months, the CNIL's ceiling).
    pub id_lifetime_days: u32,
}

pub const DEFAULT_FLUSH_INTERVAL_MS: f64 = 2_000.0;
pub const DEFAULT_BATCH_SIZE: usize = 20;
pub const DEFAULT_ID_LIFETIME_DAYS: u32 = 395;

/// Why `init` refused its options: a stable `code` and the option it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub code: &'static str,
    pub option: String,
}

fn error(code: &'static str, option: &str) -> OptionError {
    OptionError { code, option: option.to_owned() }
}

/// Parses options given as `(name, value)` pairs in camelCase (`writeKey`, `flushInterval`, …).
pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Options, OptionError> {
    let mut o = Options {
        write_key: String::new(),
        collector: String::new(),
        consent: Mode::Required,
        flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
        batch_size: DEFAULT_BATCH_SIZE,
        capture: Capture::ALL,
        scrub: Vec::new(),
        id_lifetime_days: DEFAULT_ID_LIFETIME_DAYS,
    };
    for (name, value) in pairs {
        let v = value.trim_ascii();
        match name {
            "writeKey" => o.write_key = v.to_owned(),
            "collector" => {
                let mut c = v;
                while let Some(shorter) = c.strip_suffix("/") {
                    c = shorter;
                }
                o.collector = c.to_owned();
            }
            "consent" => o.consent = parse_mode(v).ok_or_else(|| error("invalid_consent_mode", name))?,
            "flushInterval" => o.flush_interval_ms = number(v, 0, 600_000).ok_or_else(|| error("invalid_number", name))? as f64,
            "batchSize" => o.batch_size = number(v, 1, 500).ok_or_else(|| error("invalid_number", name))? as usize,
            "idLifetimeDays" => o.id_lifetime_days = number(v, 1, 3_650).ok_or_else(|| error("invalid_number", name))?,
            "autocapture" => o.capture = capture(v).ok_or_else(|| error("invalid_autocapture", name))?,
            "scrub" => o.scrub = split(v, b',').map(|s| s.trim_ascii().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect(),
            _ => return Err(error("unknown_option", name)),
        }
    }
    if o.write_key.is_empty() {
        return Err(error("missing_write_key", "writeKey"));
    }
    if !(o.collector.starts_with("https://") || o.collector.starts_with("http://")) {
        return Err(error("invalid_collector", "collector"));
    }
    Ok(o)
}

fn number(v: &str, min: u32, max: u32) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = v.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    (min..=max).contains(&n).then_some(n)
}

/// `true`/`all`, `false`/`none`, or a comma-separated list of `pageviews`, `clicks`, `forms`, `engagement`.
fn capture(v: &str) -> Option<Capture> {
    match v {
        "true" | "all" | "" => return Some(Capture::ALL),
        "false" | "none" => return Some(Capture::NONE),
        _ => {}
    }
    let mut c = Capture::NONE;
    for part in split(v, b',').map(str::trim_ascii) {
        match part {
            "pageviews" => c.pageviews = true,
            "clicks" => c.clicks = true,
            "forms" => c.forms = true,
            "engagement" => c.engagement = true,
            _ => return None,
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> Result<Options, OptionError> {
        parse(pairs.iter().copied())
    }

    #[test]
    fn defaults() {
        let o = run(&[("writeKey", "wk_demo"), ("collector", "https://c.example/")]).unwrap();
        assert_eq!(o.collector, "https://c.example");
        assert_eq!(o.consent, Mode::Required);
        assert_eq!((o.flush_interval_ms, o.batch_size, o.id_lifetime_days), (2_000.0, 20, 395));
        assert_eq!(o.capture, Capture::ALL);
    }

    #[test]
    fn every_option_parses() {
        let o = run(&[
            ("writeKey", " wk "),
            ("collector", "http://127.0.0.1:8080"),
            ("consent", "implied"),
            ("flushInterval", "250"),
            ("batchSize", "5"),
            ("idLifetimeDays", "30"),
            ("autocapture", "pageviews, forms"),
            ("scrub", "OrderId, ,ref"),
        ])
        .unwrap();
        assert_eq!(o.write_key, "wk");
        assert_eq!(o.consent, Mode::Implied);
        assert_eq!((o.flush_interval_ms, o.batch_size, o.id_lifetime_days), (250.0, 5, 30));
        assert_eq!(o.capture, Capture { pageviews: true, clicks: false, forms: true, engagement: false });
        assert_eq!(o.scrub, ["orderid", "ref"]);
    }

    #[test]
    fn invalid_options_have_stable_codes() {
        let base = [("writeKey", "wk"), ("collector", "https://c.example")];
        let with = |k: &'static str, v: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push((k, v));
            run(&pairs).unwrap_err().code
        };
        assert_eq!(run(&[("collector", "https://c.example")]).unwrap_err().code, "missing_write_key");
        assert_eq!(run(&[("writeKey", "wk")]).unwrap_err().code, "invalid_collector");
        assert_eq!(with("collector", "javascript:alert(1)"), "invalid_collector");
        assert_eq!(with("consent", "maybe"), "invalid_consent_mode");
        assert_eq!(with("batchSize", "0"), "invalid_number");
        assert_eq!(with("batchSize", "-1"), "invalid_number");
        assert_eq!(with("flushInterval", "1e3"), "invalid_number");
        assert_eq!(with("autocapture", "pageviews,mouse"), "invalid_autocapture");
        assert_eq!(with("writekey", "x"), "unknown_option");
    }
}
