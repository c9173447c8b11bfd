//! Consent as the collector reads it: the categories an event carries (Footprint's, Segment's
//! `categoryPreferences`, or Google Consent Mode v2 types) and the decision of what may be kept.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The optional categories (`necessary` is always granted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories {
    pub analytics: bool,
    pub marketing: bool,
    pub personalization: bool,
}

impl Categories {
    pub const NONE: Categories = Categories { analytics: false, marketing: false, personalization: false };
    pub const ALL: Categories = Categories { analytics: true, marketing: true, personalization: true };

    /// Bit mask as stored: 1 analytics, 2 marketing, 4 personalization.
    pub fn bits(self) -> i64 {
        i64::from(self.analytics) | i64::from(self.marketing) << 1 | i64::from(self.personalization) << 2
    }

    pub fn from_bits(bits: i64) -> Categories {
        Categories { analytics: bits & 1 != 0, marketing: bits & 2 != 0, personalization: bits & 4 != 0 }
    }
}

/// What an event says about consent; `None` for a category it does not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stated {
    pub analytics: Option<bool>,
    pub marketing: Option<bool>,
    pub personalization: Option<bool>,
    /// The browser's Global Privacy Control flag, as the SDK reports it.
    pub gpc: bool,
}

/// The site's setting (DESIGN.md §2): what holds when an event states nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Required,
    Implied,
}

/// Where the event came from. Browsers are held to the site's mode; server-side libraries (no `Origin` header)
/// act under the site's own legal basis, so an event from them without any consent statement is not restricted —
/// Segment's rule too: "a missing consent object means no enforcement".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Browser,
    Server,
}

/// Reads `context.consent` in any of the three forms:
/// - Footprint / Segment: `{"categoryPreferences": {"analytics": true, "Advertising": false, …}, "gpc": true}`
/// - flat: `{"analytics": true, "marketing": false}`
/// - Google Consent Mode v2: `{"analytics_storage": "granted", "ad_storage": "denied", …}`
///
/// Category names are matched case-insensitively; common CMP names map onto ours (Performance → analytics,
/// Advertising/Targeting → marketing, Functional → personalization). Returns `None` when nothing is stated.
pub fn parse_stated(consent: &RawValue) -> Option<Stated> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(rename = "categoryPreferences", borrow, default)]
        category_preferences: Option<BTreeMap<&'a str, serde_json::Value>>,
        #[serde(default)]
        gpc: Option<bool>,
        #[serde(flatten, borrow)]
        rest: BTreeMap<&'a str, serde_json::Value>,
    }
    let wire: Wire = serde_json::from_str(consent.get()).ok()?;
    let mut stated = Stated { gpc: wire.gpc.unwrap_or(false), ..Stated::default() };
    let mut any = false;
    let entries = wire.category_preferences.iter().flatten().chain(wire.rest.iter());
    for (name, value) in entries {
        let granted = match value {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("granted") => true,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("denied") => false,
            _ => continue,
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "analytics" | "performance" | "statistics" | "analytics_storage" => &mut stated.analytics,
            "marketing" | "advertising" | "targeting" | "ads" | "ad_storage" | "ad_user_data" | "ad_personalization" => &mut stated.marketing,
            "personalization" | "personalisation" | "functional" | "preferences" | "personalization_storage" => &mut stated.personalization,
            _ => continue,
        };
        any = true;
        // Several names for one category (ad_storage and ad_user_data): all must be granted.
        *slot = Some(slot.unwrap_or(true) && granted);
    }
    (any || stated.gpc).then_some(stated)
}

/// The categories in force for one event. A stated category wins; an unstated one follows the site's mode
/// (browsers) or is granted (server-side libraries that state nothing at all). Global Privacy Control — from the
/// event or the `Sec-GPC: 1` header — always switches `marketing` off.
pub fn decide(stated: Option<Stated>, mode: Mode, channel: Channel, gpc_header: bool) -> Categories {
    let default = match (stated.is_some(), channel, mode) {
        (false, Channel::Server, _) => true,
        (_, _, Mode::Implied) => true,
        (_, _, Mode::Required) => false,
    };
    let s = stated.unwrap_or_default();
    let gpc = gpc_header || s.gpc;
    Categories {
        analytics: s.analytics.unwrap_or(default),
        marketing: s.marketing.unwrap_or(default) && !gpc,
        personalization: s.personalization.unwrap_or(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Option<Stated> {
        parse_stated(&serde_json::from_str::<Box<RawValue>>(json).unwrap())
    }

    fn s(analytics: Option<bool>, marketing: Option<bool>, personalization: Option<bool>, gpc: bool) -> Option<Stated> {
        Some(Stated { analytics, marketing, personalization, gpc })
    }

    #[test]
    fn reads_every_form() {
        let sdk = r#"{"categoryPreferences":{"necessary":true,"analytics":true,"marketing":false,"personalization":true},"mode":"required","source":"explicit","gpc":false}"#;
        assert_eq!(parse(sdk), s(Some(true), Some(false), Some(true), false));
        assert_eq!(parse(r#"{"categoryPreferences":{"Analytics":false,"Advertising":true}}"#), s(Some(false), Some(true), None, false));
        assert_eq!(parse(r#"{"analytics":true}"#), s(Some(true), None, None, false));
        let google = r#"{"analytics_storage":"granted","ad_storage":"granted","ad_user_data":"denied","personalization_storage":"denied"}"#;
        assert_eq!(parse(google), s(Some(true), Some(false), Some(false), false));
        assert_eq!(parse(r#"{"gpc":true}"#), s(None, None, None, true));
        assert_eq!(parse(r#"{"categoryPreferences":{}}"#), None, "an empty statement states nothing");
        assert_eq!(parse(r#"{"foo":"bar"}"#), None);
        assert_eq!(parse(r#"[1]"#), None);
    }

    #[test]
    fn decisions() {
        let required = |stated, channel, gpc| decide(stated, Mode::Required, channel, gpc);
        assert_eq!(required(None, Channel::Browser, false), Categories::NONE);
        assert_eq!(required(None, Channel::Server, false), Categories::ALL);
        assert_eq!(required(None, Channel::Server, true), Categories { marketing: false, ..Categories::ALL });
        assert_eq!(decide(None, Mode::Implied, Channel::Browser, false), Categories::ALL);
        // A stated denial binds server-side events too.
        assert_eq!(required(s(Some(false), None, None, false), Channel::Server, false), Categories::NONE);
        assert_eq!(decide(s(Some(false), None, None, false), Mode::Implied, Channel::Browser, false), Categories { analytics: false, ..Categories::ALL });
        // GPC from the SDK or the header turns marketing off whatever was chosen.
        assert_eq!(required(s(Some(true), Some(true), Some(true), true), Channel::Browser, false).marketing, false);
        assert_eq!(required(s(Some(true), Some(true), Some(true), false), Channel::Browser, true).marketing, false);
        assert_eq!(Categories::from_bits(Categories::ALL.bits()), Categories::ALL);
        assert_eq!(Categories { analytics: true, marketing: false, personalization: true }.bits(), 5);
    }
}
