//! The identity graph in SQL: looking identifiers up, carrying out the plans of `crate::identity::plan`,
//! merges, unmerges and trait updates. Runs inside the writer's transaction; the cache is only ever touched by
//! the writer thread, so it stays coherent (it is dropped whenever a transaction fails).

use super::IdentityInput;
use crate::identity::{self, IdKind, Identifier, Limits, Plan, ProfileSummary, Refusal, Target};
use footprint_core::RawObject;
use rusqlite::{params, Connection, OptionalExtension};

/// Identifier → profile, profile → root and root → summary, for the hot path.
#[derive(Default)]
pub struct IdentityCache {
    /// (site, kind, value) → profile, the three packed into one key ([`id_key`]): a lookup follows one pointer,
    /// where a key of the value alone, with a list of (site, kind) behind it, followed four (~3 % of batched CPU).
    ids: super::FastMap<Box<[u8]>, i64>,
    roots: super::FastMap<i64, i64>,
    summaries: super::FastMap<i64, ProfileSummary>,
    /// `ids` holds every row of `identities` (filled from the table by [`Self::fill_if_due`], kept so by the inserts):
    /// an identifier it does not hold is unknown, with no lookup. A new visitor's first event is the common case
    /// of a miss, and its lookup was a fifth of what resolving it cost.
    complete: bool,
    /// Filling was tried since the last [`Self::clear`]: a table too large for it is counted once, not per group.
    fill_tried: bool,
    /// The id of the next new profile, once read from the table.
    next_profile: Option<i64>,
}

impl IdentityCache {
    fn get(&self, site: &str, id: &Identifier) -> Option<i64> {
        with_id_key(site, &id.kind.as_str(), &id.value, |key| self.ids.get(key).copied())
    }

    fn insert(&mut self, site: &str, id: &Identifier, profile: i64) {
        if self.ids.len() >= Self::MAX_IDS {
            self.clear();
        }
        self.ids.insert(id_key(site, &id.kind.as_str(), &id.value).into_boxed_slice(), profile);
    }
}

/// The cache's key of an identifier: site, kind and value, the first two each ended by 0xFF, a byte no UTF-8 text
/// holds, so two different triples never make one key.
fn id_key(site: &str, kind: &str, value: &str) -> Vec<u8> {
    let mut key = vec![0; id_key_len(site, kind, value)];
    write_id_key(site, kind, value, &mut key);
    key
}

/// Calls `f` with [`id_key`]`(site, kind, value)`, built on the stack when it is short (a lookup then allocates
/// nothing).
fn with_id_key<R>(site: &str, kind: &str, value: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut on_stack = [0u8; 128];
    match on_stack.get_mut(..id_key_len(site, kind, value)) {
        Some(key) => {
            write_id_key(site, kind, value, key);
            f(key)
        }
        None => f(&id_key(site, kind, value)),
    }
}

fn id_key_len(site: &str, kind: &str, value: &str) -> usize {
    site.len() + kind.len() + value.len() + 2
}

/// Writes the key into `out`, which is exactly [`id_key_len`] long.
fn write_id_key(site: &str, kind: &str, value: &str, out: &mut [u8]) {
    let (site_part, rest) = out.split_at_mut(site.len() + 1);
    let (kind_part, value_part) = rest.split_at_mut(kind.len() + 1);
    for (part, text) in [(site_part, site), (kind_part, kind)] {
        part[..text.len()].copy_from_slice(text.as_bytes());
        part[text.len()] = 0xFF;
    }
    value_part.copy_from_slice(value.as_bytes());
}

impl IdentityCache {
    const MAX_IDS: usize = 500_000;
    /// A table up to this size is read whole, so misses need no lookup; half the bound leaves it room to grow.
    const MAX_FILL: usize = Self::MAX_IDS / 2;

    pub fn clear(&mut self) {
        self.ids.clear();
        self.roots.clear();
        self.summaries.clear();
        self.complete = false;
        self.fill_tried = false;
        self.next_profile = None;
    }

    /// Reads the whole `identities` table into the cache when it is small enough, once after each clear. Call it
    /// outside a transaction that changes identities, so what it reads is what the cache must hold.
    pub(super) fn fill_if_due(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.complete || self.fill_tried {
            return Ok(());
        }
        self.fill_tried = true;
        let count: i64 = conn.query_row("SELECT count(*) FROM identities", [], |r| r.get(0))?;
        if usize::try_from(count).map_or(true, |count| count > Self::MAX_FILL) {
            return Ok(());
        }
        self.ids.clear();
        let mut statement = conn.prepare("SELECT site, kind, value, profile_id FROM identities")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?));
            let key = id_key(text(0)?, text(1)?, text(2)?);
            self.ids.insert(key.into_boxed_slice(), row.get(3)?);
        }
        self.complete = true;
        Ok(())
    }
}

fn profile_of(conn: &Connection, cache: &mut IdentityCache, site: &str, id: &Identifier) -> rusqlite::Result<Option<i64>> {
    if let Some(pid) = cache.get(site, id) {
        return Ok(Some(pid));
    }
    if cache.complete {
        return Ok(None);
    }
    let found: Option<i64> = conn
        .prepare_cached("SELECT profile_id FROM identities WHERE site = ?1 AND kind = ?2 AND value = ?3")?
        .query_row(params![site, id.kind.as_str().as_ref(), id.value], |r| r.get(0))
        .optional()?;
    if let Some(pid) = found {
        cache.insert(site, id, pid);
    }
    Ok(found)
}

pub(super) fn root_of(conn: &Connection, cache: &mut IdentityCache, profile: i64) -> rusqlite::Result<i64> {
    if let Some(&root) = cache.roots.get(&profile) {
        return Ok(root);
    }
    let root: i64 = conn.prepare_cached("SELECT root FROM profiles WHERE id = ?1")?.query_row([profile], |r| r.get(0))?;
    cache.roots.insert(profile, root);
    Ok(root)
}

fn summary(conn: &Connection, cache: &mut IdentityCache, root: i64) -> rusqlite::Result<ProfileSummary> {
    if let Some(s) = cache.summaries.get(&root) {
        return Ok(s.clone());
    }
    let mut s = ProfileSummary { root, ..Default::default() };
    s.merge_count = conn.prepare_cached("SELECT merge_count FROM profiles WHERE id = ?1")?.query_row([root], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached("SELECT i.kind, i.value FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE p.root = ?1")?;
    let mut rows = stmt.query([root])?;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        if kind == "user_id" {
            s.user_ids.push(row.get(1)?);
        }
        *s.counts.entry(kind).or_default() += 1;
    }
    cache.summaries.insert(root, s.clone());
    Ok(s)
}

/// Resolves one event's identity: plans with the pure rules, applies the plan, logs merges and refusals, updates
/// traits. Returns the profile the event is filed under (where its primary identifier lives), or `None` when the
/// event has no usable identifier.
pub(super) fn resolve(conn: &Connection, cache: &mut IdentityCache, limits: &Limits, site: &str, input: &IdentityInput, at: i64, message_id: &str) -> rusqlite::Result<Option<i64>> {
    // The common case, a returning visitor: every identifier known, all in one profile, no traits. Nothing changes.
    if input.traits.is_none() && !input.identifiers.is_empty() {
        let mut root = None;
        let mut all_known_together = true;
        // The primary identifier is nearly always one of the event's identifiers: its profile is kept from the loop
        // instead of being looked up again.
        let mut primary_profile = None;
        for id in &input.identifiers {
            let profile = cache.get(site, id);
            if input.primary.as_ref() == Some(id) {
                primary_profile = Some(profile);
            }
            let known_root = match profile {
                Some(pid) if !identity::is_junk(&id.value) => cache.roots.get(&pid).copied(),
                _ => None,
            };
            match (known_root, root) {
                (Some(r), None) => root = Some(r),
                (Some(r), Some(seen)) if r == seen => {}
                _ => {
                    all_known_together = false;
                    break;
                }
            }
        }
        if all_known_together {
            let filed_under = primary_profile.unwrap_or_else(|| input.primary.as_ref().and_then(|p| cache.get(site, p)));
            return Ok(filed_under.or(root));
        }
    }
    let mut known = Vec::new();
    for id in &input.identifiers {
        if identity::is_junk(&id.value) {
            continue;
        }
        if let Some(pid) = profile_of(conn, cache, site, id)? {
            let root = root_of(conn, cache, pid)?;
            known.push((id.clone(), summary(conn, cache, root)?));
        }
    }
    let plan = identity::plan(&input.identifiers, &known, limits);
    let Some(target) = apply(conn, cache, site, &plan, at, message_id)? else { return Ok(None) };
    if let Some(traits) = &input.traits {
        set_traits(conn, target, traits, at)?;
    }
    let filed_under = match &input.primary {
        Some(primary) if !identity::is_junk(&primary.value) => profile_of(conn, cache, site, primary)?,
        _ => None,
    };
    Ok(Some(filed_under.unwrap_or(target)))
}

/// Carries out a plan; returns the target root.
fn apply(conn: &Connection, cache: &mut IdentityCache, site: &str, plan: &Plan, at: i64, message_id: &str) -> rusqlite::Result<Option<i64>> {
    let target = match plan.target {
        Target::Existing(root) => root,
        Target::New if plan.attach.is_empty() => {
            log(conn, site, at, "refuse", plan.refusals.first().map(refusal_code), None, None, None, message_id)?;
            return Ok(None);
        }
        Target::New => {
            // A new profile is its own root. Its id is the one SQLite would pick (the largest + 1), known before
            // the insert so the row is written once, not inserted and then updated with its own id.
            let id = match cache.next_profile {
                Some(id) => id,
                None => conn.query_row("SELECT IFNULL(MAX(id), 0) + 1 FROM profiles", [], |r| r.get(0))?,
            };
            conn.prepare_cached("INSERT INTO profiles (id, site, root, created_at, first_seen, last_seen) VALUES (?1, ?2, ?1, ?3, ?3, ?3)")?.execute(params![id, site, at])?;
            cache.next_profile = Some(id + 1);
            cache.roots.insert(id, id);
            cache.summaries.insert(id, ProfileSummary { root: id, ..Default::default() });
            id
        }
    };
    for &loser in &plan.merge {
        merge(conn, cache, site, target, loser, at, message_id)?;
    }
    for id in &plan.attach {
        conn.prepare_cached("INSERT INTO identities (site, kind, value, profile_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?5)")?
            .execute(params![site, id.kind.as_string(), id.value, target, at])?;
        cache.insert(site, id, target);
        if let Some(s) = cache.summaries.get_mut(&target) {
            if id.kind == IdKind::UserId {
                s.user_ids.push(id.value.clone());
            }
            *s.counts.entry(id.kind.as_string()).or_default() += 1;
        }
    }
    for refusal in &plan.refusals {
        let (kind, other) = match refusal {
            Refusal::Identifier { identifier, .. } => (Some(identifier.kind.as_string()), None),
            Refusal::Merge { profile, .. } => (None, Some(*profile)),
        };
        log(conn, site, at, "refuse", Some(refusal_code(refusal)), Some(target), other, kind, message_id)?;
    }
    Ok(Some(target))
}

fn refusal_code(r: &Refusal) -> &'static str {
    match r {
        Refusal::Identifier { code, .. } | Refusal::Merge { code, .. } => code.as_str(),
    }
}

fn merge(conn: &Connection, cache: &mut IdentityCache, site: &str, winner: i64, loser: i64, at: i64, message_id: &str) -> rusqlite::Result<()> {
    let moved: Vec<i64> = conn.prepare_cached("SELECT id FROM profiles WHERE root = ?1")?.query_map([loser], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let loser_merges: i64 = conn.prepare_cached("SELECT merge_count FROM profiles WHERE id = ?1")?.query_row([loser], |r| r.get(0))?;
    conn.prepare_cached("UPDATE profiles SET root = ?1 WHERE root = ?2")?.execute([winner, loser])?;
    conn.prepare_cached("UPDATE profiles SET merge_count = merge_count + ?2 + 1 WHERE id = ?1")?.execute([winner, loser_merges])?;
    conn.prepare_cached(
        "INSERT INTO profile_traits (profile_id, key, value, ts) SELECT ?1, key, value, ts FROM profile_traits WHERE profile_id = ?2
         ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value, ts = excluded.ts WHERE excluded.ts > profile_traits.ts",
    )?
    .execute([winner, loser])?;
    conn.prepare_cached("DELETE FROM profile_traits WHERE profile_id = ?1")?.execute([loser])?;
    let moved_json = serde_json::to_string(&moved).expect("ids serialise");
    conn.prepare_cached("INSERT INTO merges (site, at, winner, loser, moved, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![site, at, winner, loser, moved_json, message_id])?;
    log(conn, site, at, "merge", None, Some(winner), Some(loser), None, message_id)?;
    for pid in &moved {
        cache.roots.insert(*pid, winner);
    }
    if let Some(lost) = cache.summaries.remove(&loser) {
        let merged = cache.summaries.entry(winner).or_insert_with(|| ProfileSummary { root: winner, ..Default::default() });
        for u in lost.user_ids {
            if !merged.user_ids.contains(&u) {
                merged.user_ids.push(u);
            }
        }
        for (k, n) in lost.counts {
            *merged.counts.entry(k).or_default() += n;
        }
        merged.merge_count += lost.merge_count + 1;
    } else {
        cache.summaries.remove(&winner);
    }
    Ok(())
}

/// Sets traits on a profile, each key last-write-wins by event time.
fn set_traits(conn: &Connection, root: i64, traits_json: &str, ts: i64) -> rusqlite::Result<()> {
    let Ok(traits) = serde_json::from_str::<RawObject>(traits_json) else { return Ok(()) };
    let mut upsert = conn.prepare_cached(
        "INSERT INTO profile_traits (profile_id, key, value, ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value, ts = excluded.ts WHERE excluded.ts >= profile_traits.ts",
    )?;
    for (k, v) in &traits.0 {
        upsert.execute(params![root, k.as_ref(), v.get(), ts])?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn log(conn: &Connection, site: &str, at: i64, action: &str, code: Option<&str>, profile: Option<i64>, other: Option<i64>, kind: Option<String>, message_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO identity_log (site, at, action, code, profile_id, other_profile_id, identifier_kind, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
        .execute(params![site, at, action, code, profile, other, kind, message_id])?;
    Ok(())
}

/// Why an unmerge could not be done.
#[derive(Debug, PartialEq, Eq)]
pub enum UnmergeError {
    NotFound,
    AlreadyUndone,
}

/// Splits a merge back apart: the profiles that came with the loser get their own root again, and both sides'
/// traits are recomputed from their own events (identify traits, by event time). Events follow their profiles:
/// each event is filed under the profile of the identifier it came with.
pub(super) fn unmerge(conn: &Connection, cache: &mut IdentityCache, merge_id: i64, at: i64) -> rusqlite::Result<Result<(i64, i64), UnmergeError>> {
    let row: Option<(String, i64, i64, String, Option<i64>)> = conn
        .query_row("SELECT site, winner, loser, moved, undone_at FROM merges WHERE id = ?1", [merge_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((site, winner, loser, moved, undone)) = row else { return Ok(Err(UnmergeError::NotFound)) };
    if undone.is_some() {
        return Ok(Err(UnmergeError::AlreadyUndone));
    }
    let moved: Vec<i64> = serde_json::from_str(&moved).unwrap_or_default();
    let winner_root: i64 = conn.query_row("SELECT root FROM profiles WHERE id = ?1", [winner], |r| r.get(0))?;
    for pid in &moved {
        conn.execute("UPDATE profiles SET root = ?1 WHERE id = ?2", [loser, *pid])?;
    }
    conn.execute("UPDATE merges SET undone_at = ?1 WHERE id = ?2", [at, merge_id])?;
    for root in [winner_root, loser] {
        rebuild_traits(conn, root)?;
    }
    log(conn, &site, at, "unmerge", None, Some(winner_root), Some(loser), None, "")?;
    cache.clear();
    Ok(Ok((winner_root, loser)))
}

/// Recomputes a profile's traits from the identify events of all profiles under `root`, in event-time order.
fn rebuild_traits(conn: &Connection, root: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM profile_traits WHERE profile_id IN (SELECT id FROM profiles WHERE root = ?1)", [root])?;
    let mut stmt = conn.prepare(&format!("SELECT traits, timestamp FROM events WHERE id IN ({}) AND traits IS NOT NULL ORDER BY timestamp", super::sqlite::PERSON_EVENT_IDS))?;
    let rows: Vec<(String, i64)> = stmt.query_map([root], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    for (traits, ts) in rows {
        set_traits(conn, root, &traits, ts)?;
    }
    Ok(())
}

#[cfg(test)]
mod laws {
    //! The laws of identity resolution, over random event sequences, against the real SQLite store.
    use super::super::sqlite::SqliteStore;
    use super::super::{EventStore, IdentityInput, StoredEvent};
    use crate::identity::{IdKind, Identifier};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Identifiers of a small universe: persons 0..3, each with anonymous IDs and an e-mail hash.
    fn ident(person: usize, slot: usize) -> Identifier {
        match slot {
            0 => Identifier::new(IdKind::UserId, format!("user-{person}")),
            1 => Identifier::new(IdKind::Email, format!("hmac:email-{person}")),
            n => Identifier::new(IdKind::AnonymousId, format!("anon-{person}-{n}")),
        }
    }

    fn event(n: usize, ids: Vec<Identifier>) -> StoredEvent {
        let primary = ids.iter().find(|i| i.kind == IdKind::UserId).or_else(|| ids.iter().find(|i| i.kind == IdKind::AnonymousId)).cloned();
        StoredEvent {
            site: "s".into(),
            kind: Some(footprint_core::CallKind::Identify),
            timestamp: n as i64,
            received_at: n as i64,
            identity: Some(IdentityInput { identifiers: ids, primary, traits: None }),
            ..Default::default()
        }.with(crate::store::Field::MessageId, format!("m{n}"))
    }

    fn store() -> (SqliteStore, std::path::PathBuf) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("fp-laws-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        (SqliteStore::open(&dir).unwrap(), dir)
    }

    /// identifier → root, and root → its user IDs.
    fn partition(store: &SqliteStore) -> (BTreeMap<String, i64>, BTreeMap<i64, BTreeSet<String>>) {
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let mut stmt = conn.prepare("SELECT i.kind || '=' || i.value, p.root, i.kind, i.value FROM identities i JOIN profiles p ON p.id = i.profile_id").unwrap();
        let mut roots = BTreeMap::new();
        let mut users: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))).unwrap() {
            let (id, root, kind, value) = row.unwrap();
            roots.insert(id, root);
            let entry = users.entry(root).or_default();
            if kind == "user_id" {
                entry.insert(value);
            }
        }
        (roots, users)
    }

    /// Groups of identifiers that share a root (the partition without the arbitrary profile numbers).
    fn groups(roots: &BTreeMap<String, i64>) -> BTreeSet<BTreeSet<String>> {
        let mut by_root: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for (id, root) in roots {
            by_root.entry(*root).or_default().insert(id.clone());
        }
        by_root.into_values().collect()
    }

    fn events_strategy(consistent: bool) -> impl Strategy<Value = Vec<Vec<Identifier>>> {
        // Each event: a person and 1–3 identifier slots. Inconsistent events may mix two persons' identifiers.
        let one = (0..3usize, 0..3usize, proptest::collection::vec(0..5usize, 1..4)).prop_map(move |(p, q, slots)| {
            slots.iter().enumerate().map(|(i, &slot)| ident(if !consistent && i == 1 { q } else { p }, slot)).collect::<Vec<_>>()
        });
        proptest::collection::vec(one, 1..25)
    }

    fn run(events: &[Vec<Identifier>]) -> (SqliteStore, std::path::PathBuf) {
        let (mut s, dir) = store();
        let rows: Vec<StoredEvent> = events.iter().enumerate().map(|(n, ids)| event(n, ids.clone())).collect();
        s.commit(rows.clone(), &[]).unwrap();
        (s, dir)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn no_profile_ever_holds_two_user_ids_and_events_land_with_their_identifier(events in events_strategy(false)) {
            let (s, dir) = run(&events);
            let (roots, users) = partition(&s);
            for (root, ids) in &users {
                prop_assert!(ids.len() <= 1, "profile {root} holds {ids:?}");
            }
            // Each event is filed under the profile (root) its primary identifier belongs to now.
            let conn = rusqlite::Connection::open(s.path()).unwrap();
            for (n, ids) in events.iter().enumerate() {
                let primary = ids.iter().find(|i| i.kind == IdKind::UserId).or_else(|| ids.iter().find(|i| i.kind == IdKind::AnonymousId));
                let Some(primary) = primary else { continue };
                let event_root: i64 = conn.query_row("SELECT p.root FROM events e JOIN profiles p ON p.id = e.profile_id WHERE e.message_id = ?1", [format!("m{n}")], |r| r.get(0)).unwrap();
                prop_assert_eq!(Some(&event_root), roots.get(&format!("{}={}", primary.kind.as_string(), primary.value)));
            }
            std::fs::remove_dir_all(dir).unwrap();
        }

        #[test]
        fn merges_are_order_independent_and_idempotent(events in events_strategy(true), seed in any::<u64>()) {
            let (s1, d1) = run(&events);
            let mut shuffled = events.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (s2, d2) = run(&shuffled);
            let (g1, g2) = (groups(&partition(&s1).0), groups(&partition(&s2).0));
            prop_assert_eq!(&g1, &g2);
            // Consistent events never join two persons: each group holds one person's identifiers.
            for group in &g1 {
                // "user_id=user-0", "email=hmac:email-0", "anonymous_id=anon-0-2": the digit after the first '-'.
                let owners: BTreeSet<&str> = group.iter().map(|id| if let Some(rest) = id.split_once("-") { &rest.1[..1] } else { "?" }).collect();
                prop_assert_eq!(owners.len(), 1, "{:?}", group);
            }
            // Replaying everything again changes nothing.
            let mut s1 = s1;
            let replay: Vec<StoredEvent> = events.iter().enumerate().map(|(n, ids)| event(n + 1000, ids.clone())).collect();
            s1.commit(replay.clone(), &[]).unwrap();
            prop_assert_eq!(groups(&partition(&s1).0), g1);
            std::fs::remove_dir_all(d1).unwrap();
            std::fs::remove_dir_all(d2).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_key_tells_every_triple_apart_on_the_stack_and_off_it() {
        let triples = [("ab", "c", "d"), ("a", "bc", "d"), ("a", "b", "cd"), ("a", "b", "c\u{ff}d")];
        let keys: Vec<Vec<u8>> = triples.iter().map(|&(s, k, v)| id_key(s, k, v)).collect();
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| a != b), "{:?} shares its key", triples[i]);
        }
        let long = "v".repeat(300);
        for (site, kind, value) in triples.into_iter().chain([("shop", "anonymous_id", long.as_str())]) {
            assert_eq!(with_id_key(site, kind, value, <[u8]>::to_vec), id_key(site, kind, value));
        }
    }
}
