//! From a request body to rows: decode the envelope, validate each event, enrich it, and sort it into "to store"
//! or "to quarantine". Pure apart from the user-agent cache; the clock and the ID generator come in as arguments.

use crate::enrich::{self, Campaign, UserAgentCache};
use crate::store::{flags, QuarantinedEvent, StoredEvent};
use footprint_core::limits::{MAX_BATCH_EVENTS, MAX_URL_BYTES};
use footprint_core::time::corrected_timestamp;
use footprint_core::validate::timestamp_field;
use footprint_core::{validate_event, BatchEnvelope, CallKind, RawObject, RejectCode, Rejection, WireEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// Which endpoint received the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Batch,
    Single(CallKind),
}

/// A body that cannot be read as events at all: the whole request is refused with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: &'static str,
    pub message: String,
}

fn decode_error(code: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError { code, message: message.into() }
}

/// The events of a request, still raw, with the request-level fields.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub events: Vec<&'a RawValue>,
    pub write_key: Option<Cow<'a, str>>,
    pub sent_at_ms: Option<i64>,
    pub context: Option<RawObject<'a>>,
    pub integrations: Option<&'a RawValue>,
}

/// Splits a body into raw events. Only a body that is not JSON, or not the right envelope, fails here: problems
/// inside one event are that event's own rejection later.
pub fn decode(body: &str, route: Route) -> Result<Decoded<'_>, DecodeError> {
    match route {
        Route::Batch => {
            if !body.trim_start().starts_with('{') {
                return Err(decode_error("invalid_json", "body must be a JSON object with a \"batch\" array"));
            }
            let envelope: BatchEnvelope = serde_json::from_str(body).map_err(|e| decode_error("invalid_json", format!("body is not a batch object: {e}")))?;
            let events = envelope.batch.ok_or_else(|| decode_error("missing_batch", "body has no \"batch\" array"))?;
            if events.is_empty() {
                return Err(decode_error("empty_batch", "\"batch\" is empty"));
            }
            let sent_at_ms = timestamp_field("sentAt", envelope.sent_at).map_err(|r| decode_error(r.code.as_str(), r.reason))?;
            let context = match envelope.context {
                Some(raw) => Some(serde_json::from_str(raw.get()).map_err(|_| decode_error("invalid_json", "batch \"context\" must be an object"))?),
                None => None,
            };
            Ok(Decoded { events, write_key: envelope.write_key, sent_at_ms, context, integrations: envelope.integrations })
        }
        Route::Single(_) => {
            let raw: &RawValue = serde_json::from_str(body).map_err(|e| decode_error("invalid_json", format!("body is not JSON: {e}")))?;
            if !raw.get().starts_with('{') {
                return Err(decode_error("invalid_json", "body must be a JSON object"));
            }
            #[derive(Deserialize)]
            struct KeyOnly<'a> {
                #[serde(rename = "writeKey", borrow, default)]
                write_key: Option<Cow<'a, str>>,
            }
            let write_key = serde_json::from_str::<KeyOnly>(body).ok().and_then(|k| k.write_key);
            Ok(Decoded { events: vec![raw], write_key, sent_at_ms: None, context: None, integrations: None })
        }
    }
}

/// What ingest knows about the request besides its body.
pub struct RequestFacts<'a> {
    pub site: Arc<str>,
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

/// The answer slot of one input event, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Valid; its fate (accepted or duplicate) is decided by the writer. The events vector holds it in order.
    Pending { message_id: String },
    Rejected { message_id: String, code: &'static str, reason: String },
}

/// The outcome of [`process`]: answer slots, rows to store, rows to quarantine.
#[derive(Debug, Default)]
pub struct Processed {
    pub slots: Vec<Slot>,
    pub events: Vec<StoredEvent>,
    pub quarantine: Vec<QuarantinedEvent>,
}

/// Validates and enriches every event. `new_message_id` makes IDs for events that came without one.
pub fn process(decoded: &Decoded<'_>, route: Route, facts: &RequestFacts<'_>, ua_cache: &UserAgentCache, new_message_id: &mut dyn FnMut() -> String) -> Processed {
    let route_kind = match route {
        Route::Batch => None,
        Route::Single(kind) => Some(kind),
    };
    let mut out = Processed { slots: Vec::with_capacity(decoded.events.len()), events: Vec::with_capacity(decoded.events.len()), quarantine: Vec::new() };
    for (index, raw) in decoded.events.iter().enumerate() {
        let result = if index >= MAX_BATCH_EVENTS {
            Err((message_id_of(raw), Rejection::new(RejectCode::BatchTooLarge, format!("a batch holds at most {MAX_BATCH_EVENTS} events; this is number {}", index + 1))))
        } else {
            event_row(raw, route_kind, decoded, facts, ua_cache)
        };
        match result {
            Ok(mut row) => {
                if row.message_id.is_empty() {
                    row.message_id = new_message_id();
                    row.flags |= flags::GENERATED_MESSAGE_ID;
                }
                out.slots.push(Slot::Pending { message_id: row.message_id.clone() });
                out.events.push(row);
            }
            Err((message_id, rejection)) => {
                let message_id = message_id.unwrap_or_else(&mut *new_message_id);
                out.quarantine.push(QuarantinedEvent::new(
                    facts.site.clone(),
                    facts.received_at_ms,
                    Some(message_id.clone()),
                    rejection.code,
                    rejection.reason.clone(),
                    raw.get().to_owned(),
                ));
                out.slots.push(Slot::Rejected { message_id, code: rejection.code.as_str(), reason: rejection.reason });
            }
        }
    }
    out
}

/// The `messageId` of an event that failed before validation, when one can be read.
fn message_id_of(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(raw.get()).ok().and_then(|e| e.message_id).filter(|id| !id.is_empty() && id.chars().count() <= footprint_core::limits::MAX_MESSAGE_ID_CHARS)
}

type RowResult = Result<StoredEvent, (Option<String>, Rejection)>;

fn event_row(raw: &RawValue, route_kind: Option<CallKind>, decoded: &Decoded<'_>, facts: &RequestFacts<'_>, ua_cache: &UserAgentCache) -> RowResult {
    let wire: WireEvent = serde_json::from_str(raw.get()).map_err(|e| (message_id_of(raw), Rejection::new(RejectCode::InvalidEvent, format!("event does not match the spec: {e}"))))?;
    let message_id = wire.message_id.as_deref().map(str::to_owned);
    let event = validate_event(raw.get().len(), wire, route_kind).map_err(|r| (message_id.filter(|_| r.code != RejectCode::MessageIdTooLong), r))?;

    let mut context: RawObject = match event.context {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| (event.message_id.as_deref().map(str::to_owned), Rejection::new(RejectCode::NotAnObject, format!("\"context\": {e}"))))?,
        None => RawObject::default(),
    };
    if let Some(batch_context) = &decoded.context {
        context.fill_from(batch_context);
    }
    // The raw IP and user agent are used here and never stored (DESIGN.md §5).
    let context_ip = context.take("ip").and_then(|v| serde_json::from_str::<&str>(v.get()).ok()).and_then(|s| s.trim().parse::<IpAddr>().ok());
    let context_ua = context.take("userAgent").and_then(|v| serde_json::from_str::<Cow<str>>(v.get()).ok());
    let ip = enrich::truncate_ip(context_ip.unwrap_or(facts.client_ip), facts.ipv4_prefix, facts.ipv6_prefix);
    let user_agent = context_ua.as_deref().or(facts.user_agent);
    let ua = user_agent.map(|ua| ua_cache.get(ua));

    let mut page: PageFields = context.get("page").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
    if matches!(event.kind, CallKind::Page | CallKind::Screen) && page.url.is_none() {
        if let Some(props) = event.properties {
            page = serde_json::from_str(props.get()).unwrap_or_default();
        }
    }
    let context_campaign: CampaignFields = context.get("campaign").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
    let mut campaign = Campaign {
        source: context_campaign.source,
        medium: context_campaign.medium,
        name: context_campaign.name,
        term: context_campaign.term,
        content: context_campaign.content,
    };
    if campaign.is_empty() {
        if let Some(url) = &page.url {
            campaign = enrich::campaign_from_url(url);
        }
    }
    let url = page.url.as_deref().map(|u| enrich::clip(u, MAX_URL_BYTES));
    let path = page.path.map(|p| enrich::clip(&p, MAX_URL_BYTES)).or_else(|| url.as_deref().and_then(enrich::url_path));
    let referrer = page.referrer.filter(|r| !r.is_empty()).map(|r| enrich::clip(&r, MAX_URL_BYTES));
    let referrer_host = referrer.as_deref().and_then(enrich::url_host);

    let sent_at = event.sent_at_ms.or(decoded.sent_at_ms);
    let time = corrected_timestamp(facts.received_at_ms, event.original_timestamp_ms, sent_at);
    let mut row_flags = 0;
    if time.clamped_future {
        row_flags |= flags::CLAMPED_FUTURE;
    }
    if ua.as_ref().is_some_and(|u| u.bot) {
        row_flags |= flags::BOT;
    }
    let integrations = event.integrations.or(decoded.integrations).map(|r| r.get().to_owned());
    Ok(StoredEvent {
        site: facts.site.clone(),
        message_id: event.message_id.map(Cow::into_owned).unwrap_or_default(),
        kind: Some(event.kind),
        name: event.name.map(Cow::into_owned),
        category: event.category.map(Cow::into_owned),
        anonymous_id: event.anonymous_id.map(Cow::into_owned),
        user_id: event.user_id.map(Cow::into_owned),
        previous_id: event.previous_id.map(Cow::into_owned),
        group_id: event.group_id.map(Cow::into_owned),
        timestamp: time.timestamp_ms,
        original_timestamp: event.original_timestamp_ms,
        sent_at,
        received_at: facts.received_at_ms,
        flags: row_flags,
        url,
        path,
        title: page.title.map(|t| enrich::clip(&t, 1024)),
        referrer,
        referrer_host,
        utm_source: campaign.source,
        utm_medium: campaign.medium,
        utm_campaign: campaign.name,
        utm_term: campaign.term,
        utm_content: campaign.content,
        ip: Some(ip.to_string()),
        browser: ua.as_ref().and_then(|u| u.browser.clone()),
        os: ua.as_ref().and_then(|u| u.os.clone()),
        device: ua.as_ref().map(|u| u.device),
        properties: event.properties.map(|r| r.get().to_owned()),
        traits: event.traits.map(|r| r.get().to_owned()),
        context: (!context.0.is_empty()).then(|| context.to_json()),
        integrations,
    })
}

/// `context.page`, or a page call's `properties` (Segment puts the same fields in both). Non-string values are ignored.
#[derive(Debug, Default, Deserialize)]
struct PageFields {
    #[serde(default, deserialize_with = "lenient_string")]
    url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    referrer: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    title: Option<String>,
}

/// `context.campaign` (Segment's names for the UTM parameters).
#[derive(Debug, Default, Deserialize)]
struct CampaignFields {
    #[serde(default, deserialize_with = "lenient_string")]
    source: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    medium: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    term: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    content: Option<String>,
}

/// Enrichment must not refuse an event the spec allows: a field of another type is simply not used.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            site: "shop".into(),
            received_at_ms: 1_000_000,
            client_ip: "198.51.100.99".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }

    fn run(body: &str, route: Route) -> Processed {
        let decoded = decode(body, route).expect("decodes");
        let mut n = 0;
        process(&decoded, route, &facts(), &UserAgentCache::default(), &mut || {
            n += 1;
            format!("generated-{n}")
        })
    }

    #[track_caller]
    fn check_decode_error(body: &str, route: Route, code: &str) {
        assert_eq!(decode(body, route).unwrap_err().code, code, "{body}");
    }

    #[test]
    fn decode_refuses_what_is_not_events() {
        check_decode_error("", Route::Batch, "invalid_json");
        check_decode_error("[]", Route::Batch, "invalid_json");
        check_decode_error(r#"{"batch":{}}"#, Route::Batch, "invalid_json");
        check_decode_error(r#"{"sentAt":"2024-01-01T00:00:00Z"}"#, Route::Batch, "missing_batch");
        check_decode_error(r#"{"batch":[]}"#, Route::Batch, "empty_batch");
        check_decode_error(r#"{"batch":[{}],"sentAt":"then"}"#, Route::Batch, "invalid_timestamp");
        check_decode_error(r#""track""#, Route::Single(CallKind::Track), "invalid_json");
        let single = decode(r#"{"writeKey":"wk","event":"E"}"#, Route::Single(CallKind::Track)).unwrap();
        assert_eq!((single.events.len(), single.write_key.as_deref()), (1, Some("wk")));
    }

    #[test]
    fn batch_context_and_sent_at_apply_to_every_event() {
        let body = r#"{"batch":[
            {"type":"track","event":"A","anonymousId":"a","messageId":"m1","timestamp":"1970-01-01T00:16:30.000Z"},
            {"type":"track","event":"B","anonymousId":"a","context":{"locale":"fr"}}
        ],"sentAt":"1970-01-01T00:16:35.000Z","context":{"locale":"de","ip":"203.0.113.5"}}"#;
        let out = run(body, Route::Batch);
        assert_eq!(out.slots, vec![Slot::Pending { message_id: "m1".into() }, Slot::Pending { message_id: "generated-1".into() }]);
        let (a, b) = (&out.events[0], &out.events[1]);
        assert_eq!(a.context.as_deref(), Some(r#"{"locale":"de"}"#), "batch context merged, ip removed");
        assert_eq!(b.context.as_deref(), Some(r#"{"locale":"fr"}"#), "the event's own context wins");
        assert_eq!(a.ip.as_deref(), Some("203.0.113.0"), "context.ip wins over the connection, truncated");
        assert_eq!(a.timestamp, 1_000_000 - 5_000, "skew-corrected with the batch sentAt");
        assert_eq!(b.flags & flags::GENERATED_MESSAGE_ID, flags::GENERATED_MESSAGE_ID);
        assert_eq!((a.browser.as_deref(), a.device), (Some("Chrome"), Some("desktop")));
    }

    #[test]
    fn page_fields_come_from_context_or_page_properties() {
        let from_props = run(r#"{"anonymousId":"a","messageId":"p","properties":{"url":"https://s.example/a/b?utm_source=x","referrer":"https://ref.example/","title":"T"}}"#, Route::Single(CallKind::Page));
        let e = &from_props.events[0];
        assert_eq!((e.path.as_deref(), e.referrer_host.as_deref(), e.utm_source.as_deref(), e.title.as_deref()), (Some("/a/b"), Some("ref.example"), Some("x"), Some("T")));
        // context.campaign beats the URL's parameters; non-string values are ignored, not refused.
        let ctx = run(r#"{"event":"E","anonymousId":"a","context":{"page":{"url":"https://s.example/?utm_source=url","path":7},"campaign":{"source":"ctx","medium":"cpc"}}}"#, Route::Single(CallKind::Track));
        let e = &ctx.events[0];
        assert_eq!((e.utm_source.as_deref(), e.utm_medium.as_deref(), e.path.as_deref()), (Some("ctx"), Some("cpc"), Some("/")));
    }

    #[test]
    fn rejected_events_are_quarantined_with_their_payload() {
        let out = run(r#"{"batch":[{"type":"track","messageId":"bad","anonymousId":"a"},7]}"#, Route::Batch);
        assert!(out.events.is_empty());
        assert_eq!(out.quarantine.len(), 2);
        assert_eq!((out.quarantine[0].code, out.quarantine[0].message_id.as_deref()), ("missing_event_name", Some("bad")));
        assert_eq!((out.quarantine[1].code, out.quarantine[1].payload.as_str()), ("invalid_event", "7"));
        assert!(matches!(&out.slots[1], Slot::Rejected { message_id, .. } if message_id == "generated-1"));
    }
}
