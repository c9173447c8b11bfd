//! 2xx means durable: acknowledged events survive restarts, SIGTERM and `kill -9`; dedupe state survives restarts;
//! a full queue answers 503 + Retry-After instead of growing.

use footprint_tests::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[test]
fn restart_keeps_events_and_the_dedupe_window() {
    let c = Collector::start(TWO_SITES);
    let body = batch(&[track("keep-1"), track("keep-2")]);
    assert_eq!(c.post_json("/v1/batch", "wk_shop", &body).statuses(), vec!["accepted", "accepted"]);
    let c = c.restart();
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 2);
    assert_eq!(c.post_json("/v1/batch", "wk_shop", &body).statuses(), vec!["duplicate", "duplicate"]);
    assert_eq!(c.post_json("/v1/batch", "wk_shop", &batch(&[track("keep-3")])).statuses(), vec!["accepted"]);
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 3);
}

/// Sends batches of fresh events from several threads until `stop`; returns the messageIds acknowledged with 200.
fn load(c: &Collector, stop: &AtomicBool, threads: usize) -> HashSet<String> {
    let acked = Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let acked = &acked;
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (0..20).map(|i| format!("load-{t}-{n}-{i}")).collect();
                    n += 1;
                    let events: Vec<String> = ids.iter().map(|id| track(id)).collect();
                    let request = c.request().method("POST").path("/v1/batch").basic("wk_shop").body(batch(&events));
                    // Connection errors are expected once the collector is gone.
                    let Ok(r) = try_send_raw(&c.addr, &request.to_bytes(), false) else { continue };
                    if r.status == 200 {
                        acked.lock().unwrap().extend(ids);
                    }
                }
            });
        }
    });
    acked.into_inner().unwrap()
}

#[test]
fn kill_9_during_load_loses_no_acknowledged_event() {
    let mut c = Collector::start(TWO_SITES);
    let stop = AtomicBool::new(false);
    let acked = std::thread::scope(|s| {
        let loader = s.spawn(|| load(&c, &stop, 4));
        wait_until(30, "some events acknowledged", || c.count("SELECT COUNT(*) FROM events") >= 2_000);
        c.signal("KILL");
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap()
    });
    c.kill9();
    assert!(acked.len() >= 2_000, "the load ran: {} acknowledged", acked.len());
    let stored = c.stored_message_ids();
    let lost: Vec<&String> = acked.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost after kill -9, e.g. {lost:?}", acked.difference(&stored).count());
    // And the database is fine for the next start.
    let c = c.restart();
    assert_eq!(c.stored_message_ids().len(), stored.len());
    c.assert_alive();
}

/// Waits for the collector process to exit, then stops the load and returns what it acknowledged.
fn loader_after_exit(c: &Collector, stop: &AtomicBool, loader: std::thread::ScopedJoinHandle<'_, HashSet<String>>) -> HashSet<String> {
    let pid = c.pid();
    wait_until(20, "the collector to exit", || !std::path::Path::new(&format!("/proc/{pid}/status")).exists() || std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| s.contains("State:\tZ")));
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap()
}

#[test]
fn sigterm_drains_the_queue_and_exits_cleanly() {
    let mut c = Collector::start(TWO_SITES);
    let stop = AtomicBool::new(false);
    let (acked, ()) = std::thread::scope(|s| {
        let loader = s.spawn(|| load(&c, &stop, 4));
        wait_until(30, "some events acknowledged", || c.count("SELECT COUNT(*) FROM events") >= 1_000);
        c.signal("TERM");
        let acked = loader_after_exit(&c, &stop, loader);
        (acked, ())
    });
    let clean = c.stop();
    assert!(clean, "collector exited with an error after SIGTERM");
    let stored = c.stored_message_ids();
    assert!(acked.is_subset(&stored), "{} acknowledged events missing after SIGTERM", acked.difference(&stored).count());
}

#[test]
fn a_request_the_queue_has_no_room_for_is_refused_before_its_body_is_read() {
    let c = Collector::start(&format!("queue_capacity_mb = 0.1\n{TWO_SITES}"));
    // Declares 400 KB and sends a few bytes, then stops: read, this body would be a truncated one (400); the queue's
    // 100 KiB cannot hold half of it, so the answer comes from the headers alone.
    let head = "POST /v1/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Basic d2tfc2hvcDo=\r\nContent-Length: 400000\r\n\r\n{\"batch\":[";
    let r = send_raw(&c.addr, head.as_bytes(), true);
    assert_eq!((r.status, r.code()), (503, "queue_full".to_owned()), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(c.get("/metrics").text().contains("footprint_http_refused_total{class=\"queue_full\"} 1"));
    assert_eq!(c.post_json("/v1/track", "wk_shop", &track("small")).status, 200, "requests that fit still go through");
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_stores_nothing() {
    let c = Collector::start(&format!("queue_capacity_mb = 0.25\n{TWO_SITES}"));
    // 2,500 events of ~80 bytes: more than the 256 KiB the queue may hold once in memory.
    let events: Vec<String> = (0..2_500).map(|i| format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"q{i}"}}"#)).collect();
    let r = c.post_json("/v1/batch", "wk_shop", &batch(&events));
    assert_eq!((r.status, r.code()), (503, "queue_full".to_owned()), "{}", &r.text()[..200.min(r.text().len())]);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["results"], serde_json::json!([]), "nothing was taken: the whole request is to be retried");
    assert_eq!(c.count("SELECT COUNT(*) FROM events"), 0);
    assert!(c.get("/metrics").text().contains("footprint_http_refused_total{class=\"queue_full\"} 1"));
    assert_eq!(c.post_json("/v1/track", "wk_shop", &track("small")).status, 200, "smaller requests still go through");
}
