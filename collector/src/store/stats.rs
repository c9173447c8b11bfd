//! The stats tables (in `stats.db`) and their SQL: visits and hourly rollups maintained by the stats thread
//! ([`record`], called from `stats_thread.rs`), and the read queries behind `/admin/v1/stats/*`,
//! `/admin/v1/quarantine` and `/admin/v1/consent-ledger`. Design: ARCHITECTURE.md § Stats.

use super::static_statement::{Param, StaticStatement};
use super::{Field, StoreError, StoredEvent, Texts};
use crate::stats::sketch::{visitor_hash, Sketch};
use crate::stats::{self, Dim, StatsQuery, Step, HOUR_MS};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use footprint_core::CallKind;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The stats tables (in the main database until migration 11, in `stats.db` since).
macro_rules! stats_tables {
    () => {
        "    -- One row per visit (bots excluded): the dimensions fixed at its start, its counters and its steps.
    CREATE TABLE stats_visits (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        visitor TEXT NOT NULL,
        sdk_session TEXT,
        start INTEGER NOT NULL,
        last INTEGER NOT NULL,
        pageviews INTEGER NOT NULL DEFAULT 0,
        events INTEGER NOT NULL DEFAULT 0,
        engaged_ms INTEGER NOT NULL DEFAULT 0,
        engaged_n INTEGER NOT NULL DEFAULT 0,
        scroll_sum INTEGER NOT NULL DEFAULT 0,
        entry_page TEXT NOT NULL,
        exit_page TEXT NOT NULL,
        referrer TEXT NOT NULL,
        utm_source TEXT NOT NULL,
        utm_medium TEXT NOT NULL,
        utm_campaign TEXT NOT NULL,
        device TEXT NOT NULL,
        browser TEXT NOT NULL,
        os TEXT NOT NULL,
        country TEXT NOT NULL DEFAULT '',
        steps TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX stats_visits_site_start ON stats_visits(site, start);
    -- The visit each recently active visitor is in; pruned to the last hours, so it stays small.
    CREATE TABLE stats_open (
        site TEXT NOT NULL,
        visitor TEXT NOT NULL,
        visit_id INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (site, visitor)
    ) WITHOUT ROWID;
    -- Additive counters per UTC hour and dimension value (dim numbers: stats::Dim).
    CREATE TABLE stats_rollup (
        site TEXT NOT NULL,
        dim INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        value TEXT NOT NULL,
        pageviews INTEGER NOT NULL DEFAULT 0,
        sessions INTEGER NOT NULL DEFAULT 0,
        bounces INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        events INTEGER NOT NULL DEFAULT 0,
        engaged_ms INTEGER NOT NULL DEFAULT 0,
        engaged_n INTEGER NOT NULL DEFAULT 0,
        scroll_sum INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (site, dim, hour, value)
    ) WITHOUT ROWID;
    -- Unique-visitor sketches (stats::sketch) for the same keys.
    CREATE TABLE stats_sketch (
        site TEXT NOT NULL,
        dim INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        value TEXT NOT NULL,
        sketch BLOB NOT NULL,
        PRIMARY KEY (site, dim, hour, value)
    ) WITHOUT ROWID;
    "
    };
}

/// Migration 3 of the main database: the stats tables, and two indexes of its own tables the stats queries use.
pub const SCHEMA: &str = concat!(stats_tables!(), "
    CREATE INDEX quarantine_site_code ON quarantine(site, code, id);
    CREATE INDEX consent_ledger_site ON consent_ledger(site, id);");

/// Migration 4 of the main database: the stats follow the events instead of sharing their transaction.
/// `last_event_id` is the newest event the stats tables include (since migration 11 `links_state`: the newest event
/// whose person-index links are filed).
pub const WATERMARK_SCHEMA: &str = "
    CREATE TABLE stats_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_event_id INTEGER NOT NULL
    );
    -- Until now the stats were kept in the events' own transaction: they include every stored event.
    INSERT INTO stats_state (id, last_event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;";

/// `stats.db`, migration 1: the stats tables, and how far they follow which main database. `source` is the main
/// database's `store_info.token`: a `stats.db` beside another main database (restored from a backup, rebuilt as a
/// replica) starts over instead of counting events it never saw.
pub const STATS_DB_SCHEMA: &str = concat!(stats_tables!(), "
    CREATE INDEX stats_visits_visitor ON stats_visits(site, visitor);
    CREATE TABLE stats_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        source TEXT NOT NULL,
        last_event_id INTEGER NOT NULL
    );
    INSERT INTO stats_state (id, source, last_event_id) VALUES (1, '', 0);");

/// The stats tables, in the order a copy writes them.
pub const STATS_TABLES: &[&str] = &["stats_visits", "stats_open", "stats_rollup", "stats_sketch"];

/// `last_event_id` of a one-row watermark table: `stats_state` (stats.db: the newest event the stats tables include)
/// or `links_state` (footprint.db: the newest event whose person-index links are filed).
pub fn watermark(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    Ok(conn.prepare_cached(&format!("SELECT last_event_id FROM {table} WHERE id = 1"))?.query_row([], |r| r.get(0))?)
}

/// Records in `table` (see [`watermark`]) that everything up to `last_event_id` is done, in the caller's transaction.
pub fn set_watermark(conn: &Connection, table: &str, last_event_id: i64) -> Result<(), StoreError> {
    conn.prepare_cached(&format!("UPDATE {table} SET last_event_id = ?1 WHERE id = 1"))?.execute([last_event_id])?;
    Ok(())
}

/// What [`record`] reads of a committed event: its texts, moved out of the `StoredEvent` in one allocation (see
/// `store/texts.rs`; thousands of events wait here for up to 250 ms), and the few numbers the stats need.
#[derive(Debug, Clone, Default)]
pub struct StatsEvent {
    pub site: std::sync::Arc<str>,
    pub kind: Option<CallKind>,
    pub flags: i64,
    pub timestamp: i64,
    pub device: Option<&'static str>,
    /// The event's texts; the visitor key is always there for an event with an anonymous or user ID.
    texts: Texts,
}

impl StatsEvent {
    /// Takes what the stats read from a committed event.
    pub fn of(e: StoredEvent) -> StatsEvent {
        let mut texts = e.texts;
        if texts.get(Field::Visitor).is_none() {
            // A row stored without its visitor key (as some tests make them): the same key ingest gives.
            if let Some(key) = super::visitor_key(texts.get(Field::AnonymousId), texts.get(Field::UserId)) {
                texts.set(Field::Visitor, Some(&key));
            }
        }
        StatsEvent { site: e.site, kind: e.kind, flags: e.flags, timestamp: e.timestamp, device: e.device, texts }
    }

    fn text(&self, field: Field) -> Option<&str> {
        self.texts.get(field)
    }
}

/// The stored events after `after_id` (at most `limit`, in id order) as [`record`] needs them, and their
/// (profile, event id) links: how the derived tables catch up with events committed before a crash, or after a
/// failed flush. Returns them with the last id read.
pub fn events_after(conn: &Connection, after_id: i64, limit: usize) -> Result<(Vec<StatsEvent>, Vec<(i64, i64)>, Vec<UnfiledLink>, i64), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, site, type, name, visitor, anonymous_id, user_id, session_id, timestamp, flags, path, url, referrer_host,
         utm_source, utm_medium, utm_campaign, device, browser, os, CASE WHEN name = ?3 THEN properties END, profile_id
         FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![after_id, limit as i64, stats::ENGAGEMENT_EVENT])?;
    let mut events = Vec::new();
    let mut links = Vec::new();
    let mut unfiled = Vec::new();
    let mut last = after_id;
    let mut sites: HashMap<String, std::sync::Arc<str>> = HashMap::new();
    while let Some(r) = rows.next()? {
        last = r.get(0)?;
        let profile = r.get::<_, Option<i64>>(20)?;
        if let Some(profile) = profile {
            links.push((profile, last));
        }
        let site: String = r.get(1)?;
        let site = sites.entry(site.clone()).or_insert_with(|| site.into()).clone();
        let text = |i: usize| super::RowColumns::text(r, i);
        let mut texts = [None; Field::COUNT];
        for (field, column) in [
            (Field::Name, 3),
            (Field::Visitor, 4),
            (Field::AnonymousId, 5),
            (Field::UserId, 6),
            (Field::SessionId, 7),
            (Field::Path, 10),
            (Field::Url, 11),
            (Field::ReferrerHost, 12),
            (Field::UtmSource, 13),
            (Field::UtmMedium, 14),
            (Field::UtmCampaign, 15),
            (Field::Browser, 17),
            (Field::Os, 18),
            (Field::Properties, 19),
        ] {
            texts[field as usize] = text(column)?;
        }
        let event = StoredEvent {
            site,
            kind: CallKind::parse(r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?),
            timestamp: r.get(8)?,
            flags: r.get(9)?,
            device: text(16)?.map(crate::enrich::device_name),
            texts: Texts::pack(texts),
            ..StoredEvent::default()
        };
        if profile.is_none() {
            unfiled.extend(unfiled_links(&event, last));
        }
        events.push(StatsEvent::of(event));
    }
    Ok((events, links, unfiled, last))
}

/// An event filed under no profile, by one of its raw IDs: (site, `anonymous_id` | `user_id`, value, event id).
pub type UnfiledLink = (std::sync::Arc<str>, &'static str, String, i64);

/// The `unfiled_events` entries of an event stored under no profile.
pub fn unfiled_links(e: &StoredEvent, id: i64) -> impl Iterator<Item = UnfiledLink> + '_ {
    [("anonymous_id", Field::AnonymousId), ("user_id", Field::UserId)].into_iter().filter_map(move |(kind, field)| Some((e.site.clone(), kind, e.text(field)?.to_owned(), id)))
}

/// Files unfiled events by their raw IDs in `unfiled_events`, in key order (see [`link_profile_events`]).
pub fn link_unfiled_events(conn: &Connection, links: &mut [UnfiledLink]) -> Result<(), StoreError> {
    // The table's key order: (bucket, site, kind, value, event).
    fn key((site, kind, value, event): &UnfiledLink) -> (i64, &str, &str, &str, i64) {
        (event >> super::sqlite::LINK_BUCKET_BITS, site, kind, value, *event)
    }
    links.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    let mut insert = conn.prepare_cached(concat!(
        "INSERT OR IGNORE INTO unfiled_events (bucket, site, kind, value, event_id) VALUES (?4 >> ",
        super::sqlite::link_bucket_bits!(),
        ", ?1, ?2, ?3, ?4)"
    ))?;
    for (site, kind, value, event) in links.iter() {
        insert.execute(params![&**site, kind, value, event])?;
    }
    Ok(())
}

/// Files (profile, event id) links in `profile_events`, the index of a person's events. Written with the stats, in
/// key order, for thousands of events at once: an index on `events.profile_id` took a random page write per event
/// in every commit (nearly all of what identity resolution cost at ingest). The key starts with the event id's
/// bucket, so a batch's links land in the newest bucket's pages.
pub fn link_profile_events(conn: &Connection, links: &mut [(i64, i64)]) -> Result<(), StoreError> {
    // The table's key order: (bucket, profile, event); a batch's events nearly always share one bucket.
    links.sort_unstable_by_key(|&(profile, event)| (event >> super::sqlite::LINK_BUCKET_BITS, profile, event));
    // LINKS_PER_INSERT links per statement: one statement run per link cost as much again as the insert itself.
    let mut chunks = links.chunks_exact(LINKS_PER_INSERT);
    if chunks.len() > 0 {
        let mut insert = conn.prepare_cached(&INSERT_LINKS)?;
        for chunk in &mut chunks {
            insert.execute(rusqlite::params_from_iter(chunk.iter().flat_map(|(profile, event)| [profile, event])))?;
        }
    }
    let mut insert = conn.prepare_cached(concat!("INSERT OR IGNORE INTO profile_events (bucket, profile_id, event_id) VALUES (?2 >> ", super::sqlite::link_bucket_bits!(), ", ?1, ?2)"))?;
    for (profile, event) in chunks.remainder() {
        insert.execute([profile, event])?;
    }
    Ok(())
}

/// Links per statement in [`link_profile_events`] (two parameters each, well under SQLite's limit).
const LINKS_PER_INSERT: usize = 64;
static INSERT_LINKS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let link = concat!("(?{e} >> ", super::sqlite::link_bucket_bits!(), ", ?{p}, ?{e})");
    let values: Vec<String> = (0..LINKS_PER_INSERT).map(|i| link.replace("{p}", &(2 * i + 1).to_string()).replace("{e}", &(2 * i + 2).to_string())).collect();
    format!("INSERT OR IGNORE INTO profile_events (bucket, profile_id, event_id) VALUES {}", values.join(", "))
});

/// The text columns of [`VISIT_COLUMNS`] after the visitor, which a scan may leave unread.
const VISIT_TEXT_COLUMNS: &[&str] = &["entry_page", "exit_page", "referrer", "utm_source", "utm_medium", "utm_campaign", "device", "browser", "os", "country", "steps"];

const VISIT_COLUMNS: &str = "id, visitor, sdk_session, start, last, pageviews, events, engaged_ms, engaged_n, scroll_sum, entry_page, exit_page,
    referrer, utm_source, utm_medium, utm_campaign, device, browser, os, country, steps";

/// How often (in inserted event ids) visits idle for longer than [`OPEN_KEEP_MS`] leave `stats_open`.
const PRUNE_EVERY: i64 = 4096;
const OPEN_KEEP_MS: i64 = 3 * HOUR_MS;
/// `stats_open.last` is written when the row comes to point at another visit, and when the visit it points to has
/// gone on this long past it: it lags the visit's own `last` by less than this. Written on every update of the
/// visit, it was one statement per visitor and stats update, half of what continuing visits cost (~7 % of batched
/// ingest instructions). The lag moves the edges of what reads it (the live count's window, the pruning of idle
/// visitors after [`OPEN_KEEP_MS`]) by under a minute.
const OPEN_LAST_LAG_MS: i64 = 60_000;

/// A stored event as the stats see it: borrowed from the rows the commit inserted.
struct Recent<'a> {
    site: &'a str,
    pageview: bool,
    name: Option<&'a str>,
    /// `COALESCE(visitor, 'a:' || anonymous_id, 'u:' || user_id)`.
    visitor: &'a str,
    sdk_session: Option<&'a str>,
    ts: i64,
    path: &'a str,
    url: &'a str,
    referrer: &'a str,
    utm: [&'a str; 3],
    device: &'a str,
    browser: &'a str,
    os: &'a str,
    properties: Option<&'a str>,
}

impl<'a> Recent<'a> {
    /// The stats' view of a stored row; `None` for rows the stats leave out (bots, `identify`/`alias`/`group`,
    /// events without a visitor).
    fn of(e: &'a StatsEvent) -> Option<Recent<'a>> {
        let pageview = match e.kind? {
            CallKind::Page | CallKind::Screen => true,
            CallKind::Track => false,
            _ => return None,
        };
        if e.flags & 2 != 0 {
            return None;
        }
        let visitor = e.text(Field::Visitor)?;
        let text = |which| e.text(which).unwrap_or("");
        let name = e.text(Field::Name);
        Some(Recent {
            site: &e.site,
            pageview,
            name,
            visitor,
            sdk_session: e.text(Field::SessionId),
            ts: e.timestamp,
            path: text(Field::Path),
            url: text(Field::Url),
            referrer: text(Field::ReferrerHost),
            utm: [text(Field::UtmSource), text(Field::UtmMedium), text(Field::UtmCampaign)],
            device: e.device.unwrap_or(""),
            browser: text(Field::Browser),
            os: text(Field::Os),
            // Read for engagement events only (their time and scroll depth).
            properties: e.text(Field::Properties).filter(|_| name == Some(stats::ENGAGEMENT_EVENT)),
        })
    }
}

/// A visit row.
#[derive(Debug, Clone, Default)]
struct Visit {
    id: Option<i64>,
    visitor: String,
    sdk_session: Option<String>,
    start: i64,
    last: i64,
    pageviews: i64,
    events: i64,
    engaged_ms: i64,
    engaged_n: i64,
    scroll_sum: i64,
    /// entry page, referrer, utm source/medium/campaign, device, browser, os (the order of `Dim::OF_SESSION`).
    dims: [String; 8],
    exit_page: String,
    country: String,
    steps: String,
}

impl Visit {
    /// A visit from a row of [`VISIT_COLUMNS`] (in that order), every column read.
    fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Visit> {
        let mut visit = Visit::default();
        visit.fill_from_row(row, VISIT_TEXT_COLUMNS)?;
        Ok(visit)
    }

    /// A row of [`VISIT_COLUMNS`] into an existing visit, reusing its strings' memory (a scan reads a million rows).
    /// Of the text columns after the visitor only those in `keep` are read (the scan selects the others as '').
    fn fill_from_row(&mut self, row: &rusqlite::Row, keep: &[&str]) -> rusqlite::Result<()> {
        fn text(into: &mut String, row: &rusqlite::Row, i: usize) -> rusqlite::Result<()> {
            into.clear();
            into.push_str(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?);
            Ok(())
        }
        self.id = Some(row.get(0)?);
        text(&mut self.visitor, row, 1)?;
        self.sdk_session = row.get(2)?;
        self.start = row.get(3)?;
        self.last = row.get(4)?;
        self.pageviews = row.get(5)?;
        self.events = row.get(6)?;
        self.engaged_ms = row.get(7)?;
        self.engaged_n = row.get(8)?;
        self.scroll_sum = row.get(9)?;
        let kept = |name: &str| keep.contains(&name);
        for (k, (column, name)) in [(10, "entry_page"), (12, "referrer"), (13, "utm_source"), (14, "utm_medium"), (15, "utm_campaign"), (16, "device"), (17, "browser"), (18, "os")].into_iter().enumerate() {
            if kept(name) {
                text(&mut self.dims[k], row, column)?;
            }
        }
        if kept("exit_page") {
            text(&mut self.exit_page, row, 11)?;
        }
        if kept("country") {
            text(&mut self.country, row, 19)?;
        }
        if kept("steps") {
            text(&mut self.steps, row, 20)?;
        }
        Ok(())
    }

    fn dim(&self, dim: Dim) -> &str {
        match dim {
            Dim::ExitPage => &self.exit_page,
            Dim::Country => &self.country,
            _ => Dim::OF_SESSION.iter().position(|d| *d == dim).map_or("", |i| &self.dims[i]),
        }
    }

    fn bounces(&self) -> i64 {
        i64::from(stats::is_bounce(self.pageviews))
    }

    fn duration(&self) -> i64 {
        self.last - self.start
    }
}

/// Additive counters of a rollup row (or of any set of visits).
#[derive(Debug, Clone, Default)]
struct Counters {
    pageviews: i64,
    sessions: i64,
    bounces: i64,
    duration_ms: i64,
    events: i64,
    engaged_ms: i64,
    engaged_n: i64,
    scroll_sum: i64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.pageviews += o.pageviews;
        self.sessions += o.sessions;
        self.bounces += o.bounces;
        self.duration_ms += o.duration_ms;
        self.events += o.events;
        self.engaged_ms += o.engaged_ms;
        self.engaged_n += o.engaged_n;
        self.scroll_sum += o.scroll_sum;
    }

    fn is_zero(&self) -> bool {
        [self.pageviews, self.sessions, self.bounces, self.duration_ms, self.events, self.engaged_ms, self.engaged_n, self.scroll_sum].iter().all(|v| *v == 0)
    }
}

/// A `stats_open` row and the visit row it points to (`None` if that row is gone).
#[derive(Debug, Clone)]
struct Open {
    /// As stored: at most [`OPEN_LAST_LAG_MS`] behind the visit's `last`.
    last: i64,
    visit_id: i64,
    visit: Option<Visit>,
}

/// The stats thread's copy of `stats_open` (and of the visits it points to), so continuing a visit reads no SQL.
/// The stats thread is the only one who changes these tables (but for erasure, which runs while it waits); it
/// clears the cache whenever a transaction fails and after an erasure (which deletes rows). `None` caches "no row".
#[derive(Default)]
pub struct StatsCache {
    /// visitor → [(site, its `stats_open` row)]: keyed by the visitor alone so a lookup borrows it.
    open: super::FastMap<Box<str>, Vec<(Box<str>, Option<Open>)>>,
    len: usize,
}

impl StatsCache {
    /// Visitors kept before the cache starts over (a visit with its steps is about 1 KB).
    const MAX_VISITORS: usize = 200_000;

    pub fn clear(&mut self) {
        self.open.clear();
        self.len = 0;
    }

    fn get_mut(&mut self, site: &str, visitor: &str) -> Option<&mut Option<Open>> {
        self.open.get_mut(visitor)?.iter_mut().find(|(s, _)| &**s == site).map(|(_, o)| o)
    }

    fn insert(&mut self, site: &str, visitor: &str, open: Option<Open>) {
        if self.len >= Self::MAX_VISITORS {
            self.clear();
        }
        self.len += 1;
        self.open.entry(visitor.into()).or_default().push((site.into(), open));
    }

    /// Mirrors `DELETE FROM stats_open WHERE last < cutoff`.
    fn prune(&mut self, cutoff: i64) {
        for sites in self.open.values_mut() {
            for (_, open) in sites.iter_mut() {
                if open.as_ref().is_some_and(|o| o.last < cutoff) {
                    *open = None;
                }
            }
        }
    }
}

/// The changes one commit makes to one (site, dimension, hour, value) rollup row and its sketch.
#[derive(Default)]
struct Delta {
    counters: Counters,
    visitors: Vec<u32>,
}

/// Every rollup change of a commit, summed in memory so each row is written once per commit:
/// (site, dimension, hour) → value → change (two levels, so a lookup borrows the value).
#[derive(Default)]
struct Deltas<'a> {
    rows: super::FastMap<(&'a str, Dim, i64), hashbrown::HashMap<String, Delta, foldhash::fast::RandomState>>,
}

impl<'a> Deltas<'a> {
    fn at(&mut self, site: &'a str, dim: Dim, hour: i64, value: &str) -> &mut Delta {
        // One hash and one probe; the key is copied only when the value is new (std's entry() would copy it always).
        self.rows.entry((site, dim, hour)).or_default().entry_ref(value).or_default()
    }
    fn counters(&mut self, site: &'a str, dim: Dim, hour: i64, value: &str) -> &mut Counters {
        &mut self.at(site, dim, hour, value).counters
    }
    fn visitor(&mut self, site: &'a str, dim: Dim, hour: i64, value: &str, hash: u32) {
        self.at(site, dim, hour, value).visitors.push(hash);
    }
}

#[derive(serde::Deserialize)]
struct Engagement {
    #[serde(rename = "engagedMs")]
    engaged_ms: Option<f64>,
    #[serde(rename = "scrollDepth")]
    scroll_depth: Option<f64>,
}

/// What a visit's rollup change is computed from: the visit as it was before this commit.
struct Before {
    pageviews: i64,
    bounces: i64,
    duration_ms: i64,
    events: i64,
    engaged_ms: i64,
    engaged_n: i64,
    scroll_sum: i64,
    exit_page: String,
}

impl Before {
    fn of(v: &Visit) -> Before {
        Before {
            pageviews: v.pageviews,
            bounces: v.bounces(),
            duration_ms: v.duration(),
            events: v.events,
            engaged_ms: v.engaged_ms,
            engaged_n: v.engaged_n,
            scroll_sum: v.scroll_sum,
            exit_page: v.exit_page.clone(),
        }
    }
}

/// A visit this commit touched: how it was (`None`: new), how it is, and whether its row needs writing.
struct Touched {
    before: Option<Before>,
    visit: Visit,
    changed: bool,
}

const SELECT_OPEN: &str = "SELECT v.id, v.visitor, v.sdk_session, v.start, v.last, v.pageviews, v.events, v.engaged_ms, v.engaged_n,
    v.scroll_sum, v.entry_page, v.exit_page, v.referrer, v.utm_source, v.utm_medium, v.utm_campaign, v.device, v.browser, v.os,
    v.country, v.steps, o.last, o.visit_id FROM stats_open o LEFT JOIN stats_visits v ON v.id = o.visit_id WHERE o.site = ?1 AND o.visitor = ?2";
const UPDATE_VISIT: &str = "UPDATE stats_visits SET sdk_session = ?2, last = ?3, pageviews = ?4, events = ?5, engaged_ms = ?6, engaged_n = ?7,
    scroll_sum = ?8, exit_page = ?9, steps = ?10 WHERE id = ?1";
const INSERT_VISIT: &str = "INSERT INTO stats_visits (site, visitor, sdk_session, start, last, pageviews, events, engaged_ms, engaged_n,
    scroll_sum, entry_page, exit_page, referrer, utm_source, utm_medium, utm_campaign, device, browser, os, steps)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";
/// Run only when the row is to point to another visit or lags by [`OPEN_LAST_LAG_MS`] (`record_visitor` decides on
/// its cached copy; the reference implementation in the tests puts that into this condition).
const UPSERT_OPEN: &str = "INSERT INTO stats_open (site, visitor, visit_id, last) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (site, visitor) DO UPDATE SET visit_id = excluded.visit_id, last = excluded.last WHERE excluded.last >= stats_open.last";

/// Updates visits and rollups for `events`, stored events in id order whose last id is `max_id`, not yet in the
/// stats. The store calls it in the transaction that also moves the watermark ([`set_watermark`]). Reads no SQL for
/// visitors in `cache`; writes each touched visit, `stats_open` row, rollup row and sketch once.
pub fn record(conn: &Connection, cache: &mut StatsCache, events: &[StatsEvent], max_id: i64) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let first_id = max_id - events.len() as i64;
    let recent = by_visitor_and_time(events.iter().filter_map(Recent::of).collect());
    let mut deltas = Deltas::default();
    let mut statements = VisitStatements {
        select_open: conn.prepare_cached(SELECT_OPEN)?,
        // Prepared for each update (a few a second) so that it is dropped here, before the connection.
        update_visit: StaticStatement::prepare(conn, UPDATE_VISIT)?,
        insert_visit: conn.prepare_cached(INSERT_VISIT)?,
        upsert_open: conn.prepare_cached(UPSERT_OPEN)?,
    };
    let mut i = 0;
    while i < recent.len() {
        let j = i + recent[i..].iter().take_while(|e| e.site == recent[i].site && e.visitor == recent[i].visitor).count();
        record_visitor(conn, &mut statements, cache, &recent[i..j], &mut deltas)?;
        i = j;
    }
    write_deltas(conn, deltas)?;
    if max_id / PRUNE_EVERY != first_id / PRUNE_EVERY {
        if let Some(newest) = recent.iter().map(|e| e.ts).max() {
            conn.prepare_cached("DELETE FROM stats_open WHERE last < ?1")?.execute([newest - OPEN_KEEP_MS])?;
            cache.prune(newest - OPEN_KEEP_MS);
        }
    }
    Ok(())
}

/// `recent` ordered by site, visitor and time; events of one visitor at the same time stay in insertion order. The
/// order is found on compact keys and applied once: sorting the ~250-byte rows themselves moved each of them many
/// times, and comparing visitors by their text read two strings spread over the heap in nearly every comparison
/// (~2 % of batched ingest CPU). A key holds the visitor's first 16 bytes as a big-endian number, which orders
/// like the text; only visitors that share those bytes are compared by text.
fn by_visitor_and_time(recent: Vec<Recent<'_>>) -> Vec<Recent<'_>> {
    fn prefix(visitor: &str) -> u128 {
        let mut bytes = [0u8; 16];
        let n = visitor.len().min(16);
        bytes[..n].copy_from_slice(&visitor.as_bytes()[..n]);
        u128::from_be_bytes(bytes)
    }
    let mut order: Vec<(&str, u128, i64, usize)> = recent.iter().enumerate().map(|(i, e)| (e.site, prefix(e.visitor), e.ts, i)).collect();
    order.sort_unstable_by(|&(site_a, prefix_a, ts_a, a), &(site_b, prefix_b, ts_b, b)| {
        site_a.cmp(site_b).then(prefix_a.cmp(&prefix_b)).then_with(|| recent[a].visitor.cmp(recent[b].visitor)).then(ts_a.cmp(&ts_b)).then(a.cmp(&b))
    });
    let mut slots: Vec<Option<Recent>> = recent.into_iter().map(Some).collect();
    order.into_iter().map(|(.., i)| slots[i].take().expect("each index once")).collect()
}

/// The statements [`record_visitor`] runs, taken from the statement cache once per stats update rather than once
/// per visitor (a cache lookup hashes the whole SQL text). The visit UPDATE, run for most events, binds its texts
/// (the step list: up to ~1.5 kB) without copying them.
struct VisitStatements<'c> {
    select_open: rusqlite::CachedStatement<'c>,
    update_visit: StaticStatement,
    insert_visit: rusqlite::CachedStatement<'c>,
    upsert_open: rusqlite::CachedStatement<'c>,
}

/// One visitor's new events, in time order: continue or open visits, and collect the rollup changes.
fn record_visitor<'a>(conn: &Connection, statements: &mut VisitStatements<'_>, cache: &mut StatsCache, events: &[Recent<'a>], deltas: &mut Deltas<'a>) -> Result<(), StoreError> {
    let (site, visitor) = (events[0].site, &*events[0].visitor);
    let hash = visitor_hash(visitor);
    if cache.get_mut(site, visitor).is_none() {
        let open = statements
            .select_open
            .query_row(params![site, visitor], |r| {
                let visit = if r.get::<_, Option<i64>>(0)?.is_some() { Some(Visit::from_row(r)?) } else { None };
                Ok(Open { last: r.get(21)?, visit_id: r.get(22)?, visit })
            })
            .optional()?;
        cache.insert(site, visitor, open);
    }
    let entry = cache.get_mut(site, visitor).expect("cached above");
    let mut touched: Vec<Touched> = Vec::new();
    let mut current: Option<Touched> =
        entry.as_mut().and_then(|o| o.visit.take()).map(|v| Touched { before: Some(Before::of(&v)), visit: v, changed: false });
    for e in events {
        let hour = e.ts.div_euclid(HOUR_MS);
        let custom = !e.pageview && e.name.is_some_and(stats::is_custom_event);
        let engagement = (!e.pageview && e.name == Some(stats::ENGAGEMENT_EVENT)).then(|| parse_engagement(e.properties)).flatten();
        // Event-time rollups: all visitors, page views per page, custom events per name, engagement per page.
        deltas.visitor(site, Dim::Total, hour, "", hash);
        if e.pageview {
            deltas.counters(site, Dim::Total, hour, "").pageviews += 1;
            let d = deltas.at(site, Dim::Page, hour, e.path);
            d.counters.pageviews += 1;
            d.visitors.push(hash);
        }
        if custom {
            let name = e.name.unwrap_or_default();
            deltas.counters(site, Dim::Total, hour, "").events += 1;
            let d = deltas.at(site, Dim::Event, hour, name);
            d.counters.events += 1;
            d.visitors.push(hash);
        }
        if let Some((ms, scroll)) = engagement {
            for (dim, value) in [(Dim::Total, ""), (Dim::Page, e.path)] {
                let c = deltas.counters(site, dim, hour, value);
                c.engaged_ms += ms;
                c.engaged_n += 1;
                c.scroll_sum += scroll;
            }
        }
        // The visit: continue the open one, or start one with a page view; other events outside a visit stay out.
        let continuing = current.as_ref().is_some_and(|t| continues(&t.visit, e.ts, e.sdk_session));
        if !continuing {
            if !e.pageview {
                continue;
            }
            if let Some(done) = current.take() {
                touched.push(done);
            }
            let referrer = if !e.referrer.is_empty() && host_of(e.url).eq_ignore_ascii_case(e.referrer) { "" } else { e.referrer };
            let visit = Visit {
                visitor: visitor.to_owned(),
                sdk_session: e.sdk_session.map(str::to_owned),
                start: e.ts,
                last: e.ts,
                dims: [e.path, referrer, e.utm[0], e.utm[1], e.utm[2], e.device, e.browser, e.os].map(str::to_owned),
                exit_page: e.path.to_owned(),
                ..Visit::default()
            };
            for (k, dim) in Dim::OF_SESSION.iter().enumerate() {
                deltas.visitor(site, *dim, hour, &visit.dims[k], hash);
            }
            current = Some(Touched { before: None, visit, changed: true });
        }
        let t = current.as_mut().expect("a visit is open here");
        let v = &mut t.visit;
        if e.ts > v.last {
            v.last = e.ts;
            t.changed = true;
        }
        if v.sdk_session.is_none() && e.sdk_session.is_some() {
            v.sdk_session = e.sdk_session.map(str::to_owned);
            t.changed = true;
        }
        if e.pageview {
            v.pageviews += 1;
            if v.exit_page != e.path {
                e.path.clone_into(&mut v.exit_page);
            }
            push_step(&mut v.steps, "p:", e.path);
            t.changed = true;
        } else if custom {
            v.events += 1;
            push_step(&mut v.steps, "e:", e.name.unwrap_or_default());
            t.changed = true;
        }
        if let Some((ms, scroll)) = engagement {
            v.engaged_ms += ms;
            v.engaged_n += 1;
            v.scroll_sum += scroll;
            t.changed = true;
        }
    }
    touched.extend(current);
    for Touched { before, mut visit, changed } in touched {
        visit_deltas(site, before.as_ref(), &visit, deltas);
        if changed {
            match visit.id {
                Some(id) => {
                    let v = &visit;
                    let int = Param::Int;
                    let sdk_session = (&v.sdk_session).into();
                    let (exit_page, steps) = (Param::Text(&v.exit_page), Param::Text(&v.steps));
                    statements.update_visit.execute(&[int(id), sdk_session, int(v.last), int(v.pageviews), int(v.events), int(v.engaged_ms), int(v.engaged_n), int(v.scroll_sum), exit_page, steps])?;
                }
                None => {
                    let v = &visit;
                    statements.insert_visit.execute(params![
                        site, v.visitor, v.sdk_session, v.start, v.last, v.pageviews, v.events, v.engaged_ms, v.engaged_n, v.scroll_sum,
                        v.dims[0], v.exit_page, v.dims[1], v.dims[2], v.dims[3], v.dims[4], v.dims[5], v.dims[6], v.dims[7], v.steps
                    ])?;
                    visit.id = Some(conn.last_insert_rowid());
                }
            }
        }
        // `stats_open` and its cached copy: the newest visit wins (UPSERT_OPEN's condition), and the row is written
        // only when it is to point to another visit or lags by OPEN_LAST_LAG_MS.
        let entry = cache.get_mut(site, visitor).expect("cached above");
        let takes_over = entry.as_ref().is_none_or(|o| visit.last >= o.last);
        if takes_over {
            let visit_id = visit.id.expect("stored above");
            let last = match entry {
                Some(o) if o.visit_id == visit_id && visit.last - o.last < OPEN_LAST_LAG_MS => o.last,
                _ => {
                    statements.upsert_open.execute(params![site, visitor, visit_id, visit.last])?;
                    visit.last
                }
            };
            *entry = Some(Open { last, visit_id, visit: Some(visit) });
        } else if let Some(o) = entry.as_mut() {
            // Not the newest: the row still points where it did (possibly at this very visit, now updated).
            if visit.id == Some(o.visit_id) {
                o.visit = Some(visit);
            }
        }
    }
    Ok(())
}

fn continues(v: &Visit, ts: i64, sdk_session: Option<&str>) -> bool {
    match (v.sdk_session.as_deref(), sdk_session) {
        (Some(a), Some(b)) => a == b,
        _ => stats::continues(&stats::OpenVisit { start: v.start, last: v.last, sdk_session: None }, ts, None),
    }
}

/// [`stats::push_visit_step`] of `prefix` + `value`, without building the token when the list is full.
fn push_step(steps: &mut String, prefix: &str, value: &str) {
    let mut token = String::with_capacity(prefix.len() + value.len());
    token.push_str(prefix);
    token.push_str(value);
    stats::push_visit_step(steps, &token);
}

/// The rollup change a visit's update makes, counted in the hour it started.
fn visit_deltas<'a>(site: &'a str, before: Option<&Before>, after: &Visit, deltas: &mut Deltas<'a>) {
    let hour = after.start.div_euclid(HOUR_MS);
    let diff = Counters {
        pageviews: after.pageviews - before.map_or(0, |b| b.pageviews),
        sessions: i64::from(before.is_none()),
        bounces: after.bounces() - before.map_or(0, |b| b.bounces),
        duration_ms: after.duration() - before.map_or(0, |b| b.duration_ms),
        events: after.events - before.map_or(0, |b| b.events),
        engaged_ms: after.engaged_ms - before.map_or(0, |b| b.engaged_ms),
        engaged_n: after.engaged_n - before.map_or(0, |b| b.engaged_n),
        scroll_sum: after.scroll_sum - before.map_or(0, |b| b.scroll_sum),
    };
    if !diff.is_zero() {
        // The site's total counts page views, events and engagement when they happen; visits when they start.
        let total = Counters { sessions: diff.sessions, bounces: diff.bounces, duration_ms: diff.duration_ms, ..Counters::default() };
        deltas.counters(site, Dim::Total, hour, "").add(&total);
        for (k, dim) in Dim::OF_SESSION.iter().enumerate() {
            deltas.counters(site, *dim, hour, &after.dims[k]).add(&diff);
        }
    }
    let old_exit = before.map(|b| b.exit_page.as_str());
    if old_exit != Some(after.exit_page.as_str()) {
        if let Some(b) = before {
            let c = deltas.counters(site, Dim::ExitPage, hour, &b.exit_page);
            c.sessions -= 1;
            c.pageviews -= b.pageviews;
        }
        let c = deltas.counters(site, Dim::ExitPage, hour, &after.exit_page);
        c.sessions += 1;
        c.pageviews += after.pageviews;
    } else {
        deltas.counters(site, Dim::ExitPage, hour, &after.exit_page).pageviews += diff.pageviews;
    }
}

fn parse_engagement(properties: Option<&str>) -> Option<(i64, i64)> {
    let e: Engagement = serde_json::from_str(properties?).ok()?;
    let ms = e.engaged_ms.filter(|v| v.is_finite() && *v >= 0.0)?.min(24.0 * 3_600_000.0) as i64;
    let scroll = e.scroll_depth.filter(|v| v.is_finite()).unwrap_or(0.0).clamp(0.0, 100.0) as i64;
    Some((ms, scroll))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    host.rsplit_once('@').map_or(host, |(_, h)| h).split(':').next().unwrap_or("")
}

fn write_deltas(conn: &Connection, deltas: Deltas) -> Result<(), StoreError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO stats_rollup (site, dim, hour, value, pageviews, sessions, bounces, duration_ms, events, engaged_ms, engaged_n, scroll_sum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (site, dim, hour, value) DO UPDATE SET pageviews = pageviews + excluded.pageviews,
         sessions = sessions + excluded.sessions, bounces = bounces + excluded.bounces, duration_ms = duration_ms + excluded.duration_ms,
         events = events + excluded.events, engaged_ms = engaged_ms + excluded.engaged_ms, engaged_n = engaged_n + excluded.engaged_n,
         scroll_sum = scroll_sum + excluded.scroll_sum",
    )?;
    let mut read = conn.prepare_cached("SELECT sketch FROM stats_sketch WHERE site = ?1 AND dim = ?2 AND hour = ?3 AND value = ?4")?;
    let mut write = conn.prepare_cached("INSERT OR REPLACE INTO stats_sketch (site, dim, hour, value, sketch) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for ((site, dim, hour), values) in deltas.rows {
        for (value, Delta { counters: c, visitors }) in values {
            if !c.is_zero() {
                upsert.execute(params![site, dim as i64, hour, value, c.pageviews, c.sessions, c.bounces, c.duration_ms, c.events, c.engaged_ms, c.engaged_n, c.scroll_sum])?;
            }
            if visitors.is_empty() {
                continue;
            }
            let key = params![site, dim as i64, hour, value];
            let mut sketch = read.query_row(key, |r| Ok(Sketch::from_bytes(r.get_ref(0)?.as_blob()?))).optional()?.unwrap_or_default();
            let before = sketch.clone();
            visitors.into_iter().for_each(|h| sketch.insert(h));
            if sketch != before {
                write.execute(params![site, dim as i64, hour, value, sketch.to_bytes()])?;
            }
        }
    }
    Ok(())
}

// ----- reading ---------------------------------------------------------------------------------------------------

/// A read-only connection for stats queries: the main database at `path` (quarantine, consent ledger) with
/// stats.db beside it attached (the stats tables).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.pragma_update(None, "busy_timeout", 5_000)?;
    conn.execute("ATTACH DATABASE ?1 AS stats", [super::stats_thread::stats_path(path).to_string_lossy()])?;
    // Scans of the visits read straight from the mapped file instead of copying pages (about 10 % faster).
    conn.execute_batch("PRAGMA stats.cache_size = -65536; PRAGMA stats.mmap_size = 1073741824;")?;
    Ok(conn)
}

/// The headline numbers of a set of visits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub visitors: u64,
    pub pageviews: i64,
    pub sessions: i64,
    pub bounce_rate: f64,
    /// Average visit duration.
    pub visit_duration_ms: i64,
    pub views_per_visit: f64,
    /// Custom events (not the SDK's engagement and consent events).
    pub events: i64,
    /// Average engaged time per page view that reported it.
    pub engaged_ms: i64,
    /// Average scroll depth in percent.
    pub scroll_depth: f64,
}

#[derive(Default, Clone)]
struct Acc {
    c: Counters,
    visitors: Sketch,
}

impl Acc {
    fn totals(&self) -> Totals {
        let c = &self.c;
        let per = |a: i64, b: i64| if b > 0 { (a as f64 / b as f64).round() as i64 } else { 0 };
        Totals {
            visitors: self.visitors.count(),
            pageviews: c.pageviews,
            sessions: c.sessions,
            bounce_rate: stats::ratio(c.bounces as f64, c.sessions as f64),
            visit_duration_ms: per(c.duration_ms, c.sessions),
            views_per_visit: (stats::ratio(c.pageviews as f64, c.sessions as f64) * 100.0).round() / 100.0,
            events: c.events,
            engaged_ms: per(c.engaged_ms, c.engaged_n),
            scroll_depth: (stats::ratio(c.scroll_sum as f64, c.engaged_n as f64) * 100.0).round() / 100.0,
        }
    }

    fn merge(&mut self, other: &Acc) {
        self.c.add(&other.c);
        self.visitors.merge(&other.visitors);
    }

    fn add_visit(&mut self, v: &Visit) {
        self.c.add(&Counters {
            pageviews: v.pageviews,
            sessions: 1,
            bounces: v.bounces(),
            duration_ms: v.duration(),
            events: v.events,
            engaged_ms: v.engaged_ms,
            engaged_n: v.engaged_n,
            scroll_sum: v.scroll_sum,
        });
        self.visitors.insert(visitor_hash(&v.visitor));
    }
}

/// One bucket of a time series.
#[derive(Debug, Serialize)]
pub struct Point {
    pub bucket: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One row of a breakdown.
#[derive(Debug, Serialize)]
pub struct Row {
    pub value: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Heatmap {
    /// `[weekday (0 = Monday)][local hour]`.
    pub pageviews: Vec<Vec<i64>>,
    pub visitors: Vec<Vec<u64>>,
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub name: String,
    pub events: i64,
    pub visitors: u64,
    /// Share of all visitors in the range who did it.
    pub conversion_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct Events {
    pub visitors: u64,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Serialize)]
pub struct FunnelStep {
    pub step: String,
    pub visitors: u64,
    /// Share of the first step's visitors who got here.
    pub conversion_rate: f64,
    /// Visitors of the previous step who did not get here.
    pub dropped: u64,
}

/// The stats queries, each over one site and range. Unfiltered queries read the hourly rollups; a query with
/// filters (or a funnel) reads the range's visits.
pub struct StatsReader<'a> {
    conn: &'a Connection,
    q: &'a StatsQuery,
    /// The database file, when scans of many visits may open more connections and run on several cores.
    path: Option<&'a Path>,
    /// Scans of a table with fewer visits stay on one thread.
    min_parallel_visits: i64,
}

impl<'a> StatsReader<'a> {
    pub fn new(conn: &'a Connection, q: &'a StatsQuery) -> Self {
        StatsReader { conn, q, path: None, min_parallel_visits: PARALLEL_SCAN_MIN_VISITS }
    }

    /// Lets scans over a large share of the visits split the table by row id and read the parts in parallel,
    /// each thread with its own read-only connection to `path` (WAL readers do not block each other).
    pub fn parallel(self, path: &'a Path) -> Self {
        StatsReader { path: Some(path), ..self }
    }

    /// Whether the visits must be scanned: filters, except a single one on a dimension fixed at visit start,
    /// whose rollup rows answer totals, series and the heatmap exactly.
    fn filtered(&self) -> bool {
        !self.q.filters.is_empty() && self.rollup_key().is_none()
    }

    /// The rollup rows totals are read from: the site's, or those of the one visit-start filter.
    fn rollup_key(&self) -> Option<(Dim, &str)> {
        match self.q.filters.as_slice() {
            [] => Some((Dim::Total, "")),
            [(dim, value)] if Dim::OF_SESSION.contains(dim) => Some((*dim, value.as_str())),
            _ => None,
        }
    }

    pub fn overview(&self) -> Result<Totals, StoreError> {
        if self.filtered() {
            let acc = self.fold_visits(None, &[], None, Acc::default, |acc, v| acc.add_visit(v), |acc, other| acc.merge(&other))?;
            return Ok(acc.totals());
        }
        let by_hour = self.rollup_by_hour()?;
        let mut acc = Acc::default();
        for (_, a) in by_hour {
            acc.c.add(&a.c);
            acc.visitors.merge(&a.visitors);
        }
        Ok(acc.totals())
    }

    pub fn timeseries(&self) -> Result<Vec<Point>, StoreError> {
        let buckets = self.q.range.buckets(self.q.interval);
        let (first, _) = self.q.range.hours();
        let mut accs = vec![Acc::default(); buckets.labels.len()];
        let bucket_of = |hour: i64| buckets.of_hour.get((hour - first) as usize).copied();
        if self.filtered() {
            accs = self.fold_visits(
                None,
                &[],
                None,
                || vec![Acc::default(); buckets.labels.len()],
                |accs, v| {
                    if let Some(b) = bucket_of(v.start.div_euclid(HOUR_MS)) {
                        accs[b].add_visit(v);
                    }
                },
                merge_all,
            )?;
        } else {
            for (hour, a) in self.rollup_by_hour()? {
                if let Some(b) = bucket_of(hour) {
                    accs[b].c.add(&a.c);
                    accs[b].visitors.merge(&a.visitors);
                }
            }
        }
        Ok(buckets.labels.iter().zip(accs).map(|(l, a)| Point { bucket: l.clone(), totals: a.totals() }).collect())
    }

    pub fn heatmap(&self) -> Result<Heatmap, StoreError> {
        let mut cells: Vec<Acc> = vec![Acc::default(); 7 * 24];
        let range = &self.q.range;
        if self.filtered() {
            cells = self.fold_visits(
                None,
                &[],
                None,
                || vec![Acc::default(); 7 * 24],
                |cells, v| {
                    let (d, h) = range.weekday_hour(v.start.div_euclid(HOUR_MS));
                    cells[d * 24 + h].add_visit(v);
                },
                merge_all,
            )?;
        } else {
            for (hour, a) in self.rollup_by_hour()? {
                let (d, h) = range.weekday_hour(hour);
                cells[d * 24 + h].c.add(&a.c);
                cells[d * 24 + h].visitors.merge(&a.visitors);
            }
        }
        Ok(Heatmap {
            pageviews: cells.chunks(24).map(|day| day.iter().map(|a| a.c.pageviews).collect()).collect(),
            visitors: cells.chunks(24).map(|day| day.iter().map(|a| a.visitors.count()).collect()).collect(),
        })
    }

    /// Top values of a dimension, ranked by visits (page views for pages, events for events).
    pub fn breakdown(&self, dim: Dim) -> Result<Vec<Row>, StoreError> {
        let scan = !self.q.filters.is_empty();
        let limit = self.q.limit;
        let rank = |t: &Totals| match dim {
            Dim::Page => (t.pageviews, t.visitors as i64),
            Dim::Event => (t.events, t.visitors as i64),
            _ => (t.sessions, t.visitors as i64),
        };
        let mut rows: Vec<Row> = if scan {
            let keep = match dim {
                Dim::Page | Dim::Event => "steps",
                other => other.name(),
            };
            let add = |accs: &mut HashMap<String, Acc>, v: &Visit| match dim {
                Dim::Page | Dim::Event => {
                    let prefix = if dim == Dim::Page { "p:" } else { "e:" };
                    let mut seen: Vec<&str> = Vec::new();
                    for token in v.steps.split('\n').filter_map(|s| s.strip_prefix(prefix)) {
                        let acc = match accs.get_mut(token) {
                            Some(acc) => acc,
                            None => accs.entry(token.to_owned()).or_default(),
                        };
                        if dim == Dim::Page { acc.c.pageviews += 1 } else { acc.c.events += 1 }
                        if !seen.contains(&token) {
                            seen.push(token);
                            acc.c.sessions += 1;
                            acc.visitors.insert(visitor_hash(&v.visitor));
                        }
                    }
                }
                _ => match accs.get_mut(v.dim(dim)) {
                    Some(acc) => acc.add_visit(v),
                    None => accs.entry(v.dim(dim).to_owned()).or_default().add_visit(v),
                },
            };
            let merge = |accs: &mut HashMap<String, Acc>, other: HashMap<String, Acc>| {
                for (value, acc) in other {
                    accs.entry(value).or_default().merge(&acc);
                }
            };
            let accs = self.fold_visits(None, &[keep], None, HashMap::new, add, merge)?;
            accs.into_iter().map(|(value, a)| Row { value, totals: a.totals() }).collect()
        } else {
            let (first, end) = self.q.range.hours();
            let mut stmt = self.conn.prepare_cached(
                "SELECT value, SUM(pageviews), SUM(sessions), SUM(bounces), SUM(duration_ms), SUM(events), SUM(engaged_ms), SUM(engaged_n),
                 SUM(scroll_sum) FROM stats_rollup WHERE site = ?1 AND dim = ?2 AND hour >= ?3 AND hour < ?4 GROUP BY value
                 ORDER BY CASE ?2 WHEN 1 THEN SUM(pageviews) WHEN 12 THEN SUM(events) ELSE SUM(sessions) END DESC, value LIMIT ?5",
            )?;
            let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
            let mut order = Vec::new();
            let mut rows = stmt.query(params![self.q.site, dim as i64, first, end, limit as i64])?;
            while let Some(r) = rows.next()? {
                let value: String = r.get(0)?;
                order.push(value.clone());
                accs.insert(value, Acc { c: counters_at(r, 1)?, visitors: Sketch::default() });
            }
            drop(rows);
            if dim != Dim::ExitPage && !order.is_empty() {
                let marks = vec!["?"; order.len()].join(", ");
                let sql = format!("SELECT value, sketch FROM stats_sketch WHERE site = ? AND dim = ? AND hour >= ? AND hour < ? AND value IN ({marks})");
                let mut stmt = self.conn.prepare(&sql)?;
                let head: [&dyn rusqlite::ToSql; 4] = [&self.q.site, &(dim as i64), &first, &end];
                let args = head.into_iter().chain(order.iter().map(|v| v as &dyn rusqlite::ToSql));
                let mut rows = stmt.query(params_from_iter(args))?;
                while let Some(r) = rows.next()? {
                    let value: String = r.get(0)?;
                    if let Some(acc) = accs.get_mut(&value) {
                        acc.visitors.merge(&Sketch::from_bytes(r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?));
                    }
                }
            }
            order.into_iter().map(|value| { let totals = accs[&value].totals(); Row { value, totals } }).collect()
        };
        rows.sort_by(|a, b| rank(&b.totals).cmp(&rank(&a.totals)).then_with(|| a.value.cmp(&b.value)));
        rows.truncate(limit);
        Ok(rows)
    }

    /// Custom events with visitors and conversion rates; `goals` (when given) lists exactly those events.
    pub fn events(&self) -> Result<Events, StoreError> {
        let visitors = self.overview()?.visitors;
        let rows = self.breakdown(Dim::Event)?;
        let mut events: Vec<EventRow> = rows
            .into_iter()
            .filter(|r| self.q.goals.is_empty() || self.q.goals.contains(&r.value))
            .map(|r| EventRow { conversion_rate: stats::ratio(r.totals.visitors as f64, visitors as f64), name: r.value, events: r.totals.events, visitors: r.totals.visitors })
            .collect();
        for goal in &self.q.goals {
            if !events.iter().any(|e| &e.name == goal) {
                events.push(EventRow { name: goal.clone(), events: 0, visitors: 0, conversion_rate: 0.0 });
            }
        }
        Ok(Events { visitors, events })
    }

    /// Visitors who completed each step of `q.steps` in order within one visit.
    pub fn funnel(&self) -> Result<Vec<FunnelStep>, StoreError> {
        let steps = &self.q.steps;
        let mut reached: Vec<Sketch> = vec![Sketch::default(); steps.len()];
        if let Some(first) = steps.first() {
            let token = format!("\n{}\n", first.token());
            let tokens: Vec<String> = steps.iter().map(Step::token).collect();
            // Visits without the second step reach only the first (the scan selects visits with the first): their
            // steps are not even read.
            let second = format!("\n{}\n", tokens[1]);
            reached = self.fold_visits(
                Some(&token),
                &["steps"],
                Some(&second),
                || vec![Sketch::default(); steps.len()],
                |reached, v| {
                    let done = if v.steps.is_empty() { 1 } else { stats::funnel_progress_tokens(&tokens, &v.steps) };
                    let h = visitor_hash(&v.visitor);
                    reached.iter_mut().take(done).for_each(|s| s.insert(h));
                },
                |reached, other| reached.iter_mut().zip(other).for_each(|(s, o)| s.merge(&o)),
            )?;
        }
        let first = reached.first().map_or(0, Sketch::count);
        let mut previous = first;
        Ok(steps
            .iter()
            .zip(reached)
            .map(|(step, s): (&Step, Sketch)| {
                let n = s.count().min(previous);
                let out = FunnelStep { step: step.label(), visitors: n, conversion_rate: stats::ratio(n as f64, first as f64), dropped: previous - n };
                previous = n;
                out
            })
            .collect())
    }

    /// Per UTC hour of the range, the site's totals and visitor sketch.
    fn rollup_by_hour(&self) -> Result<BTreeMap<i64, Acc>, StoreError> {
        let (dim, value) = self.rollup_key().unwrap_or((Dim::Total, ""));
        let (first, end) = self.q.range.hours();
        let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT hour, pageviews, sessions, bounces, duration_ms, events, engaged_ms, engaged_n, scroll_sum
             FROM stats_rollup WHERE site = ?1 AND dim = ?2 AND hour >= ?3 AND hour < ?4 AND value = ?5",
        )?;
        let mut rows = stmt.query(params![self.q.site, dim as i64, first, end, value])?;
        while let Some(r) = rows.next()? {
            out.entry(r.get(0)?).or_default().c = counters_at(r, 1)?;
        }
        let mut stmt = self.conn.prepare_cached("SELECT hour, sketch FROM stats_sketch WHERE site = ?1 AND dim = ?2 AND hour >= ?3 AND hour < ?4 AND value = ?5")?;
        let mut rows = stmt.query(params![self.q.site, dim as i64, first, end, value])?;
        while let Some(r) = rows.next()? {
            let sketch = Sketch::from_bytes(r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?);
            out.entry(r.get(0)?).or_default().visitors = sketch;
        }
        Ok(out)
    }

    /// Folds every visit that started in the range and meets the filters (and contains `step`, when given) into a
    /// state made by `init`. Of the text columns only those in `keep` are read; the others come back empty (decoding
    /// them is most of a scan's cost). A scan over much of the table may run on several threads, each folding a
    /// part of it into its own state; `merge` joins them, so the result never depends on the order of visits.
    fn fold_visits<S: Send>(
        &self,
        step: Option<&str>,
        keep: &[&str],
        steps_only_with: Option<&str>,
        init: impl Fn() -> S + Sync,
        each: impl Fn(&mut S, &Visit) + Sync,
        merge: impl Fn(&mut S, S),
    ) -> Result<S, StoreError> {
        let columns: Vec<String> = VISIT_COLUMNS
            .split(',')
            .map(str::trim)
            .map(|c| match c {
                "sdk_session" => "NULL".to_owned(),
                // Steps are the widest column: read them only for the rows that contain this token.
                "steps" if steps_only_with.is_some() && keep.contains(&c) => "CASE WHEN instr(steps, ?6) > 0 THEN steps ELSE '' END".to_owned(),
                c if VISIT_TEXT_COLUMNS.contains(&c) && !keep.contains(&c) => "''".to_owned(),
                c => c.to_owned(),
            })
            .collect();
        // Through the (site, start) index every row is a random read unless visits were stored in time order; when the
        // range holds a good share of all visits, reading the whole table in storage order is several times faster.
        // Counting stops at that share, so deciding costs at most an eighth of the index, not a pass over it.
        let (site, range) = (&self.q.site, &self.q.range);
        let all: i64 = self.conn.query_row("SELECT COALESCE(MAX(id), 0) FROM stats_visits", [], |r| r.get(0))?;
        let in_range: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM (SELECT 1 FROM stats_visits WHERE site = ?1 AND start >= ?2 AND start < ?3 LIMIT ?4)")?
            .query_row(params![site, range.start_ms, range.end_ms, all / 8 + 1], |r| r.get(0))?;
        let whole_table = in_range * 8 > all;
        let table = if whole_table { "stats_visits NOT INDEXED" } else { "stats_visits" };
        // Row ids bound each part of a split scan (the table's own B-tree, which NOT INDEXED still seeks in).
        let mut sql = format!("SELECT {} FROM {table} WHERE id >= ?1 AND id < ?2 AND site = ?3 AND start >= ?4 AND start < ?5", columns.join(", "));
        // ?6 is the steps column's token, when there is one (see above); the filters' values follow.
        let mut texts: Vec<String> = vec![self.q.site.clone()];
        texts.extend(steps_only_with.filter(|_| keep.contains(&"steps")).map(str::to_owned));
        for (dim, value) in &self.q.filters {
            match dim {
                Dim::Page => {
                    texts.push(format!("\np:{value}\n"));
                    sql.push_str(&format!(" AND instr(steps, ?{}) > 0", texts.len() + 4));
                }
                Dim::Event => {
                    texts.push(format!("\ne:{value}\n"));
                    sql.push_str(&format!(" AND instr(steps, ?{}) > 0", texts.len() + 4));
                }
                Dim::Total => {}
                other => {
                    texts.push(value.clone());
                    sql.push_str(&format!(" AND {} = ?{}", other.name(), texts.len() + 4));
                }
            }
        }
        if let Some(step) = step {
            texts.push(step.to_owned());
            sql.push_str(&format!(" AND instr(steps, ?{}) > 0", texts.len() + 4));
        }
        let scan = |conn: &Connection, ids: (i64, i64)| -> Result<S, StoreError> {
            let mut state = init();
            let mut stmt = conn.prepare_cached(&sql)?;
            let head: [&dyn rusqlite::ToSql; 5] = [&ids.0, &ids.1, &texts[0], &range.start_ms, &range.end_ms];
            let args = head.into_iter().chain(texts[1..].iter().map(|t| t as &dyn rusqlite::ToSql));
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut visit = Visit::default();
            while let Some(r) = rows.next()? {
                visit.fill_from_row(r, keep)?;
                each(&mut state, &visit);
            }
            Ok(state)
        };
        let threads = match self.path {
            Some(_) if whole_table && all >= self.min_parallel_visits => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_SCAN_THREADS) as i64,
            _ => 1,
        };
        if threads == 1 {
            return scan(self.conn, (i64::MIN, i64::MAX));
        }
        // Equal id ranges hold about equal numbers of the range's visits: ids follow arrival, not event time.
        let part = all / threads + 1;
        let bounds: Vec<(i64, i64)> = (0..threads).map(|i| (if i == 0 { i64::MIN } else { i * part }, if i == threads - 1 { i64::MAX } else { (i + 1) * part })).collect();
        let path = self.path.expect("checked above");
        let scan = &scan;
        let parts: Vec<Result<S, StoreError>> = std::thread::scope(|scope| {
            let others: Vec<_> = bounds[1..].iter().map(|&ids| scope.spawn(move || scan(&open_reader(path)?, ids))).collect();
            let mut parts = vec![scan(self.conn, bounds[0])];
            parts.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
            parts
        });
        let mut parts = parts.into_iter();
        let mut state = parts.next().expect("at least one part")?;
        for part in parts {
            merge(&mut state, part?);
        }
        Ok(state)
    }
}

/// Below this many visits in the table a scan runs on one thread (starting another costs more than it saves).
const PARALLEL_SCAN_MIN_VISITS: i64 = 50_000;
/// At most this many threads (and reader connections) per scan.
const MAX_SCAN_THREADS: usize = 4;

/// Adds `other`'s accumulators into `accs`, slot by slot.
fn merge_all(accs: &mut Vec<Acc>, other: Vec<Acc>) {
    accs.iter_mut().zip(other).for_each(|(a, o)| a.merge(&o));
}

fn counters_at(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Counters> {
    Ok(Counters {
        pageviews: r.get(at)?,
        sessions: r.get(at + 1)?,
        bounces: r.get(at + 2)?,
        duration_ms: r.get(at + 3)?,
        events: r.get(at + 4)?,
        engaged_ms: r.get(at + 5)?,
        engaged_n: r.get(at + 6)?,
        scroll_sum: r.get(at + 7)?,
    })
}

/// Visitors active in the last [`stats::LIVE_WINDOW_MS`] before `now_ms`, and some of those active up to
/// [`OPEN_LAST_LAG_MS`] earlier (`stats_open.last` lags by up to that: none of the window's visitors is missed).
pub fn live_visitors(conn: &Connection, site: &str, now_ms: i64) -> Result<u64, StoreError> {
    let since = now_ms - stats::LIVE_WINDOW_MS - OPEN_LAST_LAG_MS;
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM stats_open WHERE site = ?1 AND last >= ?2", params![site, since], |r| r.get(0))?;
    Ok(n as u64)
}

#[derive(Debug, Serialize)]
pub struct QuarantineSample {
    pub id: i64,
    pub received_at: i64,
    pub message_id: Option<String>,
    pub reason: String,
    pub payload: String,
}

#[derive(Debug, Serialize)]
pub struct QuarantineCode {
    pub code: String,
    pub count: i64,
    pub last_received_at: i64,
    pub samples: Vec<QuarantineSample>,
}

#[derive(Debug, Serialize)]
pub struct Quarantine {
    pub total: i64,
    pub codes: Vec<QuarantineCode>,
}

/// Longest payload sample returned (the stored payload can be up to an event's size limit).
const SAMPLE_PAYLOAD_CHARS: usize = 2_000;

/// Failed events of a site received in `[since_ms, until_ms)`: counts per reason code, newest samples of each.
pub fn quarantine(conn: &Connection, site: &str, since_ms: i64, until_ms: i64, samples: usize) -> Result<Quarantine, StoreError> {
    let mut codes = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT code, COUNT(*), MAX(received_at) FROM quarantine WHERE site = ?1 AND received_at >= ?2 AND received_at < ?3
             GROUP BY code ORDER BY COUNT(*) DESC, code",
        )?;
        let mut rows = stmt.query(params![site, since_ms, until_ms])?;
        while let Some(r) = rows.next()? {
            codes.push(QuarantineCode { code: r.get(0)?, count: r.get(1)?, last_received_at: r.get(2)?, samples: Vec::new() });
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_at, message_id, reason, substr(payload, 1, ?5) FROM quarantine
         WHERE site = ?1 AND code = ?2 AND received_at >= ?3 AND received_at < ?4 ORDER BY id DESC LIMIT ?6",
    )?;
    for c in &mut codes {
        let rows = stmt.query_map(params![site, c.code, since_ms, until_ms, SAMPLE_PAYLOAD_CHARS as i64, samples as i64], |r| {
            Ok(QuarantineSample { id: r.get(0)?, received_at: r.get(1)?, message_id: r.get(2)?, reason: r.get(3)?, payload: r.get(4)? })
        })?;
        c.samples = rows.collect::<Result<_, _>>()?;
    }
    Ok(Quarantine { total: codes.iter().map(|c| c.count).sum(), codes })
}

#[derive(Debug, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub at: i64,
    pub profile_id: Option<i64>,
    /// `c:` (cookieless) visitors are shown as such, without their hash.
    pub visitor: Option<String>,
    pub categories: Vec<&'static str>,
    pub source: String,
    pub policy_version: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// The consent ledger of a site, newest first, `limit` entries older than `cursor` (an entry id).
pub fn consent_ledger(conn: &Connection, site: &str, profile_id: Option<i64>, cursor: Option<i64>, limit: usize) -> Result<Ledger, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, profile_id, visitor, categories, source, policy_version, message_id FROM consent_ledger
         WHERE site = ?1 AND id < ?2 AND (?3 IS NULL OR profile_id = ?3) ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![site, cursor.unwrap_or(i64::MAX), profile_id, limit as i64 + 1], |r| {
        let bits: i64 = r.get(4)?;
        let visitor: Option<String> = r.get(3)?;
        Ok(LedgerEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            profile_id: r.get(2)?,
            visitor: visitor.map(|v| if v.starts_with("c:") { "c:(cookieless)".to_owned() } else { v }),
            categories: [(1, "analytics"), (2, "marketing"), (4, "personalization")].into_iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| n).collect(),
            source: r.get(5)?,
            policy_version: r.get(6)?,
            message_id: r.get(7)?,
        })
    })?;
    let mut entries: Vec<LedgerEntry> = rows.collect::<Result<_, _>>()?;
    let next_cursor = (entries.len() > limit).then(|| {
        entries.truncate(limit);
        entries.last().map(|e| e.id)
    }).flatten();
    Ok(Ledger { entries, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The implementation before the writer cache (read back the inserted rows, SELECT every visitor's open visit,
    /// write per visitor): the oracle the cached one must match exactly.
    mod reference {
        use super::super::*;

        /// The events a commit inserted (the last `inserted` rows of `events`), as the stats need them.
        const RECENT_EVENTS: &str = "SELECT site, type, name, COALESCE(visitor, 'a:' || anonymous_id, 'u:' || user_id), session_id, timestamp,
            COALESCE(path, ''), COALESCE(url, ''), COALESCE(referrer_host, ''), COALESCE(utm_source, ''), COALESCE(utm_medium, ''),
            COALESCE(utm_campaign, ''), COALESCE(device, ''), COALESCE(browser, ''), COALESCE(os, ''), properties
            FROM events WHERE id > ?1 AND flags & 2 = 0 AND type IN ('page', 'screen', 'track')";


        struct Recent {
            site: String,
            pageview: bool,
            name: Option<String>,
            visitor: String,
            sdk_session: Option<String>,
            ts: i64,
            path: String,
            url: String,
            referrer: String,
            utm: [String; 3],
            device: String,
            browser: String,
            os: String,
            properties: Option<String>,
        }


        type Key = (String, Dim, i64, String);

        #[derive(Default)]
        struct Deltas {
            counters: HashMap<Key, Counters>,
            visitors: HashMap<Key, Vec<u32>>,
        }

        impl Deltas {
            fn counters(&mut self, site: &str, dim: Dim, hour: i64, value: &str) -> &mut Counters {
                self.counters.entry((site.to_owned(), dim, hour, value.to_owned())).or_default()
            }
            fn visitor(&mut self, site: &str, dim: Dim, hour: i64, value: &str, hash: u32) {
                self.visitors.entry((site.to_owned(), dim, hour, value.to_owned())).or_default().push(hash);
            }
        }


        /// Updates visits and rollups for the events the current transaction just inserted: the last `inserted` rows of
        /// `events`. Called by the SQLite store's `commit` before it commits, so stats and events commit together.
        pub(super) fn record(conn: &Connection, inserted: usize) -> Result<(), StoreError> {
            if inserted == 0 {
                return Ok(());
            }
            let max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
            let first_id = max_id - inserted as i64;
            let mut recent = Vec::with_capacity(inserted);
            {
                let mut stmt = conn.prepare_cached(RECENT_EVENTS)?;
                let mut rows = stmt.query([first_id])?;
                while let Some(r) = rows.next()? {
                    let Some(visitor) = r.get::<_, Option<String>>(3)? else { continue };
                    let kind: String = r.get(1)?;
                    recent.push(Recent {
                        site: r.get(0)?,
                        pageview: kind != "track",
                        name: r.get(2)?,
                        visitor,
                        sdk_session: r.get(4)?,
                        ts: r.get(5)?,
                        path: r.get(6)?,
                        url: r.get(7)?,
                        referrer: r.get(8)?,
                        utm: [r.get(9)?, r.get(10)?, r.get(11)?],
                        device: r.get(12)?,
                        browser: r.get(13)?,
                        os: r.get(14)?,
                        properties: r.get(15)?,
                    });
                }
            }
            recent.sort_by(|a, b| (&a.site, &a.visitor, a.ts).cmp(&(&b.site, &b.visitor, b.ts)));
            let mut deltas = Deltas::default();
            let mut i = 0;
            while i < recent.len() {
                let j = i + recent[i..].iter().take_while(|e| e.site == recent[i].site && e.visitor == recent[i].visitor).count();
                record_visitor(conn, &recent[i..j], &mut deltas)?;
                i = j;
            }
            write_deltas(conn, deltas)?;
            if max_id / PRUNE_EVERY != first_id / PRUNE_EVERY {
                if let Some(newest) = recent.iter().map(|e| e.ts).max() {
                    conn.execute("DELETE FROM stats_open WHERE last < ?1", [newest - OPEN_KEEP_MS])?;
                }
            }
            Ok(())
        }

        /// One visitor's new events, in time order: continue or open visits, and collect the rollup changes.
        fn record_visitor(conn: &Connection, events: &[Recent], deltas: &mut Deltas) -> Result<(), StoreError> {
            let (site, visitor) = (&events[0].site, &events[0].visitor);
            let hash = visitor_hash(visitor);
            let open: Option<Visit> = conn
                .prepare_cached(&format!("SELECT {VISIT_COLUMNS} FROM stats_visits WHERE id = (SELECT visit_id FROM stats_open WHERE site = ?1 AND visitor = ?2)"))?
                .query_row(params![site, visitor], Visit::from_row)
                .optional()?;
            // (the visit as it was before this commit, the visit now)
            let mut touched: Vec<(Option<Visit>, Visit)> = Vec::new();
            let mut current: Option<(Option<Visit>, Visit)> = open.map(|v| (Some(v.clone()), v));
            for e in events {
                let hour = e.ts.div_euclid(HOUR_MS);
                let custom = !e.pageview && e.name.as_deref().is_some_and(stats::is_custom_event);
                let engagement = (!e.pageview && e.name.as_deref() == Some(stats::ENGAGEMENT_EVENT)).then(|| parse_engagement(e.properties.as_deref())).flatten();
                // Event-time rollups: all visitors, page views per page, custom events per name, engagement per page.
                deltas.visitor(site, Dim::Total, hour, "", hash);
                if e.pageview {
                    deltas.counters(site, Dim::Total, hour, "").pageviews += 1;
                    deltas.counters(site, Dim::Page, hour, &e.path).pageviews += 1;
                    deltas.visitor(site, Dim::Page, hour, &e.path, hash);
                }
                if custom {
                    let name = e.name.as_deref().unwrap_or_default();
                    deltas.counters(site, Dim::Total, hour, "").events += 1;
                    deltas.counters(site, Dim::Event, hour, name).events += 1;
                    deltas.visitor(site, Dim::Event, hour, name, hash);
                }
                if let Some((ms, scroll)) = engagement {
                    for (dim, value) in [(Dim::Total, ""), (Dim::Page, e.path.as_str())] {
                        let c = deltas.counters(site, dim, hour, value);
                        c.engaged_ms += ms;
                        c.engaged_n += 1;
                        c.scroll_sum += scroll;
                    }
                }
                // The visit: continue the open one, or start one with a page view; other events outside a visit stay out.
                let continuing = current.as_ref().is_some_and(|(_, v)| {
                    stats::continues(&stats::OpenVisit { start: v.start, last: v.last, sdk_session: v.sdk_session.clone() }, e.ts, e.sdk_session.as_deref())
                });
                if !continuing {
                    if !e.pageview {
                        continue;
                    }
                    if let Some(done) = current.take() {
                        touched.push(done);
                    }
                    let referrer = if !e.referrer.is_empty() && host_of(&e.url).eq_ignore_ascii_case(&e.referrer) { String::new() } else { e.referrer.clone() };
                    let [s, m, c] = e.utm.clone();
                    let visit = Visit {
                        visitor: visitor.clone(),
                        sdk_session: e.sdk_session.clone(),
                        start: e.ts,
                        last: e.ts,
                        dims: [e.path.clone(), referrer, s, m, c, e.device.clone(), e.browser.clone(), e.os.clone()],
                        exit_page: e.path.clone(),
                        ..Visit::default()
                    };
                    for (k, dim) in Dim::OF_SESSION.iter().enumerate() {
                        deltas.visitor(site, *dim, hour, &visit.dims[k], hash);
                    }
                    current = Some((None, visit));
                }
                let (_, v) = current.as_mut().expect("a visit is open here");
                v.last = v.last.max(e.ts);
                if v.sdk_session.is_none() {
                    v.sdk_session = e.sdk_session.clone();
                }
                if e.pageview {
                    v.pageviews += 1;
                    v.exit_page = e.path.clone();
                    stats::push_visit_step(&mut v.steps, &format!("p:{}", e.path));
                } else if custom {
                    v.events += 1;
                    stats::push_visit_step(&mut v.steps, &format!("e:{}", e.name.as_deref().unwrap_or_default()));
                }
                if let Some((ms, scroll)) = engagement {
                    v.engaged_ms += ms;
                    v.engaged_n += 1;
                    v.scroll_sum += scroll;
                }
            }
            touched.extend(current);
            for (before, mut after) in touched {
                visit_deltas(site, before.as_ref(), &after, deltas);
                match after.id {
                    Some(id) => {
                        conn.prepare_cached(
                            "UPDATE stats_visits SET sdk_session = ?2, last = ?3, pageviews = ?4, events = ?5, engaged_ms = ?6, engaged_n = ?7,
                             scroll_sum = ?8, exit_page = ?9, steps = ?10 WHERE id = ?1",
                        )?
                        .execute(params![id, after.sdk_session, after.last, after.pageviews, after.events, after.engaged_ms, after.engaged_n, after.scroll_sum, after.exit_page, after.steps])?;
                    }
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO stats_visits (site, visitor, sdk_session, start, last, pageviews, events, engaged_ms, engaged_n,
                             scroll_sum, entry_page, exit_page, referrer, utm_source, utm_medium, utm_campaign, device, browser, os, steps)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
                        )?
                        .execute(params![
                            site, after.visitor, after.sdk_session, after.start, after.last, after.pageviews, after.events, after.engaged_ms,
                            after.engaged_n, after.scroll_sum, after.dims[0], after.exit_page, after.dims[1], after.dims[2], after.dims[3],
                            after.dims[4], after.dims[5], after.dims[6], after.dims[7], after.steps
                        ])?;
                        after.id = Some(conn.last_insert_rowid());
                    }
                }
                conn.prepare_cached(
                    "INSERT INTO stats_open (site, visitor, visit_id, last) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (site, visitor) DO UPDATE SET visit_id = excluded.visit_id, last = excluded.last
                     WHERE excluded.last >= stats_open.last AND (excluded.visit_id != stats_open.visit_id OR excluded.last - stats_open.last >= ?5)",
                )?
                .execute(params![site, after.visitor, after.id, after.last, OPEN_LAST_LAG_MS])?;
            }
            Ok(())
        }

        /// The rollup change a visit's update makes, counted in the hour it started.
        fn visit_deltas(site: &str, before: Option<&Visit>, after: &Visit, deltas: &mut Deltas) {
            let hour = after.start.div_euclid(HOUR_MS);
            let diff = Counters {
                pageviews: after.pageviews - before.map_or(0, |b| b.pageviews),
                sessions: i64::from(before.is_none()),
                bounces: after.bounces() - before.map_or(0, Visit::bounces),
                duration_ms: after.duration() - before.map_or(0, Visit::duration),
                events: after.events - before.map_or(0, |b| b.events),
                engaged_ms: after.engaged_ms - before.map_or(0, |b| b.engaged_ms),
                engaged_n: after.engaged_n - before.map_or(0, |b| b.engaged_n),
                scroll_sum: after.scroll_sum - before.map_or(0, |b| b.scroll_sum),
            };
            if !diff.is_zero() {
                // The site's total counts page views, events and engagement when they happen; visits when they start.
                let total = Counters { sessions: diff.sessions, bounces: diff.bounces, duration_ms: diff.duration_ms, ..Counters::default() };
                deltas.counters(site, Dim::Total, hour, "").add(&total);
                for (k, dim) in Dim::OF_SESSION.iter().enumerate() {
                    deltas.counters(site, *dim, hour, &after.dims[k]).add(&diff);
                }
            }
            let old_exit = before.map(|b| b.exit_page.as_str());
            if old_exit != Some(after.exit_page.as_str()) {
                if let Some(old) = old_exit {
                    let c = deltas.counters(site, Dim::ExitPage, hour, old);
                    c.sessions -= 1;
                    c.pageviews -= before.map_or(0, |b| b.pageviews);
                }
                let c = deltas.counters(site, Dim::ExitPage, hour, &after.exit_page);
                c.sessions += 1;
                c.pageviews += after.pageviews;
            } else {
                deltas.counters(site, Dim::ExitPage, hour, &after.exit_page).pageviews += diff.pageviews;
            }
        }


        fn write_deltas(conn: &Connection, deltas: Deltas) -> Result<(), StoreError> {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO stats_rollup (site, dim, hour, value, pageviews, sessions, bounces, duration_ms, events, engaged_ms, engaged_n, scroll_sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (site, dim, hour, value) DO UPDATE SET pageviews = pageviews + excluded.pageviews,
                 sessions = sessions + excluded.sessions, bounces = bounces + excluded.bounces, duration_ms = duration_ms + excluded.duration_ms,
                 events = events + excluded.events, engaged_ms = engaged_ms + excluded.engaged_ms, engaged_n = engaged_n + excluded.engaged_n,
                 scroll_sum = scroll_sum + excluded.scroll_sum",
            )?;
            for ((site, dim, hour, value), c) in deltas.counters.into_iter().filter(|(_, c)| !c.is_zero()) {
                upsert.execute(params![site, dim as i64, hour, value, c.pageviews, c.sessions, c.bounces, c.duration_ms, c.events, c.engaged_ms, c.engaged_n, c.scroll_sum])?;
            }
            let mut read = conn.prepare_cached("SELECT sketch FROM stats_sketch WHERE site = ?1 AND dim = ?2 AND hour = ?3 AND value = ?4")?;
            let mut write = conn.prepare_cached("INSERT OR REPLACE INTO stats_sketch (site, dim, hour, value, sketch) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for ((site, dim, hour, value), hashes) in deltas.visitors {
                let key = params![site, dim as i64, hour, value];
                let mut sketch = read.query_row(key, |r| r.get::<_, Vec<u8>>(0)).optional()?.map(|b| Sketch::from_bytes(&b)).unwrap_or_default();
                let before = sketch.clone();
                hashes.into_iter().for_each(|h| sketch.insert(h));
                if sketch != before {
                    write.execute(params![site, dim as i64, hour, value, sketch.to_bytes()])?;
                }
            }
            Ok(())
        }

    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, site TEXT NOT NULL, type TEXT, name TEXT, anonymous_id TEXT, user_id TEXT,
                timestamp INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0, url TEXT, path TEXT, referrer_host TEXT, utm_source TEXT,
                utm_medium TEXT, utm_campaign TEXT, browser TEXT, os TEXT, device TEXT, properties TEXT, visitor TEXT, session_id TEXT);
             CREATE TABLE quarantine (id INTEGER PRIMARY KEY, site TEXT, code TEXT, received_at INTEGER);
             CREATE TABLE consent_ledger (id INTEGER PRIMARY KEY, site TEXT);",
        )
        .unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn insert(conn: &Connection, events: &[StoredEvent]) {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO events (site, type, name, anonymous_id, user_id, timestamp, flags, url, path, referrer_host, utm_source,
                 utm_medium, utm_campaign, browser, os, device, properties, visitor, session_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )
            .unwrap();
        for e in events {
            use Field::*;
            let t = |field| e.text(field);
            stmt.execute(params![
                &*e.site, e.kind.map(|k| k.as_str()), t(Name), t(AnonymousId), t(UserId), e.timestamp, e.flags, t(Url), t(Path), t(ReferrerHost),
                t(UtmSource), t(UtmMedium), t(UtmCampaign), t(Browser), t(Os), e.device, t(Properties), t(Visitor), t(SessionId)
            ])
            .unwrap();
        }
    }

    /// Every stats table, in key order.
    fn dump(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT * FROM stats_visits ORDER BY id",
            "SELECT * FROM stats_open ORDER BY site, visitor",
            "SELECT * FROM stats_rollup ORDER BY site, dim, hour, value",
            "SELECT site, dim, hour, value, hex(sketch) FROM stats_sketch ORDER BY site, dim, hour, value",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let cells: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
                out.push(format!("{sql}: {}", cells.join("|")));
            }
        }
        out
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.below(of.len() as u64) as usize]
        }
    }

    /// A random stored event. `dense`: a few visitors, events under a second apart, so visits go on across stats
    /// updates (and `stats_open.last` lags them).
    fn random_event(rng: &mut Rng, now: &mut i64, dense: bool) -> StoredEvent {
        // Time mostly moves forward, sometimes jumps hours ahead, sometimes arrives late.
        match rng.below(100) {
            0..=79 if dense => *now += rng.below(1_000) as i64,
            0..=79 => *now += rng.below(120_000) as i64,
            80..=84 if !dense => *now += rng.below(5 * HOUR_MS as u64) as i64,
            _ => {}
        }
        let ts = match rng.below(10) {
            0 => *now - rng.below(4 * HOUR_MS as u64) as i64,
            _ => *now - rng.below(60_000) as i64,
        };
        let who = rng.below(if dense { 4 } else { 40 });
        let site: Arc<str> = rng.pick(&["shop", "blog"]).into();
        let kind = [CallKind::Page, CallKind::Page, CallKind::Screen, CallKind::Track, CallKind::Track, CallKind::Identify][rng.below(6) as usize];
        let name = match kind {
            CallKind::Track => Some(rng.pick(&["Signed Up", "Added", stats::ENGAGEMENT_EVENT, "Consent Updated"]).to_owned()),
            _ => (rng.below(2) == 0).then(|| "Home".to_owned()),
        };
        let properties = match name.as_deref() {
            Some(stats::ENGAGEMENT_EVENT) => Some(rng.pick(&[r#"{"engagedMs":1234.5,"scrollDepth":55}"#, r#"{"engagedMs":-1}"#, r#"{"scrollDepth":300,"engagedMs":9e9}"#, "{}", "nope"]).to_owned()),
            _ => Some(r#"{"x":1}"#.to_owned()),
        };
        let (visitor, anonymous_id, user_id) = match rng.below(10) {
            0 => (None, Some(format!("anon{who}")), None),
            1 => (None, None, Some(format!("user{who}"))),
            2 => (None, None, None),
            _ => (Some(format!("a:anon{who}")), Some(format!("anon{who}")), None),
        };
        let path = rng.pick(&["/", "/pricing", "/signup", "/blog/x"]);
        let host = rng.pick(&["shop.example", "blog.example"]);
        let opt = |rng: &mut Rng, of: &[&str]| (rng.below(3) > 0).then(|| rng.pick(of).to_owned());
        let flags = if rng.below(15) == 0 { 2 } else { 0 };
        let url = (rng.below(8) > 0).then(|| format!("https://{host}{path}?q=1"));
        let path = (rng.below(10) > 0).then(|| path.to_owned());
        let [referrer_host, utm_source, utm_medium, utm_campaign, browser, os] =
            [&["google.com", "shop.example", "SHOP.example", "news.example"][..], &["newsletter", "ads"], &["email"], &["spring"], &["Firefox", "Chrome"], &["Linux", "iOS"]]
                .map(|of| opt(rng, of));
        let device = (rng.below(3) > 0).then(|| ["desktop", "mobile"][rng.below(2) as usize]);
        let session_id = match rng.below(4) {
            0 => None,
            _ => Some(format!("s{}", (who + rng.below(3)) % 50)),
        };
        StoredEvent { site, kind: Some(kind), timestamp: ts, flags, device, ..StoredEvent::default() }
            .with_opt(Field::Name, name)
            .with_opt(Field::AnonymousId, anonymous_id)
            .with_opt(Field::UserId, user_id)
            .with_opt(Field::Url, url)
            .with_opt(Field::Path, path)
            .with_opt(Field::ReferrerHost, referrer_host)
            .with_opt(Field::UtmSource, utm_source)
            .with_opt(Field::UtmMedium, utm_medium)
            .with_opt(Field::UtmCampaign, utm_campaign)
            .with_opt(Field::Browser, browser)
            .with_opt(Field::Os, os)
            .with_opt(Field::Properties, properties)
            .with_opt(Field::Visitor, visitor)
            .with_opt(Field::SessionId, session_id)
    }

    #[test]
    fn a_stats_event_keeps_each_text_apart_and_absent_ones_absent() {
        let stored = StoredEvent { site: "s".into(), ..StoredEvent::default() }
            .with(Field::Name, "").with(Field::AnonymousId, "anon").with(Field::Path, "/a").with(Field::Url, "https://x.example/a").with(Field::UtmCampaign, "spring").with(Field::Os, "Linux").with(Field::Properties, "{\"x\":1}");
        let e = StatsEvent::of(stored.clone());
        assert_eq!(e.text(Field::Name), Some(""));
        assert_eq!(e.text(Field::Visitor), Some("a:anon"));
        assert_eq!((e.text(Field::SessionId), e.text(Field::ReferrerHost), e.text(Field::Browser)), (None, None, None));
        assert_eq!((e.text(Field::Path), e.text(Field::Url)), (Some("/a"), Some("https://x.example/a")));
        assert_eq!((e.text(Field::UtmSource), e.text(Field::UtmCampaign), e.text(Field::Os)), (None, Some("spring"), Some("Linux")));
        // Properties are read for engagement events only.
        fn recent(e: &StatsEvent) -> Option<Option<&str>> {
            Recent::of(e).map(|r| r.properties)
        }
        assert_eq!(recent(&e), None, "an identify call is not counted");
        let page = StatsEvent::of(StoredEvent { kind: Some(CallKind::Page), ..stored.clone() });
        assert_eq!(recent(&page), Some(None));
        let engagement = StatsEvent::of(StoredEvent { kind: Some(CallKind::Track), ..stored }.with(Field::Name, stats::ENGAGEMENT_EVENT).with(Field::Visitor, "c:v"));
        assert_eq!((recent(&engagement), engagement.text(Field::Visitor)), (Some(Some("{\"x\":1}")), Some("c:v")));
    }

    #[test]
    fn the_cached_writer_stores_exactly_what_reading_back_stored() {
        for (seed, dense) in [(1u64, false), (7, false), (42, false), (1234, false), (5, true), (99, true)] {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
            let (reference, cached) = (db(), db());
            let mut cache = StatsCache::default();
            let mut now = 1_770_000_000_000;
            let mut total = 0;
            while total < 10_000 {
                let most = if rng.below(4) == 0 { 3 } else { 300 };
                let batch: Vec<StoredEvent> = (0..1 + rng.below(most)).map(|_| random_event(&mut rng, &mut now, dense)).collect();
                total += batch.len();
                insert(&reference, &batch);
                reference::record(&reference, batch.len()).unwrap();
                insert(&cached, &batch);
                if rng.below(50) == 0 {
                    cache.clear();
                }
                let max_id: i64 = cached.query_row("SELECT MAX(id) FROM events", [], |r| r.get(0)).unwrap();
                record(&cached, &mut cache, &batch.iter().cloned().map(StatsEvent::of).collect::<Vec<_>>(), max_id).unwrap();
            }
            let (want, got) = (dump(&reference), dump(&cached));
            assert!(want.len() > 500, "the fixture exercises the tables ({} rows)", want.len());
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w, g, "seed {seed}");
            }
            assert_eq!(want.len(), got.len(), "seed {seed}");
        }
    }

    #[test]
    fn parallel_scans_answer_what_one_thread_answers() {
        let dir = std::env::temp_dir().join(format!("fp-stats-parallel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = super::super::sqlite::SqliteStore::open(&dir).unwrap();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut now = 1_770_000_000_000;
        // Many visitors, each active every ten minutes (so visits hold several steps), in time order over a day.
        let events: Vec<StoredEvent> = (0..6_000)
            .map(|i| {
                let mut e = random_event(&mut rng, &mut now, false);
                e.timestamp = 1_770_000_000_000 + i * 10_000;
                e.with(Field::Visitor, format!("a:v{}", i % 60)).with_opt(Field::SessionId, None::<&str>).with(Field::MessageId, format!("m{i}"))
            })
            .collect();
        for chunk in events.chunks(500) {
            use super::super::EventStore;
            store.commit(chunk.to_vec(), &[]).unwrap();
        }
        store.flush_stats().unwrap();
        let path = store.path().to_owned();
        let conn = open_reader(&path).unwrap();
        let visits: i64 = conn.query_row("SELECT COUNT(*) FROM stats_visits", [], |r| r.get(0)).unwrap();
        assert!(visits > 500, "{visits} visits");
        let today = "2026-02-20T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
        let from = "from=2026-01-01&to=2026-03-31";
        for query in [
            format!("site=shop&{from}&page=/pricing"),
            format!("site=shop&{from}&device=mobile&browser=Firefox"),
            format!("site=shop&{from}&event=Signed%20Up&tz=Europe/Berlin"),
            format!("site=shop&{from}&page=/signup&interval=hour"),
        ] {
            let q = stats::parse_query(&query, today).unwrap();
            let one = StatsReader::new(&conn, &q);
            let many = StatsReader { min_parallel_visits: 0, ..StatsReader::new(&conn, &q).parallel(&path) };
            let answers = |r: &StatsReader| {
                serde_json::json!({
                    "overview": r.overview().unwrap(),
                    "timeseries": r.timeseries().unwrap(),
                    "heatmap": r.heatmap().unwrap(),
                    "pages": r.breakdown(Dim::Page).unwrap(),
                    "referrers": r.breakdown(Dim::Referrer).unwrap(),
                })
            };
            let want = answers(&one);
            assert!(want["overview"]["sessions"].as_i64().unwrap() > 0, "{query} selects visits");
            assert_eq!(want, answers(&many), "{query}");
        }
        let funnel = stats::parse_query(&format!("site=shop&{from}&step=page:/&step=page:/pricing&step=event:Signed%20Up"), today).unwrap();
        let one = serde_json::to_value(StatsReader::new(&conn, &funnel).funnel().unwrap()).unwrap();
        let many = serde_json::to_value(StatsReader { min_parallel_visits: 0, ..StatsReader::new(&conn, &funnel).parallel(&path) }.funnel().unwrap()).unwrap();
        assert!(one[0]["visitors"].as_u64().unwrap() > 0);
        assert_eq!(one, many);
        drop((conn, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
