//! The storage boundary: the rows ingest produces and the operations the writer and the queries need.
//! This module and its children are the only code that knows SQL.

pub mod copy;
mod identity;
mod postgres;
mod privacy;
mod static_statement;
mod texts;
pub mod profiles;
pub mod shared;
pub mod sqlite;

pub use identity::UnmergeError;
pub use postgres::ping as ping_shared_database;
pub use privacy::{ErasureReport, ErasureRequest};
pub use texts::{Field, Texts};
pub mod stats;
pub mod stats_thread;

use footprint_core::{CallKind, RejectCode};

/// The hash map of the writer's hot caches: foldhash, seeded at random per process, instead of SipHash (several
/// times faster for short keys; the caches are bounded and start over when full).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// The unique-visitor key of an event with analytics consent: `a:<anonymousId>`, else `u:<userId>`.
pub fn visitor_key(anonymous_id: Option<&str>, user_id: Option<&str>) -> Option<String> {
    match (anonymous_id, user_id) {
        (Some(a), _) => Some(["a:", a].concat()),
        (None, Some(u)) => Some(["u:", u].concat()),
        (None, None) => None,
    }
}

/// Flag bits of [`StoredEvent::flags`].
pub mod flags {
    /// The corrected timestamp lay too far in the future and was set to the receive time.
    pub const CLAMPED_FUTURE: i64 = 1;
    /// The user agent is a bot's (kept and counted, excluded from stats).
    pub const BOT: i64 = 2;
    /// The event came without a `messageId`; the collector made one (so retries of it cannot be deduplicated).
    pub const GENERATED_MESSAGE_ID: i64 = 4;
}

/// One accepted event, as stored. Raw IPs and raw user agents never get here: `ip` is already truncated.
/// Its texts are packed in one allocation ([`Texts`]): read them with [`StoredEvent::text`].
/// Its `Debug` names the event but shows none of its personal content (IDs, traits, properties, URLs).
#[derive(Clone, Default)]
pub struct StoredEvent {
    pub site: Arc<str>,
    pub kind: Option<CallKind>,
    pub timestamp: i64,
    pub original_timestamp: Option<i64>,
    pub sent_at: Option<i64>,
    pub received_at: i64,
    pub flags: i64,
    pub device: Option<&'static str>,
    /// Consent in force, as `footprint_core::consent::Categories::bits`.
    pub consent: i64,
    /// What identity resolution needs; `None` without analytics consent (no identity edges).
    pub identity: Option<IdentityInput>,
    /// Set when the event records a consent change (appended to the consent ledger).
    pub consent_change: Option<ConsentChange>,
    /// The event's id in the shared store, when this row is a replica's copy of it (store/shared.rs).
    pub shared_id: Option<i64>,
    pub texts: Texts,
}

/// What one call of [`EventStore::delete_older_than`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPass {
    pub deleted: usize,
    /// There may be more to delete: call again.
    pub more: bool,
}

/// The identity side of an event: its identifiers (email and phone already hashed) and the traits it sets.
#[derive(Debug, Clone, Default)]
pub struct IdentityInput {
    pub identifiers: Vec<crate::identity::Identifier>,
    /// The identifier the event is filed under: its user ID, else its anonymous ID.
    pub primary: Option<crate::identity::Identifier>,
    /// A JSON object of traits (already pseudonymised), merged into the profile last-write-wins by event time.
    pub traits: Option<String>,
}

/// A consent change, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub categories: i64,
    pub source: String,
    pub policy_version: Option<String>,
}

impl std::fmt::Debug for StoredEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEvent")
            .field("site", &self.site)
            .field("message_id", &self.message_id())
            .field("kind", &self.kind)
            .field("timestamp", &self.timestamp)
            .field("flags", &self.flags)
            .field("consent", &self.consent)
            .finish_non_exhaustive()
    }
}

impl StoredEvent {
    pub fn text(&self, field: Field) -> Option<&str> {
        self.texts.get(field)
    }

    /// The `messageId` ("" for an event made without one, as in tests).
    pub fn message_id(&self) -> &str {
        self.texts.get(Field::MessageId).unwrap_or_default()
    }

    /// The event with `field` set to `value` (each call repacks the texts: for tests).
    #[cfg(test)]
    pub fn with(self, field: Field, value: impl AsRef<str>) -> StoredEvent {
        self.with_opt(field, Some(value))
    }

    #[cfg(test)]
    pub fn with_opt(mut self, field: Field, value: Option<impl AsRef<str>>) -> StoredEvent {
        self.texts.set(field, value.as_ref().map(AsRef::as_ref));
        self
    }

    /// The texts a sender may have put anything into (every optional text but the identifiers, which identity
    /// resolution keys on, and the fields the collector derives itself): for e-mail redaction at ingest.
    pub const FREE_TEXTS: [Field; 17] = {
        use Field::*;
        [Name, Category, GroupId, Url, Path, Title, Referrer, UtmSource, UtmMedium, UtmCampaign, UtmTerm, UtmContent, Properties, Traits, Context, Integrations, SessionId]
    };

    /// Every text the row would store and the profile traits, joined (for tests that search a row for what must not
    /// be there).
    #[cfg(test)]
    pub fn all_text(&self) -> String {
        let mut all: Vec<&str> = self.texts.values().into_iter().flatten().collect();
        if let Some(identity) = &self.identity {
            all.extend(identity.identifiers.iter().map(|i| i.value.as_str()));
            all.extend(identity.traits.as_deref());
        }
        all.join("\n")
    }

    /// Rough size in memory, for the writer queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        256 + self.texts.len() + self.identity.as_ref().and_then(|i| i.traits.as_ref()).map_or(0, String::len)
    }
}

/// The columns of a stored event row, in the order [`StoredEvent::from_columns`] reads them (the same in SQLite and
/// PostgreSQL).
pub(crate) const EVENT_ROW_COLUMNS: &str = "site, message_id, type, name, category, anonymous_id, user_id, previous_id, group_id,
    timestamp, original_timestamp, sent_at, received_at, flags, url, path, title, referrer, referrer_host, utm_source, utm_medium,
    utm_campaign, utm_term, utm_content, ip, browser, os, device, properties, traits, context, integrations, visitor, session_id, consent";

/// A row read back by position, from either database.
pub(crate) trait RowColumns {
    fn text(&self, i: usize) -> Result<Option<&str>, StoreError>;
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError>;
}

impl RowColumns for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.get_ref(i)?.as_str_or_null().map_err(rusqlite::Error::from)?)
    }
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl RowColumns for ::postgres::Row {
    fn text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.try_get(i).map_err(StoreError::Postgres)
    }
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i).map_err(StoreError::Postgres)
    }
}

/// The column of each [`Field`] in [`EVENT_ROW_COLUMNS`].
const FIELD_COLUMNS: [usize; Field::COUNT] = [1, 3, 4, 5, 6, 7, 8, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33];

impl StoredEvent {
    /// The event whose [`EVENT_ROW_COLUMNS`] start at column `first` of `row` (identity input, consent change and
    /// shared id are the caller's).
    pub(crate) fn from_columns(row: &impl RowColumns, first: usize) -> Result<StoredEvent, StoreError> {
        let text = |i: usize| row.text(first + i);
        let int = |i: usize| row.int(first + i);
        let mut values = [None; Field::COUNT];
        for (value, column) in values.iter_mut().zip(FIELD_COLUMNS) {
            *value = text(column)?;
        }
        Ok(StoredEvent {
            site: text(0)?.unwrap_or_default().into(),
            kind: text(2)?.and_then(CallKind::parse),
            timestamp: int(9)?.unwrap_or_default(),
            original_timestamp: int(10)?,
            sent_at: int(11)?,
            received_at: int(12)?.unwrap_or_default(),
            flags: int(13)?.unwrap_or_default(),
            device: text(27)?.map(crate::enrich::device_name),
            consent: int(34)?.unwrap_or_default(),
            texts: Texts::pack(values),
            ..Default::default()
        })
    }
}

/// A refused event, kept for inspection with its reason ("failed events"). Never silently dropped.
#[derive(Debug, Clone)]
pub struct QuarantinedEvent {
    pub site: Arc<str>,
    pub received_at: i64,
    pub message_id: Option<String>,
    pub code: &'static str,
    pub reason: String,
    /// The event's JSON text as received (or the start of an unparseable body).
    pub payload: String,
    /// Its id in the shared store, when this row is a replica's copy of it (store/shared.rs).
    pub shared_id: Option<i64>,
}

impl QuarantinedEvent {
    pub fn new(site: Arc<str>, received_at: i64, message_id: Option<String>, code: RejectCode, reason: String, payload: String) -> Self {
        QuarantinedEvent { site, received_at, message_id, code: code.as_str(), reason, payload, shared_id: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(::postgres::Error),
    /// A store that cannot be reached at all (a networked database; the writer's tests).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored value that does not decode (the shared log's JSON columns).
    #[error("stored data does not decode: {0}")]
    Corrupt(String),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// What the group-commit writer needs from a store.
pub trait EventStore: Send {
    /// Stores accepted and quarantined events in one transaction; returns only once it is durable. Derived tables
    /// (the stats) may follow later, from events the store keeps or reads back; see [`EventStore::flush`].
    /// Returns the positions in `events` of those the store found already stored (a store shared by several
    /// collectors decides duplicates itself); with one writer per store the writer's own set decides, and the
    /// list is empty.
    fn commit(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError>;
    /// Brings derived tables up to date with every committed event (before stats are read, and at shutdown).
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Brings derived tables up to date if enough committed events wait (or the oldest has waited long enough).
    /// The writer calls it after it has answered a group's requests, so a stats update never delays an answer
    /// that is already durable. The events are durable whatever happens here, so a failure is the store's to log
    /// and to catch up from later, not an error for the writer.
    fn flush_if_due(&mut self) {}
    /// Starts bringing derived tables up to date without waiting for them (the writer's queue is idle); a store
    /// that derives them on the writer's thread does it all here.
    fn flush_in_background(&mut self) -> Result<(), StoreError> {
        self.flush()
    }
    /// Whether committed events wait for [`EventStore::flush`].
    fn stats_waiting(&self) -> bool {
        false
    }
    /// How many committed events wait for [`EventStore::flush`] in memory (for `/metrics`).
    fn stats_backlog(&self) -> usize {
        0
    }
    /// Splits merge `merge_id` back apart; returns (winner root, loser root).
    fn unmerge(&mut self, merge_id: i64, now: i64) -> Result<Result<(i64, i64), UnmergeError>, StoreError>;
    /// Erases a person everywhere and records suppression entries (`suppression_hash` makes their keys).
    fn erase(&mut self, request: &ErasureRequest, suppression_hash: &dyn Fn(&crate::identity::Identifier) -> String, now: i64) -> Result<ErasureReport, StoreError>;
    /// Deletes up to `limit` events of `site` older than `cutoff_ms` (event time) and quarantine rows received
    /// before it; says how many, and whether to call again.
    fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, limit: usize) -> Result<RetentionPass, StoreError>;
    /// Calls `each(site, message_id, received_at)` for every event received at or after `since_ms`, so the
    /// deduplication window survives restarts.
    fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError>;
}
