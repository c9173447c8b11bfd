//! Identity resolution through the real HTTP API: one profile per person, never a blob, never a split.

use footprint_tests::*;

/// Sends events with their own timestamps (no `sentAt`, so no skew correction).
fn send(c: &Collector, events: &[String]) {
    let r = c.post_json("/v1/batch", "wk_shop", &format!(r#"{{"batch":[{}]}}"#, events.join(",")));
    assert!(r.statuses().iter().all(|s| s == "accepted"), "{}", r.text());
}

fn ev(kind: &str, fields: &str, id: &str, ts: &str) -> String {
    format!(r#"{{"type":"{kind}","messageId":"{id}","timestamp":"{ts}",{fields}}}"#)
}

fn profile_id(p: &serde_json::Value) -> i64 {
    p["id"].as_i64().unwrap()
}

fn identifier_values(p: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = p["identifiers"].as_array().unwrap().iter().map(|i| format!("{}={}", i["type"].as_str().unwrap(), i["value"].as_str().unwrap())).collect();
    v.sort();
    v
}

#[test]
fn the_life_of_a_customer() {
    let c = Collector::start(TWO_SITES);
    // 1. Anonymous browsing on a laptop.
    send(&c, &[ev("page", r#""anonymousId":"laptop-anon","name":"Home""#, "l1", "2026-03-01T10:00:00Z"), ev("track", r#""anonymousId":"laptop-anon","event":"Viewed Product""#, "l2", "2026-03-01T10:01:00Z")]);
    let anon = c.lookup("anonymous_id", "laptop-anon").expect("a profile for the anonymous visitor");
    // 2. Sign-up: the user ID and the e-mail join the same profile.
    send(&c, &[ev("identify", r#""anonymousId":"laptop-anon","userId":"alice","traits":{"email":"Alice@Example.com","plan":"free"}"#, "l3", "2026-03-01T10:05:00Z")]);
    let alice = c.lookup("email", "alice@example.com").expect("found by e-mail");
    assert_eq!(profile_id(&alice), profile_id(&anon), "sign-up adopts the anonymous history");
    assert_eq!(alice["traits"]["plan"], "free");
    assert!(alice["traits"]["email"].as_str().unwrap().starts_with("hmac:"), "the e-mail trait is pseudonymised");
    // 3. Phone: browses anonymously, then logs in → merged into Alice.
    send(&c, &[ev("page", r#""anonymousId":"phone-anon","name":"Deals""#, "p1", "2026-03-02T08:00:00Z")]);
    let phone_before = profile_id(&c.lookup("anonymous_id", "phone-anon").unwrap());
    assert_ne!(phone_before, profile_id(&alice));
    send(&c, &[ev("identify", r#""anonymousId":"phone-anon","userId":"alice","traits":{"plan":"pro"}"#, "p2", "2026-03-02T08:05:00Z")]);
    let merged = c.lookup("anonymous_id", "phone-anon").unwrap();
    assert_eq!(profile_id(&merged), profile_id(&alice), "login on a second device merges");
    assert_eq!(merged["traits"]["plan"], "pro");
    assert_eq!(merged["events"], 5, "all five events belong to Alice");
    // A late-arriving identify with an older event time does not overwrite a newer trait.
    send(&c, &[ev("identify", r#""userId":"alice","traits":{"plan":"trial"}"#, "late", "2026-02-01T00:00:00Z")]);
    assert_eq!(c.lookup("user_id", "alice").unwrap()["traits"]["plan"], "pro", "traits are last-write-wins by event time");
    // 4. Logout on the shared laptop: reset() → a new anonymous ID → a new profile.
    send(&c, &[ev("page", r#""anonymousId":"laptop-anon-2","name":"Home""#, "s1", "2026-03-03T09:00:00Z")]);
    let guest = c.lookup("anonymous_id", "laptop-anon-2").unwrap();
    assert_ne!(profile_id(&guest), profile_id(&alice));
    // 5. Bob logs in on that laptop: his own profile; and a stale event pairing Alice's old anonymous ID with Bob
    //    is refused rather than blobbing the two people together.
    send(&c, &[ev("identify", r#""anonymousId":"laptop-anon-2","userId":"bob""#, "s2", "2026-03-03T09:01:00Z")]);
    send(&c, &[ev("track", r#""anonymousId":"laptop-anon","userId":"bob","event":"Stale""#, "s3", "2026-03-03T09:02:00Z")]);
    let bob = c.lookup("user_id", "bob").unwrap();
    assert_eq!(profile_id(&bob), profile_id(&guest));
    assert_ne!(profile_id(&bob), profile_id(&alice));
    let alice_now = c.lookup("user_id", "alice").unwrap();
    assert!(identifier_values(&alice_now).contains(&"anonymous_id=laptop-anon".to_owned()), "Alice keeps her anonymous ID");
    assert!(!identifier_values(&bob).iter().any(|i| i == "anonymous_id=laptop-anon"));
    let user_ids = |p: &serde_json::Value| identifier_values(p).iter().filter(|i| i.starts_with("user_id=")).count();
    assert_eq!((user_ids(&alice_now), user_ids(&bob)), (1, 1), "one user ID per profile");
    let bob_log = c.admin_get(&format!("/admin/v1/profiles/{}/log", profile_id(&bob))).json();
    assert!(bob_log["log"].as_array().unwrap().iter().any(|e| e["code"] == "user_id_conflict" && e["messageId"] == "s3"), "{bob_log}");
    // The stale event itself is filed under Bob (its user ID decides).
    let bob_events = c.admin_get(&format!("/admin/v1/profiles/{}/events", profile_id(&bob))).json();
    assert!(bob_events["events"].as_array().unwrap().iter().any(|e| e["messageId"] == "s3"));

    // Unmerge the phone merge: the phone's history goes back to a profile of its own.
    let log = c.admin_get(&format!("/admin/v1/profiles/{}/log", profile_id(&alice_now))).json();
    let merge_id = log["log"].as_array().unwrap().iter().find(|e| e["action"] == "merge").and_then(|e| e["merge_id"].as_i64()).expect("a merge in the log");
    let r = c.admin_post(&format!("/admin/v1/merges/{merge_id}/undo"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let phone_after = c.lookup("anonymous_id", "phone-anon").unwrap();
    assert_eq!(profile_id(&phone_after), phone_before);
    assert_eq!(phone_after["events"], 1, "the phone's own event goes back with it");
    assert_eq!(c.lookup("user_id", "alice").unwrap()["events"], 5, "Alice keeps hers (laptop events, the identifies)");
    assert_eq!(c.admin_post(&format!("/admin/v1/merges/{merge_id}/undo"), "").code(), "merge_already_undone");
}

#[test]
fn junk_identifiers_never_join_people() {
    let c = Collector::start(TWO_SITES);
    send(&c, &[ev("identify", r#""anonymousId":"undefined","userId":"carol""#, "j1", "2026-03-01T10:00:00Z")]);
    send(&c, &[ev("identify", r#""anonymousId":"undefined","userId":"dave""#, "j2", "2026-03-01T10:00:00Z")]);
    let (carol, dave) = (c.lookup("user_id", "carol").unwrap(), c.lookup("user_id", "dave").unwrap());
    assert_ne!(profile_id(&carol), profile_id(&dave));
    assert!(c.lookup("anonymous_id", "undefined").is_none(), "junk is never an identifier");
    assert_eq!(c.count("SELECT COUNT(*) FROM identity_log WHERE code = 'junk_value'"), 2);
}

#[test]
fn parallel_requests_for_one_person_end_in_one_profile() {
    let c = Collector::start(TWO_SITES);
    std::thread::scope(|s| {
        for t in 0..12 {
            let c = &c;
            s.spawn(move || {
                for i in 0..5 {
                    let anon = format!("dev-{t}-{i}");
                    send(c, &[ev("page", &format!(r#""anonymousId":"{anon}""#), &format!("c-{t}-{i}-p"), "2026-03-01T10:00:00Z"), ev("identify", &format!(r#""anonymousId":"{anon}","userId":"erin""#), &format!("c-{t}-{i}-i"), "2026-03-01T10:00:01Z")]);
                }
            });
        }
    });
    let erin = c.lookup("user_id", "erin").unwrap();
    assert_eq!(erin["events"], 120);
    for t in 0..12 {
        for i in 0..5 {
            assert_eq!(profile_id(&c.lookup("anonymous_id", &format!("dev-{t}-{i}")).unwrap()), profile_id(&erin), "no lost edge for dev-{t}-{i}");
        }
    }
    assert_eq!(c.count("SELECT COUNT(*) FROM identities WHERE kind = 'user_id'"), 1);
    assert_eq!(c.count("SELECT COUNT(DISTINCT root) FROM profiles"), 1);
}

#[test]
fn lookup_answers_404_and_validates_its_input() {
    let c = Collector::start(TWO_SITES);
    assert_eq!(c.admin_get("/admin/v1/profiles/lookup?type=user_id&value=nobody").code(), "profile_not_found");
    assert_eq!(c.admin_get("/admin/v1/profiles/lookup?type=shoe_size&value=9").code(), "invalid_identifier_type");
    assert_eq!(c.admin_get("/admin/v1/profiles/lookup?type=email&value=not-an-email").code(), "invalid_identifier_value");
    assert_eq!(c.admin_get("/admin/v1/profiles/lookup?type=email").code(), "missing_identifier");
}
