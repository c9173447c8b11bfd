//! Stable, snake_case reason codes for every rejection. These strings are part of the API: never rename one.

/// Why an event was refused. `as_str` is the machine-readable `code` in ingest responses and in quarantine rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The event is not a JSON object, or a top-level field has the wrong JSON type.
    InvalidEvent,
    /// `type` is missing.
    MissingType,
    /// `type` is not one of track, page, screen, identify, alias, group.
    UnknownType,
    /// Neither `userId` nor `anonymousId` is present and non-empty.
    MissingIdentity,
    /// A track call without `event`.
    MissingEventName,
    /// A group call without `groupId`.
    MissingGroupId,
    /// An alias call without `previousId`.
    MissingPreviousId,
    /// An alias call without `userId`.
    MissingUserId,
    /// `messageId` longer than [`crate::limits::MAX_MESSAGE_ID_CHARS`].
    MessageIdTooLong,
    /// An identifier longer than [`crate::limits::MAX_ID_CHARS`].
    IdTooLong,
    /// `event` or `name` longer than [`crate::limits::MAX_EVENT_NAME_CHARS`].
    EventNameTooLong,
    /// The event's JSON text exceeds [`crate::limits::MAX_EVENT_BYTES`].
    EventTooLarge,
    /// `properties`, `traits` or `context` nested deeper than [`crate::limits::MAX_JSON_DEPTH`].
    TooDeep,
    /// `properties` or `traits` with more than [`crate::limits::MAX_TOP_LEVEL_KEYS`] keys.
    TooManyKeys,
    /// A string inside `properties`, `traits` or `context` longer than [`crate::limits::MAX_STRING_BYTES`].
    StringTooLong,
    /// `properties`, `traits` or `context` is present but not a JSON object.
    NotAnObject,
    /// A timestamp field is not an ISO-8601 / RFC 3339 date-time.
    InvalidTimestamp,
    /// The batch holds more than [`crate::limits::MAX_BATCH_EVENTS`] events; the ones past the limit get this code.
    BatchTooLarge,
    /// The request's write key is unknown (the whole request was refused with 401).
    UnknownWriteKey,
    /// The request's origin is not allowed for the site (the whole request was refused with 403).
    OriginNotAllowed,
    /// The event carries an identifier whose person was erased; nothing of it is stored.
    ErasedIdentity,
}

impl RejectCode {
    pub const ALL: [RejectCode; 21] = [
        Self::InvalidEvent,
        Self::MissingType,
        Self::UnknownType,
        Self::MissingIdentity,
        Self::MissingEventName,
        Self::MissingGroupId,
        Self::MissingPreviousId,
        Self::MissingUserId,
        Self::MessageIdTooLong,
        Self::IdTooLong,
        Self::EventNameTooLong,
        Self::EventTooLarge,
        Self::TooDeep,
        Self::TooManyKeys,
        Self::StringTooLong,
        Self::NotAnObject,
        Self::InvalidTimestamp,
        Self::BatchTooLarge,
        Self::UnknownWriteKey,
        Self::OriginNotAllowed,
        Self::ErasedIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEvent => "invalid_event",
            Self::MissingType => "missing_type",
            Self::UnknownType => "unknown_type",
            Self::MissingIdentity => "missing_identity",
            Self::MissingEventName => "missing_event_name",
            Self::MissingGroupId => "missing_group_id",
            Self::MissingPreviousId => "missing_previous_id",
            Self::MissingUserId => "missing_user_id",
            Self::MessageIdTooLong => "message_id_too_long",
            Self::IdTooLong => "id_too_long",
            Self::EventNameTooLong => "event_name_too_long",
            Self::EventTooLarge => "event_too_large",
            Self::TooDeep => "too_deep",
            Self::TooManyKeys => "too_many_keys",
            Self::StringTooLong => "string_too_long",
            Self::NotAnObject => "not_an_object",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::BatchTooLarge => "batch_too_large",
            Self::UnknownWriteKey => "unknown_write_key",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::ErasedIdentity => "erased_identity",
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in RejectCode::ALL {
            let s = code.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert!(seen.insert(s), "duplicate code {s}");
        }
    }
}
