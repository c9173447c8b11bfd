//! Several collectors on one PostgreSQL database (issue 7): hammered at once with overlapping messageIds and
//! identities, they store every acknowledged event once and resolve each person into one profile, the same on
//! every collector; and a PostgreSQL outage mid-load gives 503s, never a lost acknowledged event, and ingestion
//! recovers by itself. (Every other end-to-end test also runs on PostgreSQL: `FOOTPRINT_E2E_STORE=postgres`.)

use footprint_tests::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

const PEOPLE: usize = 40;

/// Person `p`'s events: a track on each of two devices (anonymous IDs), and a login on each that names the user.
fn person_events(p: usize) -> Vec<String> {
    let at = |n: usize| format!("2026-03-01T10:{:02}:{:02}Z", p % 60, n);
    vec![
        format!(r#"{{"type":"track","event":"Viewed","anonymousId":"anon-{p}-0","messageId":"p{p}-t0","timestamp":"{}"}}"#, at(0)),
        format!(r#"{{"type":"identify","anonymousId":"anon-{p}-0","userId":"user-{p}","messageId":"p{p}-i0","timestamp":"{}","traits":{{"plan":"pro"}}}}"#, at(1)),
        format!(r#"{{"type":"identify","anonymousId":"anon-{p}-1","userId":"user-{p}","messageId":"p{p}-i1","timestamp":"{}"}}"#, at(2)),
        format!(r#"{{"type":"track","event":"Bought","anonymousId":"anon-{p}-1","messageId":"p{p}-t1","timestamp":"{}"}}"#, at(3)),
    ]
}

fn identifiers(profile: &Value) -> BTreeSet<String> {
    profile["identifiers"].as_array().unwrap().iter().map(|i| format!("{}:{}", i["type"].as_str().unwrap(), i["value"].as_str().unwrap())).collect()
}

#[test]
fn two_collectors_on_one_database_store_each_event_once_and_agree_on_every_person() {
    let Some(url) = fresh_database() else { return };
    let collectors = [Collector::start_shared(TWO_SITES, &url), Collector::start_shared(TWO_SITES, &url)];
    // Every person's events, shuffled into batches; each batch goes to one collector, and every third one is
    // retried on the other as well (a client that timed out and tried again elsewhere), at the same time.
    let mut events: Vec<String> = (0..PEOPLE).flat_map(person_events).collect();
    events.extend((0..3_000).map(|i| track(&format!("bulk-{i}"))));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..events.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        events.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let batches: Vec<Vec<String>> = events.chunks(25).map(<[String]>::to_vec).collect();
    let answers = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (batches, answers, collectors) = (&batches, &answers, &collectors);
            s.spawn(move || {
                for (n, batch_events) in batches.iter().enumerate().filter(|(n, _)| n % 4 == worker) {
                    let mut targets = vec![&collectors[n % 2]];
                    if n % 3 == 0 {
                        targets.push(&collectors[(n + 1) % 2]);
                    }
                    for c in targets {
                        let r = c.post_json("/v1/batch", "wk_shop", &batch(batch_events));
                        assert_eq!(r.status, 200, "{}", r.text());
                        let ids = r.json()["results"].as_array().unwrap().iter().map(|x| (x["messageId"].as_str().unwrap().to_owned(), x["status"].as_str().unwrap().to_owned())).collect::<Vec<_>>();
                        answers.lock().unwrap().extend(ids);
                    }
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let accepted: Vec<&String> = answers.iter().filter(|(_, s)| s == "accepted").map(|(id, _)| id).collect();
    let unique: HashSet<&String> = accepted.iter().copied().collect();
    assert_eq!(accepted.len(), unique.len(), "an event was accepted twice (by both collectors)");
    assert_eq!(unique.len(), events.len(), "every event accepted exactly once");
    assert!(answers.iter().any(|(_, s)| s == "duplicate"), "the retries were answered duplicate");
    let stored = collectors[0].stored_message_ids();
    assert_eq!(stored.len(), events.len(), "no duplicate and no loss in PostgreSQL");
    for c in &collectors {
        assert_eq!(c.count("SELECT COUNT(*) FROM events") as usize, events.len(), "each replica holds every event once");
    }
    // One profile per person, and the same one on both collectors.
    for p in 0..PEOPLE {
        let expected: BTreeSet<String> = [format!("anonymous_id:anon-{p}-0"), format!("anonymous_id:anon-{p}-1"), format!("user_id:user-{p}")].into();
        let mut seen = Vec::new();
        for c in &collectors {
            for (kind, value) in [("user_id", format!("user-{p}")), ("anonymous_id", format!("anon-{p}-0")), ("anonymous_id", format!("anon-{p}-1"))] {
                let profile = c.lookup(kind, &value).unwrap_or_else(|| panic!("no profile for {kind} {value}"));
                assert_eq!(identifiers(&profile), expected, "person {p} through {kind} {value}");
                assert_eq!(profile["events"], 4, "person {p}'s events");
                seen.push(profile["id"].clone());
            }
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "person {p} is one profile with one id everywhere: {seen:?}");
    }
    // The same stats on both.
    let overview = |c: &Collector| c.admin_get("/admin/v1/stats/overview?site=shop&from=2026-02-01&to=2026-04-01").json()["totals"].clone();
    assert_eq!(overview(&collectors[0]), overview(&collectors[1]));
    // An erasure through one collector reaches the other.
    let r = collectors[0].admin_post("/admin/v1/erase", r#"{"type":"user_id","value":"user-7","site":"shop"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["erased"]["events"], 4);
    assert!(collectors[1].lookup("anonymous_id", "anon-7-1").is_none(), "erased on the other collector too");
    assert!(!collectors[0].stored_message_ids().contains("p7-t1"), "erased from PostgreSQL");
    // Its identifiers are suppressed on both: a late event is refused by either collector.
    for c in &collectors {
        let late = r#"{"type":"track","event":"Late","userId":"user-7","messageId":"late-7"}"#;
        let r = c.post_json("/v1/track", "wk_shop", late);
        assert_eq!(r.statuses(), vec!["rejected"], "{}", r.text());
    }
}

#[test]
fn an_ingest_only_collector_adds_ingest_without_a_replica() {
    let Some(url) = fresh_database() else { return };
    let full = Collector::start_shared(TWO_SITES, &url);
    let ingest = Collector::start_shared(&format!("role = \"ingest\"\n{TWO_SITES}"), &url);
    // The banner says what it is.
    ingest.stdout_when(|lines| lines.iter().any(|l| l.contains("ingest only: no replica")));
    // Half of each person's events through each collector: the full one's replica resolves them all.
    for p in 0..6 {
        let events = person_events(p);
        for (n, event) in events.iter().enumerate() {
            let c = if n % 2 == 0 { &ingest } else { &full };
            assert_eq!(c.post_json("/v1/batch", "wk_shop", &batch(std::slice::from_ref(event))).statuses(), vec!["accepted"]);
        }
    }
    let profile = full.lookup("anonymous_id", "anon-4-0").expect("a profile from both collectors' events");
    assert_eq!(profile["events"], 4);
    assert_eq!(identifiers(&profile).len(), 3);
    // A retry on the other collector is a duplicate.
    assert_eq!(ingest.post_json("/v1/batch", "wk_shop", &batch(&person_events(0)[1..2])).statuses(), vec!["duplicate"]);
    // No replica: nothing derived is kept here, and the admin API says where to ask.
    assert!(!ingest.dir().join("data").join("footprint.db").exists(), "an ingest-only collector keeps no replica");
    let r = ingest.admin_get("/admin/v1/stats/overview?site=shop&from=2026-02-01&to=2026-04-01");
    assert_eq!((r.status, r.code()), (421, "ingest_only".to_owned()), "{}", r.text());
    assert_eq!(ingest.get("/readyz").status, 200);
    // An erasure through the full collector: the ingest-only one learns the suppression from the log.
    let r = full.admin_post("/admin/v1/erase", r#"{"type":"user_id","value":"user-2","site":"shop"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut n = 0;
    wait_until(10, "the ingest-only collector refuses the erased person", || {
        n += 1;
        let late = format!(r#"{{"type":"track","event":"Late","userId":"user-2","messageId":"late-2-{n}"}}"#);
        ingest.post_json("/v1/track", "wk_shop", &late).statuses() == vec!["rejected"]
    });
    // A restarted ingest-only collector knows it from the start.
    let ingest = ingest.restart();
    let late = r#"{"type":"track","event":"Late","userId":"user-2","messageId":"late-2-restarted"}"#;
    assert_eq!(ingest.post_json("/v1/track", "wk_shop", late).statuses(), vec!["rejected"]);
}

#[test]
fn postgresql_going_down_mid_load_gives_503s_and_loses_no_acknowledged_event() {
    let Some(server) = PgServer::start() else { return };
    let url = server.create_database("outage");
    let c = Collector::start_shared(TWO_SITES, &url);
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(HashSet::new());
    let refused = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..3 {
            let (c, stop, acked, refused) = (&c, &stop, &acked, &refused);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (0..20).map(|i| format!("out-{t}-{n}-{i}")).collect();
                    n += 1;
                    let events: Vec<String> = ids.iter().map(|id| track(id)).collect();
                    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
                    match r.status {
                        200 => acked.lock().unwrap().extend(ids),
                        503 => {
                            assert!(r.header("retry-after").is_some(), "503 without Retry-After");
                            refused.lock().unwrap().push(r.code());
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
            });
        }
        wait_until(30, "events acknowledged before the outage", || acked.lock().unwrap().len() >= 1_000);
        server.stop();
        wait_until(30, "503s during the outage", || !refused.lock().unwrap().is_empty());
        assert_eq!(c.get("/readyz").status, 503, "not ready without the database");
        c.assert_alive();
        let before_restart = acked.lock().unwrap().len();
        server.start_again();
        wait_until(30, "ingestion recovers by itself", || acked.lock().unwrap().len() >= before_restart + 1_000);
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(c.get("/readyz").status, 200, "ready again");
    let codes: HashSet<String> = refused.into_inner().unwrap().into_iter().collect();
    assert!(codes.iter().all(|c| c == "storage_unavailable"), "the outage is answered storage_unavailable: {codes:?}");
    let acked = acked.into_inner().unwrap();
    let stored = c.stored_message_ids();
    let lost = acked.difference(&stored).count();
    assert_eq!(lost, 0, "acknowledged events lost in the outage");
    assert_eq!(c.count("SELECT COUNT(*) FROM events") as usize, stored.len(), "the replica caught up with everything stored");
}

#[test]
fn a_standalone_store_moves_into_postgresql_with_its_history() {
    // It starts from the embedded store: the pass with every collector on PostgreSQL has none to move.
    if e2e_on_postgres() {
        return;
    }
    let Some(url) = fresh_database() else { return };
    let config = format!("hmac_key = \"copy-test-key-0123456789abcdef0123\"\n{TWO_SITES}");
    let c = Collector::start(&config);
    let mut events: Vec<String> = (0..10).flat_map(person_events).collect();
    events.push(r#"{"type":"identify","userId":"mail-person","messageId":"mail-1","traits":{"email":"Someone@Example.com"}}"#.to_owned());
    events.extend((0..9_000).map(|i| track(&format!("bulk-{i}"))));
    events.push(r#"{"type":"track","anonymousId":"a","messageId":"no-name"}"#.to_owned());
    for chunk in events.chunks(2_000) {
        assert_eq!(c.post_json("/v1/batch", "wk_shop", &batch(chunk)).status, 200);
    }
    assert_eq!(c.admin_post("/admin/v1/erase", r#"{"type":"user_id","value":"user-3","site":"shop"}"#).status, 200);
    let overview = |c: &Collector| c.admin_get("/admin/v1/stats/overview?site=shop&from=2025-12-01&to=2026-04-01").json()["totals"].clone();
    let before = overview(&c);
    let person = |c: &Collector, p: usize| identifiers(&c.lookup("user_id", &format!("user-{p}")).expect("a profile"));
    let people_before: Vec<BTreeSet<String>> = [0, 5, 9].iter().map(|p| person(&c, *p)).collect();
    let mail_before = identifiers(&c.lookup("email", "someone@example.com").expect("found by e-mail"));
    let stored_before = c.count("SELECT COUNT(*) FROM events");
    let mut c = c;
    assert!(c.stop());

    let data = c.dir().join("data");
    let out = std::process::Command::new(collector_binary()).args(["copy-to-postgres", "--data-dir"]).arg(&data).args(["--database-url", &url]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "copy failed: {stdout}\n{stderr}");
    assert!(stderr.contains(&format!("{stored_before} of {stored_before} events (100.0 %)")), "progress shown: {stderr}");
    assert!(stdout.contains(&format!("copied {stored_before} events, 1 quarantined events and 3 erased identifiers")), "{stdout}");
    assert!(data.join("footprint.db.before-postgres").exists(), "the old file is kept aside");
    // A second copy into the now filled database is refused.
    let again = std::process::Command::new(collector_binary()).args(["copy-to-postgres", "--data-dir"]).arg(&data).args(["--database-url", &url]).output().unwrap();
    assert!(!again.status.success());

    std::fs::write(c.dir().join("database_url"), &url).unwrap();
    let c = c.restart();
    let other = Collector::start_shared(&config, &url);
    for c in [&c, &other] {
        assert_eq!(c.count("SELECT COUNT(*) FROM events"), stored_before, "every event, in each replica");
        assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 1);
        assert_eq!(overview(c), before, "the same stats");
        let people: Vec<BTreeSet<String>> = [0, 5, 9].iter().map(|p| person(c, *p)).collect();
        assert_eq!(people, people_before, "the same people");
        assert_eq!(identifiers(&c.lookup("email", "someone@example.com").expect("found by e-mail")), mail_before);
        assert!(c.lookup("user_id", "user-3").is_none(), "the erased person stays erased");
    }
    for c in [&c, &other] {
        let late = r#"{"type":"track","event":"Late","userId":"user-3","messageId":"late-3"}"#;
        assert_eq!(c.post_json("/v1/track", "wk_shop", late).statuses(), vec!["rejected"], "and refused");
    }
}
