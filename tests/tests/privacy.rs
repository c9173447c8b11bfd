//! Privacy by construction, checked on the database file itself: what consent does not allow never reaches the
//! disk, erasure leaves nothing behind, GPC strips marketing data, consent changes are on the ledger, and admin
//! routes need the admin token.

use footprint_tests::*;

const ORIGIN: &str = "https://shop.example";

/// A browser request (with `Origin`), so the site's consent mode applies.
fn browser_post(c: &Collector, body: &str, extra: &[(&str, &str)]) -> Response {
    let mut r = c.request().method("POST").path("/v1/batch").basic("wk_shop").header("Origin", ORIGIN).header("Content-Type", "text/plain");
    for (k, v) in extra {
        r = r.header(k, v);
    }
    r.body(body).send()
}

#[test]
fn denied_consent_leaves_no_identifier_on_disk() {
    let mut c = Collector::start(&format!("trusted_proxies = [\"127.0.0.1\"]\n{TWO_SITES}"));
    let denied = r#"{"categoryPreferences":{"analytics":false,"marketing":false,"personalization":false}}"#;
    let events = [
        format!(r#"{{"type":"page","anonymousId":"anon-zq81x","messageId":"d1","context":{{"consent":{denied},"ip":"198.51.100.201","page":{{"url":"https://shop.example/?gclid=clk-77k"}}}}}}"#),
        format!(r#"{{"type":"identify","userId":"user-kw29v","anonymousId":"anon-zq81x","messageId":"d2","traits":{{"email":"wendy.private@example.org","name":"Wendy Q"}},"context":{{"consent":{denied}}}}}"#),
        // No consent stated: the site's mode (required) applies to browsers.
        r#"{"type":"track","event":"Clicked","anonymousId":"anon-zq81x","userId":"user-kw29v","messageId":"d3"}"#.to_owned(),
    ];
    let r = browser_post(&c, &batch(&events), &[("X-Forwarded-For", "203.0.113.144")]);
    assert_eq!(r.statuses(), vec!["accepted"; 3], "{}", r.text());
    // With consent, raw IPs and e-mails still never reach the disk.
    let granted = r#"{"type":"identify","userId":"user-ok","messageId":"g1","traits":{"email":"granted.person@example.org"},"context":{"consent":{"categoryPreferences":{"analytics":true}},"ip":"198.51.100.202"}}"#;
    // Nor anywhere else in an event: a key in another case, another key, a title, a path, escaped; an IP property.
    let elsewhere = r#"{"type":"page","userId":"user-ok","messageId":"g2","properties":{"Email":"cased.key@example.org","contact":"other.key@example.org","note":"mail escaped\u0040example.org","ipAddress":"198.51.100.203"},"context":{"page":{"url":"https://s.example/u/in.path@example.org","title":"Hi title.text@example.org"},"consent":{"categoryPreferences":{"analytics":true}}}}"#;
    assert_eq!(browser_post(&c, &batch(&[granted.to_owned(), elsewhere.to_owned()]), &[]).statuses(), vec!["accepted"; 2]);
    // Rejected events are kept for inspection, but not their e-mail addresses; nor those of an unparseable body.
    let rejected = r#"{"batch":[{"type":"track","userId":"q-user","messageId":"q1","properties":{"contact":"quarantined.person@example.org"}}]}"#;
    assert_eq!(c.post_json("/v1/batch", "wk_shop", rejected).json()["results"][0]["code"], "missing_event_name");
    assert_eq!(c.post_json("/v1/batch", "wk_shop", r#"{"batch":[{"email":"broken.body@example.org""#).code(), "invalid_json");
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 2);
    let visitors: Vec<String> = c.db().prepare("SELECT visitor FROM events WHERE message_id LIKE 'd%'").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(visitors.iter().all(|v| v.starts_with("c:")), "counted cookielessly: {visitors:?}");
    assert_eq!(c.count("SELECT COUNT(*) FROM identities WHERE value LIKE '%zq81x%' OR value LIKE '%kw29v%'"), 0, "no identity edges");
    assert!(c.stop());
    let disk = c.database_bytes();
    assert!(disk.len() > 10_000, "read the database files");
    for secret in ["anon-zq81x", "user-kw29v", "wendy.private", "Wendy Q", "198.51.100.201", "203.0.113.144", "clk-77k", "granted.person@example.org", "198.51.100.202", "quarantined.person", "broken.body", "cased.key", "other.key", "escaped\\u0040", "in.path@", "title.text", "198.51.100.203"] {
        assert!(!contains_bytes(&disk, secret), "{secret:?} is on disk");
    }
    assert!(contains_bytes(&disk, "user-ok"), "the byte search does find what consent allowed");
}

#[test]
fn erasure_removes_everything_and_refuses_the_person_afterwards() {
    let c = Collector::start(TWO_SITES);
    let person = [
        r#"{"type":"page","anonymousId":"anon-er4s3","messageId":"e1","properties":{"note":"marker-page-9x7"}}"#.to_owned(),
        r#"{"type":"identify","anonymousId":"anon-er4s3","userId":"user-er4s3","messageId":"e2","traits":{"email":"erase.me@example.net","favourite":"marker-trait-4kq"}}"#.to_owned(),
        r#"{"type":"track","userId":"user-er4s3","event":"Ordered","messageId":"e3","properties":{"item":"marker-order-2hh"}}"#.to_owned(),
        // A rejected event of the person sits in quarantine with their raw ID.
        r#"{"type":"track","userId":"user-er4s3","messageId":"e4"}"#.to_owned(),
        r#"{"type":"track","event":"Consent Updated","anonymousId":"anon-er4s3","messageId":"e5","context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#.to_owned(),
    ];
    let other = r#"{"type":"track","event":"Kept","userId":"someone-else","messageId":"o1"}"#.to_owned();
    // The next person on the same computer, without a reset: filed under their own profile (the merge is refused),
    // but their login carries this person's anonymous ID.
    let neighbour = r#"{"type":"identify","anonymousId":"anon-er4s3","userId":"neighbour-9qq","messageId":"s1"}"#.to_owned();
    c.post_json("/v1/batch", "wk_shop", &format!(r#"{{"batch":[{}]}}"#, [&person[..], &[other, neighbour]].concat().join(",")));
    let profile = c.lookup("email", "erase.me@example.net").expect("profile before erasure");
    assert_eq!(profile["events"], 4);
    let export = c.admin_get("/admin/v1/export?type=email&value=Erase.Me%40example.net").json();
    assert_eq!(export["events"].as_array().unwrap().len(), 4, "export has every event");
    assert!(export["profile"]["identifiers"].as_array().unwrap().len() >= 3);
    let ndjson = c.admin_get("/admin/v1/export?type=user_id&value=user-er4s3&format=ndjson").text();
    assert_eq!(ndjson.lines().filter(|l| l.contains("\"record\":\"event\"")).count(), 4);

    let r = c.admin_post("/admin/v1/erase", r#"{"type":"email","value":"erase.me@example.net"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json()["erased"].clone();
    // The four events of the person's profile, and the neighbour's login that carried the person's anonymous ID.
    assert_eq!((report["profiles"].as_i64(), report["events"].as_i64(), report["quarantined"].as_i64()), (Some(1), Some(5), Some(1)), "{report}");
    assert!(c.lookup("user_id", "neighbour-9qq").is_some(), "the neighbour's profile stays");
    assert!(c.lookup("user_id", "user-er4s3").is_none());
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE message_id = 'o1'"), 1, "others are untouched");
    assert_eq!(c.count("SELECT COUNT(*) FROM consent_ledger"), 0);

    // New events carrying an erased identifier are refused and not stored.
    for comeback in [
        r#"{"type":"track","event":"Back","userId":"user-er4s3","messageId":"n1"}"#,
        r#"{"type":"identify","anonymousId":"fresh-anon","traits":{"email":"ERASE.ME@example.net"},"messageId":"n2"}"#,
    ] {
        let r = c.post_json("/v1/batch", "wk_shop", &format!(r#"{{"batch":[{comeback}]}}"#));
        assert_eq!((r.status, r.json()["results"][0]["code"].as_str()), (400, Some("erased_identity")), "{}", r.text());
    }
    // Suppression survives a restart (it is stored as keyed hashes).
    let mut c = c.restart();
    let r = c.post_json("/v1/track", "wk_shop", r#"{"event":"Again","anonymousId":"anon-er4s3","messageId":"n3"}"#);
    assert_eq!(r.json()["results"][0]["code"], "erased_identity");
    assert!(c.stop());
    let disk = c.database_bytes();
    for secret in ["anon-er4s3", "user-er4s3", "erase.me", "marker-page-9x7", "marker-trait-4kq", "marker-order-2hh", "fresh-anon"] {
        assert!(!contains_bytes(&disk, secret), "{secret:?} is still on disk after erasure");
    }
    assert!(contains_bytes(&disk, "someone-else") && contains_bytes(&disk, "neighbour-9qq"), "the byte search works; others stay");
}

#[test]
fn global_privacy_control_strips_marketing_data() {
    let c = Collector::start(TWO_SITES);
    let granted_all = r#"{"categoryPreferences":{"analytics":true,"marketing":true,"personalization":true}}"#;
    let page = |id: &str| format!(r#"{{"type":"page","anonymousId":"gpc-a","messageId":"{id}","context":{{"consent":{granted_all},"page":{{"url":"https://shop.example/l?utm_source=ads&gclid=CLICK1&fbclid=FB2"}}}}}}"#);
    assert_eq!(browser_post(&c, &batch(&[page("no-gpc")]), &[]).statuses(), vec!["accepted"]);
    assert_eq!(browser_post(&c, &batch(&[page("with-gpc")]), &[("Sec-GPC", "1")]).statuses(), vec!["accepted"]);
    let row = |id: &str| -> (String, i64) { c.db().query_row("SELECT url, consent FROM events WHERE message_id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap() };
    assert_eq!(row("no-gpc"), ("https://shop.example/l?utm_source=ads&gclid=CLICK1&fbclid=FB2".to_owned(), 7));
    assert_eq!(row("with-gpc"), ("https://shop.example/l?utm_source=ads".to_owned(), 5), "GPC: marketing off, click IDs gone");
    let gpc = c.get("/.well-known/gpc.json");
    assert_eq!((gpc.status, gpc.json()["gpc"].as_bool()), (200, Some(true)));
}

#[test]
fn every_consent_change_is_on_the_ledger() {
    let c = Collector::start(TWO_SITES);
    let change = |id: &str, analytics: bool, marketing: bool, ts: &str| {
        format!(r#"{{"type":"track","event":"Consent Updated","anonymousId":"ledger-a","messageId":"{id}","timestamp":"{ts}","context":{{"consent":{{"categoryPreferences":{{"analytics":{analytics},"marketing":{marketing}}},"source":"explicit","policyVersion":"v3"}}}}}}"#)
    };
    let events = [change("c1", true, true, "2026-04-01T10:00:00Z"), change("c2", true, false, "2026-04-02T10:00:00Z"), change("c3", false, false, "2026-04-03T10:00:00Z")];
    let r = browser_post(&c, &format!(r#"{{"batch":[{}]}}"#, events.join(",")), &[]);
    assert_eq!(r.statuses(), vec!["accepted"; 3]);
    let history = c.lookup("anonymous_id", "ledger-a").unwrap()["consent_history"].clone();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "two changes while identifiable: {history:?}");
    assert_eq!((history[0]["categories"]["marketing"].as_bool(), history[1]["categories"]["marketing"].as_bool()), (Some(true), Some(false)));
    assert_eq!(history[0]["policy_version"], "v3");
    // The withdrawal itself is recorded against the cookieless visitor, not the person.
    assert_eq!(c.count("SELECT COUNT(*) FROM consent_ledger"), 3);
    assert_eq!(c.count("SELECT COUNT(*) FROM consent_ledger WHERE profile_id IS NULL AND visitor LIKE 'c:%' AND categories = 0"), 1);
}

#[test]
fn admin_routes_need_the_admin_token() {
    let c = Collector::start(TWO_SITES);
    for path in ["/admin/v1/profiles/lookup?type=user_id&value=x", "/admin/v1/export?type=user_id&value=x", "/admin/v1/sites"] {
        let none = c.get(path);
        assert_eq!((none.status, none.code()), (401, "missing_admin_token".to_owned()), "{path}");
        let wrong = c.request().path(path).header("Authorization", "Bearer test-admin-token-0123456780").send();
        assert_eq!((wrong.status, wrong.code()), (401, "invalid_admin_token".to_owned()), "{path}");
        let write_key = c.request().path(path).basic("wk_shop").send();
        assert_eq!(write_key.status, 401, "a write key is not an admin token");
    }
    let erase = c.request().method("POST").path("/admin/v1/erase").body(r#"{"type":"user_id","value":"x"}"#).send();
    assert_eq!(erase.status, 401);
    assert_eq!(c.admin_get("/admin/v1/sites").status, 200);
}

#[test]
fn retention_deletes_old_events() {
    let c = Collector::start(&TWO_SITES.replace("origins = [\"https://shop.example\"]", "origins = [\"https://shop.example\"]\nretention_days = 30"));
    let old = r#"{"type":"track","event":"Old","userId":"r","messageId":"old","timestamp":"2020-01-01T00:00:00Z"}"#;
    let new = r#"{"type":"track","event":"New","userId":"r","messageId":"new"}"#;
    c.post_json("/v1/batch", "wk_shop", &format!(r#"{{"batch":[{old},{new}]}}"#));
    let c = c.restart(); // retention runs at start, then hourly
    wait_until(10, "retention pass", || c.get("/metrics").text().contains("footprint_retention_runs_total 1"));
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE message_id = 'old'"), 0);
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE message_id = 'new'"), 1);
    // From the authoritative store too (on PostgreSQL: the shared log, not only this collector's replica).
    assert_eq!(c.stored_message_ids(), ["new".to_owned()].into());
    // The person's index lost the old event too (the shutdown before the restart had filed both).
    assert_eq!(c.count("SELECT COUNT(*) FROM profile_events"), 1);
    assert_eq!(c.count("SELECT COUNT(*) FROM profile_events WHERE event_id NOT IN (SELECT id FROM events)"), 0);
    assert!(c.get("/metrics").text().contains("footprint_retention_deleted_total"));
}

#[test]
fn export_and_erase_from_the_command_line() {
    let c = Collector::start(TWO_SITES);
    c.post_json("/v1/identify", "wk_shop", r#"{"userId":"cli-user","traits":{"email":"cli@example.com"},"messageId":"cli-1"}"#);
    let run = |args: &[&str]| {
        std::process::Command::new(collector_binary()).args(args).args(["--server", &c.addr]).env("FOOTPRINT_ADMIN_TOKEN", ADMIN_TOKEN).env_remove("FOOTPRINT_CONFIG").output().unwrap()
    };
    let out = run(&["export", "--type", "email", "--value", "CLI@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(export["events"][0]["messageId"], "cli-1");
    let out = run(&["erase", "--type", "user_id", "--value", "cli-user", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 event(s)"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["export", "--type", "email", "--value", "cli@example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("profile_not_found"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(collector_binary()).args(["export", "--type", "email", "--value", "x@example.com", "--server", &c.addr]).env("FOOTPRINT_ADMIN_TOKEN", "wrong-token-0123456789").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_admin_token"));
}

#[test]
fn a_rotated_hmac_key_still_finds_and_erases_people_hashed_under_the_old_one() {
    let old_key = "hmac_key = \"old-key-0123456789-0123456789-0123\"\n";
    let c = Collector::start(&format!("{old_key}{TWO_SITES}"));
    c.post_json("/v1/identify", "wk_shop", r#"{"userId":"rot-user","traits":{"email":"rotate.me@example.com"},"messageId":"r1"}"#);
    let before = c.lookup("email", "rotate.me@example.com").expect("found under the old key");
    let rotated = format!("hmac_key = \"new-key-0123456789-0123456789-0123\"\nhmac_previous_keys = [\"old-key-0123456789-0123456789-0123\"]\n{TWO_SITES}");
    let c = c.restart_with(&rotated);
    let after = c.lookup("email", "rotate.me@example.com").expect("still found after the rotation");
    assert_eq!(after["id"], before["id"]);
    let r = c.admin_post("/admin/v1/erase", r#"{"type":"email","value":"rotate.me@example.com"}"#);
    assert_eq!(r.json()["erased"]["events"], 1, "{}", r.text());
    // Refused afterwards whether the new event is hashed under the new key (e-mail) or sent as is (user ID).
    for comeback in [r#"{"userId":"someone","traits":{"email":"rotate.me@example.com"},"messageId":"r2"}"#, r#"{"userId":"rot-user","messageId":"r3"}"#] {
        assert_eq!(c.post_json("/v1/identify", "wk_shop", comeback).json()["results"][0]["code"], "erased_identity", "{comeback}");
    }
    // Without the previous key the old hashes are unreachable: the key is what makes them personal data.
    c.post_json("/v1/identify", "wk_shop", r#"{"userId":"old-only","traits":{"email":"kept@example.com"},"messageId":"r4"}"#);
    let c = c.restart_with(&format!("hmac_key = \"newest-key-0123456789-0123456789-0\"\n{TWO_SITES}"));
    assert!(c.lookup("email", "kept@example.com").is_none());
    assert!(c.lookup("user_id", "old-only").is_some(), "raw IDs do not depend on the key");
}
