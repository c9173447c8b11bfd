//! The Segment tracking API end to end: every endpoint, every way to send the write key, CORS, per-event results,
//! duplicates and the quarantine.

use footprint_tests::*;

#[test]
fn no_config_runs_the_demo_site_and_prints_its_write_key() {
    let c = Collector::start_default();
    let out = c.stdout_when(|lines| lines.iter().any(|l| l.contains("write key")));
    assert!(out.iter().any(|l| l.contains("site \"demo\": write key wk_demo")), "{out:?}");
    let r = c.post_json("/v1/track", "wk_demo", &track("demo-1"));
    assert_eq!((r.status, r.statuses()), (200, vec!["accepted".to_owned()]), "{}", r.text());
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE site = 'demo' AND message_id = 'demo-1'"), 1);
}

#[test]
fn every_endpoint_accepts_its_call() {
    let c = Collector::start(TWO_SITES);
    let calls = [
        ("/v1/track", r#"{"event":"Signed Up","userId":"u1","messageId":"e-track"}"#, "track"),
        ("/v1/page", r#"{"name":"Home","anonymousId":"a1","messageId":"e-page"}"#, "page"),
        ("/v1/screen", r#"{"name":"Settings","userId":"u1","messageId":"e-screen"}"#, "screen"),
        ("/v1/identify", r#"{"userId":"u1","traits":{"plan":"pro"},"messageId":"e-identify"}"#, "identify"),
        ("/v1/alias", r#"{"userId":"u1","previousId":"a1","messageId":"e-alias"}"#, "alias"),
        ("/v1/group", r#"{"userId":"u1","groupId":"g1","messageId":"e-group"}"#, "group"),
    ];
    for (path, body, kind) in calls {
        let r = c.post_json(path, "wk_shop", body);
        assert_eq!((r.status, r.statuses()), (200, vec!["accepted".to_owned()]), "{path}: {}", r.text());
        let stored: String = c.db().query_row("SELECT type FROM events WHERE message_id = ?1", [format!("e-{kind}")], |row| row.get(0)).unwrap();
        assert_eq!(stored, kind);
    }
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&[track("b-1"), track("b-2")]));
    assert_eq!(r.statuses(), vec!["accepted", "accepted"]);
    // The short alias and the beacon form (key in the query, text/plain body).
    let r = c.request().method("POST").path("/v1/b?writeKey=wk_shop").header("Content-Type", "text/plain;charset=UTF-8").body(batch(&[track("beacon-1")])).send();
    assert_eq!((r.status, r.statuses()), (200, vec!["accepted".to_owned()]), "{}", r.text());
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE site = 'shop'"), 9);
}

#[test]
fn write_key_in_basic_auth_body_or_query_and_unknown_keys_are_refused() {
    let c = Collector::start(TWO_SITES);
    let in_body = format!(r#"{{"writeKey":"wk_blog","batch":[{}]}}"#, track("k-body"));
    let r = c.request().method("POST").path("/v1/batch").header("Content-Type", "application/json").body(in_body).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let single_in_body = r#"{"writeKey":"wk_blog","event":"E","anonymousId":"a","messageId":"k-single-body"}"#;
    assert_eq!(c.request().method("POST").path("/v1/track").body(single_in_body).send().status, 200);
    assert_eq!(c.request().method("POST").path("/v1/track?writeKey=wk_blog").body(track("k-query")).send().status, 200);
    assert_eq!(c.post_json("/v1/track", "wk_shop", &track("k-basic")).status, 200);
    let sites: Vec<(String, String)> = c
        .db()
        .prepare("SELECT message_id, site FROM events ORDER BY message_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [("k-basic", "shop"), ("k-body", "blog"), ("k-query", "blog"), ("k-single-body", "blog")];
    assert_eq!(sites, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));

    let r = c.post_json("/v1/track", "wk_nope", &track("k-unknown"));
    assert_eq!((r.status, r.code()), (401, "unknown_write_key".to_owned()));
    assert_eq!(r.statuses(), vec!["rejected"], "each event is listed as rejected");
    let r = c.request().method("POST").path("/v1/track").body(track("k-none")).send();
    assert_eq!((r.status, r.code()), (401, "missing_write_key".to_owned()));
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE message_id IN ('k-unknown', 'k-none')"), 0);
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 0, "unauthenticated data is not stored anywhere");
}

#[test]
fn cors_is_answered_per_site() {
    let c = Collector::start(TWO_SITES);
    let preflight = |origin: &str, path: &str| {
        c.request().method("OPTIONS").path(path).header("Origin", origin).header("Access-Control-Request-Method", "POST").header("Access-Control-Request-Headers", "content-type,authorization").send()
    };
    let ok = preflight("https://shop.example", "/v1/batch");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://shop.example"));
    assert!(ok.header("access-control-allow-headers").unwrap().contains("Authorization"));
    let denied = preflight("https://evil.example", "/v1/batch");
    assert_eq!((denied.status, denied.code()), (403, "origin_not_allowed".to_owned()));
    assert_eq!(denied.header("access-control-allow-origin"), None);
    // With the key in the query, only that site's origins count.
    assert_eq!(preflight("https://blog.example", "/v1/batch?writeKey=wk_shop").status, 403);
    assert_eq!(preflight("https://blog.example", "/v1/batch?writeKey=wk_blog").status, 204);

    let send = |origin: &str, key: &str, id: &str| c.request().method("POST").path("/v1/track").basic(key).header("Origin", origin).body(track(id)).send();
    let allowed = send("https://shop.example", "wk_shop", "cors-ok");
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://shop.example"));
    assert_eq!(allowed.header("access-control-expose-headers"), Some("Retry-After"), "the SDK reads Retry-After from another origin");
    let wrong_site = send("https://blog.example", "wk_shop", "cors-wrong-site");
    assert_eq!((wrong_site.status, wrong_site.code()), (403, "origin_not_allowed".to_owned()));
    assert_eq!(send("https://evil.example", "wk_shop", "cors-evil").status, 403);
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 1);
}

#[test]
fn results_are_per_event_in_input_order_and_rejects_are_quarantined() {
    let c = Collector::start(TWO_SITES);
    let events = [
        track("r-ok"),
        r#"{"type":"track","anonymousId":"a","messageId":"r-no-event"}"#.to_owned(),
        r#"{"type":"track","event":5,"anonymousId":"a","messageId":"r-wrong-type"}"#.to_owned(),
        r#"{"type":"fly","anonymousId":"a","messageId":"r-unknown-type"}"#.to_owned(),
        r#"{"type":"page","messageId":"r-no-identity"}"#.to_owned(),
        r#""just a string""#.to_owned(),
        track("r-ok"),
    ];
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = results
        .iter()
        .map(|x| (x["messageId"].as_str().unwrap().to_owned(), x["status"].as_str().unwrap().to_owned(), x["code"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expect = |id: &str, status: &str, code: &str| (id.to_owned(), status.to_owned(), code.to_owned());
    assert_eq!(summary[0], expect("r-ok", "accepted", ""));
    assert_eq!(summary[1], expect("r-no-event", "rejected", "missing_event_name"));
    assert_eq!(summary[2], expect("r-wrong-type", "rejected", "invalid_event"));
    assert_eq!(summary[3], expect("r-unknown-type", "rejected", "unknown_type"));
    assert_eq!(summary[4], expect("r-no-identity", "rejected", "missing_identity"));
    assert_eq!((summary[5].1.as_str(), summary[5].2.as_str()), ("rejected", "invalid_event"));
    assert!(!summary[5].0.is_empty(), "an event without messageId gets one in the answer");
    assert_eq!(summary[6], expect("r-ok", "duplicate", ""));
    for result in results.iter().filter(|x| x["status"] == "rejected") {
        assert!(result["reason"].as_str().is_some_and(|r| r.len() > 10), "a reason for humans: {result}");
    }
    // Every rejected event is in quarantine with its code, reason and exact payload.
    let rows: Vec<(String, String, String)> = c
        .db()
        .prepare("SELECT code, reason, payload FROM quarantine ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(codes, ["missing_event_name", "invalid_event", "unknown_type", "missing_identity", "invalid_event"]);
    assert_eq!(rows[1].2, events[2]);
    assert!(rows[1].1.contains("invalid type"), "{}", rows[1].1);
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 1);

    // All rejected → 400 with the per-event results.
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&[events[1].clone()]));
    assert_eq!((r.status, r.code(), r.statuses()), (400, "all_events_rejected".to_owned(), vec!["rejected".to_owned()]));
}

#[test]
fn duplicates_are_answered_and_never_stored_twice() {
    let c = Collector::start(TWO_SITES);
    let body = batch(&[track("d-1"), track("d-2")]);
    assert_eq!(c.post_json("/v1/batch", "wk_shop", &body).statuses(), vec!["accepted", "accepted"]);
    assert_eq!(c.post_json("/v1/batch", "wk_shop", &body).statuses(), vec!["duplicate", "duplicate"]);
    // The same messageId on another site is another event.
    assert_eq!(c.post_json("/v1/batch", "wk_blog", &body).statuses(), vec!["accepted", "accepted"]);
    // Concurrent retries of one batch: exactly one copy is stored.
    let ids: Vec<String> = (0..50).map(|i| track(&format!("race-{i}"))).collect();
    let body = batch(&ids);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(c.post_json("/v1/batch", "wk_shop", &body).status, 200));
        }
    });
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE message_id LIKE 'race-%'"), 50);
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 54);
}

#[test]
fn enrichment_truncates_ips_parses_agents_pages_and_campaigns_and_corrects_clock_skew() {
    let c = Collector::start(&format!("trusted_proxies = [\"127.0.0.1\"]\n{TWO_SITES}"));
    let event = r#"{"type":"page","anonymousId":"a","messageId":"en-1",
        "timestamp":"2026-01-01T12:00:00.000Z","sentAt":"2026-01-01T12:00:10.000Z",
        "context":{"ip":"203.0.113.77","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
          "page":{"url":"https://shop.example/shoes?utm_source=news&utm_medium=email&utm_campaign=spring","referrer":"https://www.Google.com/search?q=x","title":"Shoes"},
          "locale":"de-DE"}}"#;
    let r = c.post_json("/v1/page", "wk_shop", event);
    assert_eq!(r.status, 200, "{}", r.text());
    let row: (String, String, String, String, String, String, String, String, String, i64, i64, i64) = c
        .db()
        .query_row(
            "SELECT ip, browser, os, device, path, referrer_host, utm_source, utm_campaign, context, timestamp, received_at, flags FROM events WHERE message_id = 'en-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?)),
        )
        .unwrap();
    assert_eq!(row.0, "203.0.113.0", "IPv4 truncated to /24");
    assert_eq!((row.1.as_str(), row.2.as_str(), row.3.as_str()), ("Chrome", "Windows 10", "desktop"));
    assert_eq!((row.4.as_str(), row.5.as_str(), row.6.as_str(), row.7.as_str()), ("/shoes", "www.google.com", "news", "spring"));
    assert!(!row.8.contains("203.0.113.77") && !row.8.contains("userAgent"), "raw IP and UA are not stored: {}", row.8);
    assert!(row.8.contains("\"locale\":\"de-DE\""));
    assert_eq!(row.10 - row.9, 10_000, "timestamp = receivedAt - (sentAt - originalTimestamp)");
    assert_eq!(row.11 & 2, 0, "not a bot");

    // The connection's address, through a trusted proxy's X-Forwarded-For; a bot is kept and flagged.
    let r = c.request().method("POST").path("/v1/track").basic("wk_shop").header("X-Forwarded-For", "198.51.100.23").header("User-Agent", "Googlebot/2.1 (+http://www.google.com/bot.html)").body(track("en-2")).send();
    assert_eq!(r.status, 200);
    let (ip, flags, device): (String, i64, String) = c.db().query_row("SELECT ip, flags, device FROM events WHERE message_id = 'en-2'", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert_eq!((ip.as_str(), flags & 2, device.as_str()), ("198.51.100.0", 2, "bot"));

    // A far-future device clock is clamped and flagged.
    let future = r#"{"type":"track","event":"E","anonymousId":"a","messageId":"en-3","timestamp":"2099-01-01T00:00:00Z"}"#;
    assert_eq!(c.post_json("/v1/track", "wk_shop", future).status, 200);
    let (ts, received, flags): (i64, i64, i64) = c.db().query_row("SELECT timestamp, received_at, flags FROM events WHERE message_id = 'en-3'", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert_eq!((ts, flags & 1), (received, 1));
}

#[test]
fn untrusted_peers_cannot_spoof_their_address() {
    let c = Collector::start(TWO_SITES);
    let r = c.request().method("POST").path("/v1/track").basic("wk_shop").header("X-Forwarded-For", "198.51.100.23").body(track("spoof")).send();
    assert_eq!(r.status, 200);
    let ip: String = c.db().query_row("SELECT ip FROM events WHERE message_id = 'spoof'", [], |r| r.get(0)).unwrap();
    assert_eq!(ip, "127.0.0.0");
}

#[test]
fn health_readiness_metrics_and_static_files() {
    let c = Collector::start_default();
    assert_eq!(c.get("/healthz").json()["status"], "ok");
    let ready = c.get("/readyz");
    assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")));
    c.post_json("/v1/batch", "wk_demo", &batch(&[track("m-1"), track("m-1"), r#"{"type":"x"}"#.to_owned()]));
    let metrics = c.get("/metrics").text();
    for line in ["footprint_events_total{status=\"accepted\"} 1", "footprint_events_total{status=\"duplicate\"} 1", "footprint_events_total{status=\"rejected\"} 1"] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(metrics.contains("footprint_stats_waiting_events "), "{metrics}");
    let home = c.get("/");
    assert_eq!(home.status, 200);
    assert!(home.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(c.get("/../Cargo.toml").status, 404);
    assert_eq!(c.get("/v1/nothing").status, 404);
    let wrong_method = c.get("/v1/track");
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "method_not_allowed".to_owned()));
}
