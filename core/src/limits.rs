//! Every limit of the event model, in one place. The SDK and the collector both read these.
//!
//! The request and event sizes are at least Segment's (research/collector-identity-privacy.md §1.5) so that
//! existing Segment libraries, which batch up to those sizes, are never refused.

/// Largest request body, in bytes, after decompression (Segment: 500 KB per batch request).
pub const MAX_REQUEST_BYTES: usize = 500 * 1024;

/// Largest single event, in bytes of its JSON text (Segment: 32 KB per call and per batched event).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// Most events in one `/v1/batch` request (Segment: 2,500).
pub const MAX_BATCH_EVENTS: usize = 2_500;

/// Longest `messageId`, in characters (Segment: 100).
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

/// Longest `userId`, `anonymousId`, `previousId` and `groupId`, in characters.
pub const MAX_ID_CHARS: usize = 255;

/// Longest `event` name of a track call and `name` of a page or screen call, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 200;

/// Deepest nesting of objects and arrays inside `properties`, `traits` and `context` (the field itself is depth 1).
pub const MAX_JSON_DEPTH: usize = 10;

/// Most keys at the top level of `properties` or `traits` (Segment Unify refuses identify calls at 300 traits).
pub const MAX_TOP_LEVEL_KEYS: usize = 300;

/// Longest string value anywhere inside `properties`, `traits` or `context`, in bytes of JSON text.
pub const MAX_STRING_BYTES: usize = 8 * 1024;

/// Longest URL kept from `context.page` (url, referrer), in bytes. Longer values are truncated, not refused.
pub const MAX_URL_BYTES: usize = 2_048;

/// How far in the future a corrected timestamp may lie before it is clamped to the receive time and flagged.
pub const MAX_FUTURE_SKEW_MS: i64 = 6 * 60 * 60 * 1000;

/// The browser's budget for all in-flight `sendBeacon`/`fetch keepalive` bodies together (Fetch spec: 64 KiB).
pub const BEACON_BUDGET_BYTES: usize = 64 * 1024;
