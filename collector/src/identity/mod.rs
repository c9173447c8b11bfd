//! Identity resolution rules (DESIGN.md §4), as pure functions: which identifiers an event carries, which are
//! junk, and — given what the store already knows — the plan: which profile the event belongs to, which
//! identifiers to attach, which profiles to merge, and what to refuse (each refusal with a stable code).
//! `store/identity.rs` looks things up and carries plans out inside the writer's transaction.

use std::collections::BTreeMap;

/// What kind of identifier a value is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdKind {
    AnonymousId,
    UserId,
    /// Stored as a keyed HMAC of the normalised address.
    Email,
    /// Stored as a keyed HMAC of the normalised number.
    Phone,
    /// `context.externalIds` entries, by their `type`.
    External(String),
}

impl IdKind {
    /// The kind's name without allocating for the fixed kinds.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            IdKind::AnonymousId => "anonymous_id".into(),
            IdKind::UserId => "user_id".into(),
            IdKind::Email => "email".into(),
            IdKind::Phone => "phone".into(),
            IdKind::External(name) => format!("external:{name}").into(),
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            IdKind::AnonymousId => "anonymous_id".into(),
            IdKind::UserId => "user_id".into(),
            IdKind::Email => "email".into(),
            IdKind::Phone => "phone".into(),
            IdKind::External(name) => format!("external:{name}"),
        }
    }

    /// Parses the names the admin API and the store use (`external:NAME` for external IDs).
    pub fn parse(s: &str) -> Option<IdKind> {
        Some(match s {
            "anonymous_id" => IdKind::AnonymousId,
            "user_id" => IdKind::UserId,
            "email" => IdKind::Email,
            "phone" => IdKind::Phone,
            other => {
                let name = other.strip_prefix("external:")?;
                if name.is_empty() || name.len() > 64 {
                    return None;
                }
                IdKind::External(name.to_owned())
            }
        })
    }

    /// Email and phone values are stored hashed; the others as sent.
    pub fn is_hashed(&self) -> bool {
        matches!(self, IdKind::Email | IdKind::Phone)
    }
}

/// One identifier, with its value as stored (already hashed for email and phone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    pub kind: IdKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdKind, value: impl Into<String>) -> Self {
        Identifier { kind, value: value.into() }
    }
}

/// Values that identify nobody: placeholders, serialisation accidents and all-zero IDs (Segment's blocked
/// values, Adobe's, and what the research found in the wild). Never promoted to identifiers.
pub fn is_junk(value: &str) -> bool {
    let v = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    if v.is_empty() || v.bytes().all(|b| b == b'0' || b == b'-') {
        return true;
    }
    const JUNK: &[&str] = &[
        "null", "undefined", "nil", "none", "-1", "anonymous", "anon", "guest", "unknown", "[object object]", "nan", "true",
        "false", "n/a", "na", "0", "user", "test", "void", "(null)", "{}", "[]",
    ];
    JUNK.iter().any(|junk| junk.eq_ignore_ascii_case(v))
}

/// Lower-cased, trimmed e-mail address; `None` when it is not one.
pub fn normalize_email(raw: &str) -> Option<String> {
    // A byte test: every anonymous ID of every event comes here, and `str`'s char searcher cost ~120 instructions.
    if !raw.as_bytes().contains(&b'@') {
        return None;
    }
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !email.contains(char::is_whitespace)).then_some(email)
}

/// E.164-style: `+` and digits only. Numbers without a country code keep their digits as given (we cannot guess
/// the country). `None` when fewer than 6 digits remain.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+') || trimmed.starts_with("00");
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let digits = if trimmed.starts_with("00") { digits[2..].to_owned() } else { digits };
    if digits.len() < 6 || digits.len() > 15 || trimmed.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    Some(if plus { format!("+{digits}") } else { digits })
}

/// How much one profile may hold (defaults from Segment Unify's and Adobe's guardrails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A profile holds at most this many user IDs (1: two user IDs are two people).
    pub user_ids: usize,
    pub anonymous_ids: usize,
    /// Per kind, for email, phone and each external ID type.
    pub other_per_kind: usize,
    /// All identifiers of a profile together.
    pub identifiers: usize,
    /// Merges a profile may go through.
    pub merges: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { user_ids: 1, anonymous_ids: 50, other_per_kind: 5, identifiers: 1_000, merges: 100 }
    }
}

/// What the store knows about a profile (by its root): enough to apply the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileSummary {
    pub root: i64,
    pub user_ids: Vec<String>,
    /// Identifier count per kind name (`IdKind::as_string`).
    pub counts: BTreeMap<String, usize>,
    pub merge_count: i64,
}

impl ProfileSummary {
    fn count(&self, kind: &IdKind) -> usize {
        self.counts.get(&kind.as_string()).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// The summary after `other` is merged into this one.
    fn absorb(&mut self, other: &ProfileSummary) {
        for id in &other.user_ids {
            if !self.user_ids.contains(id) {
                self.user_ids.push(id.clone());
            }
        }
        for (kind, n) in &other.counts {
            *self.counts.entry(kind.clone()).or_default() += n;
        }
        self.merge_count += other.merge_count + 1;
    }
}

/// Why an edge or a merge was refused. Stable codes: they are stored in the identity log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// The value is a placeholder (`null`, `guest`, `0`, …).
    JunkValue,
    /// Joining would give one profile two different user IDs (the shared-computer case).
    UserIdConflict,
    /// The profile already holds the maximum of this kind of identifier.
    IdentifierCap,
    /// The profile has been merged the maximum number of times.
    MergeCap,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::JunkValue => "junk_value",
            RefusalCode::UserIdConflict => "user_id_conflict",
            RefusalCode::IdentifierCap => "identifier_cap",
            RefusalCode::MergeCap => "merge_cap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An identifier of the event not attached (junk, or the target cannot hold it).
    Identifier { identifier: Identifier, code: RefusalCode },
    /// A profile not merged into the target.
    Merge { profile: i64, code: RefusalCode },
}

/// Where the event's identity goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An existing profile, by root.
    Existing(i64),
    /// A profile to create.
    New,
}

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    /// Profiles (roots) to merge into the target, oldest first.
    pub merge: Vec<i64>,
    /// New identifiers to attach to the target.
    pub attach: Vec<Identifier>,
    pub refusals: Vec<Refusal>,
}

/// Decides what an event with these identifiers does to the graph. `known` maps each identifier the store
/// already has to its profile's summary. Rules:
/// - junk values are refused;
/// - the event's user ID decides: if known, its profile is the target; if new, the oldest profile of the event's
///   other identifiers that holds no user ID adopts it (sign-up), else a new profile is made;
/// - without a user ID the oldest known profile is the target;
/// - every other profile is merged into the target unless that would join two user IDs or exceed the merge cap;
/// - new identifiers are attached unless the target's per-kind or total cap is reached.
pub fn plan(identifiers: &[Identifier], known: &[(Identifier, ProfileSummary)], limits: &Limits) -> Plan {
    let mut refusals = Vec::new();
    let mut wanted: Vec<&Identifier> = Vec::new();
    for id in identifiers {
        if is_junk(&id.value) {
            refusals.push(Refusal::Identifier { identifier: id.clone(), code: RefusalCode::JunkValue });
        } else if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    let root_of = |id: &Identifier| known.iter().find(|(k, _)| k == id).map(|(_, p)| p);
    let mut roots: Vec<&ProfileSummary> = Vec::new();
    for id in &wanted {
        if let Some(p) = root_of(id) {
            if !roots.iter().any(|r| r.root == p.root) {
                roots.push(p);
            }
        }
    }
    roots.sort_by_key(|p| p.root);
    let user_id = wanted.iter().find(|id| id.kind == IdKind::UserId).map(|id| id.value.clone());

    let target: Option<&ProfileSummary> = match &user_id {
        Some(uid) => match wanted.iter().find(|id| id.kind == IdKind::UserId).and_then(|id| root_of(id)) {
            Some(p) => Some(p),
            None => roots.iter().copied().find(|p| p.user_ids.is_empty() || p.user_ids.iter().all(|u| u == uid)),
        },
        None => roots.first().copied(),
    };
    let mut merged = target.cloned().unwrap_or_default();
    if let Some(uid) = &user_id {
        if !merged.user_ids.contains(uid) && merged.user_ids.len() < limits.user_ids {
            // Counted below when attached; considered here so merges that would add a second user ID are refused.
            merged.user_ids.push(uid.clone());
        }
    }
    let mut merge = Vec::new();
    for p in &roots {
        if target.is_some_and(|t| t.root == p.root) {
            continue;
        }
        let distinct_users = {
            let mut all: Vec<&String> = merged.user_ids.iter().chain(p.user_ids.iter()).collect();
            all.sort();
            all.dedup();
            all.len()
        };
        if distinct_users > limits.user_ids {
            refusals.push(Refusal::Merge { profile: p.root, code: RefusalCode::UserIdConflict });
        } else if merged.merge_count + p.merge_count + 1 > limits.merges {
            refusals.push(Refusal::Merge { profile: p.root, code: RefusalCode::MergeCap });
        } else {
            merged.absorb(p);
            merge.push(p.root);
        }
    }
    let mut attach = Vec::new();
    for id in wanted {
        if root_of(id).is_some() {
            continue;
        }
        let cap = match id.kind {
            IdKind::UserId => limits.user_ids,
            IdKind::AnonymousId => limits.anonymous_ids,
            _ => limits.other_per_kind,
        };
        let holds_other_user = id.kind == IdKind::UserId && merged.user_ids.iter().any(|u| u != &id.value);
        if holds_other_user {
            refusals.push(Refusal::Identifier { identifier: id.clone(), code: RefusalCode::UserIdConflict });
        } else if (id.kind != IdKind::UserId && merged.count(&id.kind) >= cap) || merged.total() >= limits.identifiers {
            refusals.push(Refusal::Identifier { identifier: id.clone(), code: RefusalCode::IdentifierCap });
        } else {
            *merged.counts.entry(id.kind.as_string()).or_default() += 1;
            attach.push(id.clone());
        }
    }
    Plan { target: target.map_or(Target::New, |t| Target::Existing(t.root)), merge, attach, refusals }
}

#[cfg(test)]
mod tests;
