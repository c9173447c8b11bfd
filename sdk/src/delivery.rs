//! What a send attempt's answer means, and how long to wait before trying again.
//!
//! Retry only what can succeed later: a network error, 408, 429, 500, 502, 503, 504. Every other answer is final:
//! a 2xx carries per-event results that are all final (accepted, duplicate, rejected-and-quarantined), and a 4xx
//! would be refused again.

/// The outcome of one POST of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The collector answered for every event: drop the batch.
    Done,
    /// Try again later.
    Retry,
    /// The request itself was refused (bad key, origin, malformed): resending cannot help, drop the batch.
    Refused,
}

/// Classifies an HTTP status; `None` means the request failed without an answer (offline, DNS, CORS, abort).
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        None => Outcome::Retry,
        Some(200..=299) => Outcome::Done,
        Some(408 | 429 | 500 | 502 | 503 | 504) => Outcome::Retry,
        Some(_) => Outcome::Refused,
    }
}

/// The first retry waits about this long.
pub const BASE_DELAY_MS: f64 = 1_000.0;
/// No wait is longer than this (unless the collector's `Retry-After` asks for more).
pub const MAX_DELAY_MS: f64 = 60_000.0;
/// The longest `Retry-After` honoured: a misconfigured proxy must not park the queue for a day.
pub const MAX_RETRY_AFTER_MS: f64 = 10.0 * 60_000.0;

/// The wait before retry number `attempt` (1 for the first retry): exponential with "equal jitter" — half of the
/// exponential step fixed, half random — so that many clients that failed together do not return together.
/// `jitter` is uniform in `[0, 1)`. A `Retry-After` (in ms) is a floor.
pub fn retry_delay_ms(attempt: u32, jitter: f64, retry_after_ms: Option<f64>) -> f64 {
    let step = (BASE_DELAY_MS * f64::from(1u32 << attempt.clamp(1, 16).saturating_sub(1))).min(MAX_DELAY_MS);
    let delay = step / 2.0 + step / 2.0 * jitter;
    match retry_after_ms {
        Some(after) if after > delay => after.min(MAX_RETRY_AFTER_MS),
        _ => delay,
    }
}

/// Parses a `Retry-After` header in its delay-seconds form (the form the collector sends), as the Fetch API gives
/// header values (without leading and trailing whitespace). HTTP dates are ignored.
pub fn parse_retry_after(v: &str) -> Option<f64> {
    if v.len() > 9 {
        return None;
    }
    Some(crate::text::parse_u64(v)? as f64 * 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_answers_are_retried() {
        assert_eq!(classify(None), Outcome::Retry);
        for s in [200, 202, 207] {
            assert_eq!(classify(Some(s)), Outcome::Done, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(Some(s)), Outcome::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 413, 415, 501] {
            assert_eq!(classify(Some(s)), Outcome::Refused, "{s}");
        }
    }

    #[test]
    fn delays_grow_exponentially_with_bounded_jitter() {
        let mut previous_max = 0.0;
        for attempt in 1..=6 {
            let low = retry_delay_ms(attempt, 0.0, None);
            let high = retry_delay_ms(attempt, 0.999_999, None);
            assert!(low >= previous_max / 2.0 && high > low, "attempt {attempt}: {low}..{high}");
            assert!((high - 2.0 * low).abs() < 1.0, "half fixed, half random");
            previous_max = high;
        }
        assert_eq!(retry_delay_ms(1, 0.0, None), 500.0);
        assert!(retry_delay_ms(40, 0.999, None) <= MAX_DELAY_MS);
        assert!(retry_delay_ms(0, 0.0, None) > 0.0);
    }

    #[test]
    fn retry_after_is_a_bounded_floor() {
        assert_eq!(retry_delay_ms(1, 0.0, Some(5_000.0)), 5_000.0);
        assert_eq!(retry_delay_ms(1, 0.0, Some(10.0)), 500.0);
        assert_eq!(retry_delay_ms(1, 0.0, Some(1e9)), MAX_RETRY_AFTER_MS);
        assert_eq!(parse_retry_after("3"), Some(3_000.0));
        assert_eq!(parse_retry_after(" 3"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
    }
}
