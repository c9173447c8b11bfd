//! `/v1/*`: the Segment tracking API. Limits → decode → authenticate the site → check the origin → validate and
//! enrich (crate::ingest) → the writer → per-event results. CORS is answered per site.

use super::reply::{self, Body, EventResult, IngestBody, Refusal};
use super::{AppState, Site};
use crate::enrich;
use crate::ingest::{self, Decoded, PrivacyFacts, RequestFacts, Route, Slot};
use footprint_core::consent;
use crate::metrics::Metrics;
use crate::store::QuarantinedEvent;
use crate::writer::{Stored, SubmitError};
use base64::Engine as _;
use bytes::Bytes;
use footprint_core::limits::MAX_REQUEST_BYTES;
use footprint_core::CallKind;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A client has this long to send the whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(req: Request<Incoming>, state: &AppState, peer: SocketAddr) -> Response<Body> {
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_owned);
    let query_key = query_write_key(req.uri().query());
    let mut response = if req.method() == Method::OPTIONS {
        preflight(state, origin.as_deref(), query_key.as_deref())
    } else {
        match route_of(req.uri().path()) {
            None => reply::not_found(req.uri().path()),
            Some(_) if req.method() != Method::POST => {
                reply::refusal(&Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "ingest endpoints take POST"), vec![])
            }
            Some(route) => {
                // Requests being read, parsed or waiting for the writer are capped, so memory stays bounded under
                // overload: past the cap the answer is an immediate 503, before the body is read.
                let response = match state.ingest_slots.try_acquire() {
                    Ok(_slot) => ingest(req, route, state, peer, origin.as_deref(), query_key).await,
                    Err(_) => {
                        Metrics::add(&state.metrics.requests_queue_full, 1);
                        reply::refusal(&Refusal::unavailable("overloaded", "the collector is busy; retry later", 1), vec![])
                    }
                };
                let metrics = &state.metrics;
                match response.status().as_u16() {
                    503 => Metrics::add(&metrics.requests_5xx, 1),
                    500.. => Metrics::add(&metrics.requests_5xx, 1),
                    400..=499 => Metrics::add(&metrics.requests_4xx, 1),
                    _ => {}
                }
                response
            }
        }
    };
    // Let the browser read the answer when some site allows this origin (the site itself was checked above).
    if let Some(origin) = origin.as_deref() {
        if state.sites_by_key.values().any(|s| s.allows_origin(origin)) {
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            // Not a CORS-safelisted header: without this, a page on another origin cannot read the wait a 429 or
            // 503 asks for, and its SDK falls back to its own backoff.
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    response
}

fn route_of(path: &str) -> Option<Route> {
    Some(match path {
        "/v1/batch" | "/v1/b" => Route::Batch,
        "/v1/track" | "/v1/t" => Route::Single(CallKind::Track),
        "/v1/page" | "/v1/p" => Route::Single(CallKind::Page),
        "/v1/screen" => Route::Single(CallKind::Screen),
        "/v1/identify" | "/v1/i" => Route::Single(CallKind::Identify),
        "/v1/alias" => Route::Single(CallKind::Alias),
        "/v1/group" => Route::Single(CallKind::Group),
        _ => return None,
    })
}

/// CORS preflight: allowed when the site named by `?writeKey=` (or, without one, any site) allows the origin.
fn preflight(state: &AppState, origin: Option<&str>, query_key: Option<&str>) -> Response<Body> {
    let Some(origin) = origin else {
        return reply::refusal(&Refusal::bad_request("missing_origin", "a preflight request needs an Origin header"), vec![]);
    };
    let allowed = match query_key.and_then(|k| state.sites_by_key.get(k)) {
        Some(site) => site.allows_origin(origin),
        None => state.sites_by_key.values().any(|s| s.allows_origin(origin)),
    };
    if !allowed {
        return reply::refusal(&Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", format!("origin {origin} may not send events here")), vec![]);
    }
    let mut response = reply::text(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, Content-Encoding"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

async fn ingest(req: Request<Incoming>, route: Route, state: &AppState, peer: SocketAddr, origin: Option<&str>, query_key: Option<String>) -> Response<Body> {
    let received_at_ms = crate::now_ms();
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if let Some(refusal) = check_content_headers(&headers) {
        return reply::refusal(&refusal, vec![]);
    }
    // A queue without room for half the body (stored events take about two thirds of its bytes) would refuse
    // this request after its body was read and parsed: refuse it first, so overload does not spend the CPU the
    // writer needs on requests it cannot take.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| !state.writer.has_room(length / 2)) {
        Metrics::add(&state.metrics.requests_queue_full, 1);
        return reply::refusal(&submit_refusal(&SubmitError::QueueFull), vec![]);
    }
    let arrival = state.writer.arriving();
    let header_key = basic_auth_user(&headers);
    let body = match read_body(body, &headers).await {
        Ok(body) => body,
        Err(refusal) => return reply::refusal(&refusal, vec![]),
    };
    // A key in the header or query names the site before the body is parsed, so an unparseable body from a known
    // site is kept in quarantine too.
    let early_site = header_key.as_deref().or(query_key.as_deref()).and_then(|k| state.sites_by_key.get(k)).cloned();
    let text = match std::str::from_utf8(&body) {
        Ok(text) => text,
        Err(e) => {
            let refusal = Refusal::bad_request("invalid_utf8", format!("body is not UTF-8 (invalid byte at offset {})", e.valid_up_to()));
            return quarantine_body(state, early_site, &refusal, &body, received_at_ms).await;
        }
    };
    let decoded = match ingest::decode(text, route) {
        Ok(decoded) => decoded,
        Err(error) => {
            let refusal = Refusal::bad_request(error.code, error.message);
            return quarantine_body(state, early_site, &refusal, &body, received_at_ms).await;
        }
    };
    let key = header_key.or(query_key).or_else(|| decoded.write_key.as_deref().map(str::to_owned));
    let site = match key {
        None => return refuse_events(&decoded, &Refusal::new(StatusCode::UNAUTHORIZED, "missing_write_key", "send the write key as the HTTP Basic user, as \"writeKey\" in the body, or as ?writeKey=")),
        Some(key) => match state.sites_by_key.get(&key) {
            Some(site) => site.clone(),
            None => return refuse_events(&decoded, &Refusal::new(StatusCode::UNAUTHORIZED, "unknown_write_key", "the write key does not name a site")),
        },
    };
    if let Some(origin) = origin {
        if !site.allows_origin(origin) {
            return refuse_events(&decoded, &Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", format!("origin {origin} may not send events for this site")));
        }
    }
    let client_ip = enrich::client_ip(peer.ip(), header_str(&headers, &X_FORWARDED_FOR), &state.config.trusted_proxies);
    let day = received_at_ms.div_euclid(86_400_000);
    let salt = state.salts.salt(&site.id, day, &mut crate::random_salt).expect("today's salt always exists");
    let is_suppressed = |id: &crate::identity::Identifier| state.is_suppressed(&site.id, id);
    let facts = RequestFacts {
        site: site.id.clone(),
        received_at_ms,
        client_ip,
        user_agent: header_str(&headers, header::USER_AGENT),
        privacy: PrivacyFacts {
            consent_mode: match site.config.consent_mode {
                crate::config::ConsentMode::Required => consent::Mode::Required,
                crate::config::ConsentMode::Implied => consent::Mode::Implied,
            },
            channel: if origin.is_some() { consent::Channel::Browser } else { consent::Channel::Server },
            gpc_header: header_str(&headers, &SEC_GPC).is_some_and(|v| v.trim() == "1"),
            salt,
            pseudonymizer: &state.pseudonymizer,
            pii_fields: &state.config.pii_fields,
            ipv4_prefix: state.config.ipv4_prefix,
            ipv6_prefix: state.config.ipv6_prefix,
            identity_resolution: state.config.identity_resolution,
            is_suppressed: &is_suppressed,
        },
    };
    let processed = ingest::process(decoded, route, &facts, &state.ua_cache, &mut crate::new_message_id);
    let is_bot: Vec<bool> = processed.events.iter().map(|e| e.flags & crate::store::flags::BOT != 0).collect();
    let stored = match state.writer.submit_arrived(arrival, processed.events, processed.quarantine).await {
        Ok(stored) => stored,
        Err(error) => {
            if matches!(error, SubmitError::QueueFull) {
                Metrics::add(&state.metrics.requests_queue_full, 1);
            }
            // Nothing was taken; the client retries the whole request, so no per-event results are worked out.
            return reply::refusal(&submit_refusal(&error), vec![]);
        }
    };
    let bots = stored.iter().zip(is_bot).filter(|(s, bot)| **s == Stored::Accepted && *bot).count();
    answer(&processed.slots, &stored, &state.metrics, bots)
}

fn submit_refusal(error: &SubmitError) -> Refusal {
    match error {
        SubmitError::QueueFull => Refusal::unavailable("queue_full", "the collector is busy; retry later", 1),
        SubmitError::Storage(message) => Refusal::unavailable("storage_unavailable", format!("storage failed; nothing was stored: {message}"), 2),
        SubmitError::ShuttingDown => Refusal::unavailable("shutting_down", "the collector is shutting down", 2),
    }
}

/// The per-event answer: 200 when anything was stored (or was already), 400 when every event was rejected.
fn answer(slots: &[Slot], stored: &[Stored], metrics: &Metrics, bots: usize) -> Response<Body> {
    let mut stored = stored.iter();
    let (mut accepted, mut duplicate, mut rejected) = (0u64, 0u64, 0u64);
    let results: Vec<EventResult> = slots
        .iter()
        .map(|slot| match slot {
            Slot::Pending { message_id } => {
                let status = match stored.next() {
                    Some(Stored::Accepted) => {
                        accepted += 1;
                        "accepted"
                    }
                    _ => {
                        duplicate += 1;
                        "duplicate"
                    }
                };
                EventResult { message_id, status, code: None, reason: None }
            }
            Slot::Rejected { message_id, code, reason } => {
                rejected += 1;
                EventResult { message_id, status: "rejected", code: Some(code), reason: Some(reason) }
            }
        })
        .collect();
    Metrics::add(&metrics.events_accepted, accepted);
    Metrics::add(&metrics.events_duplicate, duplicate);
    Metrics::add(&metrics.events_rejected, rejected);
    Metrics::add(&metrics.events_bot, bots as u64);
    if accepted + duplicate == 0 {
        let message = "every event was rejected; see results (the events are kept in quarantine)";
        return reply::ingest(StatusCode::BAD_REQUEST, &IngestBody { code: Some("all_events_rejected"), message: Some(message), results });
    }
    reply::ingest(StatusCode::OK, &IngestBody { code: None, message: None, results })
}

/// Refuses the whole request; each event it carried is listed as rejected with the request's code.
fn refuse_events(decoded: &Decoded<'_>, refusal: &Refusal) -> Response<Body> {
    let ids = decoded.message_ids();
    let results = ids.iter().map(|id| EventResult { message_id: id, status: "rejected", code: Some(refusal.code), reason: Some(&refusal.message) }).collect();
    reply::refusal(refusal, results)
}

/// A body that is not events at all: kept in quarantine when the site is known, then refused with 400.
async fn quarantine_body(state: &AppState, site: Option<Arc<Site>>, refusal: &Refusal, body: &[u8], received_at_ms: i64) -> Response<Body> {
    if let Some(site) = site {
        let payload = crate::pseudonymise::redact_emails(&String::from_utf8_lossy(body), &state.pseudonymizer).into_owned();
        let row = QuarantinedEvent { site: site.id.clone(), received_at: received_at_ms, message_id: None, code: refusal.code, reason: refusal.message.clone(), payload, shared_id: None };
        if let Err(error) = state.writer.submit(vec![], vec![row]).await {
            return reply::refusal(&submit_refusal(&error), vec![]);
        }
        Metrics::add(&state.metrics.events_rejected, 1);
    }
    reply::refusal(refusal, vec![])
}

fn check_content_headers(headers: &HeaderMap) -> Option<Refusal> {
    if let Some(content_type) = header_str(headers, header::CONTENT_TYPE) {
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(mime.as_str(), "" | "application/json" | "text/plain") {
            return Some(Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", format!("Content-Type {mime} is not accepted; send application/json or text/plain")));
        }
    }
    match header_str(headers, header::CONTENT_ENCODING).map(|e| e.trim().to_ascii_lowercase()) {
        None => None,
        Some(e) if e.is_empty() || e == "identity" || e == "gzip" || e == "x-gzip" => None,
        Some(e) => Some(Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", format!("Content-Encoding {e} is not accepted; send gzip or nothing"))),
    }
}

fn too_large(what: &str) -> Refusal {
    Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", format!("{what} exceeds the limit of {MAX_REQUEST_BYTES} bytes"))
}

/// Reads the body within the size limit and the time limit, and decompresses gzip within the same size limit
/// (checked while decompressing, so a gzip bomb costs at most the limit).
async fn read_body(body: Incoming, headers: &HeaderMap) -> Result<Bytes, Refusal> {
    if let Some(length) = header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok()) {
        if length > MAX_REQUEST_BYTES {
            return Err(too_large("the body"));
        }
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_REQUEST_BYTES).collect()).await;
    let bytes = match collected {
        Err(_) => return Err(Refusal::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()))),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_large("the body")),
        Ok(Err(error)) => return Err(Refusal::bad_request("body_read_failed", format!("the body could not be read: {error}"))),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let gzip = header_str(headers, header::CONTENT_ENCODING).is_some_and(|e| matches!(e.trim().to_ascii_lowercase().as_str(), "gzip" | "x-gzip"));
    if !gzip {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity((bytes.len() * 4).min(MAX_REQUEST_BYTES + 1));
    let read = flate2::read::MultiGzDecoder::new(&bytes[..]).take(MAX_REQUEST_BYTES as u64 + 1).read_to_end(&mut out);
    match read {
        Err(error) => Err(Refusal::bad_request("invalid_gzip", format!("the gzip body could not be decompressed: {error}"))),
        Ok(n) if n > MAX_REQUEST_BYTES => Err(too_large("the decompressed body")),
        Ok(_) => Ok(Bytes::from(out)),
    }
}

/// Header names the standard list lacks, made once: a name given as text is parsed again on every lookup.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The user of `Authorization: Basic base64(user:password)`: Segment's libraries send the write key that way.
fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let value = header_str(headers, header::AUTHORIZATION)?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| user.to_owned())
}

fn query_write_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "writeKey").map(|(_, v)| v.into_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_key_sources() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic d2tfc2hvcDo="));
        assert_eq!(basic_auth_user(&headers).as_deref(), Some("wk_shop"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_auth_user(&headers), None);
        assert_eq!(query_write_key(Some("a=1&writeKey=wk%5Fshop")).as_deref(), Some("wk_shop"));
        assert_eq!(query_write_key(Some("writeKey=")), None);
    }

    #[test]
    fn routes() {
        assert_eq!(route_of("/v1/batch"), Some(Route::Batch));
        assert_eq!(route_of("/v1/identify"), Some(Route::Single(CallKind::Identify)));
        assert_eq!(route_of("/v1/nope"), None);
    }
}
