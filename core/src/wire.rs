//! The Segment tracking API's JSON, as borrowed types: strings point into the request body where they can, and
//! `properties`, `traits`, `context` stay raw JSON text (parsed once, stored as is — research/perf-baselines.md §3).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The body of `POST /v1/batch`. With `E` = `&RawValue` the events stay raw, so that one bad event is refused alone,
/// not the whole batch; with `E` = [`WireEvent`] a well-formed batch is parsed in one pass.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "'de: 'a, E: Deserialize<'de>"))]
pub struct BatchEnvelope<'a, E = &'a RawValue> {
    #[serde(default)]
    pub batch: Option<Vec<E>>,
    #[serde(rename = "sentAt", borrow, default, deserialize_with = "opt_text")]
    pub sent_at: Option<Cow<'a, str>>,
    #[serde(rename = "writeKey", borrow, default, deserialize_with = "opt_text")]
    pub write_key: Option<Cow<'a, str>>,
    /// Merged into every event's `context` (event keys win).
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub integrations: Option<&'a RawValue>,
}

/// One event of any call type, before validation. Every field is optional here; [`crate::validate_event`] decides.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEvent<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "opt_text")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub anonymous_id: Option<IdValue<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<IdValue<'a>>,
    #[serde(borrow, default)]
    pub previous_id: Option<IdValue<'a>>,
    #[serde(borrow, default)]
    pub group_id: Option<IdValue<'a>>,
    /// The track call's event name.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub event: Option<Cow<'a, str>>,
    /// The page or screen name.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub sent_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub traits: Option<&'a RawValue>,
    /// Read into its members in the event's own pass: the collector takes members out and adds the batch's.
    #[serde(borrow, default)]
    pub context: ContextField<'a>,
    #[serde(borrow, default)]
    pub integrations: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub write_key: Option<Cow<'a, str>>,
}

/// An event's `context` as sent: absent (or `null`), an object, or something else ([`crate::validate_event`] refuses
/// that with `not_an_object`).
#[derive(Debug, Default)]
pub enum ContextField<'a> {
    #[default]
    Absent,
    Object(RawObject<'a>),
    NotAnObject,
}

impl<'a> ContextField<'a> {
    /// The object's members; none when absent or not an object.
    pub fn into_object(self) -> RawObject<'a> {
        match self {
            ContextField::Object(object) => object,
            _ => RawObject::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        match self {
            ContextField::Object(object) => object.get(key),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ContextField<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContextVisitor;
        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = ContextField<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                raw_members(map).map(ContextField::Object)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContextField::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContextField::Absent)
            }
            fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(ContextField::NotAnObject)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ContextField::NotAnObject)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ContextField::NotAnObject)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ContextField::NotAnObject)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ContextField::NotAnObject)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ContextField::NotAnObject)
            }
        }
        deserializer.deserialize_any(ContextVisitor)
    }
}

/// An identifier as libraries send it: a string, or a number (several Segment libraries accept numeric user IDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdValue<'a>(pub Cow<'a, str>);

impl<'a> IdValue<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for IdValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = IdValue<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(IdValue(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// A JSON object kept as its members' raw text, in order: cheap to edit (drop or add a member) and to write back.
#[derive(Debug, Default)]
pub struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Removes a member and returns its raw value.
    pub fn take(&mut self, key: &str) -> Option<&'a RawValue> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// Adds the members of `other` whose keys are not present yet (Segment's batch-level context rule).
    pub fn fill_from(&mut self, other: &RawObject<'a>) {
        for (k, v) in &other.0 {
            if self.get(k).is_none() {
                self.0.push((k.clone(), v));
            }
        }
    }

    /// The object as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(2 + self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>());
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if k.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push('"');
                out.push_str(k);
                out.push('"');
            } else {
                // serde_json escapes the key exactly as JSON requires.
                out.push_str(&serde_json::to_string(k.as_ref()).expect("a string serialises"));
            }
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                raw_members(map)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An object's members, each value as its raw text.
fn raw_members<'de, M: de::MapAccess<'de>>(mut map: M) -> Result<RawObject<'de>, M::Error> {
    struct Key<'a>(Cow<'a, str>);
    impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            opt_text(deserializer)?.map(Key).ok_or_else(|| de::Error::custom("object key must be a string"))
        }
    }
    let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(Key(key)) = map.next_key::<Key>()? {
        let value: &'de RawValue = map.next_value()?;
        members.push((key, value));
    }
    Ok(RawObject(members))
}

/// Deserialises an optional string, borrowing from the input when it has no escapes. (serde's `borrow` attribute
/// borrows a bare `Cow<str>` but not one inside an `Option`.)
fn opt_text<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct TextVisitor;
    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(TextVisitor)
        }
    }
    deserializer.deserialize_option(TextVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_accepts_numeric_ids() {
        let body = r#"{"type":"track","event":"Signed Up","userId":42,"anonymousId":"a-1","properties":{"plan":"pro"}}"#;
        let ev: WireEvent = serde_json::from_str(body).unwrap();
        assert!(matches!(ev.event, Some(Cow::Borrowed("Signed Up"))));
        assert_eq!(ev.user_id.unwrap().as_str(), "42");
        assert_eq!(ev.properties.unwrap().get(), r#"{"plan":"pro"}"#);
    }

    #[test]
    fn raw_object_edits_and_round_trips() {
        let mut ctx: RawObject = serde_json::from_str(r#"{"ip":"1.2.3.4","page":{"url":"https://a/"},"k\"ey":[1, 2]}"#).unwrap();
        assert_eq!(ctx.take("ip").unwrap().get(), r#""1.2.3.4""#);
        let batch: RawObject = serde_json::from_str(r#"{"page":{"url":"https://b/"},"locale":"de"}"#).unwrap();
        ctx.fill_from(&batch);
        assert_eq!(ctx.to_json(), r#"{"page":{"url":"https://a/"},"k\"ey":[1, 2],"locale":"de"}"#);
    }

    #[test]
    fn nulls_are_absent() {
        let ev: WireEvent = serde_json::from_str(r#"{"type":null,"userId":null,"properties":null}"#).unwrap();
        assert!(ev.kind.is_none() && ev.user_id.is_none() && ev.properties.is_none());
    }

    #[test]
    fn wrong_types_fail_to_parse() {
        assert!(serde_json::from_str::<WireEvent>(r#"{"event":5}"#).is_err());
        assert!(serde_json::from_str::<WireEvent>(r#"{"userId":{"a":1}}"#).is_err());
    }
}
