//! The stats API end to end: events sent through the public ingest API, numbers read back through
//! `/admin/v1/stats/*` and compared with a fixture computed by hand (timezone boundaries, consented and
//! cookieless visitors together, bots left out), plus the failed-events and consent-ledger routes.

use footprint_tests::*;
use serde_json::{json, Value};

const TOKEN: &str = "Bearer test-admin-token-0123456789";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const FIREFOX: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
const BOT: &str = "Googlebot/2.1 (+http://www.google.com/bot.html)";

/// Who sends: a consented anonymous ID, a consented user ID only, or a cookieless visitor (analytics denied).
#[derive(Clone, Copy)]
enum Who {
    Anon(&'static str),
    User(&'static str),
    Cookieless,
}

fn event(who: Who, ua: &str, at: &str, kind: &str, path: &str, extra: Value) -> Value {
    let mut context = json!({ "userAgent": ua, "ip": "203.0.113.9", "page": { "url": format!("https://shop.example{path}"), "path": path } });
    let mut e = json!({ "type": kind, "timestamp": at, "context": context.clone() });
    match who {
        Who::Anon(a) => e["anonymousId"] = json!(a),
        Who::User(u) => e["userId"] = json!(u),
        Who::Cookieless => {
            context["consent"] = json!({ "categoryPreferences": { "analytics": false, "marketing": false } });
            e["context"] = context;
        }
    }
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "referrer" {
                e["context"]["page"]["referrer"] = v.clone();
            } else {
                e.insert(k.clone(), v.clone());
            }
        }
    }
    e
}

fn page(who: Who, ua: &str, at: &str, path: &str) -> Value {
    event(who, ua, at, "page", path, json!({}))
}

/// The fixture. Times are UTC; New York is UTC-5 until 2026-03-08 07:00Z, UTC-4 after.
fn fixture() -> Vec<Value> {
    let a = Who::Anon("anon-A");
    vec![
        // A, visit 1: Saturday 03-07 23:30-23:50 in New York (Sunday in UTC), from a newsletter link.
        event(a, CHROME, "2026-03-08T04:30:00Z", "page", "/", json!({ "referrer": "https://news.example/issue/12?utm_source=x" })),
        page(a, CHROME, "2026-03-08T04:40:00Z", "/pricing"),
        event(a, CHROME, "2026-03-08T04:45:00Z", "track", "/pricing", json!({ "event": "Signed Up" })),
        event(a, CHROME, "2026-03-08T04:50:00Z", "track", "/pricing", json!({ "event": "Page Engaged", "properties": { "engagedMs": 30000, "scrollDepth": 80 } })),
        // A, visit 2: Monday 03-09 08:00 New York, a bounce.
        page(a, CHROME, "2026-03-09T12:00:00Z", "/blog"),
        // B (user ID only): Sunday 03-08 00:10 New York, a bounce on a phone.
        page(Who::User("user-B"), ANDROID, "2026-03-08T05:10:00Z", "/"),
        // C1 (cookieless, desktop): two pages ten minutes apart on Sunday.
        page(Who::Cookieless, FIREFOX, "2026-03-08T15:00:00Z", "/"),
        page(Who::Cookieless, FIREFOX, "2026-03-08T15:10:00Z", "/pricing"),
        // C2 (cookieless, phone): Sunday 23:59 New York, Monday in UTC.
        page(Who::Cookieless, IPHONE, "2026-03-09T03:59:00Z", "/"),
        // A bot: stored, flagged, never counted.
        page(Who::Anon("crawler"), BOT, "2026-03-08T16:00:00Z", "/"),
        // D: Friday 03-06 23:59 in New York (outside the range there), Saturday 03-07 in UTC.
        page(Who::Anon("anon-D"), CHROME, "2026-03-07T04:59:00Z", "/"),
        // E: Tuesday 03-10 00:00 New York, the first moment after the range.
        page(Who::Anon("anon-E"), CHROME, "2026-03-10T04:00:00Z", "/"),
    ]
}

struct Api<'a>(&'a Collector);

impl Api<'_> {
    fn get(&self, path: &str) -> Response {
        self.0.request().path(path).header("Authorization", TOKEN).send()
    }
    fn ok(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }
}

fn loaded() -> Collector {
    let c = Collector::start(TWO_SITES);
    let body = json!({ "batch": fixture() }).to_string();
    let r = c.post_json("/v1/batch", "wk_shop", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.statuses().iter().all(|s| s == "accepted"), "{}", r.text());
    c
}

const NY: &str = "site=shop&from=2026-03-07&to=2026-03-09&tz=America/New_York";
const UTC: &str = "site=shop&from=2026-03-07&to=2026-03-09&tz=UTC";

fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

#[test]
fn overview_counts_consented_and_cookieless_visitors_once_and_no_bots() {
    let c = loaded();
    let api = Api(&c);
    let t = &api.ok(&format!("/admin/v1/stats/overview?{NY}"))["totals"];
    let expected = json!({
        "visitors": 4, "pageviews": 7, "sessions": 5, "bounce_rate": 0.6, "visit_duration_ms": 360000,
        "views_per_visit": 1.4, "events": 1, "engaged_ms": 30000, "scroll_depth": 80.0
    });
    assert_eq!(pick(t, &["visitors", "pageviews", "sessions", "bounce_rate", "visit_duration_ms", "views_per_visit", "events", "engaged_ms", "scroll_depth"]), expected);
    // The same days in UTC hold D (Saturday) but not C2's and A's Monday events move days: 5 visitors.
    let t = &api.ok(&format!("/admin/v1/stats/overview?{UTC}"))["totals"];
    assert_eq!(pick(t, &["visitors", "pageviews", "sessions"]), json!({ "visitors": 5, "pageviews": 8, "sessions": 6 }));
    // A stats query brings the stats up to date first (they follow the events in batches): nothing waits now.
    let metrics = c.get("/metrics").text();
    assert!(metrics.contains("footprint_stats_waiting_events 0"), "{metrics}");
}

#[test]
fn daily_series_follow_the_timezone() {
    let c = loaded();
    let api = Api(&c);
    let series = |query: &str| -> Vec<(String, u64, u64, u64)> {
        api.ok(&format!("/admin/v1/stats/timeseries?{query}&interval=day"))["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["bucket"].as_str().unwrap().to_owned(), p["visitors"].as_u64().unwrap(), p["pageviews"].as_u64().unwrap(), p["sessions"].as_u64().unwrap()))
            .collect()
    };
    let d = |s: &str, v, p, n| (s.to_owned(), v, p, n);
    assert_eq!(series(NY), vec![d("2026-03-07", 1, 2, 1), d("2026-03-08", 3, 4, 3), d("2026-03-09", 1, 1, 1)]);
    assert_eq!(series(UTC), vec![d("2026-03-07", 1, 1, 1), d("2026-03-08", 3, 5, 3), d("2026-03-09", 2, 2, 2)]);
    // Hourly buckets: the New York day of the DST change has 23 of them.
    let hours = api.ok(&format!("/admin/v1/stats/timeseries?site=shop&from=2026-03-08&to=2026-03-08&tz=America/New_York&interval=hour"));
    assert_eq!(hours["points"].as_array().unwrap().len(), 23);
    let weeks = api.ok(&format!("/admin/v1/stats/timeseries?{NY}&interval=week"));
    let weeks: Vec<(&str, u64)> = weeks["points"].as_array().unwrap().iter().map(|p| (p["bucket"].as_str().unwrap(), p["visitors"].as_u64().unwrap())).collect();
    assert_eq!(weeks, vec![("2026-03-02", 4), ("2026-03-09", 1)]);
}

#[test]
fn breakdowns_rank_pages_entries_exits_sources_and_devices() {
    let c = loaded();
    let api = Api(&c);
    let rows = |by: &str, metric: &str| -> Vec<(String, u64)> {
        api.ok(&format!("/admin/v1/stats/breakdown?{NY}&by={by}"))["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["value"].as_str().unwrap().to_owned(), r[metric].as_u64().unwrap()))
            .collect()
    };
    let r = |v: &str, n| (v.to_owned(), n);
    assert_eq!(rows("page", "pageviews"), vec![r("/", 4), r("/pricing", 2), r("/blog", 1)]);
    assert_eq!(rows("page", "visitors"), vec![r("/", 4), r("/pricing", 2), r("/blog", 1)]);
    assert_eq!(rows("entry_page", "sessions"), vec![r("/", 4), r("/blog", 1)]);
    assert_eq!(rows("exit_page", "sessions"), vec![r("/", 2), r("/pricing", 2), r("/blog", 1)]);
    assert_eq!(rows("referrer", "sessions"), vec![r("", 4), r("news.example", 1)]);
    assert_eq!(rows("device", "sessions"), vec![r("desktop", 3), r("mobile", 2)]);
    assert_eq!(rows("device", "visitors"), vec![r("desktop", 2), r("mobile", 2)]);
    let entry = api.ok(&format!("/admin/v1/stats/breakdown?{NY}&by=entry_page"));
    assert_eq!(entry["rows"][0]["bounce_rate"], json!(0.5), "2 of the 4 visits that entered on / bounced");
}

#[test]
fn filters_select_visits() {
    let c = loaded();
    let api = Api(&c);
    let totals = |filter: &str| pick(&api.ok(&format!("/admin/v1/stats/overview?{NY}&{filter}"))["totals"], &["visitors", "pageviews", "sessions", "bounce_rate"]);
    assert_eq!(totals("device=mobile"), json!({ "visitors": 2, "pageviews": 2, "sessions": 2, "bounce_rate": 1.0 }));
    assert_eq!(totals("page=%2Fpricing"), json!({ "visitors": 2, "pageviews": 4, "sessions": 2, "bounce_rate": 0.0 }));
    assert_eq!(totals("referrer=news.example"), json!({ "visitors": 1, "pageviews": 2, "sessions": 1, "bounce_rate": 0.0 }));
    assert_eq!(totals("event=Signed+Up&device=desktop"), json!({ "visitors": 1, "pageviews": 2, "sessions": 1, "bounce_rate": 0.0 }));
    assert_eq!(totals("country=DE"), json!({ "visitors": 0, "pageviews": 0, "sessions": 0, "bounce_rate": 0.0 }), "country is not known");
    let pages = api.ok(&format!("/admin/v1/stats/breakdown?{NY}&by=page&device=desktop"));
    let pages: Vec<(&str, u64)> = pages["rows"].as_array().unwrap().iter().map(|r| (r["value"].as_str().unwrap(), r["visitors"].as_u64().unwrap())).collect();
    assert_eq!(pages, vec![("/", 2), ("/pricing", 2), ("/blog", 1)]);
}

#[test]
fn events_goals_funnels_heatmap_and_live() {
    let c = loaded();
    let api = Api(&c);
    let e = api.ok(&format!("/admin/v1/stats/events?{NY}&goal=Signed+Up&goal=Purchased"));
    assert_eq!(e["visitors"], json!(4));
    assert_eq!(
        e["events"],
        json!([
            { "name": "Signed Up", "events": 1, "visitors": 1, "conversion_rate": 0.25 },
            { "name": "Purchased", "events": 0, "visitors": 0, "conversion_rate": 0.0 }
        ])
    );
    let all = api.ok(&format!("/admin/v1/stats/events?{NY}"));
    assert_eq!(all["events"].as_array().unwrap().len(), 1, "the SDK's engagement event is not a custom event: {all}");
    let f = api.ok(&format!("/admin/v1/stats/funnel?{NY}&step=page:/&step=page:/pricing&step=event:Signed%20Up"));
    let steps: Vec<(u64, u64)> = f["steps"].as_array().unwrap().iter().map(|s| (s["visitors"].as_u64().unwrap(), s["dropped"].as_u64().unwrap())).collect();
    assert_eq!(steps, vec![(4, 0), (2, 2), (1, 1)]);
    let h = api.ok(&format!("/admin/v1/stats/heatmap?{NY}"));
    assert_eq!(h["heatmap"]["pageviews"][5][23], json!(2), "Saturday 23:00 in New York");
    assert_eq!(h["heatmap"]["pageviews"][6][0], json!(1), "Sunday 00:00");
    let sum: i64 = h["heatmap"]["pageviews"].as_array().unwrap().iter().flat_map(|d| d.as_array().unwrap()).map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(sum, 7);
    assert_eq!(api.ok("/admin/v1/stats/live?site=shop")["visitors"], json!(0));
    let now = c.post_json("/v1/page", "wk_shop", &json!({ "anonymousId": "live-1", "context": { "page": { "path": "/" } } }).to_string());
    assert_eq!(now.status, 200);
    assert_eq!(api.ok("/admin/v1/stats/live?site=shop")["visitors"], json!(1));
}

#[test]
fn refuses_bad_requests_with_codes() {
    let c = loaded();
    let api = Api(&c);
    for (path, status, code) in [
        ("/admin/v1/stats/overview?site=nope", 404, "unknown_site"),
        ("/admin/v1/stats/overview", 400, "missing_site"),
        ("/admin/v1/stats/overview?site=shop&tz=Nowhere/Town", 400, "invalid_timezone"),
        ("/admin/v1/stats/overview?site=shop&from=2026-03-09&to=2026-03-01", 400, "invalid_range"),
        ("/admin/v1/stats/breakdown?site=shop", 400, "missing_dimension"),
        ("/admin/v1/stats/funnel?site=shop&step=page:/", 400, "invalid_funnel"),
        ("/admin/v1/stats/nothing?site=shop", 404, "not_found"),
    ] {
        let r = api.get(path);
        assert_eq!((r.status, r.code()), (status, code.to_owned()), "{path}: {}", r.text());
    }
    let r = c.get("/admin/v1/stats/overview?site=shop");
    assert_eq!((r.status, r.code()), (401, "missing_admin_token".to_owned()));
}

#[test]
fn failed_events_are_counted_by_code_with_samples() {
    let c = Collector::start(TWO_SITES);
    let bad = json!({ "batch": [
        { "type": "track", "anonymousId": "a", "messageId": "no-name-1" },
        { "type": "track", "anonymousId": "a", "messageId": "no-name-2" },
        { "type": "nonsense", "anonymousId": "a", "messageId": "odd-1" },
        { "type": "track", "event": "Fine", "anonymousId": "a", "messageId": "ok-1" }
    ]});
    let r = c.post_json("/v1/batch", "wk_shop", &bad.to_string());
    assert_eq!(r.statuses(), vec!["rejected", "rejected", "rejected", "accepted"], "{}", r.text());
    let api = Api(&c);
    let q = api.ok("/admin/v1/quarantine?site=shop&samples=1");
    assert_eq!(q["total"], json!(3));
    let codes: Vec<(&str, i64, usize)> = q["codes"].as_array().unwrap().iter().map(|c| (c["code"].as_str().unwrap(), c["count"].as_i64().unwrap(), c["samples"].as_array().unwrap().len())).collect();
    assert_eq!(codes, vec![("missing_event_name", 2, 1), ("unknown_type", 1, 1)]);
    assert_eq!(q["codes"][0]["samples"][0]["message_id"], json!("no-name-2"), "newest sample first");
    assert_eq!(api.ok("/admin/v1/quarantine?site=blog")["total"], json!(0), "per site");
}

#[test]
fn consent_ledger_pages_newest_first() {
    let c = Collector::start(TWO_SITES);
    for (i, analytics) in [true, false, true].into_iter().enumerate() {
        let body = json!({ "type": "track", "event": "Consent Updated", "anonymousId": "anon-L", "messageId": format!("consent-{i}"),
            "context": { "consent": { "categoryPreferences": { "analytics": analytics, "marketing": false } } } });
        assert_eq!(c.post_json("/v1/track", "wk_shop", &body.to_string()).status, 200);
    }
    let api = Api(&c);
    assert_eq!(c.count("SELECT COUNT(*) FROM consent_ledger WHERE site = 'shop'"), 3);
    let first = api.ok("/admin/v1/consent-ledger?site=shop&limit=2");
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{first}");
    assert_eq!(entries[0]["categories"], json!(["analytics"]), "newest first: {first}");
    assert_eq!(entries[1]["categories"], json!([]));
    let next = api.ok(&format!("/admin/v1/consent-ledger?site=shop&limit=2&cursor={}", first["next_cursor"]));
    assert_eq!(next["entries"].as_array().unwrap().len(), 1);
    assert_eq!(next["next_cursor"], Value::Null);
    assert!(next["entries"][0]["id"].as_i64() < entries[1]["id"].as_i64());
    assert_eq!(api.ok("/admin/v1/consent-ledger?site=blog")["entries"], json!([]));
    let r = api.get("/admin/v1/consent-ledger?site=shop&limit=0");
    assert_eq!((r.status, r.code()), (400, "invalid_limit".to_owned()));
}

#[test]
fn events_sent_one_at_a_time_give_the_same_numbers_as_one_batch() {
    // Visits that grow across commits: bounces turn into non-bounces, exit pages move, durations grow.
    let c = Collector::start(TWO_SITES);
    for e in fixture() {
        let r = c.post_json("/v1/batch", "wk_shop", &json!({ "batch": [e] }).to_string());
        assert_eq!(r.statuses(), vec!["accepted"], "{}", r.text());
    }
    let one_by_one = Api(&c);
    let batched = loaded();
    let batched = Api(&batched);
    for path in [
        format!("/admin/v1/stats/overview?{NY}"),
        format!("/admin/v1/stats/timeseries?{NY}&interval=hour"),
        format!("/admin/v1/stats/breakdown?{NY}&by=exit_page"),
        format!("/admin/v1/stats/breakdown?{NY}&by=entry_page"),
        format!("/admin/v1/stats/breakdown?{NY}&by=referrer"),
        format!("/admin/v1/stats/overview?{NY}&device=desktop"),
    ] {
        assert_eq!(one_by_one.ok(&path), batched.ok(&path), "{path}");
    }
}
