//! Pure rules behind the stats API: query parameters, date range + timezone → UTC bounds, time buckets, the
//! dimensions, the session and bounce rules, and funnel matching. No SQL and no I/O; `store::stats` runs the
//! queries and `http::stats` the routes.

pub mod sketch;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::HashMap;

pub const HOUR_MS: i64 = 3_600_000;
/// A visit ends after this much inactivity (when the SDK sent no session ID of its own).
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;
/// The window of the live counter.
pub const LIVE_WINDOW_MS: i64 = 30 * 60 * 1000;
/// Longest date range one query may cover.
pub const MAX_RANGE_DAYS: i64 = 800;
/// The SDK's engagement event (engaged time and scroll depth, sent when the page is hidden).
pub const ENGAGEMENT_EVENT: &str = "Page Engaged";
/// Track events that are bookkeeping, not goals: kept out of "custom events".
pub const NOT_CUSTOM_EVENTS: &[&str] = &[ENGAGEMENT_EVENT, "Consent Updated"];
/// At most this many steps of a visit are kept for filters and funnels.
pub const MAX_VISIT_STEPS: usize = 64;

/// What a breakdown or a filter is about. The number is the rollup key; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Total = 0,
    Page = 1,
    EntryPage = 2,
    ExitPage = 3,
    Referrer = 4,
    UtmSource = 5,
    UtmMedium = 6,
    UtmCampaign = 7,
    Device = 8,
    Browser = 9,
    Os = 10,
    Country = 11,
    Event = 12,
}

impl Dim {
    /// The dimensions a breakdown (`by=`) or a filter parameter may name.
    pub const NAMED: &'static [Dim] = &[
        Dim::Page,
        Dim::EntryPage,
        Dim::ExitPage,
        Dim::Referrer,
        Dim::UtmSource,
        Dim::UtmMedium,
        Dim::UtmCampaign,
        Dim::Device,
        Dim::Browser,
        Dim::Os,
        Dim::Country,
        Dim::Event,
    ];
    /// Dimensions fixed when a visit starts: their rollup rows count sessions, bounces and durations.
    pub const OF_SESSION: &'static [Dim] =
        &[Dim::EntryPage, Dim::Referrer, Dim::UtmSource, Dim::UtmMedium, Dim::UtmCampaign, Dim::Device, Dim::Browser, Dim::Os];

    pub fn name(self) -> &'static str {
        match self {
            Dim::Total => "total",
            Dim::Page => "page",
            Dim::EntryPage => "entry_page",
            Dim::ExitPage => "exit_page",
            Dim::Referrer => "referrer",
            Dim::UtmSource => "utm_source",
            Dim::UtmMedium => "utm_medium",
            Dim::UtmCampaign => "utm_campaign",
            Dim::Device => "device",
            Dim::Browser => "browser",
            Dim::Os => "os",
            Dim::Country => "country",
            Dim::Event => "event",
        }
    }

    pub fn parse(name: &str) -> Option<Dim> {
        Dim::NAMED.iter().copied().find(|d| d.name() == name)
    }
}

/// Bucket size of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// Weeks start on Monday.
    Week,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            _ => None,
        }
    }
}

/// A bad query parameter: `code` is stable, `message` says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> ParamError {
    ParamError { code, message: message.into() }
}

/// A funnel step: a page path or a custom event name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Page(String),
    Event(String),
}

impl Step {
    /// `page:/pricing` or `event:Signed Up`.
    pub fn parse(s: &str) -> Option<Step> {
        match s.split_once(':') {
            Some(("page", p)) if !p.is_empty() => Some(Step::Page(p.to_owned())),
            Some(("event", e)) if !e.is_empty() => Some(Step::Event(e.to_owned())),
            _ => None,
        }
    }

    /// The token a visit's step list stores (see [`push_visit_step`]).
    pub fn token(&self) -> String {
        match self {
            Step::Page(p) => format!("p:{p}"),
            Step::Event(e) => format!("e:{e}"),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Step::Page(p) => format!("page:{p}"),
            Step::Event(e) => format!("event:{e}"),
        }
    }
}

/// Everything a stats request asks.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub site: String,
    pub range: Range,
    /// Conditions every counted visit meets (all of them).
    pub filters: Vec<(Dim, String)>,
    pub interval: Interval,
    pub by: Option<Dim>,
    pub limit: usize,
    pub steps: Vec<Step>,
    pub goals: Vec<String>,
}

/// Local dates `from..=to` in a timezone, resolved to UTC.
#[derive(Debug, Clone)]
pub struct Range {
    pub from: Date,
    pub to: Date,
    pub tz: TimeZone,
    pub tz_name: String,
    /// First millisecond (UTC) of `from` in `tz`.
    pub start_ms: i64,
    /// First millisecond after `to` in `tz`.
    pub end_ms: i64,
}

impl Range {
    pub fn resolve(from: Date, to: Date, tz_name: &str) -> Result<Range, ParamError> {
        let tz = timezone(tz_name)?;
        if to < from {
            return Err(bad("invalid_range", "`to` is before `from`"));
        }
        let days = (to - from).get_days() as i64 + 1;
        if days > MAX_RANGE_DAYS {
            return Err(bad("invalid_range", format!("a range covers at most {MAX_RANGE_DAYS} days")));
        }
        let start_ms = day_start_ms(from, &tz)?;
        let end_ms = day_start_ms(to.tomorrow().map_err(|_| bad("invalid_range", "`to` is out of range"))?, &tz)?;
        Ok(Range { from, to, tz, tz_name: tz_name.to_owned(), start_ms, end_ms })
    }

    /// The UTC hours the range's rollup rows live in: `first..end`. Boundaries inside an hour (timezones with a
    /// half-hour offset) round down to the hour.
    pub fn hours(&self) -> (i64, i64) {
        (self.start_ms.div_euclid(HOUR_MS), (self.end_ms + HOUR_MS - 1).div_euclid(HOUR_MS))
    }

    /// Local date and time of a UTC millisecond.
    pub fn local(&self, ms: i64) -> jiff::civil::DateTime {
        Timestamp::from_millisecond(ms).map(|t| t.to_zoned(self.tz.clone()).datetime()).unwrap_or_default()
    }

    /// The time-series buckets and, for every UTC hour of [`Range::hours`], the bucket it falls in.
    pub fn buckets(&self, interval: Interval) -> Buckets {
        let (first, end) = self.hours();
        let mut labels: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut of_hour = Vec::with_capacity((end - first) as usize);
        for hour in first..end {
            let local = self.local(hour * HOUR_MS);
            let label = match interval {
                Interval::Hour => local.strftime("%Y-%m-%dT%H:00").to_string(),
                Interval::Day => local.date().to_string(),
                Interval::Week => {
                    let back = i64::from(local.date().weekday().to_monday_zero_offset());
                    local.date().checked_sub(jiff::Span::new().days(back)).unwrap_or(local.date()).to_string()
                }
            };
            let next = labels.len();
            let at = *index.entry(label.clone()).or_insert_with(|| {
                labels.push(label);
                next
            });
            of_hour.push(at);
        }
        Buckets { labels, of_hour }
    }

    /// Weekday (0 = Monday) and local hour of a UTC hour, for the activity heatmap.
    pub fn weekday_hour(&self, hour: i64) -> (usize, usize) {
        let local = self.local(hour * HOUR_MS);
        (local.date().weekday().to_monday_zero_offset() as usize, local.hour() as usize)
    }
}

/// See [`Range::buckets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub labels: Vec<String>,
    pub of_hour: Vec<usize>,
}

fn timezone(name: &str) -> Result<TimeZone, ParamError> {
    TimeZone::get(name).map_err(|_| bad("invalid_timezone", format!("unknown timezone {name:?}; send an IANA name such as Europe/Berlin")))
}

fn day_start_ms(date: Date, tz: &TimeZone) -> Result<i64, ParamError> {
    let zoned = date.to_zoned(tz.clone()).map_err(|e| bad("invalid_range", format!("{date} has no start in this timezone: {e}")))?;
    Ok(zoned.timestamp().as_millisecond())
}

/// Reads the stats parameters from a URL query string. `now` is the caller's clock: the default range is the 30 days
/// that end today in the query's timezone (in Berlin, 23:30 UTC is already tomorrow).
pub fn parse_query(query: &str, now: Timestamp) -> Result<StatsQuery, ParamError> {
    let mut site = None;
    let (mut from, mut to, mut tz) = (None, None, "UTC".to_owned());
    let mut filters = Vec::new();
    let (mut interval, mut by, mut limit) = (Interval::Day, None, 10usize);
    let (mut steps, mut goals) = (Vec::new(), Vec::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "site" => site = Some(value),
            "from" => from = Some(parse_date("from", &value)?),
            "to" => to = Some(parse_date("to", &value)?),
            "tz" => tz = value,
            "interval" => interval = Interval::parse(&value).ok_or_else(|| bad("invalid_interval", "interval is hour, day or week"))?,
            "by" => by = Some(Dim::parse(&value).ok_or_else(|| bad("invalid_dimension", format!("unknown dimension {value:?}")))?),
            "limit" => limit = value.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| bad("invalid_limit", "limit is 1 to 1000"))?,
            "step" => steps.push(Step::parse(&value).ok_or_else(|| bad("invalid_step", format!("a step is page:/path or event:Name, not {value:?}")))?),
            "goal" => goals.push(value),
            name => match Dim::parse(name) {
                Some(dim) => filters.push((dim, value)),
                None => return Err(bad("unknown_parameter", format!("unknown parameter {name:?}"))),
            },
        }
    }
    let site = site.filter(|s| !s.is_empty()).ok_or_else(|| bad("missing_site", "send site=<site id>"))?;
    let to = match to {
        Some(to) => to,
        None => now.to_zoned(timezone(&tz)?).date(),
    };
    let from = from.unwrap_or_else(|| to.checked_sub(jiff::Span::new().days(29)).unwrap_or(to));
    let range = Range::resolve(from, to, &tz)?;
    Ok(StatsQuery { site, range, filters, interval, by, limit, steps, goals })
}

fn parse_date(name: &str, value: &str) -> Result<Date, ParamError> {
    value.parse::<Date>().map_err(|_| bad("invalid_date", format!("{name} is a date as YYYY-MM-DD, not {value:?}")))
}

/// A visit as the session rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenVisit {
    pub start: i64,
    pub last: i64,
    pub sdk_session: Option<String>,
}

/// Whether an event at `ts` (with the SDK's session ID, if any) continues `visit`: the same SDK session, or, when
/// either side has none, activity within [`SESSION_TIMEOUT_MS`] of the visit's last event.
pub fn continues(visit: &OpenVisit, ts: i64, sdk_session: Option<&str>) -> bool {
    match (visit.sdk_session.as_deref(), sdk_session) {
        (Some(a), Some(b)) => a == b,
        _ => ts >= visit.start - SESSION_TIMEOUT_MS && ts - visit.last <= SESSION_TIMEOUT_MS,
    }
}

/// A visit bounced when it saw exactly one page view.
pub fn is_bounce(pageviews: i64) -> bool {
    pageviews == 1
}

/// Appends a step token to a visit's step list (`\n`-separated, with a leading and trailing `\n` so a token can be
/// matched whole); repeats of the last step, steps past [`MAX_VISIT_STEPS`] and tokens under 2 bytes are not kept.
pub fn push_visit_step(steps: &mut String, token: &str) {
    if steps.is_empty() {
        steps.push('\n');
    }
    let full = is_full(steps);
    let trimmed = steps.trim_end_matches('\n');
    let last = trimmed.as_bytes().iter().rposition(|&b| b == b'\n').map_or(trimmed, |at| &trimmed[at + 1..]);
    // A token is a kind and its value (`p:/pricing`); anything shorter is no step.
    if last == token || full || token.len() < 2 || token.contains('\n') {
        return;
    }
    steps.push_str(token);
    steps.push('\n');
}

/// Whether a step list holds [`MAX_VISIT_STEPS`]. This runs for every page view, over the visit's whole path so far:
/// a list too short to be full is not counted (a step takes at least 3 bytes: `p:` and its `\n`), and a long one is
/// counted 32 bytes at a time, a loop the compiler makes vector instructions of (byte by byte it was ~2 % of
/// batched ingest).
fn is_full(steps: &str) -> bool {
    const MIN_STEP_BYTES: usize = 3;
    if steps.len() < 1 + MIN_STEP_BYTES * MAX_VISIT_STEPS {
        return false;
    }
    let mut chunks = steps.as_bytes().chunks_exact(32);
    let newlines: usize = (&mut chunks).map(|chunk| usize::from(chunk.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>())).sum();
    // The list's first line is empty: n steps have n + 1 newlines.
    newlines + chunks.remainder().iter().filter(|&&b| b == b'\n').count() > MAX_VISIT_STEPS
}

/// How many funnel steps a visit completed, in order (other steps may come between).
#[cfg(test)]
pub fn funnel_progress(funnel: &[Step], visit_steps: &str) -> usize {
    let tokens: Vec<String> = funnel.iter().map(Step::token).collect();
    funnel_progress_tokens(&tokens, visit_steps)
}

/// [`funnel_progress`] with the funnel's step tokens ([`Step::token`]) made once, for scans over many visits.
pub fn funnel_progress_tokens(tokens: &[String], visit_steps: &str) -> usize {
    let mut done = 0;
    for s in visit_steps.split('\n').filter(|s| !s.is_empty()) {
        if done < tokens.len() && s == tokens[done] {
            done += 1;
        }
    }
    done
}

/// Is this event a custom event (a goal candidate) rather than SDK bookkeeping?
pub fn is_custom_event(name: &str) -> bool {
    !NOT_CUSTOM_EVENTS.contains(&name)
}

/// A ratio rounded to 4 decimals; 0 when the denominator is 0.
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn range(from: Date, to: Date, tz: &str) -> Range {
        Range::resolve(from, to, tz).unwrap()
    }

    #[test]
    fn a_day_in_a_timezone_is_its_local_midnights() {
        // 2026-03-10 in New York (EDT since 2026-03-08, UTC-4) is 04:00Z to 04:00Z the next day.
        let r = range(date(2026, 3, 10), date(2026, 3, 10), "America/New_York");
        assert_eq!(Timestamp::from_millisecond(r.start_ms).unwrap().to_string(), "2026-03-10T04:00:00Z");
        assert_eq!(Timestamp::from_millisecond(r.end_ms).unwrap().to_string(), "2026-03-11T04:00:00Z");
        // The day clocks go forward has 23 hours.
        let r = range(date(2026, 3, 8), date(2026, 3, 8), "America/New_York");
        assert_eq!(r.end_ms - r.start_ms, 23 * HOUR_MS);
        let r = range(date(2026, 1, 1), date(2026, 1, 31), "UTC");
        assert_eq!(r.hours().1 - r.hours().0, 31 * 24);
    }

    #[test]
    fn refuses_bad_ranges() {
        assert_eq!(Range::resolve(date(2026, 1, 2), date(2026, 1, 1), "UTC").unwrap_err().code, "invalid_range");
        assert_eq!(Range::resolve(date(2026, 1, 1), date(2026, 1, 1), "Mars/Olympus").unwrap_err().code, "invalid_timezone");
        assert_eq!(Range::resolve(date(2020, 1, 1), date(2026, 1, 1), "UTC").unwrap_err().code, "invalid_range");
    }

    #[test]
    fn buckets_follow_local_days_and_monday_weeks() {
        let r = range(date(2026, 3, 7), date(2026, 3, 9), "America/New_York");
        let days = r.buckets(Interval::Day);
        assert_eq!(days.labels, ["2026-03-07", "2026-03-08", "2026-03-09"]);
        assert_eq!(days.of_hour.iter().filter(|&&b| b == 1).count(), 23);
        let weeks = r.buckets(Interval::Week);
        assert_eq!(weeks.labels, ["2026-03-02", "2026-03-09"], "Sat 7 and Sun 8 are in the week of Monday 2");
        let hours = range(date(2026, 3, 9), date(2026, 3, 9), "Europe/Berlin").buckets(Interval::Hour);
        assert_eq!(hours.labels.len(), 24);
        assert_eq!(hours.labels[0], "2026-03-09T00:00");
    }

    #[test]
    fn heatmap_cells_are_local() {
        let r = range(date(2026, 3, 9), date(2026, 3, 9), "Asia/Tokyo");
        // 2026-03-09T00:00Z is Monday 09:00 in Tokyo.
        assert_eq!(r.weekday_hour(Timestamp::from_second(1_773_014_400).unwrap().as_millisecond() / HOUR_MS), (0, 9));
    }

    fn noon(year: i16, month: i8, day: i8) -> Timestamp {
        date(year, month, day).at(12, 0, 0, 0).to_zoned(TimeZone::UTC).unwrap().timestamp()
    }

    #[test]
    fn parses_parameters() {
        let q = parse_query("site=shop&from=2026-01-01&to=2026-01-31&tz=Europe/Berlin&device=mobile&page=%2Fa&by=referrer&interval=week&step=page:/a&step=event:Signed%20Up&goal=Signed+Up", noon(2026, 2, 1)).unwrap();
        assert_eq!(q.site, "shop");
        assert_eq!(q.filters, vec![(Dim::Device, "mobile".into()), (Dim::Page, "/a".into())]);
        assert_eq!(q.by, Some(Dim::Referrer));
        assert_eq!(q.interval, Interval::Week);
        assert_eq!(q.steps, vec![Step::Page("/a".into()), Step::Event("Signed Up".into())]);
        assert_eq!(q.goals, vec!["Signed Up".to_owned()]);
        let q = parse_query("site=shop", noon(2026, 2, 1)).unwrap();
        assert_eq!((q.range.from, q.range.to), (date(2026, 1, 3), date(2026, 2, 1)));
        // The default range ends today where the query is: 23:30 UTC is the next day in Berlin, not in New York.
        let late = "2026-01-31T23:30:00Z".parse::<Timestamp>().unwrap();
        assert_eq!(parse_query("site=shop&tz=Europe/Berlin", late).unwrap().range.to, date(2026, 2, 1));
        assert_eq!(parse_query("site=shop&tz=America/New_York", late).unwrap().range.to, date(2026, 1, 31));
        assert_eq!(parse_query("site=shop&tz=Mars/Olympus", late).unwrap_err().code, "invalid_timezone");
        for (query, code) in [("", "missing_site"), ("site=s&from=2026-13-01", "invalid_date"), ("site=s&by=colour", "invalid_dimension"), ("site=s&bogus=1", "unknown_parameter"), ("site=s&step=x", "invalid_step"), ("site=s&limit=0", "invalid_limit")] {
            assert_eq!(parse_query(query, noon(2026, 2, 1)).unwrap_err().code, code, "{query}");
        }
    }

    #[test]
    fn sessions_time_out_unless_the_sdk_says_otherwise() {
        let v = OpenVisit { start: 0, last: 10 * 60_000, sdk_session: None };
        assert!(continues(&v, 40 * 60_000, None));
        assert!(!continues(&v, 40 * 60_000 + 1, None));
        let v = OpenVisit { sdk_session: Some("s1".into()), ..v };
        assert!(continues(&v, 90 * 60_000, Some("s1")), "the SDK's own session ID wins");
        assert!(!continues(&v, 11 * 60_000, Some("s2")));
    }

    #[test]
    fn a_step_list_is_full_when_it_has_that_many_lines() {
        let mut steps = String::new();
        for i in 0..200 {
            let token = if i % 3 == 0 { "p:".to_owned() } else { format!("e:{}", "x".repeat(i % 40)) };
            push_visit_step(&mut steps, &token);
            assert_eq!(is_full(&steps), steps.matches('\n').count() - 1 >= MAX_VISIT_STEPS, "after {i}");
        }
        assert!(is_full(&steps));
        let mut short = String::new();
        for token in ["p:/", "", "p", "e:"] {
            push_visit_step(&mut short, token);
        }
        assert_eq!(short, "\np:/\ne:\n", "tokens under 2 bytes are no steps");
    }

    #[test]
    fn visit_steps_and_funnels() {
        let mut steps = String::new();
        for t in ["p:/", "p:/", "p:/pricing", "e:Element Clicked", "p:/signup", "e:Signed Up"] {
            push_visit_step(&mut steps, t);
        }
        assert_eq!(steps, "\np:/\np:/pricing\ne:Element Clicked\np:/signup\ne:Signed Up\n");
        assert!(steps.contains("\np:/pricing\n"));
        let funnel = [Step::Page("/pricing".into()), Step::Page("/signup".into()), Step::Event("Signed Up".into())];
        assert_eq!(funnel_progress(&funnel, &steps), 3);
        let backwards = [Step::Page("/signup".into()), Step::Page("/pricing".into())];
        assert_eq!(funnel_progress(&backwards, &steps), 1, "order matters");
        for i in 0..100 {
            push_visit_step(&mut steps, &format!("p:/{i}"));
        }
        assert_eq!(steps.matches('\n').count() - 1, MAX_VISIT_STEPS);
    }
}
