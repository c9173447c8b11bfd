//! Every limit and every kind of malformed input gets its precise status and code, and the server keeps serving.

use footprint_tests::*;

fn nested(depth: usize) -> String {
    let mut s = "{}".to_owned();
    for i in 1..depth {
        s = format!(r#"{{"k{i}":{s}}}"#);
    }
    s
}

#[test]
fn malformed_bodies_get_400_with_a_code_and_are_kept_when_the_site_is_known() {
    let c = Collector::start(TWO_SITES);
    let cases: [(&str, &[u8], &str); 6] = [
        ("/v1/batch", b"{\"batch\": [", "invalid_json"),
        ("/v1/batch", b"not json at all", "invalid_json"),
        ("/v1/batch", b"{\"events\": []}", "missing_batch"),
        ("/v1/batch", b"{\"batch\": []}", "empty_batch"),
        ("/v1/track", b"[1,2,3]", "invalid_json"),
        ("/v1/track", b"{\"event\":\"\xff\xfe\"}", "invalid_utf8"),
    ];
    for (path, body, code) in cases {
        let r = c.request().method("POST").path(path).basic("wk_shop").header("Content-Type", "application/json").body(body.to_vec()).send();
        assert_eq!((r.status, r.code()), (400, code.to_owned()), "{path} {:?}: {}", String::from_utf8_lossy(body), r.text());
        assert!(!r.json()["message"].as_str().unwrap().is_empty());
        c.assert_alive();
    }
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 6, "unparseable bodies from a known site are kept for inspection");
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine WHERE code = 'invalid_utf8' AND message_id IS NULL"), 1);

    let bad_sent_at = r#"{"batch":[{"type":"track","event":"E","anonymousId":"a"}],"sentAt":"soon"}"#;
    assert_eq!(c.post_json("/v1/batch", "wk_shop", bad_sent_at).code(), "invalid_timestamp");
    let r = c.request().method("POST").path("/v1/track").basic("wk_shop").header("Content-Type", "application/xml").body(track("x")).send();
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type".to_owned()));
    let r = c.request().method("POST").path("/v1/track").basic("wk_shop").header("Content-Encoding", "br").body(track("x")).send();
    assert_eq!((r.status, r.code()), (415, "unsupported_encoding".to_owned()));
    c.assert_alive();
}

#[test]
fn event_limits_reject_the_event_not_the_batch() {
    let c = Collector::start(TWO_SITES);
    let big_props = format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"l-big","properties":{{"a":"{0}","b":"{0}","c":"{0}","d":"{0}","e":"{0}"}}}}"#, "x".repeat(7000));
    let strings = format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"l-string","properties":{{"s":"{}"}}}}"#, "x".repeat(9000));
    let deep = format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"l-deep","properties":{}}}"#, nested(11));
    let keys: Vec<String> = (0..301).map(|i| format!("\"t{i}\":{i}")).collect();
    let many = format!(r#"{{"type":"identify","userId":"u","messageId":"l-keys","traits":{{{}}}}}"#, keys.join(","));
    let long_id = format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"{}"}}"#, "m".repeat(101));
    let long_user = format!(r#"{{"type":"track","event":"E","userId":"{}","messageId":"l-user"}}"#, "u".repeat(256));
    let events = [track("l-ok"), big_props, strings, deep, many, long_id, long_user];
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<String> = r.json()["results"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap_or("ok").to_owned()).collect();
    assert_eq!(codes, ["ok", "event_too_large", "string_too_long", "too_deep", "too_many_keys", "message_id_too_long", "id_too_long"]);
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 1);
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 6);
}

#[test]
fn batches_over_2500_events_keep_the_first_2500() {
    let c = Collector::start(TWO_SITES);
    let events: Vec<String> = (0..2_502).map(|i| format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"n{i}"}}"#)).collect();
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
    assert_eq!(r.status, 200);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2_502);
    assert_eq!(results[2_499]["status"], "accepted");
    assert_eq!((results[2_500]["status"].as_str(), results[2_500]["code"].as_str()), (Some("rejected"), Some("batch_too_large")));
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 2_500);
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine WHERE code = 'batch_too_large'"), 2);
}

#[test]
fn oversize_requests_get_413_even_when_the_length_is_not_announced() {
    let c = Collector::start(TWO_SITES);
    let huge = batch(&vec![track("big"); 4000]);
    assert!(huge.len() > 500 * 1024);
    let r = c.post_json("/v1/batch", "wk_shop", &huge);
    assert_eq!((r.status, r.code()), (413, "request_too_large".to_owned()));
    // Chunked, so only counting while reading can catch it.
    let mut chunked = format!("POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic d2tfc2hvcDo=\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for chunk in huge.as_bytes().chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = send_raw(&c.addr, &chunked, false);
    assert_eq!((r.status, r.code()), (413, "request_too_large".to_owned()));
    c.assert_alive();
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 0);
}

#[test]
fn gzip_bodies_are_accepted_and_bombs_are_stopped_while_decompressing() {
    let c = Collector::start(TWO_SITES);
    let body = gzip(batch(&[track("gz-1"), track("gz-2")]).as_bytes());
    let r = c.request().method("POST").path("/v1/batch").basic("wk_shop").header("Content-Encoding", "gzip").body(body).send();
    assert_eq!(r.statuses(), vec!["accepted", "accepted"], "{}", r.text());

    // 1 GiB of zeros compresses to about 1 MB; 64 MiB to ~64 KB, well under the wire limit.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 500 * 1024);
    let r = c.request().method("POST").path("/v1/batch").basic("wk_shop").header("Content-Encoding", "gzip").body(bomb).send();
    assert_eq!((r.status, r.code()), (413, "request_too_large".to_owned()));
    let r = c.request().method("POST").path("/v1/batch").basic("wk_shop").header("Content-Encoding", "gzip").body(b"\x1f\x8b\x08garbage".to_vec()).send();
    assert_eq!((r.status, r.code()), (400, "invalid_gzip".to_owned()));
    c.assert_alive();
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 2);
}

#[test]
fn truncated_bodies_and_silent_clients_do_not_hurt_the_server() {
    let c = Collector::start(TWO_SITES);
    // Announces 1000 bytes, sends 20, then closes its side.
    let head = "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic d2tfc2hvcDo=\r\nContent-Length: 1000\r\n\r\n{\"batch\":[{\"type\":";
    let r = send_raw(&c.addr, head.as_bytes(), true);
    assert_eq!((r.status, r.code()), (400, "body_read_failed".to_owned()), "{}", r.text());
    // A connection that never sends anything must not block others.
    let _idle = std::net::TcpStream::connect(&c.addr).unwrap();
    c.assert_alive();
    assert_eq!(c.post_json("/v1/track", "wk_shop", &track("after")).status, 200);
}

#[test]
fn wrong_types_and_hostile_values_are_per_event_rejections() {
    let c = Collector::start(TWO_SITES);
    let events = [
        r#"{"type":"track","event":"E","anonymousId":{"$ne":null},"messageId":"h-1"}"#.to_owned(),
        r#"{"type":"track","event":["E"],"anonymousId":"a","messageId":"h-2"}"#.to_owned(),
        r#"{"type":"track","event":"E","anonymousId":"a","messageId":"h-3","properties":"a string"}"#.to_owned(),
        r#"{"type":"track","event":"E","anonymousId":"a","messageId":"h-4","timestamp":12345}"#.to_owned(),
        r#"{"type":"track","event":"E","anonymousId":"a","messageId":"h-5","timestamp":"2026-02-30T00:00:00Z"}"#.to_owned(),
        r#"{"type":"track","event":"E'); DROP TABLE events;--","anonymousId":"\u0000a","messageId":"h-6"}"#.to_owned(),
    ];
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
    let codes: Vec<String> = r.json()["results"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap_or("ok").to_owned()).collect();
    assert_eq!(codes, ["invalid_event", "invalid_event", "not_an_object", "invalid_event", "invalid_timestamp", "ok"]);
    let name: String = c.db().query_row("SELECT name FROM events WHERE message_id = 'h-6'", [], |r| r.get(0)).unwrap();
    assert_eq!(name, "E'); DROP TABLE events;--");
    c.assert_alive();
}
