//! Consent decisions: which categories are granted, what may touch the device, and how the state goes on the wire.
//!
//! Categories follow DESIGN.md §2: `necessary` (always), `analytics`, `marketing`, `personalization`. They map to
//! Google Consent Mode v2 (`analytics_storage` ← analytics; `ad_storage`/`ad_user_data`/`ad_personalization` ←
//! marketing; `personalization_storage` ← personalization) and travel as Segment's `context.consent.categoryPreferences`.

pub use footprint_core::consent::{Categories, Mode};

/// The compact form kept on the device after a grant: the category bits (core's encoding) as one digit.
pub fn to_record(c: Categories) -> &'static str {
    static DIGITS: [u8; 8] = *b"01234567";
    // SAFETY: one ASCII digit.
    unsafe { core::str::from_utf8_unchecked(core::slice::from_ref(&DIGITS[c.bits() as usize & 7])) }
}

pub fn from_record(s: &str) -> Option<Categories> {
    match s.as_bytes() {
        [d @ b'0'..=b'7'] => Some(Categories::from_bits(i64::from(d - b'0'))),
        _ => None,
    }
}

/// A `consent({...})` call: categories left out keep their current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Update {
    pub analytics: Option<bool>,
    pub marketing: Option<bool>,
    pub personalization: Option<bool>,
}

/// Where the current state came from; sent as `context.consent.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The mode's default: nothing decided yet.
    Default,
    /// A grant remembered on the device from an earlier visit.
    Stored,
    /// A `consent()` call on this page.
    Explicit,
}

/// The consent state of this page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consent {
    pub mode: Mode,
    /// What the visitor chose (or the mode's default), before Global Privacy Control is applied.
    chosen: Categories,
    /// `navigator.globalPrivacyControl`: switches `marketing` off whatever else says.
    pub gpc: bool,
    pub source: Source,
}

impl Consent {
    /// The state at page load: a remembered grant wins over the mode's default.
    pub fn initial(mode: Mode, remembered: Option<Categories>, gpc: bool) -> Consent {
        match remembered {
            Some(chosen) => Consent { mode, chosen, gpc, source: Source::Stored },
            None => Consent {
                mode,
                chosen: if mode == Mode::Implied { Categories::ALL } else { Categories::NONE },
                gpc,
                source: Source::Default,
            },
        }
    }

    /// The state after a `consent()` call.
    pub fn updated(self, update: Update) -> Consent {
        let c = self.chosen;
        let chosen = Categories {
            analytics: update.analytics.unwrap_or(c.analytics),
            marketing: update.marketing.unwrap_or(c.marketing),
            personalization: update.personalization.unwrap_or(c.personalization),
        };
        Consent { chosen, source: Source::Explicit, ..self }
    }

    /// The categories in force: the choice, with `marketing` off under Global Privacy Control.
    pub fn granted(&self) -> Categories {
        Categories { marketing: self.chosen.marketing && !self.gpc, ..self.chosen }
    }

    /// Whether anything may be written to or read as an identifier from the device (storage, persistent IDs,
    /// the persistent queue). Only `analytics` consent allows it.
    pub fn allows_device_storage(&self) -> bool {
        self.granted().analytics
    }

    /// What to remember on the device after this state was reached, or `None` when nothing may be written.
    pub fn record(&self) -> Option<&'static str> {
        self.allows_device_storage().then(|| to_record(self.chosen))
    }

    /// The state as one number, for `context.consent`, which the device writes (`Device::context`): the granted
    /// categories (core's bits: 1 analytics, 2 marketing, 4 personalization) + 8 when the mode is `implied` + 16 ·
    /// the source (0 default, 1 stored, 2 explicit) + 64 under Global Privacy Control. The wire form is
    /// `{"categoryPreferences":{"necessary":true,"analytics":…,"marketing":…,"personalization":…},"mode":…,
    /// "source":…,"gpc":…}`.
    pub fn bits(&self) -> u32 {
        let source = match self.source {
            Source::Default => 0,
            Source::Stored => 16,
            Source::Explicit => 32,
        };
        self.granted().bits() as u32 | u32::from(self.mode == Mode::Implied) << 3 | source | u32::from(self.gpc) << 6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_mode_grants_nothing_until_asked() {
        let c = Consent::initial(Mode::Required, None, false);
        assert_eq!(c.granted(), Categories::NONE);
        assert!(!c.allows_device_storage());
        assert_eq!(c.record(), None);
        let c = c.updated(Update { analytics: Some(true), ..Update::default() });
        assert_eq!(c.granted(), Categories { analytics: true, marketing: false, personalization: false });
        assert_eq!(c.record(), Some("1"));
    }

    #[test]
    fn implied_mode_grants_everything_until_denied() {
        let c = Consent::initial(Mode::Implied, None, false);
        assert_eq!(c.granted(), Categories::ALL);
        let c = c.updated(Update { analytics: Some(false), ..Update::default() });
        assert!(!c.allows_device_storage());
        assert_eq!(c.record(), None, "a denial is never written to the device");
        assert!(c.granted().marketing);
    }

    #[test]
    fn gpc_switches_marketing_off_whatever_was_chosen() {
        for mode in [Mode::Required, Mode::Implied] {
            let c = Consent::initial(mode, None, true).updated(Update { analytics: Some(true), marketing: Some(true), personalization: Some(true) });
            assert_eq!(c.granted(), Categories { analytics: true, marketing: false, personalization: true });
        }
        let remembered = Consent::initial(Mode::Required, from_record("7"), true);
        assert!(!remembered.granted().marketing);
        assert_eq!(remembered.source, Source::Stored);
    }

    #[test]
    fn records_round_trip_and_junk_is_ignored() {
        for c in [Categories::NONE, Categories::ALL, Categories { analytics: true, marketing: false, personalization: true }] {
            assert_eq!(from_record(to_record(c)), Some(c));
        }
        for junk in ["", "11", "8", "abc", "-1"] {
            assert_eq!(from_record(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_state_as_one_number() {
        assert_eq!(Consent::initial(Mode::Required, None, true).bits(), 64);
        let c = Consent::initial(Mode::Implied, from_record("5"), false);
        assert_eq!(c.bits(), 5 + 8 + 16);
        assert_eq!(c.updated(Update { marketing: Some(true), ..Update::default() }).bits(), 7 + 8 + 32);
    }
}
