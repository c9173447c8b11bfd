//! From a request body to rows: decode the envelope, validate each event, enrich it, and sort it into "to store"
//! or "to quarantine". Pure apart from the user-agent cache; the clock and the ID generator come in as arguments.

use crate::enrich::{self, Campaign, UserAgentCache};
use crate::identity::{normalize_email, normalize_phone, IdKind, Identifier};
use crate::pseudonymise::{cookieless_visitor, redact_emails, stored_identifier, Pseudonymizer, HASH_PREFIX};
use crate::store::{flags, visitor_key, ConsentChange, Field, IdentityInput, QuarantinedEvent, StoredEvent, Texts};
use footprint_core::consent::{self, Categories};
use footprint_core::limits::{MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_URL_BYTES};
use footprint_core::time::corrected_timestamp;
use footprint_core::validate::timestamp_field;
use footprint_core::{validate_event, BatchEnvelope, CallKind, IdentityRule, RawObject, RejectCode, Rejection, WireEvent};
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
    /// Each event's JSON text; empty when a batch was parsed in one pass (then `parsed` holds its events).
    pub events: Vec<&'a str>,
    /// The events parsed already, in order: the event of a single-event request (decode read its write key from it)
    /// or every event of a small, well-formed batch. Empty when the events are still to be parsed from `events`.
    pub parsed: Vec<WireEvent<'a>>,
    /// The whole body, for [`process`] to decode again event by event when it needs an event's text.
    body: &'a str,
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
            // A small batch of well-formed events is parsed in one pass, envelope and events together. No event of a body
            // within the per-event size limit can exceed it; an event that is then refused sends the request the long
            // way (see `process`), which keeps every event's text for the quarantine. Anything else takes the long way
            // here, with the same errors as before.
            if body.len() <= MAX_EVENT_BYTES {
                if let Ok(envelope) = serde_json::from_str::<BatchEnvelope<WireEvent>>(body) {
                    let parts = envelope_parts(envelope.sent_at, envelope.context);
                    if let (Some(events), Ok((sent_at_ms, context))) = (envelope.batch, parts) {
                        if !events.is_empty() && events.len() <= MAX_BATCH_EVENTS {
                            let (write_key, integrations) = (envelope.write_key, envelope.integrations);
                            return Ok(Decoded { events: Vec::new(), parsed: events, body, write_key, sent_at_ms, context, integrations });
                        }
                    }
                }
            }
            decode_event_by_event(body)
        }
        Route::Single(_) => {
            // A well-formed event is parsed once, here, with its write key. Anything else takes the long way below, so
            // a body that is not JSON is told apart from an event that is (and is refused on its own).
            let text = body.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
            if text.starts_with('{') {
                if let Ok(wire) = serde_json::from_str::<WireEvent>(text) {
                    let write_key = wire.write_key.clone();
                    return Ok(Decoded { events: vec![text], parsed: vec![wire], body, write_key, sent_at_ms: None, context: None, integrations: None });
                }
            }
            let raw: &RawValue = serde_json::from_str(body).map_err(|e| decode_error("invalid_json", format!("body is not JSON: {e}")))?;
            if !raw.get().starts_with('{') {
                return Err(decode_error("invalid_json", "body must be a JSON object"));
            }
            #[derive(Deserialize)]
            struct KeyOnly<'a> {
                #[serde(rename = "writeKey", borrow, default)]
                write_key: Option<Cow<'a, str>>,
            }
            // A second parse only when the key can be there (a key name may also be spelled with \u escapes).
            let may_have_key = body.contains("writeKey") || body.contains("\\u");
            let write_key = if may_have_key { serde_json::from_str::<KeyOnly>(body).ok().and_then(|k| k.write_key) } else { None };
            Ok(Decoded { events: vec![raw.get()], parsed: Vec::new(), body, write_key, sent_at_ms: None, context: None, integrations: None })
        }
    }
}

/// The batch envelope's `sentAt` and `context`, read.
fn envelope_parts<'a>(sent_at: Option<Cow<'a, str>>, context: Option<&'a RawValue>) -> Result<(Option<i64>, Option<RawObject<'a>>), DecodeError> {
    let sent_at_ms = timestamp_field("sentAt", sent_at).map_err(|r| decode_error(r.code.as_str(), r.reason))?;
    let context = match context {
        Some(raw) => Some(serde_json::from_str(raw.get()).map_err(|_| decode_error("invalid_json", "batch \"context\" must be an object"))?),
        None => None,
    };
    Ok((sent_at_ms, context))
}

impl Decoded<'_> {
    /// How many events the request carries.
    pub fn len(&self) -> usize {
        self.events.len().max(self.parsed.len())
    }

    /// Each event's `messageId` as sent ("" when it has none, or none that is a string), in order.
    pub fn message_ids(&self) -> Vec<String> {
        if self.events.is_empty() {
            return self.parsed.iter().map(|e| e.message_id.as_deref().unwrap_or_default().to_owned()).collect();
        }
        #[derive(Deserialize)]
        struct IdOnly {
            #[serde(rename = "messageId")]
            message_id: Option<serde_json::Value>,
        }
        let id_of = |event: &str| match serde_json::from_str::<IdOnly>(event).ok().and_then(|e| e.message_id) {
            Some(serde_json::Value::String(s)) => s,
            _ => String::new(),
        };
        self.events.iter().map(|event| id_of(event)).collect()
    }
}

/// What ingest knows about the request besides its body.
pub struct RequestFacts<'a> {
    pub site: Arc<str>,
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub privacy: PrivacyFacts<'a>,
}

/// What the privacy rules need: the site's consent mode, where the request came from, today's cookieless salt,
/// the pseudonymisation key, and the erased identifiers.
pub struct PrivacyFacts<'a> {
    pub consent_mode: consent::Mode,
    pub channel: consent::Channel,
    /// `Sec-GPC: 1` on the request.
    pub gpc_header: bool,
    pub salt: [u8; 16],
    pub pseudonymizer: &'a Pseudonymizer,
    /// Trait and property keys whose values are stored only as keyed hashes (`email`, `phone` by default).
    pub pii_fields: &'a [String],
    /// How much of an IP is kept (the request's, `context.ip`, and IP fields of properties and traits).
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Resolve identities (off only for measurements).
    pub identity_resolution: bool,
    /// Whether an identifier (as stored: email/phone hashed) belongs to an erased person.
    pub is_suppressed: &'a (dyn Fn(&Identifier) -> bool + Sync),
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
pub fn process(decoded: Decoded<'_>, route: Route, facts: &RequestFacts<'_>, ua_cache: &UserAgentCache, new_message_id: &mut dyn FnMut() -> String) -> Processed {
    let body = decoded.body;
    match process_decoded(decoded, route, facts, ua_cache, new_message_id) {
        Some(processed) => processed,
        // A batch parsed in one pass has an event to refuse: the events are decoded again one by one, so the refused
        // one is quarantined with its text. (Nothing of the first pass has left this function.)
        None => match decode_event_by_event(body) {
            Ok(decoded) => process_decoded(decoded, route, facts, ua_cache, new_message_id).expect("events decoded one by one have their texts"),
            Err(error) => unreachable!("a batch that parsed in one pass decodes event by event too: {error:?}"),
        },
    }
}

/// The batch path of [`decode`] without the one-pass shortcut.
fn decode_event_by_event(body: &str) -> Result<Decoded<'_>, DecodeError> {
    let envelope: BatchEnvelope = serde_json::from_str(body).map_err(|e| decode_error("invalid_json", format!("body is not a batch object: {e}")))?;
    let events = envelope.batch.ok_or_else(|| decode_error("missing_batch", "body has no \"batch\" array"))?;
    if events.is_empty() {
        return Err(decode_error("empty_batch", "\"batch\" is empty"));
    }
    let (sent_at_ms, context) = envelope_parts(envelope.sent_at, envelope.context)?;
    let events = events.into_iter().map(RawValue::get).collect();
    Ok(Decoded { events, parsed: Vec::new(), body, write_key: envelope.write_key, sent_at_ms, context, integrations: envelope.integrations })
}

/// [`process`]; `None` when an event is refused that has no text (a batch parsed in one pass).
fn process_decoded(mut decoded: Decoded<'_>, route: Route, facts: &RequestFacts<'_>, ua_cache: &UserAgentCache, new_message_id: &mut dyn FnMut() -> String) -> Option<Processed> {
    let route_kind = match route {
        Route::Batch => None,
        Route::Single(kind) => Some(kind),
    };
    let count = decoded.len();
    let mut out = Processed { slots: Vec::with_capacity(count), events: Vec::with_capacity(count), quarantine: Vec::new() };
    // The request's stored (truncated) IP, written out once: every event of a batch shares it unless its context
    // names another.
    let request_ip = enrich::ip_text(enrich::truncate_ip(facts.client_ip, facts.privacy.ipv4_prefix, facts.privacy.ipv6_prefix));
    let mut parsed = std::mem::take(&mut decoded.parsed).into_iter();
    let decoded = &decoded;
    for index in 0..count {
        let raw = decoded.events.get(index).copied();
        let result = if index >= MAX_BATCH_EVENTS {
            let raw = raw.expect("only batches decoded event by event are this long");
            Err((message_id_of(raw), Rejection::new(RejectCode::BatchTooLarge, format!("a batch holds at most {MAX_BATCH_EVENTS} events; this is number {}", index + 1))))
        } else {
            event_row(raw, parsed.next(), route_kind, decoded, facts, &request_ip, ua_cache, &mut *new_message_id)
        };
        match result {
            Ok(row) => {
                out.slots.push(Slot::Pending { message_id: row.message_id().to_owned() });
                out.events.push(row);
            }
            Err((message_id, rejection)) => {
                let raw = raw?;
                let message_id = message_id.unwrap_or_else(&mut *new_message_id);
                // An erased person's event is recorded as refused, without its content.
                let payload = if rejection.code == RejectCode::ErasedIdentity { String::new() } else { redact_emails(raw, facts.privacy.pseudonymizer).into_owned() };
                out.quarantine.push(QuarantinedEvent::new(facts.site.clone(), facts.received_at_ms, Some(message_id.clone()), rejection.code, rejection.reason.clone(), payload));
                out.slots.push(Slot::Rejected { message_id, code: rejection.code.as_str(), reason: rejection.reason });
            }
        }
    }
    Some(out)
}

/// The `messageId` of an event that failed before validation, when one can be read.
fn message_id_of(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(raw).ok().and_then(|e| e.message_id).filter(|id| !id.is_empty() && id.chars().count() <= footprint_core::limits::MAX_MESSAGE_ID_CHARS)
}

type RowResult = Result<StoredEvent, (Option<String>, Rejection)>;

fn event_row(
    raw: Option<&str>,
    parsed: Option<WireEvent<'_>>,
    route_kind: Option<CallKind>,
    decoded: &Decoded<'_>,
    facts: &RequestFacts<'_>,
    request_ip: &str,
    ua_cache: &UserAgentCache,
    new_message_id: &mut dyn FnMut() -> String,
) -> RowResult {
    let wire: WireEvent = match (parsed, raw) {
        (Some(wire), _) => wire,
        (None, None) => unreachable!("an event comes as text or parsed"),
        (None, Some(raw)) => serde_json::from_str(raw).map_err(|e| (message_id_of(raw), Rejection::new(RejectCode::InvalidEvent, format!("event does not match the spec: {e}"))))?,
    };
    // For the refusals below; copied only if one happens.
    let message_id = wire.message_id.clone();
    // Consent comes first: it decides whether the event needs an identity at all. A member of the event's own
    // context wins over the batch's.
    let batch_context = decoded.context.as_ref();
    let context_member = |key: &str| wire.context.get(key).or_else(|| batch_context.and_then(|c| c.get(key)));
    let stated = context_member("consent").and_then(consent::parse_stated);
    // The SDK marks events it sends without analytics consent; that flag alone is enough to withhold identity.
    // It stays in the stored context: it says how the event was counted.
    let cookieless = context_member("cookieless").is_some_and(|v| v.get() == "true");
    let privacy = &facts.privacy;
    let mut granted = consent::decide(stated, privacy.consent_mode, privacy.channel, privacy.gpc_header);
    if cookieless {
        granted.analytics = false;
    }
    let rule = if granted.analytics { IdentityRule::Required } else { IdentityRule::Optional };
    let mut event = validate_event(raw.map_or(0, str::len), wire, route_kind, rule).map_err(|r| (message_id.clone().filter(|_| r.code != RejectCode::MessageIdTooLong).map(Cow::into_owned), r))?;
    let mut context = std::mem::take(&mut event.context);
    if let Some(batch_context) = batch_context {
        context.fill_from(batch_context);
    }

    // The raw IP and user agent are used here and never stored (DESIGN.md §5).
    let context_ip = context.take("ip").and_then(|v| serde_json::from_str::<&str>(v.get()).ok()).and_then(|s| s.trim().parse::<IpAddr>().ok());
    let context_ua = context.take("userAgent").and_then(json_text);
    let raw_ip = context_ip.unwrap_or(facts.client_ip);
    let ip = match context_ip {
        Some(ip) => enrich::ip_text(enrich::truncate_ip(ip, facts.privacy.ipv4_prefix, facts.privacy.ipv6_prefix)),
        None => request_ip.to_owned(),
    };
    let user_agent = context_ua.as_deref().or(facts.user_agent);
    let ua = user_agent.map(|ua| ua_cache.get(ua));

    let consent_context = context.get("consent");
    let session_id = context.take("sessionId").and_then(|v| serde_json::from_str::<String>(v.get()).ok()).filter(|s| !s.is_empty() && s.len() <= 100);
    let (page, campaign) = page_and_campaign(&mut context, &event);
    let scrub = |u: &str| enrich::clean_url(u, MAX_URL_BYTES, granted.marketing);
    let url = page.url.as_deref().map(scrub);
    let path = page.path.map(|p| enrich::clip(&p, MAX_URL_BYTES)).or_else(|| url.as_deref().and_then(enrich::url_path));
    let referrer = page.referrer.filter(|r| !r.is_empty()).map(|r| scrub(&r));
    let referrer_host = referrer.as_deref().and_then(enrich::url_host);

    // What consent does not allow is dropped here, before anything reaches the writer.
    let (visitor, mut identity, traits) = if granted.analytics {
        let pseudo = privacy.pseudonymizer;
        let personal = |kind: IdKind, id: Cow<'_, str>| -> Cow<'static, str> {
            Cow::Owned(stored_identifier(kind, &id, pseudo).map_or_else(|| id.into_owned(), |i| i.value))
        };
        event.anonymous_id = event.anonymous_id.take().map(|v| personal(IdKind::AnonymousId, v));
        event.user_id = event.user_id.take().map(|v| personal(IdKind::UserId, v));
        event.previous_id = event.previous_id.take().map(|v| personal(IdKind::AnonymousId, v));
        let traits = event.traits.map(|t| pseudonymise_fields(t.get().into(), privacy));
        let context_traits = context.take("traits").map(|t| pseudonymise_fields(t.get().into(), privacy));
        // context.traits feed the profile (pseudonymised) and are not kept on the event.
        let identity = identity_input(&event, traits.as_deref(), context_traits.as_deref(), &context, pseudo);
        if let Some(erased) = identity.identifiers.iter().find(|id| (privacy.is_suppressed)(id)) {
            let reason = format!("this event carries an erased {}; nothing of it was stored", erased.kind.as_string());
            return Err((message_id.map(Cow::into_owned), Rejection::new(RejectCode::ErasedIdentity, reason)));
        }
        let visitor = visitor_key(event.anonymous_id.as_deref(), event.user_id.as_deref()).expect("validation requires an identity with analytics consent");
        (visitor, privacy.identity_resolution.then_some(identity), traits)
    } else {
        event.anonymous_id = None;
        event.user_id = None;
        event.previous_id = None;
        for key in ["traits", "externalIds", "device"] {
            context.take(key);
        }
        let visitor = cookieless_visitor(&privacy.salt, &facts.site, &enrich::ip_text(raw_ip), user_agent.unwrap_or(""));
        (visitor, None, None)
    };
    if !granted.marketing {
        // Advertising identifiers and ad-network click references.
        context.take("referrer");
        context.take("device");
    }
    let consent_change = consent_change_of(&event, consent_context, granted);

    let sent_at = event.sent_at_ms.or(decoded.sent_at_ms);
    let time = corrected_timestamp(facts.received_at_ms, event.original_timestamp_ms, sent_at);
    let mut row_flags = 0;
    if time.clamped_future {
        row_flags |= flags::CLAMPED_FUTURE;
    }
    if ua.as_ref().is_some_and(|u| u.bot) {
        row_flags |= flags::BOT;
    }
    let integrations = event.integrations.or(decoded.integrations).map(RawValue::get);
    let properties = event.properties.map(|r| pseudonymise_fields(without_page_fields(r.get(), event.kind), privacy));
    let context = (!context.0.is_empty()).then(|| context.to_json());
    let title = page.title.map(|t| enrich::clip(&t, 1024));
    let session_id = session_id.filter(|_| granted.analytics);
    let message_id = match event.message_id.as_deref() {
        Some(id) if !id.is_empty() => Cow::Borrowed(id),
        _ => {
            row_flags |= flags::GENERATED_MESSAGE_ID;
            Cow::Owned(new_message_id())
        }
    };
    // One value per `Field`, in its order.
    let mut texts = [
        Some(&*message_id),
        event.name.as_deref(),
        event.category.as_deref(),
        event.anonymous_id.as_deref(),
        event.user_id.as_deref(),
        event.previous_id.as_deref(),
        event.group_id.as_deref(),
        url.as_deref(),
        path.as_deref(),
        title.as_deref(),
        referrer.as_deref(),
        referrer_host.as_deref(),
        campaign.source.as_deref(),
        campaign.medium.as_deref(),
        campaign.name.as_deref(),
        campaign.term.as_deref(),
        campaign.content.as_deref(),
        Some(ip.as_str()),
        ua.as_ref().and_then(|u| u.browser.as_deref()),
        ua.as_ref().and_then(|u| u.os.as_deref()),
        properties.as_deref(),
        traits.as_deref(),
        context.as_deref(),
        integrations,
        Some(visitor.as_str()),
        session_id.as_deref(),
    ];
    // Any e-mail address still in a text a sender fills freely (a property or trait under another key than
    // `pii_fields`, a page title, a path, the context) becomes its keyed hash, as in the quarantine: raw e-mail
    // addresses are never stored (DESIGN.md §5). IDs that are e-mails are hashed by `stored_identifier` already.
    let redacted: Vec<(Field, String)> = StoredEvent::FREE_TEXTS
        .iter()
        .filter_map(|&field| match redact_emails(texts[field as usize]?, privacy.pseudonymizer) {
            Cow::Owned(clean) => Some((field, clean)),
            Cow::Borrowed(_) => None,
        })
        .collect();
    for (field, clean) in &redacted {
        texts[*field as usize] = Some(clean);
    }
    if let Some(profile_traits) = identity.as_mut().and_then(|i| i.traits.as_mut()) {
        if let Cow::Owned(clean) = redact_emails(profile_traits, privacy.pseudonymizer) {
            *profile_traits = clean;
        }
    }
    Ok(StoredEvent {
        site: facts.site.clone(),
        kind: Some(event.kind),
        timestamp: time.timestamp_ms,
        original_timestamp: event.original_timestamp_ms,
        sent_at,
        received_at: facts.received_at_ms,
        flags: row_flags,
        device: ua.as_ref().map(|u| u.device),
        consent: granted.bits(),
        identity,
        consent_change,
        shared_id: None,
        texts: Texts::pack(texts),
    })
}

/// The page (`context.page`, else a page/screen call's properties) and campaign (`context.campaign`, else the
/// page URL's `utm_*` parameters). Both leave the stored context: the event's columns hold them.
fn page_and_campaign<'a>(context: &mut RawObject<'a>, event: &footprint_core::ValidEvent<'a>) -> (PageFields<'a>, Campaign) {
    let mut page: PageFields = context.take("page").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
    if matches!(event.kind, CallKind::Page | CallKind::Screen) && page.url.is_none() {
        if let Some(props) = event.properties {
            page = serde_json::from_str(props.get()).unwrap_or_default();
        }
    }
    let c: CampaignFields = context.take("campaign").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
    let mut campaign = Campaign { source: c.source, medium: c.medium, name: c.name, term: c.term, content: c.content };
    if campaign.is_empty() {
        if let Some(url) = &page.url {
            campaign = enrich::campaign_from_url(url);
        }
    }
    (page, campaign)
}

/// A page or screen call's properties without the page fields (`url`, `path`, `referrer`, `title`, `search`): they
/// are stored once, in the event's columns, after scrubbing — a second, raw copy would keep what scrubbing removed.
fn without_page_fields(properties: &str, kind: CallKind) -> Cow<'_, str> {
    const PAGE_FIELDS: [&str; 5] = ["url", "path", "referrer", "title", "search"];
    if !matches!(kind, CallKind::Page | CallKind::Screen) || !PAGE_FIELDS.iter().any(|f| properties.contains(f)) {
        return Cow::Borrowed(properties);
    }
    let Ok(mut obj) = serde_json::from_str::<RawObject>(properties) else { return Cow::Borrowed(properties) };
    obj.0.retain(|(k, _)| !PAGE_FIELDS.contains(&k.as_ref()));
    Cow::Owned(obj.to_json())
}

/// The identity side of a consented event: its identifiers (email and phone as keyed hashes, junk filtered by the
/// identity rules later) and the traits it sets on the profile.
fn identity_input(event: &footprint_core::ValidEvent<'_>, traits: Option<&str>, context_traits: Option<&str>, context: &RawObject<'_>, pseudo: &Pseudonymizer) -> IdentityInput {
    let mut identifiers = Vec::new();
    if let Some(a) = &event.anonymous_id {
        identifiers.push(Identifier::new(IdKind::AnonymousId, a.as_ref()));
    }
    if let Some(u) = &event.user_id {
        identifiers.push(Identifier::new(IdKind::UserId, u.as_ref()));
    }
    if let Some(p) = &event.previous_id {
        // alias(previousId → userId): the previous ID is the anonymous history being claimed.
        identifiers.push(Identifier::new(IdKind::AnonymousId, p.as_ref()));
    }
    // Identify traits win over context.traits; the hashed values are already in place.
    let merged = merge_objects(context_traits, traits);
    identifiers.extend(merged.as_deref().map(hashed_trait_identifiers).unwrap_or_default());
    if let Some(list) = context.get("externalIds").and_then(|v| serde_json::from_str::<Vec<ExternalId>>(v.get()).ok()) {
        for ext in list.into_iter().take(10) {
            if let (Some(id), Some(kind)) = (ext.id, ext.kind) {
                if !kind.is_empty() && kind.len() <= 64 && !id.is_empty() && id.len() <= 255 {
                    if let Some(external) = stored_identifier(IdKind::External(kind), &id, pseudo) {
                        identifiers.push(external);
                    }
                }
            }
        }
    }
    let primary = event
        .user_id
        .as_ref()
        .map(|u| Identifier::new(IdKind::UserId, u.as_ref()))
        .or_else(|| event.anonymous_id.as_ref().map(|a| Identifier::new(IdKind::AnonymousId, a.as_ref())));
    IdentityInput { identifiers, primary, traits: merged }
}

/// The e-mail and phone identifiers of pseudonymised traits: their values, which are the keyed hashes ingest put in
/// place of the raw ones.
pub fn hashed_trait_identifiers(traits: &str) -> Vec<Identifier> {
    let Ok(obj) = serde_json::from_str::<RawObject>(traits) else { return Vec::new() };
    [("email", IdKind::Email), ("phone", IdKind::Phone)]
        .into_iter()
        .filter_map(|(key, kind)| {
            // Found whatever the key's case, like the hashing in `pseudonymise_fields`.
            let value = obj.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
            let hash = value.and_then(|v| serde_json::from_str::<String>(v.get()).ok()).filter(|v| v.starts_with(HASH_PREFIX))?;
            Some(Identifier::new(kind, hash))
        })
        .collect()
}

#[derive(Deserialize)]
struct ExternalId {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient_string")]
    kind: Option<String>,
}

/// `base` with the members of `over` laid on top (both JSON objects; either may be absent).
fn merge_objects(base: Option<&str>, over: Option<&str>) -> Option<String> {
    match (base, over) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (Some(base), Some(over)) => {
            let (Ok(base), Ok(mut over)) = (serde_json::from_str::<RawObject>(base), serde_json::from_str::<RawObject>(over)) else { return Some(over.to_owned()) };
            over.fill_from(&base);
            Some(over.to_json())
        }
    }
}

/// A JSON object with its personal values replaced: the configured personal fields (`email`, `phone`, …) by keyed
/// hashes (e-mails and phones normalised first, so the hash matches however the value was typed), and top-level
/// `ip` / `ipAddress` / `ip_address` fields truncated like the request's IP (for libraries that do not put it in
/// `context.ip`). Keys match whatever their case.
fn pseudonymise_fields<'j>(json: Cow<'j, str>, privacy: &PrivacyFacts<'_>) -> Cow<'j, str> {
    const IP_KEYS: [&str; 3] = ["ip", "ipaddress", "ip_address"];
    // A cheap text test first: most objects hold none of the fields. It ignores case like the key match below
    // (`"Email"` is an e-mail field too), and a key spelled with \u escapes always takes the full path.
    let may_hold = enrich::contains_any(&json, privacy.pii_fields) || enrich::contains_any(&json, &["\"ip"]) || json.contains("\\u");
    if !may_hold {
        return json;
    }
    let Ok(mut obj) = serde_json::from_str::<RawObject>(&json) else { return json };
    let replacement = |key: &str, value: &RawValue| -> Option<Box<RawValue>> {
        let text = serde_json::from_str::<String>(value.get()).ok()?;
        let stored = if privacy.pii_fields.iter().any(|f| f.eq_ignore_ascii_case(key)) {
            if text.starts_with(HASH_PREFIX) {
                return None;
            }
            let field = key.to_ascii_lowercase();
            let normalised = match field.as_str() {
                "email" => normalize_email(&text).unwrap_or_else(|| text.trim().to_owned()),
                "phone" => normalize_phone(&text).unwrap_or_else(|| text.trim().to_owned()),
                _ => text.trim().to_owned(),
            };
            privacy.pseudonymizer.hash(&field, &normalised)
        } else if IP_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            let ip = text.trim().parse::<IpAddr>().ok()?;
            enrich::ip_text(enrich::truncate_ip(ip, privacy.ipv4_prefix, privacy.ipv6_prefix))
        } else {
            return None;
        };
        RawValue::from_string(serde_json::to_string(&stored).expect("a string")).ok()
    };
    let replaced: Vec<(usize, Box<RawValue>)> = obj.0.iter().enumerate().filter_map(|(i, (key, value))| Some((i, replacement(key, value)?))).collect();
    for (i, value) in &replaced {
        obj.0[*i].1 = value;
    }
    Cow::Owned(obj.to_json())
}

/// A consent-change event (the SDK's `Consent Updated`, Segment's `Segment Consent Preference Updated`) becomes a
/// ledger entry with the categories now in force.
fn consent_change_of(event: &footprint_core::ValidEvent<'_>, consent_context: Option<&RawValue>, granted: Categories) -> Option<ConsentChange> {
    let name = event.name.as_deref()?;
    if event.kind != CallKind::Track || !matches!(name, "Consent Updated" | "Segment Consent Preference Updated") {
        return None;
    }
    #[derive(Deserialize, Default)]
    struct Meta {
        #[serde(default, deserialize_with = "lenient_string")]
        source: Option<String>,
        #[serde(rename = "policyVersion", default, deserialize_with = "lenient_string")]
        policy_version: Option<String>,
    }
    let from_context: Meta = consent_context.and_then(|c| serde_json::from_str(c.get()).ok()).unwrap_or_default();
    let from_props: Meta = event.properties.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_default();
    Some(ConsentChange {
        categories: granted.bits(),
        source: from_context.source.or(from_props.source).unwrap_or_else(|| "event".to_owned()),
        policy_version: from_context.policy_version.or(from_props.policy_version),
    })
}

/// `context.page`, or a page call's `properties` (Segment puts the same fields in both). Non-string values are ignored.
/// Borrowed from the event's text: what is kept is copied once, scrubbed or clipped.
#[derive(Debug, Default, Deserialize)]
struct PageFields<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    title: Option<Cow<'a, str>>,
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

/// A JSON string's text, borrowed when it has no escapes (serde's `Cow<str>` is always a copy).
fn json_text(value: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(value.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(value.get()).ok().map(Cow::Owned),
    }
}

/// Enrichment must not refuse an event the spec allows: a field of another type is simply not used.
/// Other values are skipped without being built (a `serde_json::Value` for every page field cost ~2 % of ingest).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_str(d)?.map(Cow::into_owned))
}

/// [`lenient_string`], borrowed from the body when the text has no escapes (enrichment copies what it keeps).
fn lenient_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct NonEmptyString;
    impl<'de> Visitor<'de> for NonEmptyString {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then_some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then(|| Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then_some(Cow::Owned(v)))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(NonEmptyString)
}

#[cfg(test)]
mod tests {
    use super::*;

    static PSEUDONYMIZER: std::sync::LazyLock<Pseudonymizer> = std::sync::LazyLock::new(|| Pseudonymizer::new(b"test-key-0123456789-0123456789-01"));
    static PII: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec!["email".into(), "phone".into()]);

    fn nothing_suppressed(_: &Identifier) -> bool {
        false
    }

    fn facts_with(mode: consent::Mode, channel: consent::Channel) -> RequestFacts<'static> {
        RequestFacts {
            site: "shop".into(),
            received_at_ms: 1_000_000,
            client_ip: "198.51.100.99".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            privacy: PrivacyFacts {
                consent_mode: mode,
                channel,
                gpc_header: false,
                salt: [7; 16],
                pseudonymizer: &PSEUDONYMIZER,
                pii_fields: &PII,
                ipv4_prefix: 24,
                ipv6_prefix: 48,
                identity_resolution: true,
                is_suppressed: &nothing_suppressed,
            },
        }
    }

    fn facts() -> RequestFacts<'static> {
        facts_with(consent::Mode::Required, consent::Channel::Server)
    }

    fn run(body: &str, route: Route) -> Processed {
        run_with(body, route, &facts())
    }

    fn run_with(body: &str, route: Route, facts: &RequestFacts<'_>) -> Processed {
        let decoded = decode(body, route).expect("decodes");
        let mut n = 0;
        process(decoded, route, facts, &UserAgentCache::default(), &mut || {
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
        let escaped = decode(r#"{"write\u004bey":"wk","event":"E"}"#, Route::Single(CallKind::Track)).unwrap();
        assert_eq!(escaped.write_key.as_deref(), Some("wk"));
        assert_eq!(decode(r#"{"event":"E"}"#, Route::Single(CallKind::Track)).unwrap().write_key, None);
        // A well-formed event is parsed once; one with a wrong type is still JSON: decoded, and refused on its own.
        let spaced = decode(" \n{\"event\":\"E\"}\r\n", Route::Single(CallKind::Track)).unwrap();
        assert_eq!((spaced.events, spaced.parsed.len()), (vec![r#"{"event":"E"}"#], 1));
        let wrong = decode(r#"{"writeKey":"wk","event":5,"messageId":"m"}"#, Route::Single(CallKind::Track)).unwrap();
        assert_eq!((wrong.write_key.as_deref(), wrong.parsed.len()), (Some("wk"), 0));
        let out = process(wrong, Route::Single(CallKind::Track), &facts(), &UserAgentCache::default(), &mut || "generated".into());
        assert!(matches!(&out.slots[..], [Slot::Rejected { message_id, code: "invalid_event", .. }] if message_id == "m"), "{:?}", out.slots);
        check_decode_error(r#"{"event":"E"} x"#, Route::Single(CallKind::Track), "invalid_json");
        check_decode_error(r#"{"event":"E""#, Route::Single(CallKind::Track), "invalid_json");
    }

    #[test]
    fn small_well_formed_batches_are_parsed_in_one_pass_and_others_event_by_event() {
        let event = r#"{"type":"track","event":"E","anonymousId":"a","messageId":"m"}"#;
        let small = format!(r#"{{"batch":[{event},{event}],"writeKey":"wk"}}"#);
        let one_pass = decode(&small, Route::Batch).unwrap();
        assert_eq!((one_pass.events.len(), one_pass.parsed.len(), one_pass.len(), one_pass.write_key.as_deref()), (0, 2, 2, Some("wk")));
        assert_eq!(one_pass.message_ids(), ["m", "m"]);
        // Over the per-event size limit in all: each event's text is kept, so its size can be checked.
        let large = format!(r#"{{"batch":[{}]}}"#, vec![event; MAX_EVENT_BYTES / event.len() + 1].join(","));
        let by_event = decode(&large, Route::Batch).unwrap();
        assert_eq!((by_event.parsed.len(), by_event.len()), (0, MAX_EVENT_BYTES / event.len() + 1));
        // An event that does not parse sends the batch event by event; it is refused alone.
        let mixed = format!(r#"{{"batch":[{event},{{"type":"track","event":5}}]}}"#);
        let decoded = decode(&mixed, Route::Batch).unwrap();
        assert_eq!((decoded.events.len(), decoded.parsed.len(), decoded.message_ids()), (2, 0, vec!["m".to_owned(), String::new()]));
        let out = run(&mixed, Route::Batch);
        assert_eq!((out.events.len(), out.quarantine.len(), out.quarantine[0].payload.as_str()), (1, 1, r#"{"type":"track","event":5}"#));
        // Both ways give the same rows.
        let slow = process(decode_event_by_event(&small).unwrap(), Route::Batch, &facts(), &UserAgentCache::default(), &mut || "g".into());
        let fast = run(&small, Route::Batch);
        assert_eq!(format!("{:?}", (fast.slots, fast.events)), format!("{:?}", (slow.slots, slow.events)));
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
        assert_eq!(a.text(Field::Context), Some(r#"{"locale":"de"}"#), "batch context merged, ip removed");
        assert_eq!(b.text(Field::Context), Some(r#"{"locale":"fr"}"#), "the event's own context wins");
        assert_eq!(a.text(Field::Ip), Some("203.0.113.0"), "context.ip wins over the connection, truncated");
        assert_eq!(a.timestamp, 1_000_000 - 5_000, "skew-corrected with the batch sentAt");
        assert_eq!(b.flags & flags::GENERATED_MESSAGE_ID, flags::GENERATED_MESSAGE_ID);
        assert_eq!((a.text(Field::Browser), a.device), (Some("Chrome"), Some("desktop")));
    }

    #[test]
    fn page_fields_come_from_context_or_page_properties() {
        let from_props = run(r#"{"anonymousId":"a","messageId":"p","properties":{"url":"https://s.example/a/b?utm_source=x","referrer":"https://ref.example/","title":"T"}}"#, Route::Single(CallKind::Page));
        let e = &from_props.events[0];
        assert_eq!((e.text(Field::Path), e.text(Field::ReferrerHost), e.text(Field::UtmSource), e.text(Field::Title)), (Some("/a/b"), Some("ref.example"), Some("x"), Some("T")));
        // context.campaign beats the URL's parameters; non-string values are ignored, not refused.
        let ctx = run(r#"{"event":"E","anonymousId":"a","context":{"page":{"url":"https://s.example/?utm_source=url","path":7,"title":{"a":[1,{"b":null}]},"referrer":null,"search":""},"campaign":{"source":"ctx","medium":"cpc","term":false}}}"#, Route::Single(CallKind::Track));
        let e = &ctx.events[0];
        assert_eq!((e.text(Field::UtmSource), e.text(Field::UtmMedium), e.text(Field::Path)), (Some("ctx"), Some("cpc"), Some("/")));
        assert_eq!((e.text(Field::Title), e.text(Field::Referrer), e.text(Field::UtmTerm)), (None, None, None));
        // Personal data and secrets in query strings are scrubbed server-side too, whatever sent the event.
        let leaky = run(r#"{"anonymousId":"a","properties":{"url":"https://s.example/reset?token=abc123&email=x%40y.co&lang=de","referrer":"https://mail.example/?u=jo@mail.example"}}"#, Route::Single(CallKind::Page));
        let e = &leaky.events[0];
        assert_eq!((e.text(Field::Url), e.text(Field::Referrer)), (Some("https://s.example/reset?lang=de"), Some("https://mail.example/")));
        assert_eq!(e.text(Field::Properties), Some("{}"), "the page fields are kept once, scrubbed, in the columns");
        assert!(!e.all_text().contains("abc123"));
    }

    #[test]
    fn without_analytics_consent_nothing_identifying_is_kept() {
        let body = r#"{"type":"identify","userId":"alice@example.com","anonymousId":"anon-77","traits":{"email":"alice@example.com","plan":"pro"},
            "context":{"sessionId":"s-1","traits":{"name":"Alice"},"externalIds":[{"id":"x","type":"crm"}],"device":{"advertisingId":"ad-1"},"ip":"203.0.113.9",
            "consent":{"categoryPreferences":{"analytics":false,"marketing":false}},"page":{"url":"https://s.example/?gclid=click-1&q=1"}}}"#;
        let out = run_with(body, Route::Single(CallKind::Identify), &facts_with(consent::Mode::Implied, consent::Channel::Browser));
        let e = &out.events[0];
        assert_eq!((e.text(Field::AnonymousId), e.text(Field::UserId), e.text(Field::Traits), e.text(Field::SessionId)), (None, None, None, None));
        assert!(e.identity.is_none(), "no identity edges");
        assert!(e.text(Field::Visitor).unwrap().starts_with("c:"), "counted cookielessly");
        assert_eq!(e.consent, 4, "personalization was not stated: the implied mode grants it");
        let stored = e.all_text();
        assert!(!format!("{e:?}").contains("anon-77"), "Debug output names no one");
        for secret in ["alice", "anon-77", "s-1", "Alice", "ad-1", "203.0.113.9", "click-1"] {
            assert!(!stored.contains(secret), "{secret} survived: {stored}");
        }
        assert_eq!(e.text(Field::Url), Some("https://s.example/?q=1"), "click IDs need marketing consent");
    }

    #[test]
    fn cookieless_events_need_no_identity_and_hash_per_salt() {
        let browser = facts_with(consent::Mode::Required, consent::Channel::Browser);
        let out = run_with(r#"{"name":"Home"}"#, Route::Single(CallKind::Page), &browser);
        assert_eq!(out.events.len(), 1, "{:?}", out.slots);
        let again = run_with(r#"{"name":"Home"}"#, Route::Single(CallKind::Page), &browser);
        assert_eq!(out.events[0].text(Field::Visitor), again.events[0].text(Field::Visitor), "same visitor, same day, same hash");
        let mut tomorrow = facts_with(consent::Mode::Required, consent::Channel::Browser);
        tomorrow.privacy.salt = [8; 16];
        let next_day = run_with(r#"{"name":"Home"}"#, Route::Single(CallKind::Page), &tomorrow);
        assert_ne!(out.events[0].text(Field::Visitor), next_day.events[0].text(Field::Visitor));
        // A server-side library stating nothing still needs an identity.
        assert!(run(r#"{"name":"Home"}"#, Route::Single(CallKind::Page)).events.is_empty());
    }

    #[test]
    fn with_consent_personal_values_are_pseudonymised_and_identifiers_collected() {
        let body = r#"{"type":"identify","userId":"Alice@Example.com","anonymousId":"anon-1","traits":{"email":" Alice@Example.COM ","phone":"+49 30 1234567","plan":"pro"},
            "context":{"externalIds":[{"id":"crm-9","type":"crm_id"}],"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        let out = run(body, Route::Single(CallKind::Identify));
        let e = &out.events[0];
        let email_hash = PSEUDONYMIZER.hash("email", "alice@example.com");
        assert_eq!(e.text(Field::UserId), Some(PSEUDONYMIZER.hash("user_id", "alice@example.com").as_str()), "an e-mail used as user ID is hashed");
        let traits: serde_json::Value = serde_json::from_str(e.text(Field::Traits).unwrap()).unwrap();
        assert_eq!(traits["email"], email_hash.as_str());
        assert_eq!(traits["phone"], PSEUDONYMIZER.hash("phone", "+49301234567").as_str());
        assert_eq!(traits["plan"], "pro");
        let kinds: Vec<String> = e.identity.as_ref().unwrap().identifiers.iter().map(|i| i.kind.as_string()).collect();
        assert_eq!(kinds, ["anonymous_id", "user_id", "email", "phone", "external:crm_id"]);
        assert_eq!(e.text(Field::Visitor), Some("a:anon-1"));
        assert!(!e.all_text().to_lowercase().contains("alice@example.com"));
    }

    #[test]
    fn personal_fields_are_hashed_whatever_the_case_of_their_key() {
        let body = r#"{"type":"identify","userId":"u-1","traits":{"Email":"bob@example.com","PHONE":"+49 30 7654321"},
            "context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        let e = &run(body, Route::Single(CallKind::Identify)).events[0];
        let traits: serde_json::Value = serde_json::from_str(e.text(Field::Traits).unwrap()).unwrap();
        assert_eq!(traits["Email"], PSEUDONYMIZER.hash("email", "bob@example.com").as_str());
        assert_eq!(traits["PHONE"], PSEUDONYMIZER.hash("phone", "+49307654321").as_str());
        assert!(!e.all_text().contains("bob@example.com"));
        let kinds: Vec<String> = e.identity.as_ref().unwrap().identifiers.iter().map(|i| i.kind.as_string()).collect();
        assert_eq!(kinds, ["user_id", "email", "phone"], "the hashed values are identifiers too");
        let escaped = r#"{"type":"identify","userId":"u-2","traits":{"e\u006dail":"eve@example.com"},"context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        assert!(!run(escaped, Route::Single(CallKind::Identify)).events[0].all_text().contains("eve@example.com"));
        let page = r#"{"event":"Signed up","anonymousId":"a","properties":{"EMAIL":"bob@example.com"},"context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        assert!(!run(page, Route::Single(CallKind::Track)).events[0].all_text().contains("bob@example.com"));
    }

    #[test]
    fn no_text_of_an_event_keeps_a_raw_email() {
        let body = r#"{"event":"Contact bob@example.com","anonymousId":"a","properties":{"contact":"Bob@Example.com","note":"write to carol%40example.org"},
            "context":{"page":{"url":"https://s.example/users/dan@example.net/edit","title":"Profile of dan@example.net"},"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        let e = &run(body, Route::Single(CallKind::Track)).events[0];
        let all = e.all_text().to_lowercase();
        for raw in ["bob@example.com", "carol%40example.org", "dan@example.net"] {
            assert!(!all.contains(raw), "{raw} in {all}");
        }
        let props: serde_json::Value = serde_json::from_str(e.text(Field::Properties).unwrap()).unwrap();
        assert_eq!(props["contact"], PSEUDONYMIZER.hash("email", "bob@example.com").as_str(), "the same hash as the e-mail identifier");
        assert_eq!(e.text(Field::Name), Some(format!("Contact {}", PSEUDONYMIZER.hash("email", "bob@example.com")).as_str()));
        let identify = r#"{"type":"identify","userId":"u-9","traits":{"contact":"erin@example.com"},"context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        assert!(!run(identify, Route::Single(CallKind::Identify)).events[0].all_text().contains("erin@example.com"), "profile traits too");
        // Nothing to replace: the texts are kept as sent.
        let plain = run(r#"{"event":"E","anonymousId":"a","properties":{"at":"@home","pct":"100%"}}"#, Route::Single(CallKind::Track));
        assert_eq!(plain.events[0].text(Field::Properties), Some(r#"{"at":"@home","pct":"100%"}"#));
    }

    #[test]
    fn ip_fields_of_properties_and_traits_are_truncated() {
        let body = r#"{"type":"identify","userId":"u-3","traits":{"ipAddress":"198.51.100.77","plan":"pro"},"context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#;
        let e = &run(body, Route::Single(CallKind::Identify)).events[0];
        assert_eq!(e.text(Field::Traits), Some(r#"{"ipAddress":"198.51.100.0","plan":"pro"}"#));
        assert!(!e.all_text().contains("198.51.100.77"), "profile traits too");
        let track = r#"{"event":"E","anonymousId":"a","properties":{"IP":"2001:db8:1234:5678::1","ip_address":"not an ip","vip":"198.51.100.9"}}"#;
        let e = &run(track, Route::Single(CallKind::Track)).events[0];
        assert_eq!(e.text(Field::Properties), Some(r#"{"IP":"2001:db8:1234::","ip_address":"not an ip","vip":"198.51.100.9"}"#), "only IP fields, only IPs");
    }

    #[test]
    fn consent_changes_become_ledger_entries() {
        let body = r#"{"event":"Consent Updated","anonymousId":"a","context":{"consent":{"categoryPreferences":{"analytics":true,"marketing":false,"personalization":true},"source":"explicit","policyVersion":"2026-01"}}}"#;
        let out = run(body, Route::Single(CallKind::Track));
        assert_eq!(out.events[0].consent_change, Some(ConsentChange { categories: 5, source: "explicit".into(), policy_version: Some("2026-01".into()) }));
        assert_eq!(run(r#"{"event":"Clicked","anonymousId":"a"}"#, Route::Single(CallKind::Track)).events[0].consent_change, None);
    }

    #[test]
    fn rejected_events_are_quarantined_with_their_payload() {
        let out = run(r#"{"batch":[{"type":"track","messageId":"bad","anonymousId":"a"},7]}"#, Route::Batch);
        assert!(out.events.is_empty());
        assert_eq!(out.quarantine.len(), 2);
        assert_eq!((out.quarantine[0].code, out.quarantine[0].message_id.as_deref()), ("missing_event_name", Some("bad")));
        assert_eq!((out.quarantine[1].code, out.quarantine[1].payload.as_str()), ("invalid_event", "7"));
        assert!(matches!(&out.slots[1], Slot::Rejected { message_id, .. } if message_id == "generated-1"));
        // Parsed in one pass, then refused: decoded again event by event, so the payload is the event's own text.
        let refused = r#"{"type":"track","messageId":"bad","anonymousId":"a"}"#;
        let out = run(&format!(r#"{{"batch":[{{"type":"track","event":"E","anonymousId":"a"}},{refused}]}}"#), Route::Batch);
        assert_eq!((out.events.len(), out.quarantine.len(), out.quarantine[0].payload.as_str()), (1, 1, refused));
        assert!(matches!(&out.slots[..], [Slot::Pending { .. }, Slot::Rejected { code: "missing_event_name", .. }]));
    }
}
