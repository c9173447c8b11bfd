//! The texts of a stored event, in one allocation.
//!
//! An event is two dozen short texts. As separate `String`s they were as many blocks, allocated by a request thread
//! and freed by the writer after the commit, or by the stats thread up to 250 ms later: the allocator's fast path
//! missed the cache on nearly every one of them (~11 % of batched ingest), and the events moved between threads as
//! ~900-byte structs. Packed, an event is one block and a small table of where each text lies.

/// One text of a stored event, in the order of the events table's text columns ([`super::EVENT_ROW_COLUMNS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    MessageId,
    Name,
    Category,
    AnonymousId,
    UserId,
    PreviousId,
    GroupId,
    Url,
    Path,
    Title,
    Referrer,
    ReferrerHost,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    /// Already truncated (a raw IP never gets here).
    Ip,
    Browser,
    Os,
    Properties,
    Traits,
    Context,
    Integrations,
    /// The unique-visitor key: `a:<anonymousId>`, `u:<userId>` or `c:<cookieless daily hash>`.
    Visitor,
    SessionId,
}

impl Field {
    pub const COUNT: usize = Field::SessionId as usize + 1;

    /// Every field, in order.
    pub const ALL: [Field; Field::COUNT] = {
        use Field::*;
        [
            MessageId, Name, Category, AnonymousId, UserId, PreviousId, GroupId, Url, Path, Title, Referrer, ReferrerHost, UtmSource, UtmMedium,
            UtmCampaign, UtmTerm, UtmContent, Ip, Browser, Os, Properties, Traits, Context, Integrations, Visitor, SessionId,
        ]
    };
}

/// Where a text lies in the buffer; [`ABSENT`] when the event has none.
type Span = (u32, u32);
const ABSENT: Span = (u32::MAX, u32::MAX);

/// An event's texts: one buffer holding exactly the present texts, one after another, and each one's span.
#[derive(Clone, PartialEq, Eq)]
pub struct Texts {
    buffer: String,
    spans: [Span; Field::COUNT],
}

/// Names the present fields and their size, never their content (IDs, URLs, properties).
impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let present: Vec<Field> = Field::ALL.into_iter().filter(|&field| self.get(field).is_some()).collect();
        f.debug_struct("Texts").field("present", &present).field("bytes", &self.buffer.len()).finish()
    }
}

impl Default for Texts {
    fn default() -> Texts {
        Texts { buffer: String::new(), spans: [ABSENT; Field::COUNT] }
    }
}

impl Texts {
    /// Packs one value per field, in [`Field`] order, into one allocation of exactly their size.
    pub fn pack(values: [Option<&str>; Field::COUNT]) -> Texts {
        let mut buffer = String::with_capacity(values.iter().flatten().map(|t| t.len()).sum());
        let mut spans = [ABSENT; Field::COUNT];
        for (span, value) in spans.iter_mut().zip(values) {
            if let Some(value) = value {
                let start = buffer.len();
                buffer.push_str(value);
                // An event's texts are bounded by the 32 KB event limit (and any row by SQLite's 1 GB).
                *span = (start as u32, buffer.len() as u32);
            }
        }
        Texts { buffer, spans }
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        let (start, end) = self.spans[field as usize];
        (start != u32::MAX).then(|| &self.buffer[start as usize..end as usize])
    }

    /// Every field's value, in order.
    pub fn values(&self) -> [Option<&str>; Field::COUNT] {
        Field::ALL.map(|f| self.get(f))
    }

    /// Replaces one text by repacking them all: for the rare rewrite after packing (tests, a text PostgreSQL cannot
    /// store), so the buffer never holds a text that is no longer the event's.
    pub fn set(&mut self, field: Field, value: Option<&str>) {
        let mut values = self.values();
        values[field as usize] = value;
        *self = Texts::pack(values);
    }

    /// The bytes of all texts together.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether any text contains `c`.
    pub fn contain(&self, c: char) -> bool {
        self.buffer.contains(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_comes_back_apart_and_an_absent_one_differs_from_an_empty_one() {
        let mut values = [None; Field::COUNT];
        values[Field::MessageId as usize] = Some("m-1");
        values[Field::Name as usize] = Some("");
        values[Field::SessionId as usize] = Some("s");
        let mut texts = Texts::pack(values);
        assert_eq!(texts.len(), 4);
        assert_eq!((texts.get(Field::MessageId), texts.get(Field::Name), texts.get(Field::Category), texts.get(Field::SessionId)), (Some("m-1"), Some(""), None, Some("s")));
        texts.set(Field::Name, Some("Signed Up"));
        texts.set(Field::MessageId, None);
        assert_eq!(texts.values().iter().flatten().copied().collect::<Vec<_>>(), ["Signed Up", "s"]);
        assert_eq!(texts.len(), "Signed Ups".len(), "a replaced text leaves nothing behind");
        assert_eq!(Texts::default().values(), [None; Field::COUNT]);
        assert!(Field::ALL.iter().enumerate().all(|(i, f)| *f as usize == i), "ALL is in order");
    }
}
