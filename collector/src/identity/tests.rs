//! Scenario tests of the pure rules. The laws over event sequences run against the real store in
//! `store/identity.rs`.

use super::*;

fn id(kind: IdKind, v: &str) -> Identifier {
    Identifier::new(kind, v)
}
fn anon(v: &str) -> Identifier {
    id(IdKind::AnonymousId, v)
}
fn user(v: &str) -> Identifier {
    id(IdKind::UserId, v)
}
fn profile(root: i64, users: &[&str], anons: usize) -> ProfileSummary {
    let mut counts = BTreeMap::new();
    counts.insert("anonymous_id".to_owned(), anons);
    if !users.is_empty() {
        counts.insert("user_id".to_owned(), users.len());
    }
    ProfileSummary { root, user_ids: users.iter().map(|u| u.to_string()).collect(), counts, merge_count: 0 }
}

#[test]
fn junk_values() {
    for junk in ["", "  ", "null", "NULL", "undefined", "0", "-1", "anonymous", "guest", "unknown", "[object Object]", "NaN", "true", "false", "\"null\"", "'undefined'", "000-000", "---"] {
        assert!(is_junk(junk), "{junk:?}");
    }
    for ok in ["u-123", "a1b2", "10", "0x1", "guest42", "alice@example.com"] {
        assert!(!is_junk(ok), "{ok:?}");
    }
}

#[test]
fn normalisation() {
    assert_eq!(normalize_email("  Alice@Example.COM ").as_deref(), Some("alice@example.com"));
    assert_eq!(normalize_email("not-an-email"), None);
    assert_eq!(normalize_email("a@b"), None);
    assert_eq!(normalize_phone("+49 (30) 1234-5678").as_deref(), Some("+493012345678"));
    assert_eq!(normalize_phone("0049 30 12345678").as_deref(), Some("+493012345678"));
    assert_eq!(normalize_phone("030 1234567").as_deref(), Some("0301234567"));
    assert_eq!(normalize_phone("call me"), None);
    assert_eq!(normalize_phone("12"), None);
}

#[test]
fn first_sight_creates_a_profile() {
    let p = plan(&[anon("a1")], &[], &Limits::default());
    assert_eq!(p, Plan { target: Target::New, merge: vec![], attach: vec![anon("a1")], refusals: vec![] });
}

#[test]
fn sign_up_adopts_the_anonymous_profile() {
    let p = plan(&[anon("a1"), user("u1")], &[(anon("a1"), profile(7, &[], 1))], &Limits::default());
    assert_eq!((p.target, p.attach, p.merge), (Target::Existing(7), vec![user("u1")], vec![]));
}

#[test]
fn login_on_a_second_device_merges_into_the_user() {
    // Device 2's anonymous profile 9 meets user u1 (profile 7).
    let known = [(anon("a2"), profile(9, &[], 1)), (user("u1"), profile(7, &["u1"], 1))];
    let p = plan(&[anon("a2"), user("u1")], &known, &Limits::default());
    assert_eq!((p.target, p.merge, p.attach, p.refusals), (Target::Existing(7), vec![9], vec![], vec![]));
}

#[test]
fn shared_computer_never_joins_two_users() {
    // a1 belongs to u1's profile; u2 logs in on the same browser.
    let known = [(anon("a1"), profile(7, &["u1"], 1))];
    let p = plan(&[anon("a1"), user("u2")], &known, &Limits::default());
    assert_eq!(p.target, Target::New, "u2 gets a profile of its own");
    assert_eq!(p.attach, vec![user("u2")]);
    assert_eq!(p.merge, Vec::<i64>::new());
    assert_eq!(p.refusals, vec![Refusal::Merge { profile: 7, code: RefusalCode::UserIdConflict }]);
    // Two known users on one event: the event's user decides, the other profile stays apart.
    let known = [(anon("a1"), profile(7, &["u1"], 1)), (user("u2"), profile(8, &["u2"], 0))];
    let p = plan(&[anon("a1"), user("u2")], &known, &Limits::default());
    assert_eq!((p.target, p.merge.len(), p.refusals.len()), (Target::Existing(8), 0, 1));
}

#[test]
fn junk_is_refused_and_the_rest_proceeds() {
    let p = plan(&[anon("null"), user("u1")], &[], &Limits::default());
    assert_eq!(p.attach, vec![user("u1")]);
    assert_eq!(p.refusals, vec![Refusal::Identifier { identifier: anon("null"), code: RefusalCode::JunkValue }]);
    let p = plan(&[anon("undefined")], &[], &Limits::default());
    assert_eq!((p.target, p.attach.len()), (Target::New, 0), "nothing to attach: the caller creates no profile");
}

#[test]
fn caps_hold() {
    let limits = Limits { anonymous_ids: 2, merges: 1, ..Limits::default() };
    let full = profile(7, &["u1"], 2);
    let p = plan(&[anon("a3"), user("u1")], &[(user("u1"), full.clone())], &limits);
    assert_eq!(p.refusals, vec![Refusal::Identifier { identifier: anon("a3"), code: RefusalCode::IdentifierCap }]);
    let tired = ProfileSummary { merge_count: 1, ..profile(7, &["u1"], 1) };
    let p = plan(&[anon("a9"), user("u1")], &[(user("u1"), tired), (anon("a9"), profile(9, &[], 1))], &limits);
    assert_eq!(p.refusals, vec![Refusal::Merge { profile: 9, code: RefusalCode::MergeCap }]);
}

#[test]
fn without_a_user_the_oldest_profile_wins() {
    let known = [(anon("a1"), profile(12, &[], 1)), (id(IdKind::Email, "h"), profile(5, &[], 0))];
    let p = plan(&[anon("a1"), id(IdKind::Email, "h")], &known, &Limits::default());
    assert_eq!((p.target, p.merge), (Target::Existing(5), vec![12]));
}
