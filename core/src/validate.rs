//! Validation of one event against the spec and the limits, with a stable code for every refusal.

use crate::json_shape;
use crate::limits::*;
use crate::reason::RejectCode;
use crate::time::parse_rfc3339_ms;
use crate::wire::{ContextField, IdValue, RawObject, WireEvent};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The six Segment calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    Track,
    Page,
    Screen,
    Identify,
    Alias,
    Group,
}

impl CallKind {
    pub const ALL: [CallKind; 6] = [Self::Track, Self::Page, Self::Screen, Self::Identify, Self::Alias, Self::Group];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "identify" => Self::Identify,
            "alias" => Self::Alias,
            "group" => Self::Group,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Identify => "identify",
            Self::Alias => "alias",
            Self::Group => "group",
        }
    }
}

/// Whether an event must carry `userId` or `anonymousId`. Events without analytics consent are counted
/// cookielessly and need neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRule {
    Required,
    Optional,
}

/// A refused event: the stable code and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Rejection { code, reason: reason.into() }
    }
}

/// An event that passed validation. Identifiers are trimmed and present only when non-empty.
#[derive(Debug)]
pub struct ValidEvent<'a> {
    pub kind: CallKind,
    pub message_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub previous_id: Option<Cow<'a, str>>,
    pub group_id: Option<Cow<'a, str>>,
    /// `event` of a track call, `name` of a page or screen call.
    pub name: Option<Cow<'a, str>>,
    pub category: Option<Cow<'a, str>>,
    /// Device time of the call (`originalTimestamp`, else `timestamp`), epoch ms.
    pub original_timestamp_ms: Option<i64>,
    /// `sentAt` of the event itself, epoch ms (the batch's `sentAt` is applied by the caller when this is absent).
    pub sent_at_ms: Option<i64>,
    pub properties: Option<&'a RawValue>,
    pub traits: Option<&'a RawValue>,
    /// The event's own context (the batch's is the caller's to add).
    pub context: RawObject<'a>,
    pub integrations: Option<&'a RawValue>,
}

/// Validates one parsed event. `route_kind` is the call type implied by a single-call endpoint (`/v1/track`…); it
/// wins over the body's `type`. `raw_len` is the length of the event's JSON text.
pub fn validate_event<'a>(raw_len: usize, ev: WireEvent<'a>, route_kind: Option<CallKind>, identity: IdentityRule) -> Result<ValidEvent<'a>, Rejection> {
    use RejectCode::*;
    if raw_len > MAX_EVENT_BYTES {
        return Err(Rejection::new(EventTooLarge, format!("event is {raw_len} bytes; the limit is {MAX_EVENT_BYTES}")));
    }
    let kind = match (route_kind, ev.kind.as_deref()) {
        (Some(kind), _) => kind,
        (None, None) => return Err(Rejection::new(MissingType, "event has no \"type\"")),
        (None, Some(t)) => CallKind::parse(t).ok_or_else(|| {
            Rejection::new(UnknownType, format!("\"type\" must be one of track, page, screen, identify, alias, group; got {:?}", truncate(t, 40)))
        })?,
    };
    if let Some(id) = &ev.message_id {
        let chars = id.chars().count();
        if chars > MAX_MESSAGE_ID_CHARS {
            return Err(Rejection::new(MessageIdTooLong, format!("\"messageId\" has {chars} characters; the limit is {MAX_MESSAGE_ID_CHARS}")));
        }
    }
    let anonymous_id = identifier("anonymousId", ev.anonymous_id)?;
    let user_id = identifier("userId", ev.user_id)?;
    let previous_id = identifier("previousId", ev.previous_id)?;
    let group_id = identifier("groupId", ev.group_id)?;
    if identity == IdentityRule::Required && anonymous_id.is_none() && user_id.is_none() {
        return Err(Rejection::new(MissingIdentity, "event needs a non-empty \"userId\" or \"anonymousId\""));
    }
    let name = match kind {
        CallKind::Track => match ev.event {
            Some(e) if !e.trim().is_empty() => Some(e),
            _ => return Err(Rejection::new(MissingEventName, "a track call needs a non-empty \"event\"")),
        },
        CallKind::Page | CallKind::Screen => ev.name,
        _ => None,
    };
    if let Some(n) = &name {
        let chars = n.chars().count();
        if chars > MAX_EVENT_NAME_CHARS {
            return Err(Rejection::new(EventNameTooLong, format!("event name has {chars} characters; the limit is {MAX_EVENT_NAME_CHARS}")));
        }
    }
    match kind {
        CallKind::Group if group_id.is_none() => return Err(Rejection::new(MissingGroupId, "a group call needs a non-empty \"groupId\"")),
        CallKind::Alias if previous_id.is_none() => return Err(Rejection::new(MissingPreviousId, "an alias call needs a non-empty \"previousId\"")),
        CallKind::Alias if user_id.is_none() => return Err(Rejection::new(MissingUserId, "an alias call needs a non-empty \"userId\"")),
        _ => {}
    }
    for (field, value) in [("properties", ev.properties), ("traits", ev.traits)] {
        if let Some(raw) = value {
            check_object(field, raw)?;
        }
    }
    check_context(&ev.context)?;
    let original = ev.original_timestamp.or(ev.timestamp);
    Ok(ValidEvent {
        kind,
        message_id: ev.message_id,
        anonymous_id,
        user_id,
        previous_id,
        group_id,
        name,
        category: ev.category,
        original_timestamp_ms: timestamp_field("originalTimestamp", original)?,
        sent_at_ms: timestamp_field("sentAt", ev.sent_at)?,
        properties: ev.properties,
        traits: ev.traits,
        context: ev.context.into_object(),
        integrations: ev.integrations,
    })
}

/// Parses an optional timestamp field; a present but unparseable one is refused.
pub fn timestamp_field(field: &str, value: Option<Cow<'_, str>>) -> Result<Option<i64>, Rejection> {
    match value {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(&s).map(Some).ok_or_else(|| {
            Rejection::new(RejectCode::InvalidTimestamp, format!("{field:?} is not an ISO-8601 date-time: {:?}", truncate(&s, 40)))
        }),
    }
}

fn identifier<'a>(field: &str, value: Option<IdValue<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    let Some(IdValue(id)) = value else { return Ok(None) };
    let trimmed = id.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let chars = trimmed.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(Rejection::new(RejectCode::IdTooLong, format!("{field:?} has {chars} characters; the limit is {MAX_ID_CHARS}")));
    }
    Ok(Some(if trimmed.len() == id.len() {
        id
    } else {
        Cow::Owned(trimmed.to_owned())
    }))
}

fn check_object(field: &str, raw: &RawValue) -> Result<(), Rejection> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(Rejection::new(RejectCode::NotAnObject, format!("{field:?} must be a JSON object")));
    }
    check_text(field, text)
}

/// [`check_shape`] of a JSON text: its cheap [`json_shape::bound`] when that is within the limits, else (and for the
/// reason's figures) its exact measure.
fn check_text(field: &str, text: &str) -> Result<(), Rejection> {
    // A bound past a limit (rare) builds a reason that is thrown away: the limits stay written once, in check_shape.
    if check_shape(field, json_shape::bound(text)).is_ok() {
        return Ok(());
    }
    check_shape(field, json_shape::measure(text))
}

/// The limits on an object's shape: depth, top-level keys (not for the context, which libraries fill), longest string.
fn check_shape(field: &str, shape: json_shape::Shape) -> Result<(), Rejection> {
    if shape.depth > MAX_JSON_DEPTH {
        return Err(Rejection::new(RejectCode::TooDeep, format!("{field:?} is nested {} levels deep; the limit is {MAX_JSON_DEPTH}", shape.depth)));
    }
    if field != "context" && shape.top_level_keys > MAX_TOP_LEVEL_KEYS {
        return Err(Rejection::new(
            RejectCode::TooManyKeys,
            format!("{field:?} has {} keys; the limit is {MAX_TOP_LEVEL_KEYS}", shape.top_level_keys),
        ));
    }
    if shape.longest_string > MAX_STRING_BYTES {
        return Err(Rejection::new(
            RejectCode::StringTooLong,
            format!("{field:?} holds a string of {} bytes; the limit is {MAX_STRING_BYTES}", shape.longest_string),
        ));
    }
    Ok(())
}

/// [`check_object`] for the context, its shape measured from its members (read in the event's pass); a key's length
/// is counted as decoded.
fn check_context(context: &ContextField<'_>) -> Result<(), Rejection> {
    let members = match context {
        ContextField::Absent => return Ok(()),
        ContextField::NotAnObject => return Err(Rejection::new(RejectCode::NotAnObject, "\"context\" must be a JSON object")),
        ContextField::Object(object) => &object.0,
    };
    let context_shape = |member_shape: fn(&str) -> json_shape::Shape| {
        let mut shape = json_shape::Shape { depth: 1, top_level_keys: members.len(), longest_string: 0 };
        for (key, value) in members {
            let member = member_shape(value.get());
            shape.depth = shape.depth.max(1 + member.depth);
            shape.longest_string = shape.longest_string.max(key.len()).max(member.longest_string);
        }
        shape
    };
    if check_shape("context", context_shape(json_shape::bound)).is_ok() {
        return Ok(());
    }
    check_shape("context", context_shape(json_shape::measure))
}

/// At most `max` characters of `s`, for quoting user input in reasons.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str, route: Option<CallKind>) -> Result<CallKind, RejectCode> {
        let ev: WireEvent = serde_json::from_str(json).expect("test input parses");
        validate_event(json.len(), ev, route, IdentityRule::Required).map(|v| v.kind).map_err(|r| r.code)
    }

    #[track_caller]
    fn check(json: &str, expected: Result<CallKind, RejectCode>) {
        assert_eq!(run(json, None), expected, "{json}");
    }

    #[test]
    fn accepts_each_call() {
        check(r#"{"type":"track","event":"Clicked","anonymousId":"a"}"#, Ok(CallKind::Track));
        check(r#"{"type":"page","anonymousId":"a"}"#, Ok(CallKind::Page));
        check(r#"{"type":"screen","userId":"u"}"#, Ok(CallKind::Screen));
        check(r#"{"type":"identify","userId":"u","traits":{"plan":"pro"}}"#, Ok(CallKind::Identify));
        check(r#"{"type":"alias","userId":"u","previousId":"a"}"#, Ok(CallKind::Alias));
        check(r#"{"type":"group","userId":"u","groupId":"g"}"#, Ok(CallKind::Group));
    }

    #[test]
    fn refuses_with_precise_codes() {
        use RejectCode::*;
        check(r#"{"event":"x","anonymousId":"a"}"#, Err(MissingType));
        check(r#"{"type":"purchase","anonymousId":"a"}"#, Err(UnknownType));
        check(r#"{"type":"track","event":"x"}"#, Err(MissingIdentity));
        check(r#"{"type":"track","event":"x","userId":"  ","anonymousId":""}"#, Err(MissingIdentity));
        check(r#"{"type":"track","anonymousId":"a"}"#, Err(MissingEventName));
        check(r#"{"type":"group","anonymousId":"a"}"#, Err(MissingGroupId));
        check(r#"{"type":"alias","userId":"u"}"#, Err(MissingPreviousId));
        check(r#"{"type":"alias","anonymousId":"a","previousId":"p"}"#, Err(MissingUserId));
        check(&format!(r#"{{"type":"page","anonymousId":"a","messageId":"{}"}}"#, "m".repeat(101)), Err(MessageIdTooLong));
        check(&format!(r#"{{"type":"page","anonymousId":"{}"}}"#, "a".repeat(256)), Err(IdTooLong));
        check(&format!(r#"{{"type":"track","anonymousId":"a","event":"{}"}}"#, "e".repeat(201)), Err(EventNameTooLong));
        check(r#"{"type":"page","anonymousId":"a","properties":[1]}"#, Err(NotAnObject));
        check(r#"{"type":"page","anonymousId":"a","properties":{"k9":{"k8":{"k7":{"k6":{"k5":{"k4":{"k3":{"k2":{"k1":{"k0":{}}}}}}}}}}}}"#, Err(TooDeep));
        check(r#"{"type":"page","anonymousId":"a","timestamp":"yesterday"}"#, Err(InvalidTimestamp));
        check(r#"{"type":"page","anonymousId":"a","sentAt":"2024-13-01T00:00:00Z"}"#, Err(InvalidTimestamp));
        let keys: Vec<String> = (0..301).map(|i| format!("\"k{i}\":1")).collect();
        check(&format!(r#"{{"type":"page","anonymousId":"a","traits":{{{}}}}}"#, keys.join(",")), Err(TooManyKeys));
        check(&format!(r#"{{"type":"page","anonymousId":"a","properties":{{"s":"{}"}}}}"#, "x".repeat(MAX_STRING_BYTES + 1)), Err(StringTooLong));
    }

    #[test]
    fn the_context_is_checked_like_the_other_objects() {
        use RejectCode::*;
        for context in [r#""x""#, "[1,[2]]", "7", "true"] {
            check(&format!(r#"{{"type":"page","anonymousId":"a","context":{context}}}"#), Err(NotAnObject));
        }
        check(r#"{"type":"page","anonymousId":"a","context":null}"#, Ok(CallKind::Page));
        let nested = |levels: usize| format!(r#"{{"type":"page","anonymousId":"a","context":{}{}}}"#, r#"{"k":"#.repeat(levels), "1".to_owned() + &"}".repeat(levels));
        check(&nested(MAX_JSON_DEPTH), Ok(CallKind::Page));
        check(&nested(MAX_JSON_DEPTH + 1), Err(TooDeep));
        let long = "x".repeat(MAX_STRING_BYTES);
        check(&format!(r#"{{"type":"page","anonymousId":"a","context":{{"{long}":"{long}"}}}}"#), Ok(CallKind::Page));
        check(&format!(r#"{{"type":"page","anonymousId":"a","context":{{"a":["{long}x"]}}}}"#), Err(StringTooLong));
        check(&format!(r#"{{"type":"page","anonymousId":"a","context":{{"{long}x":1}}}}"#), Err(StringTooLong));
        // Many keys are fine in a context (libraries fill it).
        let keys: Vec<String> = (0..301).map(|i| format!("\"k{i}\":1")).collect();
        check(&format!(r#"{{"type":"page","anonymousId":"a","context":{{{}}}}}"#, keys.join(",")), Ok(CallKind::Page));
    }

    #[test]
    fn objects_are_measured_when_their_byte_counts_pass_a_limit() {
        // More `{` / `[` and `:` bytes than the limits allow, in siblings and strings: the cheap bound fails, the
        // exact measure accepts.
        let siblings: Vec<String> = (0..12).map(|i| format!(r#""k{i}":[{{"a":1}}]"#)).collect();
        let colons = ":".repeat(400);
        for field in ["properties", "traits", "context"] {
            check(&format!(r#"{{"type":"page","anonymousId":"a","{field}":{{{},"s":"{colons}[{{"}}}}"#, siblings.join(",")), Ok(CallKind::Page));
        }
    }

    #[test]
    fn limits_are_inclusive() {
        check(&format!(r#"{{"type":"page","anonymousId":"a","messageId":"{}"}}"#, "m".repeat(100)), Ok(CallKind::Page));
        check(r#"{"type":"page","anonymousId":"a","properties":{"k8":{"k7":{"k6":{"k5":{"k4":{"k3":{"k2":{"k1":{"k0":{}}}}}}}}}}}"#, Ok(CallKind::Page));
    }

    #[test]
    fn cookieless_events_need_no_identity() {
        let ev: WireEvent = serde_json::from_str(r#"{"type":"page"}"#).unwrap();
        assert!(validate_event(10, ev, None, IdentityRule::Optional).is_ok());
    }

    #[test]
    fn oversize_event_is_refused_before_anything_else() {
        let ev = WireEvent::default();
        assert_eq!(validate_event(MAX_EVENT_BYTES + 1, ev, None, IdentityRule::Required).unwrap_err().code, RejectCode::EventTooLarge);
    }

    #[test]
    fn route_kind_wins_and_ids_are_trimmed() {
        let ev: WireEvent = serde_json::from_str(r#"{"type":"page","event":"E","userId":" u1 "}"#).unwrap();
        let valid = validate_event(10, ev, Some(CallKind::Track), IdentityRule::Required).unwrap();
        assert_eq!(valid.kind, CallKind::Track);
        assert_eq!(valid.user_id.as_deref(), Some("u1"));
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(json in r#"\{("[a-zA-Z]{1,12}":("[^"\\]{0,20}"|[0-9]{1,5}|null|\{\}|\[\]),?){0,8}\}"#) {
            if let Ok(ev) = serde_json::from_str::<WireEvent>(&json) {
                let _ = validate_event(json.len(), ev, None, IdentityRule::Required);
            }
        }
    }
}
