//! `/admin/v1/stats/*`, `/admin/v1/quarantine` and `/admin/v1/consent-ledger`: parse the query string
//! (`crate::stats`), run the query on a read-only connection off the async threads (`store::stats`), answer JSON.

use super::reply::{self, Body, Refusal};
use super::AppState;
use crate::stats::{self, Dim, ParamError, StatsQuery};
use crate::store::stats::{self as queries, StatsReader};
use crate::store::StoreError;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// `GET /admin/v1/stats/{overview|timeseries|breakdown|heatmap|events|funnel|live}`.
pub async fn stats(path: &str, query: Option<&str>, state: &AppState) -> Response<Body> {
    let report = path.trim_start_matches("/stats/").to_owned();
    let q = match stats::parse_query(query.unwrap_or(""), jiff::Timestamp::now()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    if let Some(refused) = unknown_site(&q.site, state) {
        return refused;
    }
    if report == "breakdown" && q.by.is_none() {
        return bad_param(ParamError { code: "missing_dimension", message: format!("send by=<{}>", dimension_names()) });
    }
    if report == "funnel" && !(2..=8).contains(&q.steps.len()) {
        return bad_param(ParamError { code: "invalid_funnel", message: "a funnel has 2 to 8 step=page:/path or step=event:Name parameters".into() });
    }
    if !["overview", "timeseries", "breakdown", "heatmap", "events", "funnel", "live"].contains(&report.as_str()) {
        return reply::not_found(&format!("/admin/v1/stats/{report}"));
    }
    // The stats tables follow the events in batches: bring them up to date so every acknowledged event counts.
    match state.writer.exclusive(|store| store.flush()).await {
        Ok(Ok(())) => {}
        // With several collectors the replica's stats still answer while PostgreSQL is away (they lag meanwhile).
        Ok(Err(error)) if state.shared_database.is_some() => tracing::warn!(%error, "replica not brought up to date before a stats query; answering from what it has"),
        Ok(Err(error)) => {
            tracing::error!(%error, "stats update before a query failed");
            return reply::refusal(&Refusal::unavailable("storage_unavailable", format!("the stats could not be updated: {error}"), 5), vec![]);
        }
        Err(_) => return reply::refusal(&Refusal::unavailable("shutting_down", "the collector is shutting down", 2), vec![]),
    }
    let db = state.db_path.clone();
    let now = crate::now_ms();
    run(move || {
        let conn = queries::open_reader(&db)?;
        let r = StatsReader::new(&conn, &q).parallel(&db);
        let query = describe(&q);
        Ok(match report.as_str() {
            "overview" => json!({ "query": query, "totals": r.overview()? }),
            "timeseries" => json!({ "query": query, "interval": interval_name(q.interval), "points": r.timeseries()? }),
            "breakdown" => {
                let by = q.by.expect("checked above");
                json!({ "query": query, "by": by.name(), "rows": r.breakdown(by)? })
            }
            "heatmap" => json!({ "query": query, "heatmap": r.heatmap()? }),
            "events" => {
                let events = r.events()?;
                json!({ "query": query, "visitors": events.visitors, "events": events.events })
            }
            "funnel" => json!({ "query": query, "steps": r.funnel()? }),
            _ => json!({ "site": q.site, "visitors": queries::live_visitors(&conn, &q.site, now)?, "window_minutes": stats::LIVE_WINDOW_MS / 60_000 }),
        })
    })
    .await
}

/// `POST /admin/v1/sync`: brings the derived tables (stats; with several collectors, the whole replica) up to
/// date with every acknowledged event, then answers. For scripts that read the database files right after a load.
pub async fn sync(state: &AppState) -> Response<Body> {
    match state.writer.exclusive(|store| store.flush()).await {
        Ok(Ok(())) => reply::json(StatusCode::OK, &json!({ "status": "current" })),
        Ok(Err(error)) => reply::refusal(&Refusal::unavailable("storage_unavailable", format!("could not bring the derived tables up to date: {error}"), 5), vec![]),
        Err(_) => reply::refusal(&Refusal::unavailable("shutting_down", "the collector is shutting down", 2), vec![]),
    }
}

/// `GET /admin/v1/quarantine?site=…[&from=…&to=…&tz=…][&samples=N]`: failed events by reason code.
pub async fn quarantine(query: Option<&str>, state: &AppState) -> Response<Body> {
    let query = query.unwrap_or("");
    let samples = match param(query, "samples").map(|s| s.parse::<usize>().ok().filter(|n| *n <= 50)) {
        None => 3,
        Some(Some(n)) => n,
        Some(None) => return bad_param(ParamError { code: "invalid_samples", message: "samples is 0 to 50".into() }),
    };
    let stripped: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "samples"))
        .finish();
    let q = match stats::parse_query(&stripped, jiff::Timestamp::now()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    if let Some(refused) = unknown_site(&q.site, state) {
        return refused;
    }
    state.catch_up().await;
    let db = state.db_path.clone();
    run(move || {
        let conn = queries::open_reader(&db)?;
        let found = queries::quarantine(&conn, &q.site, q.range.start_ms, q.range.end_ms, samples)?;
        Ok(json!({ "query": describe(&q), "total": found.total, "codes": found.codes }))
    })
    .await
}

/// `GET /admin/v1/consent-ledger?site=…[&profile_id=…][&cursor=…][&limit=…]`: newest first.
pub async fn consent_ledger(query: Option<&str>, state: &AppState) -> Response<Body> {
    let query = query.unwrap_or("");
    let Some(site) = param(query, "site").filter(|s| !s.is_empty()) else {
        return bad_param(ParamError { code: "missing_site", message: "send site=<site id>".into() });
    };
    if let Some(refused) = unknown_site(&site, state) {
        return refused;
    }
    let number = |name: &str| param(query, name).map(|v| v.parse::<i64>().map_err(|_| ParamError { code: "invalid_parameter", message: format!("{name} is a number") })).transpose();
    let (profile_id, cursor, limit) = match (number("profile_id"), number("cursor"), number("limit")) {
        (Ok(p), Ok(c), Ok(l)) if l.is_none_or(|l| (1..=500).contains(&l)) => (p, c, l.unwrap_or(50) as usize),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad_param(e),
        _ => return bad_param(ParamError { code: "invalid_limit", message: "limit is 1 to 500".into() }),
    };
    state.catch_up().await;
    let db = state.db_path.clone();
    run(move || {
        let conn = queries::open_reader(&db)?;
        let ledger = queries::consent_ledger(&conn, &site, profile_id, cursor, limit)?;
        Ok(json!({ "site": site, "entries": ledger.entries, "next_cursor": ledger.next_cursor }))
    })
    .await
}

async fn run(query: impl FnOnce() -> Result<Value, StoreError> + Send + 'static) -> Response<Body> {
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(body)) => reply::json(StatusCode::OK, &body),
        Ok(Err(error)) => {
            tracing::error!(%error, "stats query failed");
            reply::refusal(&Refusal::unavailable("storage_unavailable", format!("the query failed: {error}"), 5), vec![])
        }
        Err(_) => reply::refusal(&Refusal::unavailable("storage_unavailable", "the query failed", 5), vec![]),
    }
}

fn unknown_site(site: &str, state: &AppState) -> Option<Response<Body>> {
    (!state.config.sites.iter().any(|s| s.id == site))
        .then(|| reply::refusal(&Refusal::new(StatusCode::NOT_FOUND, "unknown_site", format!("no site {site:?} is configured")), vec![]))
}

fn bad_param(e: ParamError) -> Response<Body> {
    reply::refusal(&Refusal::bad_request(e.code, e.message), vec![])
}

fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn describe(q: &StatsQuery) -> Value {
    let filters: serde_json::Map<String, Value> = q.filters.iter().map(|(d, v)| (d.name().to_owned(), Value::String(v.clone()))).collect();
    json!({ "site": q.site, "from": q.range.from.to_string(), "to": q.range.to.to_string(), "tz": q.range.tz_name, "filters": filters })
}

fn interval_name(i: stats::Interval) -> &'static str {
    match i {
        stats::Interval::Hour => "hour",
        stats::Interval::Day => "day",
        stats::Interval::Week => "week",
    }
}

fn dimension_names() -> String {
    Dim::NAMED.iter().map(|d| d.name()).collect::<Vec<_>>().join("|")
}
