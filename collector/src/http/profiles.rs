//! Admin routes about people: profile lookup and view, timeline, identity log, unmerge, export and erasure
//! (DESIGN.md §4, §5 and the §9 contract: `/admin/v1/profiles/lookup`, `/admin/v1/export`, `/admin/v1/erase`).

use super::reply::{self, Body, Refusal};
use super::AppState;
use crate::identity::{IdKind, Identifier};
use crate::pseudonymise::stored_identifier;
use crate::store::sqlite::SqliteReader;
use crate::store::{ErasureReport, ErasureRequest, StoreError, UnmergeError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

fn query_params(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn storage_error(error: StoreError) -> Response<Body> {
    tracing::error!(%error, "admin query failed");
    reply::refusal(&Refusal::unavailable("storage_unavailable", "the database could not answer", 2), vec![])
}

/// Runs a read off the async threads, on a read-only connection kept per blocking thread (opening one costs more
/// than a lookup).
async fn read<T: Send + 'static>(state: &AppState, f: impl FnOnce(&SqliteReader) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    thread_local! {
        static READER: std::cell::RefCell<Option<(std::path::PathBuf, SqliteReader)>> = const { std::cell::RefCell::new(None) };
    }
    state.catch_up().await;
    let path = state.db_path.clone();
    tokio::task::spawn_blocking(move || {
        READER.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(p, _)| *p != path) {
                *slot = Some((path.clone(), SqliteReader::open(&path)?));
            }
            let result = f(&slot.as_ref().expect("just opened").1);
            if result.is_err() {
                // A broken connection is not reused.
                *slot = None;
            }
            result
        })
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))?
}

/// The sites to search: the one named by `site`, or all configured ones.
fn sites(state: &AppState, site: Option<&str>) -> Result<Vec<String>, Refusal> {
    match site {
        Some(site) if state.config.sites.iter().any(|s| s.id == site) => Ok(vec![site.to_owned()]),
        Some(site) => Err(Refusal::new(StatusCode::NOT_FOUND, "unknown_site", format!("no site {site:?}"))),
        None => Ok(state.config.sites.iter().map(|s| s.id.clone()).collect()),
    }
}

/// The identifier named by `type` and raw `value`, in its stored form: under the current key first, then under each
/// key used before a rotation.
fn identifier(state: &AppState, kind: Option<&str>, value: Option<&str>) -> Result<(Vec<Identifier>, String), Refusal> {
    let (Some(kind), Some(value)) = (kind, value) else {
        return Err(Refusal::bad_request("missing_identifier", "give type=<anonymous_id|user_id|email|phone|external:NAME> and value=…"));
    };
    let kind = IdKind::parse(kind).ok_or_else(|| Refusal::bad_request("invalid_identifier_type", format!("type {kind:?} is not anonymous_id, user_id, email, phone or external:NAME")))?;
    let id = stored_identifier(kind.clone(), value, &state.pseudonymizer)
        .ok_or_else(|| Refusal::bad_request("invalid_identifier_value", format!("the value is not a valid {}", kind.as_string())))?;
    let mut candidates = vec![id];
    for generation in state.pseudonymizer.previous_generations() {
        if let Some(old) = stored_identifier(kind.clone(), value, &generation) {
            if !candidates.contains(&old) {
                candidates.push(old);
            }
        }
    }
    Ok((candidates, value.to_owned()))
}

/// The person named by the query's `type`, `value` and optional `site`: their stored identifier and the sites
/// to search.
fn person(state: &AppState, q: &HashMap<String, String>) -> Result<(Vec<Identifier>, Vec<String>), Refusal> {
    let (id, _) = identifier(state, q.get("type").map(String::as_str), q.get("value").map(String::as_str))?;
    Ok((id, sites(state, q.get("site").map(String::as_str))?))
}

/// The first profile holding one of the candidate stored forms.
fn find(r: &SqliteReader, sites: &[String], candidates: &[Identifier]) -> Result<Option<(String, i64)>, StoreError> {
    for id in candidates {
        if let Some(found) = r.find_profile(sites, id)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// `GET /admin/v1/profiles/lookup?type=…&value=…[&site=…]`
pub async fn lookup(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let q = query_params(&req);
    let (id, sites) = match person(state, &q) {
        Ok(found) => found,
        Err(refusal) => return reply::refusal(&refusal, vec![]),
    };
    let result = read(state, move |r| match find(r, &sites, &id)? {
        Some((site, root)) => r.profile(&site, root).map(Some),
        None => Ok(None),
    })
    .await;
    match result {
        Ok(Some(profile)) => reply::json(StatusCode::OK, &profile),
        Ok(None) => profile_not_found(),
        Err(e) => storage_error(e),
    }
}

fn profile_not_found() -> Response<Body> {
    reply::refusal(&Refusal::new(StatusCode::NOT_FOUND, "profile_not_found", "no profile holds this identifier"), vec![])
}

/// `GET /admin/v1/profiles/{id}`, `…/{id}/events?before=&limit=`, `…/{id}/log`
pub async fn by_id(req: Request<Incoming>, state: &AppState, rest: &str) -> Response<Body> {
    let (id_text, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(root) = id_text.parse::<i64>() else { return reply::not_found(req.uri().path()) };
    let q = query_params(&req);
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 500);
    let tail = tail.to_owned();
    let result = read(state, move |r| {
        let Some(site) = r.profile_site(root)? else { return Ok(None) };
        Ok(Some(match tail.as_str() {
            "" => r.profile(&site, root)?,
            "events" => {
                let events = r.profile_events(root, before, limit)?;
                let next = (events.len() == limit).then(|| events.last().map(|e| e.id)).flatten();
                json!({ "events": events, "next": next })
            }
            "log" => json!({ "log": r.identity_log(root)? }),
            _ => return Ok(None),
        }))
    })
    .await;
    match result {
        Ok(Some(body)) => reply::json(StatusCode::OK, &body),
        Ok(None) => profile_not_found(),
        Err(e) => storage_error(e),
    }
}

/// `POST /admin/v1/merges/{id}/undo`
pub async fn undo_merge(state: &AppState, merge_id: &str) -> Response<Body> {
    let Ok(merge_id) = merge_id.parse::<i64>() else { return reply::refusal(&Refusal::bad_request("invalid_merge_id", "merge ids are integers"), vec![]) };
    let now = crate::now_ms();
    match state.writer.exclusive(move |store| store.unmerge(merge_id, now)).await {
        Ok(Ok(Ok((winner, loser)))) => {
            tracing::info!(merge_id, "merge undone");
            reply::json(StatusCode::OK, &json!({ "undone": merge_id, "profiles": [winner, loser] }))
        }
        Ok(Ok(Err(UnmergeError::NotFound))) => reply::refusal(&Refusal::new(StatusCode::NOT_FOUND, "merge_not_found", "no such merge"), vec![]),
        Ok(Ok(Err(UnmergeError::AlreadyUndone))) => reply::refusal(&Refusal::new(StatusCode::CONFLICT, "merge_already_undone", "this merge was undone before"), vec![]),
        Ok(Err(e)) => storage_error(e),
        Err(_) => reply::refusal(&Refusal::unavailable("shutting_down", "the collector is shutting down", 2), vec![]),
    }
}

/// `GET /admin/v1/export?type=…&value=…[&site=…][&format=ndjson]`: everything about the person.
pub async fn export(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let q = query_params(&req);
    let (id, sites) = match person(state, &q) {
        Ok(found) => found,
        Err(refusal) => return reply::refusal(&refusal, vec![]),
    };
    let ndjson = q.get("format").is_some_and(|f| f == "ndjson");
    let result = read(state, move |r| {
        let Some((site, root)) = find(r, &sites, &id)? else { return Ok(None) };
        let profile = r.profile(&site, root)?;
        let log = r.identity_log(root)?;
        let mut out = Vec::with_capacity(1 << 16);
        if ndjson {
            let mut line = |kind: &str, value: &serde_json::Value| {
                serde_json::to_writer(&mut out, &json!({ "record": kind, "data": value })).expect("serialise");
                out.push(b'\n');
            };
            line("profile", &profile);
            for entry in &log {
                line("identity_log", entry);
            }
            r.for_each_profile_event(root, &mut |event| {
                out.extend_from_slice(b"{\"record\":\"event\",\"data\":");
                serde_json::to_writer(&mut out, &event).expect("serialise");
                out.extend_from_slice(b"}\n");
            })?;
        } else {
            out.extend_from_slice(b"{\"exported_at\":");
            serde_json::to_writer(&mut out, &footprint_core::time::format_rfc3339_ms(crate::now_ms())).expect("serialise");
            out.extend_from_slice(b",\"profile\":");
            serde_json::to_writer(&mut out, &profile).expect("serialise");
            out.extend_from_slice(b",\"identity_log\":");
            serde_json::to_writer(&mut out, &log).expect("serialise");
            out.extend_from_slice(b",\"events\":[");
            let mut first = true;
            r.for_each_profile_event(root, &mut |event| {
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out, &event).expect("serialise");
            })?;
            out.extend_from_slice(b"]}");
        }
        Ok(Some(out))
    })
    .await;
    match result {
        Ok(Some(bytes)) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            let kind = if ndjson { "application/x-ndjson" } else { "application/json" };
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
        Ok(None) => profile_not_found(),
        Err(e) => storage_error(e),
    }
}

/// `POST /admin/v1/erase` with `{"type": "…", "value": "…", "site"?: "…"}`: erases the person everywhere and
/// refuses their identifiers from now on.
pub async fn erase(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "type")]
        kind: String,
        value: String,
        site: Option<String>,
    }
    let bytes = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply::refusal(&Refusal::bad_request("body_read_failed", "the body could not be read (at most 64 KB)"), vec![]),
    };
    let body: Body = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(e) => return reply::refusal(&Refusal::bad_request("invalid_json", format!("expected {{\"type\", \"value\"}}: {e}")), vec![]),
    };
    let (id, raw) = match identifier(state, Some(&body.kind), Some(&body.value)) {
        Ok(found) => found,
        Err(refusal) => return reply::refusal(&refusal, vec![]),
    };
    let sites = match sites(state, body.site.as_deref()) {
        Ok(sites) => sites,
        Err(refusal) => return reply::refusal(&refusal, vec![]),
    };
    // One pass per stored form (current key, then keys from before a rotation); the reports add up.
    let hasher = state.clone();
    let now = crate::now_ms();
    let raw = raw.trim().to_owned();
    let result = state
        .writer
        .exclusive(move |store| {
            let mut total = ErasureReport::default();
            for identifier in id {
                let request = ErasureRequest { sites: sites.clone(), identifier, raw_values: vec![raw.clone()] };
                total.add(store.erase(&request, &|i| hasher.suppression_hash(i), now)?);
            }
            Ok::<_, StoreError>(total)
        })
        .await;
    match result {
        Ok(Ok(report)) => {
            state.suppressions.write().expect("suppressions").extend(report.suppressions.iter().cloned());
            // Counts only: the log never names the person.
            tracing::info!(profiles = report.profiles, events = report.events, identifiers = report.identifiers, quarantined = report.quarantined, "erasure completed");
            reply::json(StatusCode::OK, &json!({ "erased": report }))
        }
        Ok(Err(e)) => storage_error(e),
        Err(_) => reply::refusal(&Refusal::unavailable("shutting_down", "the collector is shutting down", 2), vec![]),
    }
}
