//! Reading profiles: lookup by any identifier, the single customer view, the event timeline, the identity log,
//! and the full export of a person (GDPR Art. 15/20). Read-only connections; the writer is never blocked.

use super::sqlite::{SqliteReader, PERSON_EVENT_IDS};
use super::StoreError;
use crate::identity::Identifier;
use footprint_core::consent::Categories;
use footprint_core::time::format_rfc3339_ms;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// One stored event, as the admin API returns it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    #[serde(rename = "messageId")]
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    #[serde(rename = "anonymousId")]
    pub anonymous_id: Option<String>,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    pub timestamp: String,
    #[serde(rename = "receivedAt")]
    pub received_at: String,
    pub url: Option<String>,
    pub path: Option<String>,
    pub title: Option<String>,
    pub referrer: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub ip: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    pub session_id: Option<String>,
    pub consent: ConsentView,
    pub bot: bool,
    pub properties: Option<Box<RawValue>>,
    pub traits: Option<Box<RawValue>>,
    pub context: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub struct ConsentView {
    pub analytics: bool,
    pub marketing: bool,
    pub personalization: bool,
}

impl From<Categories> for ConsentView {
    fn from(c: Categories) -> Self {
        ConsentView { analytics: c.analytics, marketing: c.marketing, personalization: c.personalization }
    }
}

const EVENT_COLUMNS: &str = "id, message_id, type, name, anonymous_id, user_id, timestamp, received_at, url, referrer, utm_source,
    utm_medium, utm_campaign, ip, browser, os, device, session_id, consent, flags, properties, traits, context, path, title";

fn raw(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

fn event_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventView> {
    Ok(EventView {
        id: r.get(0)?,
        message_id: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        anonymous_id: r.get(4)?,
        user_id: r.get(5)?,
        timestamp: format_rfc3339_ms(r.get(6)?),
        received_at: format_rfc3339_ms(r.get(7)?),
        url: r.get(8)?,
        path: r.get(23)?,
        title: r.get(24)?,
        referrer: r.get(9)?,
        utm_source: r.get(10)?,
        utm_medium: r.get(11)?,
        utm_campaign: r.get(12)?,
        ip: r.get(13)?,
        browser: r.get(14)?,
        os: r.get(15)?,
        device: r.get(16)?,
        session_id: r.get(17)?,
        consent: Categories::from_bits(r.get(18)?).into(),
        bot: r.get::<_, i64>(19)? & super::flags::BOT != 0,
        properties: raw(r.get(20)?),
        traits: raw(r.get(21)?),
        context: raw(r.get(22)?),
    })
}

impl SqliteReader {
    /// The site and root profile of an identifier (as stored), searching `sites` in order.
    pub fn find_profile(&self, sites: &[String], id: &Identifier) -> Result<Option<(String, i64)>, StoreError> {
        for site in sites {
            let found: Option<i64> = self
                .conn()
                .query_row(
                    "SELECT p.root FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE i.site = ?1 AND i.kind = ?2 AND i.value = ?3",
                    params![site, id.kind.as_string(), id.value],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(root) = found {
                return Ok(Some((site.clone(), root)));
            }
        }
        Ok(None)
    }

    /// Whether a root profile exists, and its site.
    pub fn profile_site(&self, root: i64) -> Result<Option<String>, StoreError> {
        Ok(self.conn().query_row("SELECT site FROM profiles WHERE id = ?1 AND root = id", [root], |r| r.get(0)).optional()?)
    }

    /// The single customer view: identifiers, traits, first/last seen, sessions, consent, merges.
    pub fn profile(&self, site: &str, root: i64) -> Result<Value, StoreError> {
        let conn = self.conn();
        let members = "SELECT id FROM profiles WHERE root = ?1";
        let mut identifiers = Vec::new();
        let mut stmt = conn.prepare(&format!("SELECT kind, value, first_seen FROM identities WHERE profile_id IN ({members}) ORDER BY first_seen, kind"))?;
        for row in stmt.query_map([root], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))? {
            let (kind, value, first_seen) = row?;
            identifiers.push(json!({ "type": kind, "value": value, "first_seen": format_rfc3339_ms(first_seen) }));
        }
        let mut traits = serde_json::Map::new();
        let mut stmt = conn.prepare("SELECT key, value FROM profile_traits WHERE profile_id = ?1 ORDER BY key")?;
        for row in stmt.query_map([root], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (key, value) = row?;
            traits.insert(key, serde_json::from_str(&value).unwrap_or(Value::String(value)));
        }
        let (first, last, events, sessions): (Option<i64>, Option<i64>, i64, i64) = conn.query_row(
            &format!("SELECT MIN(timestamp), MAX(timestamp), COUNT(*), COUNT(DISTINCT session_id) FROM events WHERE id IN ({PERSON_EVENT_IDS})"),
            [root],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let latest_consent: Option<(i64, i64)> = conn
            .query_row(&format!("SELECT consent, timestamp FROM events WHERE id IN ({PERSON_EVENT_IDS}) ORDER BY timestamp DESC, id DESC LIMIT 1"), [root], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let (merges, created): (i64, i64) = conn.query_row("SELECT merge_count, created_at FROM profiles WHERE id = ?1", [root], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(json!({
            "id": root,
            "site": site,
            "identifiers": identifiers,
            "traits": traits,
            "created_at": format_rfc3339_ms(created),
            "first_seen": first.map(format_rfc3339_ms),
            "last_seen": last.map(format_rfc3339_ms),
            "events": events,
            "sessions": sessions,
            "consent": latest_consent.map(|(bits, at)| json!({ "categories": ConsentView::from(Categories::from_bits(bits)), "as_of": format_rfc3339_ms(at) })),
            "consent_history": self.ledger(root)?,
            "merges": merges,
        }))
    }

    /// Events of a profile, newest first, `limit` at a time; `before` is the last `id` of the previous page.
    pub fn profile_events(&self, root: i64, before: Option<i64>, limit: usize) -> Result<Vec<EventView>, StoreError> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({PERSON_EVENT_IDS}) AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![root, before.unwrap_or(i64::MAX), limit as i64], event_view)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The consent ledger entries of a profile, oldest first.
    pub fn ledger(&self, root: i64) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT at, categories, source, policy_version, message_id FROM consent_ledger WHERE profile_id IN (SELECT id FROM profiles WHERE root = ?1) ORDER BY at, id",
        )?;
        let rows = stmt.query_map([root], |r| {
            Ok(json!({
                "at": format_rfc3339_ms(r.get(0)?),
                "categories": ConsentView::from(Categories::from_bits(r.get(1)?)),
                "source": r.get::<_, String>(2)?,
                "policy_version": r.get::<_, Option<String>>(3)?,
                "messageId": r.get::<_, Option<String>>(4)?,
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Merges, refusals and unmerges that touched a profile, newest first.
    pub fn identity_log(&self, root: i64) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT l.id, l.at, l.action, l.code, l.profile_id, l.other_profile_id, l.identifier_kind, l.message_id,
                    (SELECT m.id FROM merges m WHERE l.action = 'merge' AND m.winner = l.profile_id AND m.loser = l.other_profile_id AND m.message_id IS l.message_id)
             FROM identity_log l
             WHERE l.profile_id IN (SELECT id FROM profiles WHERE root = ?1) OR l.other_profile_id IN (SELECT id FROM profiles WHERE root = ?1)
             ORDER BY l.id DESC LIMIT 500",
        )?;
        let rows = stmt.query_map([root], |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "at": format_rfc3339_ms(r.get(1)?),
                "action": r.get::<_, String>(2)?,
                "code": r.get::<_, Option<String>>(3)?,
                "profile": r.get::<_, Option<i64>>(4)?,
                "other_profile": r.get::<_, Option<i64>>(5)?,
                "identifier_type": r.get::<_, Option<String>>(6)?,
                "messageId": r.get::<_, Option<String>>(7)?,
                "merge_id": r.get::<_, Option<i64>>(8)?,
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `each` with every event of the profile, oldest first (for exports of any size).
    pub fn for_each_profile_event(&self, root: i64, each: &mut dyn FnMut(EventView)) -> Result<usize, StoreError> {
        let mut stmt = self.conn().prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({PERSON_EVENT_IDS}) ORDER BY timestamp, id"))?;
        let mut n = 0;
        for event in stmt.query_map([root], event_view)? {
            each(event?);
            n += 1;
        }
        Ok(n)
    }
}
